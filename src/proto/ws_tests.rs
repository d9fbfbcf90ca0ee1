//! Unit and property tests of the WebSocket frame codec.

use super::*;
use proptest::prelude::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, WsError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = dec.decode(&mut buf)? {
        out.push(m);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

fn text(s: &'static [u8]) -> Message {
    Message::Text(Bytes::from_static(s))
}

fn one(bytes: &[u8]) -> Result<Message, WsError> {
    let mut v = decode_all(&mut Decoder::new(1 << 20), bytes)?;
    assert_eq!(v.len(), 1);
    Ok(v.remove(0))
}

#[test]
fn rfc_examples() {
    // RFC 6455 section 5.7: single-frame masked text "Hello".
    let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    assert_eq!(one(frame), Ok(text(b"Hello")));
    // Fragmented unmasked examples, masked here: "Hel" + "lo".
    let mut two = client_frame(OpCode::Text, false, b"Hel", MASK);
    two.extend(client_frame(OpCode::Continuation, true, b"lo", MASK));
    assert_eq!(one(&two), Ok(text(b"Hello")));
    // Unmasked server frames from the same section.
    assert_eq!(&server_frame(OpCode::Text, b"Hello")[..], b"\x81\x05Hello");
    assert_eq!(&server_frame(OpCode::Ping, b"Hello")[..], b"\x89\x05Hello");
}

#[test]
fn frame_builder_header_sizes() {
    for (len, head) in [
        (0usize, vec![0x82, 0]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0, 126]),
        (65535, vec![0x82, 126, 0xff, 0xff]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload = vec![0xab; len];
        for hint in [0, len, len + 100] {
            let mut fb = FrameBuilder::new(OpCode::Binary, hint);
            fb.body().extend_from_slice(&payload);
            assert_eq!(fb.body_len(), len);
            let body_ptr = fb.body()[MAX_HEADER_LEN..].as_ptr();
            let frame = fb.finish();
            assert_eq!(&frame[..head.len()], &head[..]);
            assert_eq!(&frame[head.len()..], &payload[..]);
            // The payload was not moved: the header was patched in front.
            assert_eq!(frame[head.len()..].as_ptr(), body_ptr);
        }
    }
}

#[test]
fn close_frames() {
    assert_eq!(&close_frame(1000, "")[..], b"\x88\x02\x03\xe8");
    assert_eq!(&close_frame(1012, "bye")[..], b"\x88\x05\x03\xf4bye");
    let long = "é".repeat(100);
    let f = close_frame(1001, &long);
    assert_eq!(f[1] as usize, f.len() - 2);
    assert!(f.len() - 2 <= MAX_CONTROL_PAYLOAD);
    assert!(std::str::from_utf8(&f[4..]).is_ok());
    // Round trip through the decoder (masked like a client).
    let c = client_frame(OpCode::Close, true, &f[2..], MASK);
    let Message::Close(Some((code, reason))) = one(&c).unwrap() else {
        panic!()
    };
    assert_eq!(code, 1001);
    assert_eq!(reason, &f[4..]);
}

#[test]
fn close_payloads() {
    let c = |p: &[u8]| one(&client_frame(OpCode::Close, true, p, MASK));
    assert_eq!(c(b""), Ok(Message::Close(None)));
    let one_byte = WsError::Protocol("close frame with a 1-byte payload");
    assert_eq!(c(b"\x03"), Err(one_byte));
    let normal = Message::Close(Some((1000, Bytes::new())));
    assert_eq!(c(b"\x03\xe8"), Ok(normal));
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert!(c(&bad.to_be_bytes()).is_err(), "{bad}");
    }
    for good in [1000u16, 1003, 1007, 1011, 1014, 3000, 4999] {
        assert!(c(&good.to_be_bytes()).is_ok(), "{good}");
    }
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut bytes = client_frame(OpCode::Binary, false, b"ab", MASK);
    bytes.extend(client_frame(OpCode::Ping, true, b"p", MASK));
    bytes.extend(client_frame(OpCode::Continuation, false, b"", MASK));
    bytes.extend(client_frame(OpCode::Pong, true, b"q", MASK));
    bytes.extend(client_frame(OpCode::Continuation, true, b"cd", MASK));
    let msgs = decode_all(&mut Decoder::new(100), &bytes).unwrap();
    assert_eq!(
        msgs,
        vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::Pong(Bytes::from_static(b"q")),
            Message::Binary(Bytes::from_static(b"abcd")),
        ]
    );
}

