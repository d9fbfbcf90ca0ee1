//! Whatever arrives on a cluster subject (another node, or anything else
//! that can publish to NATS), the archive decoder never panics and never
//! reads outside the payload; presence it accepts holds only metas that
//! are one JSON object with a plain `phx_ref`, so nothing in it becomes
//! structure in a client's `presence_state` or `presence_diff`. A fan-out
//! it accepts hands on frames that are slices of the payload.
//!
//! The input is the payload as received.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use realtime::realtime::cluster::{decode, NodePresence, Received};
use realtime::realtime::presence::Change;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let Ok(received) = decode(&payload) else {
        return;
    };
    let inside = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len() + 1;
    match received {
        Received::Fanout { fwd, .. } => {
            for f in [&fwd.v1, &fwd.v2].into_iter().flatten() {
                assert!(inside.contains(&(f.as_ptr() as usize)) || f.is_empty());
            }
        }
        Received::Presence { body, .. } => {
            let metas: Vec<_> = match &body {
                NodePresence::Delta(d) => d
                    .changes()
                    .iter()
                    .filter_map(|c| match c {
                        Change::Put { meta, .. } => Some(meta.clone()),
                        Change::Remove { .. } => None,
                    })
                    .collect(),
                NodePresence::Snapshot { entries, .. } => {
                    entries.entries().map(|(_, _, m)| m.clone()).collect()
                }
            };
            for meta in metas {
                let v: serde_json::Value =
                    serde_json::from_str(meta.as_json()).expect("a meta is JSON");
                let obj = v.as_object().expect("a meta is an object");
                assert_eq!(obj["phx_ref"].as_str(), Some(meta.phx_ref()));
            }
        }
    }
});
