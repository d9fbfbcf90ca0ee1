//! Arbitrary bytes as a request body after a chunked or a length head,
//! read in two pieces split at an arbitrary point: the reader never panics,
//! never returns more than the limit, and a body read in pieces equals the
//! body read whole.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use realtime::proto::http::{parse_head, BodyReader, HttpError};

const LIMIT: usize = 4096;

fn read(head: &[u8], parts: &[&[u8]]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let head = parse_head(head).unwrap().unwrap();
    let mut r = BodyReader::new(&head, LIMIT);
    let mut buf = BytesMut::new();
    for (i, p) in parts.iter().enumerate() {
        buf.extend_from_slice(p);
        if let Some(body) = r.take(&mut buf)? {
            assert!(body.len() <= LIMIT);
            let rest: usize = parts[i + 1..].iter().map(|p| p.len()).sum();
            return Ok(Some((body.to_vec(), buf.len() + rest)));
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = (split as usize * data.len() / 255).min(data.len());
    let heads: [&[u8]; 2] = [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
    ];
    for head in heads {
        let whole = read(head, &[data]);
        let pieces = read(head, &[&data[..split], &data[split..]]);
        match (&whole, &pieces) {
            // Bytes left after the body (a pipelined request) agree too.
            (Ok(Some(w)), Ok(Some(p))) => assert_eq!(w, p),
            (Err(e), _) => assert!(matches!(e.status(), 400 | 413)),
            _ => {}
        }
    }
});
