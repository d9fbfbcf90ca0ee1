use super::*;

fn decode_all(input: &[u8]) -> Result<Vec<ServerOp>, NatsError> {
    let d = Decoder::default();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(op) = d.decode(&mut buf)? {
        out.push(op);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

fn msg(
    subject: &str,
    sid: u64,
    reply: Option<&str>,
    headers: Option<&str>,
    payload: &str,
) -> ServerOp {
    ServerOp::Msg(Msg {
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        sid,
        reply: reply.map(|r| Bytes::copy_from_slice(r.as_bytes())),
        headers: headers.map(|h| Bytes::copy_from_slice(h.as_bytes())),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    })
}

#[test]
fn reads_every_server_operation() {
    let input = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576} \r\n\
        +OK\r\nPING\r\npong\r\n\
        MSG rt.b._t._room 7 5\r\nhello\r\n\
        MSG rt.b._t._room 7 _INBOX.1 0\r\n\r\n\
        HMSG a.b 9 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
        HMSG a.b 9 in.box 12 12\r\nNATS/1.0\r\n\r\n\r\n\
        -ERR 'Authorization Violation'\r\n";
    assert_eq!(
        decode_all(input).unwrap(),
        vec![
            ServerOp::Info(Bytes::from_static(
                b"{\"server_id\":\"x\",\"max_payload\":1048576}"
            )),
            ServerOp::Ok,
            ServerOp::Ping,
            ServerOp::Pong,
            msg("rt.b._t._room", 7, None, None, "hello"),
            msg("rt.b._t._room", 7, Some("_INBOX.1"), None, ""),
            msg("a.b", 9, None, Some("NATS/1.0\r\n\r\n"), "hi"),
            msg("a.b", 9, Some("in.box"), Some("NATS/1.0\r\n\r\n"), ""),
            ServerOp::Err("Authorization Violation".into()),
        ]
    );
}

#[test]
fn waits_for_the_whole_operation_byte_by_byte() {
    let input = b"MSG s 1 reply 10\r\nhello\r\nyou\r\nPING\r\n";
    let d = Decoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in input.iter() {
        buf.put_u8(b);
        while let Some(op) = d.decode(&mut buf).unwrap() {
            got.push(op);
        }
    }
    assert_eq!(
        got,
        vec![
            msg("s", 1, Some("reply"), None, "hello\r\nyou"),
            ServerOp::Ping
        ]
    );
}

#[test]
fn the_payload_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"MSG s 1 3\r\nabc\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let Some(ServerOp::Msg(m)) = Decoder::default().decode(&mut buf).unwrap() else {
        panic!("a message");
    };
    assert_eq!(m.payload.as_ptr() as usize, base + 11, "not copied");
}

