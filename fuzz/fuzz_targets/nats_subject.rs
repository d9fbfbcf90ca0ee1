//! Whatever a client names a topic (or an operator a tenant), its subject
//! token is one literal token: no separator, no wildcard, no white space,
//! and it decodes back to exactly the name, so no two names share a
//! subject. Any token `unescape_token` accepts is the escape of what it
//! returns.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::proto::nats::{escape_token, subject, unescape_token};

fuzz_target!(|data: &[u8]| {
    let (tenant, topic) = data.split_at(data.len() / 2);
    let s = subject("rt.b", &[tenant, topic]);
    let tokens: Vec<&str> = s.split('.').collect();
    assert_eq!(tokens.len(), 4, "{s}");
    for (t, name) in tokens[2..].iter().zip([tenant, topic]) {
        assert!(t.starts_with('_'));
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'%'));
        assert_eq!(unescape_token(t.as_bytes()).as_deref(), Some(name));
    }
    if let Some(name) = unescape_token(data) {
        let mut again = String::new();
        escape_token(&mut again, &name);
        assert_eq!(again.as_bytes(), data);
    }
});
