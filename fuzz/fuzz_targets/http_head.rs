//! Arbitrary bytes as an HTTP/1.1 request head, and as a query string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::proto::http::{
    body_kind, check_upgrade, host_tenant, host_tenant_lowercase, parse_head, query_param,
    request_line_received, HttpError, MAX_HEAD_BYTES,
};

fuzz_target!(|data: &[u8]| {
    let _ = request_line_received(data);
    match parse_head(data) {
        Ok(Some(head)) => {
            assert!(head.head_len <= data.len());
            // A complete head always has its request line.
            assert!(request_line_received(&data[..head.head_len]));
            let _ = body_kind(&head);
            if let Some(host) = head.header_str("host") {
                let _ = host_tenant(host);
                let lower = host_tenant_lowercase(host);
                assert!(!lower.bytes().any(|b| b.is_ascii_uppercase()));
            }
            if let Some(q) = head.query.as_deref() {
                let _ = query_param(q, "apikey");
                let _ = query_param(q, "vsn");
            }
            match check_upgrade(&head) {
                Ok(key) => {
                    // Only HTTP/1.1 GETs with a 16-byte key and version 13 pass.
                    assert_eq!(head.method, "GET");
                    assert_eq!(head.version, 1);
                    assert_eq!(key.trim_ascii().len(), 24);
                }
                Err(r) => assert!(matches!(r.status(), 400 | 426)),
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEAD_BYTES),
        // Oversized or over-long heads are 431, never a generic 400.
        Err(e @ (HttpError::HeadTooLarge | HttpError::TooManyHeaders)) => {
            assert_eq!(e.status(), 431)
        }
        Err(e) => assert_eq!(e.status(), 400),
    }
});
