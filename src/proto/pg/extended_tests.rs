use super::*;

/// Splits an encoded request into (tag, body) frames.
fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let len = i32::from_be_bytes(buf[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((buf[at], buf[at + 5..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    out
}

#[test]
fn a_request_is_parse_bind_describe_execute_sync() {
    let mut buf = BytesMut::new();
    encode_query("select $1, $2", &[Some("a'b"), None], &mut buf).unwrap();
    let f = frames(&buf);
    let tags: Vec<u8> = f.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"PBDES");
    assert_eq!(f[0].1, b"\0select $1, $2\0\0\0");
    assert_eq!(
        f[1].1,
        b"\0\0\0\0\0\x02\0\0\0\x03a'b\xff\xff\xff\xff\0\0".to_vec()
    );
    assert_eq!(f[2].1, b"P\0");
    assert_eq!(f[3].1, b"\0\0\0\0\0");
    assert!(f[4].1.is_empty());
}

#[test]
fn nul_bytes_are_refused_before_anything_is_written() {
    let mut buf = BytesMut::from(&b"kept"[..]);
    assert_eq!(
        encode_query("select $1, $2", &[Some("ok"), Some("a\0b")], &mut buf),
        Err(EncodeError::NulInParam(2))
    );
    assert_eq!(
        EncodeError::NulInParam(2).to_string(),
        "parameter $2 contains a NUL byte, which Postgres text cannot hold"
    );
    assert_eq!(
        encode_query("select 1\0", &[], &mut buf),
        Err(EncodeError::NulInSql)
    );
    let many = vec![None; MAX_PARAMS + 1];
    assert_eq!(
        encode_query("select 1", &many, &mut buf),
        Err(EncodeError::TooManyParams(MAX_PARAMS + 1))
    );
    assert_eq!(&buf[..], b"kept");
}

fn row_description(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as u16).to_be_bytes().to_vec();
    for n in names {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0; 18]);
    }
    b
}

fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut b = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b
}

#[test]
fn a_reply_collects_rows_and_its_tag() {
    let mut r = Reply::new();
    assert_eq!(r.feed(b'1', b""), Ok(Step::More));
    assert_eq!(r.feed(b'2', b""), Ok(Step::More));
    assert_eq!(r.feed(b'T', &row_description(&["a", "b"])), Ok(Step::More));
    assert_eq!(
        r.feed(b'D', &data_row(&[Some("x\u{e9}"), None])),
        Ok(Step::More)
    );
    assert_eq!(
        r.feed(b'S', b"TimeZone\0UTC\0"),
        Ok(Step::Param("TimeZone".into(), "UTC".into()))
    );
    assert_eq!(r.feed(b'C', b"SELECT 1\0"), Ok(Step::More));
    assert_eq!(
        r.feed(b'Z', b"I"),
        Ok(Step::Done(Ok(Rows {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Some("x\u{e9}".into()), None]],
            tag: "SELECT 1".into(),
        })))
    );
}

#[test]
fn an_error_is_kept_until_ready_for_query() {
    let mut r = Reply::new();
    r.feed(b'1', b"").unwrap();
    r.feed(b'E', b"SERROR\0C23505\0Mduplicate key\0\0").unwrap();
    assert_eq!(
        r.feed(b'Z', b"E"),
        Ok(Step::Done(Err(DbError {
            severity: "ERROR".into(),
            code: "23505".into(),
            message: "duplicate key".into(),
        })))
    );
}

#[test]
fn malformed_frames_are_protocol_errors() {
    let bad: &[(u8, &[u8])] = &[
        (b'D', b"\0\x01\0\0\0\x01a"),
        (b'T', b"\0\x01a"),
        (b'T', b"\0\x01a\0"),
        (b'C', b"no nul"),
        (b'S', b"name\0"),
        (b'Z', b""),
        (b's', b""),
        (b'W', b""),
    ];
    for (tag, body) in bad {
        assert!(Reply::new().feed(*tag, body).is_err(), "{tag} {body:?}");
    }
    let mut r = Reply::new();
    r.feed(b'T', &row_description(&["a"])).unwrap();
    assert!(r.feed(b'D', &data_row(&[Some("1"), Some("2")])).is_err());
    assert!(r.feed(b'D', b"\0\x01\0\0\0\x05ab").is_err());
    assert!(r.feed(b'D', b"\0\x01\xff\xff\xff\xffextra").is_err());
}
