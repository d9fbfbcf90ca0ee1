//! Whatever nats-server (or something posing as it) sends, the decoder
//! never panics, never reads past what it was given, and frames the same
//! operations whether the bytes arrive at once or in pieces. A message's
//! payload is exactly the length its line states.
//!
//! The first byte sets the size of the pieces (1-16 bytes, or all at
//! once for 0); the rest is the stream.

#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use realtime::proto::nats::{Decoder, NatsError, ServerOp};

/// The operations `input` decodes to, fed `piece` bytes at a time, and
/// the error that stopped it, if one did.
fn run(input: &[u8], piece: usize) -> (Vec<ServerOp>, Option<NatsError>) {
    let d = Decoder {
        max_payload: 64 * 1024,
    };
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        buf.put_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(op)) => {
                    if let ServerOp::Msg(m) = &op {
                        let total = m.payload.len() + m.headers.as_ref().map_or(0, |h| h.len());
                        assert!(total <= d.max_payload);
                        assert!(!m.subject.is_empty());
                    }
                    ops.push(op);
                }
                Ok(None) => break,
                Err(e) => return (ops, Some(e)),
            }
        }
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len());
    let piece = (mode % 17) as usize;
    if piece == 0 {
        return;
    }
    let pieces = run(input, piece);
    // In pieces, a line too long may be noticed before its CRLF arrives;
    // everything framed before that is the same.
    match (&whole.1, &pieces.1) {
        (None, None) => assert_eq!(whole.0, pieces.0),
        _ => {
            let n = whole.0.len().min(pieces.0.len());
            assert_eq!(whole.0[..n], pieces.0[..n]);
        }
    }
});
