//! Arbitrary text as a postgres_changes `filter` and as a whole binding:
//! parsing answers filters or an error message, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::realtime::postgres_changes::binding::parse_binding;
use realtime::realtime::postgres_changes::filter::parse_filters;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_filters(s) {
        Ok(filters) => {
            for f in &filters {
                let _ = f.value.as_str();
                let _ = f.sql("text");
            }
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
    let mut raw = serde_json::Map::new();
    raw.insert("event".into(), "*".into());
    raw.insert("schema".into(), "public".into());
    raw.insert("table".into(), "t".into());
    raw.insert("filter".into(), s.into());
    if let Err(e) = parse_binding(&raw, 1) {
        assert!(!e.message().is_empty());
    }
});
