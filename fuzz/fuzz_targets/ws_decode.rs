//! Feeds arbitrary bytes to the WebSocket `Decoder` in pseudo-random chunks
//! with a small size limit, and checks that chunking never changes the result
//! and that no message breaks the limits.
//!
//! Input layout: `[chunk_seed, max_size/4, stream...]`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use realtime::proto::ws::{Decoder, Message, WsError, MAX_CONTROL_PAYLOAD};

/// What a run produced: the messages, then the error that stopped it.
type Outcome = (Vec<Message>, Option<WsError>);

fn run(stream: &[u8], max: usize, mut next_chunk: impl FnMut() -> usize) -> Outcome {
    let mut dec = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        let n = next_chunk().clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => {
                    check(&m, max);
                    msgs.push(m);
                }
                Ok(None) => break,
                Err(e) => return (msgs, Some(e)),
            }
        }
    }
    (msgs, None)
}

fn check(m: &Message, max: usize) {
    match m {
        Message::Text(b) | Message::Binary(b) => assert!(b.len() <= max),
        Message::Ping(b) | Message::Pong(b) => assert!(b.len() <= MAX_CONTROL_PAYLOAD),
        Message::Close(Some((code, reason))) => {
            assert!(realtime::proto::ws::is_valid_close_code(*code));
            assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
        }
        Message::Close(None) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, max, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*max) * 4;
    let whole = run(stream, max, || usize::MAX);
    let mut state = u32::from(*seed) | 0x100;
    let chunked = run(stream, max, || {
        // xorshift32: deterministic chunk sizes 1..=64 from the seed.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 64) as usize + 1
    });
    assert_eq!(whole, chunked);
});