#[test]
fn refuses_what_cannot_be_framed() {
    let cases: &[(&[u8], NatsError)] = &[
        (
            b"MSG s x 3\r\nabc\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "not a number",
            },
        ),
        (
            b"MSG s 1 -3\r\nabc\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "not a number",
            },
        ),
        (
            b"MSG s 1\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "wrong number of arguments",
            },
        ),
        (
            b"MSG s 1 r x 3\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "wrong number of arguments",
            },
        ),
        (
            b"MSG a b c d e f\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "too many arguments",
            },
        ),
        (
            b"HMSG s 1 5 3\r\nabc\r\n",
            NatsError::Malformed {
                op: "HMSG",
                why: "header size over total size",
            },
        ),
        (b"MSG s 1 3\r\nabcd\r\n", NatsError::MissingPayloadEnd),
        (
            b"MSG s 1 99999999999999999999\r\n",
            NatsError::Malformed {
                op: "MSG",
                why: "not a number",
            },
        ),
        (
            b"MSG s 1 2000000\r\n",
            NatsError::PayloadTooLarge {
                len: 2_000_000,
                max: 1024 * 1024,
            },
        ),
        (b"HELLO\r\n", NatsError::UnknownOp("HELLO".into())),
    ];
    for (input, want) in cases {
        let mut buf = BytesMut::from(*input);
        assert_eq!(
            Decoder::default().decode(&mut buf).unwrap_err(),
            *want,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let mut long = BytesMut::from(&b"INFO "[..]);
    long.put_bytes(b'x', MAX_CONTROL_LINE);
    assert_eq!(
        Decoder::default().decode(&mut long).unwrap_err(),
        NatsError::LineTooLong
    );
    long.put_slice(b"\r\n");
    assert_eq!(
        Decoder::default().decode(&mut long).unwrap_err(),
        NatsError::LineTooLong
    );
}

#[test]
fn writes_client_operations() {
    let mut out = BytesMut::new();
    write_connect(&mut out, r#"{"verbose":false}"#);
    write_sub(&mut out, b"rt.b.*", None, 1).unwrap();
    write_sub(&mut out, b"rt.own", Some(b"nodes"), 22).unwrap();
    write_pub(&mut out, b"rt.b._t._room", None, b"hello").unwrap();
    write_pub(&mut out, b"rt.ask", Some(b"_INBOX.x"), b"").unwrap();
    write_unsub(&mut out, 22);
    write_ping(&mut out);
    write_pong(&mut out);
    assert_eq!(
        &out[..],
        &b"CONNECT {\"verbose\":false}\r\nPING\r\n\
           SUB rt.b.* 1\r\nSUB rt.own nodes 22\r\n\
           PUB rt.b._t._room 5\r\nhello\r\n\
           PUB rt.ask _INBOX.x 0\r\n\r\n\
           UNSUB 22\r\nPING\r\nPONG\r\n"[..]
    );
}

#[test]
fn a_bad_subject_or_queue_is_refused_and_nothing_is_written() {
    let mut out = BytesMut::new();
    for s in [
        &b""[..],
        b"a..b",
        b".a",
        b"a.",
        b"a b",
        b"a\tb",
        b"a\r\nPUB x 1",
    ] {
        assert!(matches!(
            write_pub(&mut out, s, None, b"x"),
            Err(WriteError::BadSubject(_))
        ));
        assert!(write_sub(&mut out, s, None, 1).is_err());
    }
    assert!(matches!(
        write_sub(&mut out, b"a", Some(b"q q"), 1),
        Err(WriteError::BadQueue(_))
    ));
    assert!(write_pub(&mut out, b"a", Some(b"r s"), b"").is_err());
    assert!(out.is_empty());
}

#[test]
fn names_become_one_literal_token_each() {
    let hostile: &[&[u8]] = &[
        b"",
        b"*",
        b">",
        b"a.b",
        b"a b",
        b"room:1",
        b"_x",
        b"%41",
        "é".as_bytes(),
        b"\r\n",
    ];
    for name in hostile {
        let s = subject("rt.b", &[b"tenant", name]);
        let tokens: Vec<&str> = s.split('.').collect();
        assert_eq!(tokens.len(), 4, "{s}");
        assert_eq!(tokens[2], "_tenant");
        let t = tokens[3];
        assert!(t.starts_with('_') && t != "*" && t != ">", "{s}");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'%'),
            "{s}"
        );
        assert_eq!(unescape_token(t.as_bytes()).as_deref(), Some(*name), "{s}");
        check_subject(s.as_bytes()).unwrap();
    }
    assert_eq!(
        subject("rt.b", &[b"t", b"room:a.b"]),
        "rt.b._t._room%3Aa%2Eb"
    );
}

#[test]
fn only_the_escapes_own_tokens_unescape() {
    for bad in [
        &b"x"[..],
        b"",
        b"_%4",
        b"_%zz",
        b"_%41",
        b"_%3a",
        b"_a.b",
        b"_a_b",
        b"_*",
    ] {
        assert_eq!(
            unescape_token(bad),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(unescape_token(b"_"), Some(Vec::new()));
    assert_eq!(unescape_token(b"_%5F"), Some(b"_".to_vec()));
}