#[test]
fn protocol_errors() {
    let frame = |op, fin, p: &[u8]| client_frame(op, fin, p, MASK);
    let mut nested = frame(OpCode::Text, false, b"x");
    nested.extend(frame(OpCode::Text, true, b"y"));
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x81\x01a".to_vec(), "unmasked client frame"),
        (frame(OpCode::Ping, false, b""), "fragmented control frame"),
        (
            frame(OpCode::Ping, true, &[0; 126]),
            "control frame payload over 125 bytes",
        ),
        (
            frame(OpCode::Continuation, true, b"x"),
            "continuation frame without a message",
        ),
        (nested, "data frame inside a fragmented message"),
        (
            vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
            "payload length has its high bit set",
        ),
    ];
    for rsv in [0x40, 0x20, 0x10] {
        cases.push((vec![0x81 | rsv, 0x80, 0, 0, 0, 0], "reserved bits set"));
    }
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        cases.push((vec![0x80 | op, 0x80, 0, 0, 0, 0], "reserved opcode"));
    }
    for (bytes, why) in cases {
        let got = decode_all(&mut Decoder::new(1000), &bytes);
        assert_eq!(got, Err(WsError::Protocol(why)), "{bytes:x?}");
    }
    assert_eq!(WsError::Protocol("x").close_code(), 1002);
    assert_eq!(WsError::TooBig.close_code(), 1009);
}

#[test]
fn too_big_is_decided_from_the_header() {
    let mut dec = Decoder::new(5_000_000);
    // Header announcing 5 MB + 1, no body, no mask key yet.
    let mut buf = BytesMut::from(&[0x82u8, 0xff, 0, 0, 0, 0, 0, 0x4c, 0x4b, 0x41][..]);
    assert_eq!(dec.decode(&mut buf), Err(WsError::TooBig));
    let mut buf = BytesMut::from(&[0x82u8, 0xfe, 0x01, 0x00][..]);
    assert_eq!(Decoder::new(255).decode(&mut buf), Err(WsError::TooBig));
    // Exactly the limit is fine.
    let f = client_frame(OpCode::Binary, true, &[7; 256], MASK);
    assert!(one(&f).is_ok());
    assert!(decode_all(&mut Decoder::new(256), &f).is_ok());
    // Reassembled size counts.
    let mut dec = Decoder::new(10);
    let mut b = client_frame(OpCode::Text, false, &[1; 6], MASK);
    b.extend(client_frame(OpCode::Continuation, true, &[1; 5], MASK));
    assert_eq!(decode_all(&mut dec, &b), Err(WsError::TooBig));
    // Control frames are not subject to the (tiny) limit.
    let ping = client_frame(OpCode::Ping, true, &[1; 100], MASK);
    assert!(decode_all(&mut Decoder::new(10), &ping).is_ok());
}

#[test]
fn incomplete_input_needs_more_and_reserves() {
    let frame = client_frame(OpCode::Text, true, &[b'x'; 300], MASK);
    let mut dec = Decoder::new(1000);
    let mut buf = BytesMut::new();
    for (i, b) in frame.iter().enumerate() {
        assert_eq!(dec.decode(&mut buf), Ok(None), "byte {i}");
        assert_eq!(buf.len(), i);
        if i >= 8 {
            assert!(buf.capacity() >= frame.len());
        }
        buf.put_u8(*b);
    }
    let want = Message::Text(Bytes::from(vec![b'x'; 300]));
    assert_eq!(dec.decode(&mut buf), Ok(Some(want)));
    assert!(buf.is_empty());
    assert_eq!(dec.decode(&mut buf), Ok(None));
}

