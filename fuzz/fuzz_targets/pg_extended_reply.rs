//! Arbitrary bytes as the backend's answer to a bound-parameter query
//! (`proto::pg::extended::Reply`), and as the SQL and parameters of a
//! request (`encode_query`). Checks: no panics; a reply reader never holds
//! more rows than frames it was fed; a request either is refused with the
//! buffer untouched, or is exactly Parse, Bind, Describe, Execute, Sync with
//! every value carried whole, as its own length-prefixed field.
//!
//! Input: `[selector byte, bytes...]`. Selector even: the bytes are a run
//! of frames `[tag, len (2 bytes, big-endian), body]` fed to one reply.
//! Odd: the bytes are `sql \xff param \xff param ...` (a param `\xfe` alone
//! is NULL), lossily made UTF-8.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use realtime::proto::pg::extended::{encode_query, Reply, Step};

fn reply(mut data: &[u8]) {
    let mut r = Reply::new();
    let mut fed = 0usize;
    while data.len() >= 3 {
        let tag = data[0];
        let len = u16::from_be_bytes([data[1], data[2]]) as usize;
        let body = &data[3..(3 + len).min(data.len())];
        data = &data[(3 + len).min(data.len())..];
        fed += 1;
        match r.feed(tag, body) {
            Ok(Step::Done(Ok(rows))) => {
                assert!(rows.rows.len() <= fed);
                for row in &rows.rows {
                    assert_eq!(row.len(), rows.columns.len());
                }
                fed = 0;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn request(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xff);
    let sql = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
    let params: Vec<Option<String>> = parts
        .map(|p| (p != [0xfe]).then(|| String::from_utf8_lossy(p).into_owned()))
        .collect();
    let refs: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
    let mut buf = BytesMut::from(&b"x"[..]);
    if encode_query(&sql, &refs, &mut buf).is_err() {
        assert_eq!(&buf[..], b"x");
        assert!(sql.contains('\0') || params.iter().flatten().any(|p| p.contains('\0')));
        return;
    }
    let mut at = 1;
    let mut tags = Vec::new();
    let mut bodies = Vec::new();
    while at < buf.len() {
        let len = i32::from_be_bytes(buf[at + 1..at + 5].try_into().unwrap()) as usize;
        tags.push(buf[at]);
        bodies.push(&buf[at + 5..at + 1 + len]);
        at += 1 + len;
    }
    assert_eq!(at, buf.len());
    assert_eq!(tags, b"PBDES");
    assert_eq!(bodies[0], [&[0][..], sql.as_bytes(), &[0, 0, 0]].concat());
    // Bind: names, no formats, the count, then each value in its field.
    let bind = bodies[1];
    assert_eq!(&bind[..4], &[0, 0, 0, 0]);
    assert_eq!(
        u16::from_be_bytes([bind[4], bind[5]]) as usize,
        params.len()
    );
    let mut at = 6;
    for p in &params {
        let len = i32::from_be_bytes(bind[at..at + 4].try_into().unwrap());
        at += 4;
        match p {
            None => assert_eq!(len, -1),
            Some(v) => {
                assert_eq!(&bind[at..at + len as usize], v.as_bytes());
                at += len as usize;
            }
        }
    }
    assert_eq!(&bind[at..], &[0, 0]);
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((sel, rest)) if sel % 2 == 0 => reply(rest),
        Some((_, rest)) => request(rest),
        None => {}
    }
});
