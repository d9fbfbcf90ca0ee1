//! Arbitrary bytes as an HTTP/1.1 request head, and as a query string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::proto::http::{content_length, host_tenant, parse_head, query_param};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_head(data) {
        assert!(head.head_len <= data.len());
        let _ = content_length(&head);
        if let Some(host) = head.header_str("host") {
            let _ = host_tenant(host);
        }
        if let Some(q) = head.query.as_deref() {
            let _ = query_param(q, "apikey");
            let _ = query_param(q, "vsn");
        }
    }
});