#[test]
fn consumes_exactly_one_message() {
    let mut bytes = client_frame(OpCode::Text, true, b"one", MASK);
    bytes.extend(client_frame(OpCode::Binary, true, b"two", MASK));
    bytes.extend(&client_frame(OpCode::Text, true, b"three", MASK)[..3]);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut dec = Decoder::new(100);
    assert_eq!(dec.decode(&mut buf), Ok(Some(text(b"one"))));
    let two = Message::Binary(Bytes::from_static(b"two"));
    assert_eq!(dec.decode(&mut buf), Ok(Some(two)));
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 3);
}

#[test]
fn masking_is_an_involution() {
    let orig: Vec<u8> = (0..40).collect();
    let mut v = orig.clone();
    apply_mask(&mut v, MASK);
    assert!(v
        .iter()
        .zip(&orig)
        .enumerate()
        .all(|(i, (a, b))| *a == b ^ MASK[i % 4]));
    apply_mask(&mut v, MASK);
    assert_eq!(v, orig);
}

#[test]
fn handshake() {
    // RFC 6455 section 1.3.
    let want = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), want);
    assert_eq!(accept_key(b" dGhlIHNhbXBsZSBub25jZQ== "), want);
    assert_eq!(
        handshake_response(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            .to_vec()
    );
}

#[test]
fn opcodes() {
    for v in 0..16u8 {
        if let Some(op) = OpCode::from_u8(v) {
            assert_eq!(op.as_u8(), v);
            assert_eq!(op.is_control(), v >= 8);
        }
    }
}

fn arb_message() -> impl Strategy<Value = (OpCode, Vec<u8>)> {
    use proptest::collection::vec;
    let ops = [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong];
    let max_len = [70_000, 300, 126, 126];
    (0..4usize).prop_flat_map(move |i| (Just(ops[i]), vec(any::<u8>(), 0..max_len[i])))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Client frames (optionally fragmented) fed in random chunks come
    /// back as the original messages.
    #[test]
    fn round_trip_in_chunks(
        msgs in proptest::collection::vec((arb_message(), 1usize..4), 1..6),
        mask in any::<[u8; 4]>(),
        chunk in 1usize..5000,
    ) {
        let mut wire = Vec::new();
        for ((op, payload), nr_fragments) in &msgs {
            if op.is_control() || *nr_fragments == 1 {
                wire.extend(client_frame(*op, true, payload, mask));
                continue;
            }
            let step = payload.len() / nr_fragments + 1;
            let parts: Vec<&[u8]> = payload.chunks(step).collect();
            let parts = if parts.is_empty() { vec![&payload[..]] } else { parts };
            for (i, part) in parts.iter().enumerate() {
                let code = if i == 0 { *op } else { OpCode::Continuation };
                wire.extend(client_frame(code, i + 1 == parts.len(), part, mask));
            }
        }
        let mut dec = Decoder::new(100_000);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Message> = msgs.iter().map(|((op, p), _)| {
            let p = Bytes::from(p.clone());
            match op {
                OpCode::Text => Message::Text(p),
                OpCode::Binary => Message::Binary(p),
                OpCode::Ping => Message::Ping(p),
                _ => Message::Pong(p),
            }
        }).collect();
        prop_assert_eq!(got, want);
    }

    /// Server frames parse back (header + payload) for any length.
    #[test]
    fn server_frame_layout(len in 0usize..70_000, op in 0usize..3) {
        let op = [OpCode::Text, OpCode::Binary, OpCode::Close][op];
        let payload = vec![0x5a; len];
        let f = server_frame(op, &payload);
        prop_assert_eq!(f[0], 0x80 | op.as_u8());
        let (hl, l) = match f[1] {
            126 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
            127 => (10, u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize),
            n => (2, n as usize),
        };
        prop_assert_eq!(l, len);
        prop_assert_eq!(&f[hl..], &payload[..]);
    }

    /// Arbitrary bytes in arbitrary chunks never panic, and the decoder
    /// never buffers more than the limit plus one header.
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..64,
        max in 0usize..300,
    ) {
        let mut dec = Decoder::new(max);
        let mut buf = BytesMut::new();
        'outer: for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(Message::Text(b) | Message::Binary(b))) => {
                        prop_assert!(b.len() <= max)
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }
}
