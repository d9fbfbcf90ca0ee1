//! Arbitrary bytes as a `POST /api/broadcast` body: the parser answers a
//! message list or an error with a status and a JSON body, never panics,
//! and every accepted payload is a JSON object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::realtime::rest::parse_batch;

fuzz_target!(|data: &[u8]| {
    match parse_batch(data, 4096) {
        Ok(messages) => {
            for m in messages {
                let v: serde_json::Value =
                    serde_json::from_str(m.payload.get()).expect("payload is JSON");
                assert!(v.is_object(), "payload must be an object");
                let mut out = Vec::new();
                m.encode_broadcast_payload(&mut out);
                serde_json::from_slice::<serde_json::Value>(&out)
                    .expect("broadcast payload is JSON");
            }
        }
        Err(e) => {
            assert!((400..600).contains(&e.status()));
            let body = e.body_json();
            if !body.is_empty() {
                serde_json::from_str::<serde_json::Value>(&body).expect("error body is JSON");
            }
        }
    }
});
