//! Arbitrary bytes as a single-endpoint body under each content type the
//! endpoint distinguishes; the payload it would broadcast is valid JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::realtime::rest::{parse_single_json, split_single_path};

fuzz_target!(|data: &[u8]| {
    for ct in [
        None,
        Some("application/json"),
        Some("application/octet-stream"),
        Some("text/plain"),
    ] {
        if let Ok(p) = parse_single_json(ct, data) {
            serde_json::from_slice::<serde_json::Value>(&p.payload).expect("payload is JSON");
        }
    }
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = split_single_path(path);
    }
});
