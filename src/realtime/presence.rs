//! Presence state of one topic and the diffs its changes produce
//! (PROTOCOL 5).
//!
//! Each joined channel (an [`OwnerId`]) tracks at most one meta under its
//! channel's presence key. [`TopicPresence::track`] / [`untrack`] /
//! [`leave`] return the [`Diff`] to fan out as `presence_diff`;
//! [`TopicPresence::state_json`] writes the `presence_state` payload.
//!
//! # Matching the Elixir server's bytes
//!
//! The Elixir server keeps metas as maps (`phx_ref` and `phx_ref_prev` are
//! atom keys, user keys are strings) and Jason encodes small maps in term
//! order: atoms before strings, strings bytewise. So a meta goes on the wire
//! as `{"phx_ref":..,"phx_ref_prev":..,<user keys sorted>}`, nested objects
//! sorted too, and floats in Erlang's shortest form (`1.0e3`, `0.1`). We
//! store each meta **pre-serialized that way** (user keys sorted once at
//! track time), so `presence_state` and diffs are plain byte copies, and
//! "same meta again" is a byte comparison (Elixir compares the decoded maps
//! with `===`, which agrees: `1` and `1.0` differ in both). Maps of more
//! than 32 keys are hash-ordered in Elixir; we keep them sorted.
//!
//! Keys are grouped in bytewise order, metas under one key in owner order:
//! the Elixir tracker lists a topic from an ETS `ordered_set` keyed by
//! `{topic, channel_pid, key}`, so metas come out in channel (process)
//! creation order, not tracking order. Owner ids must therefore be handed out
//! in increasing order of channel creation.
//!
//! [`untrack`]: TopicPresence::untrack
//! [`leave`]: TopicPresence::leave

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use rand::RngCore;
use serde_json::{Map, Value};

use crate::proto::json::write_str_buf;

/// A joined channel instance; the server assigns these in increasing order.
pub type OwnerId = u64;

/// Default presence messages one channel may send per window
/// (`CLIENT_PRESENCE_MAX_CALLS`).
pub const DEFAULT_CLIENT_PRESENCE_MAX_CALLS: u32 = 5;

/// Default length of that window (`CLIENT_PRESENCE_WINDOW_MS`).
pub const DEFAULT_CLIENT_PRESENCE_WINDOW_MS: u64 = 30_000;

/// One tracked meta, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// This version's reference (16 base64url chars).
    phx_ref: Box<str>,
    /// The reference this version replaced, after an update.
    phx_ref_prev: Option<Box<str>>,
    /// The user's meta object as Jason would write it, without the outer
    /// braces (`"a":1,"b":"x"`); empty for `{}`.
    members: Box<str>,
}

impl Meta {
    /// The meta's `phx_ref`.
    pub fn phx_ref(&self) -> &str {
        &self.phx_ref
    }

    /// The meta's `phx_ref_prev`, set on metas produced by an update.
    pub fn phx_ref_prev(&self) -> Option<&str> {
        self.phx_ref_prev.as_deref()
    }

    /// The user's meta members as serialized (`"a":1,"b":"x"`).
    pub fn members_json(&self) -> &str {
        &self.members
    }

    /// Writes `{"phx_ref":"..",["phx_ref_prev":"..",]<members>}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"phx_ref\":\"");
        out.extend_from_slice(self.phx_ref.as_bytes());
        out.push(b'"');
        if let Some(prev) = &self.phx_ref_prev {
            out.extend_from_slice(b",\"phx_ref_prev\":\"");
            out.extend_from_slice(prev.as_bytes());
            out.push(b'"');
        }
        if !self.members.is_empty() {
            out.push(b',');
            out.extend_from_slice(self.members.as_bytes());
        }
        out.push(b'}');
    }
}

/// One owner's entry under a key.
#[derive(Debug, Clone)]
struct Entry {
    /// The channel that tracked it (sort key within the key's list).
    owner: OwnerId,
    /// What it tracked.
    meta: Meta,
}

/// Presence entries of one topic.
#[derive(Debug, Default)]
pub struct TopicPresence {
    /// key -> entries in owner order; keys iterate bytewise-sorted, which is
    /// the order `presence_state` lists them in.
    keys: BTreeMap<Box<str>, Vec<Entry>>,
    /// owner -> the key it tracks under, to find its entry.
    owners: HashMap<OwnerId, Box<str>>,
}

impl TopicPresence {
    /// Tracks `meta` for `owner` under `key`, with a fresh `phx_ref` from the
    /// thread-local RNG. See [`track_with`](Self::track_with).
    pub fn track(&mut self, owner: OwnerId, key: &str, meta: Map<String, Value>) -> Option<Diff> {
        self.track_with(owner, key, meta, &mut rand::rng())
    }

    /// Tracks `meta` for `owner` under `key`:
    /// - first track: a join;
    /// - same meta as currently tracked: no-op (`None`);
    /// - changed meta: an update, one diff whose `joins` holds the new meta
    ///   (fresh `phx_ref`, `phx_ref_prev` = old ref) and whose `leaves`
    ///   holds the old meta as it was;
    /// - (owner tracked under a different key: leave of the old entry and
    ///   join of the new one in one diff; the server never does this).
    pub fn track_with(
        &mut self,
        owner: OwnerId,
        key: &str,
        meta: Map<String, Value>,
        rng: &mut impl RngCore,
    ) -> Option<Diff> {
        let mut members = Vec::with_capacity(64);
        write_object_members(&meta, &mut members);
        let members = into_string(members).into_boxed_str();

        let mut diff = Diff::default();
        if let Some(old_key) = self.owners.get(&owner) {
            if &**old_key == key {
                let entries = self.keys.get_mut(key).expect("owner index is consistent");
                let i = find(entries, owner).expect("owner index is consistent");
                if entries[i].meta.members == members {
                    return None;
                }
                let new = Meta {
                    phx_ref: new_phx_ref(rng).into_boxed_str(),
                    phx_ref_prev: Some(entries[i].meta.phx_ref.clone()),
                    members,
                };
                let old = std::mem::replace(&mut entries[i].meta, new.clone());
                diff.joins.push((key.into(), new));
                diff.leaves.push((key.into(), old));
                return Some(diff);
            }
            if let Some(left) = self.remove(owner) {
                diff.leaves.push(left);
            }
        }
        let new = Meta {
            phx_ref: new_phx_ref(rng).into_boxed_str(),
            phx_ref_prev: None,
            members,
        };
        let entries = self.keys.entry(key.into()).or_default();
        let at = entries.partition_point(|e| e.owner < owner);
        entries.insert(
            at,
            Entry {
                owner,
                meta: new.clone(),
            },
        );
        self.owners.insert(owner, key.into());
        diff.joins.push((key.into(), new));
        Some(diff)
    }

    /// Stops tracking `owner` (client `untrack`): a diff with its meta in
    /// `leaves`, or `None` if it tracked nothing.
    pub fn untrack(&mut self, owner: OwnerId) -> Option<Diff> {
        let left = self.remove(owner)?;
        Some(Diff {
            joins: Vec::new(),
            leaves: vec![left],
        })
    }

    /// The owner's channel closed (leave, shutdown, socket gone): same as
    /// [`untrack`](Self::untrack).
    pub fn leave(&mut self, owner: OwnerId) -> Option<Diff> {
        self.untrack(owner)
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Number of metas tracked (one per tracking owner).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Number of distinct keys.
    pub fn nr_keys(&self) -> usize {
        self.keys.len()
    }

    /// Whether `owner` tracks something.
    pub fn is_tracking(&self, owner: OwnerId) -> bool {
        self.owners.contains_key(&owner)
    }

    /// The key and meta `owner` tracks.
    pub fn get(&self, owner: OwnerId) -> Option<(&str, &Meta)> {
        let key = self.owners.get(&owner)?;
        let entries = self.keys.get(key)?;
        let i = find(entries, owner)?;
        Some((key, &entries[i].meta))
    }

    /// Writes the `presence_state` payload:
    /// `{"<key>":{"metas":[{"phx_ref":"..",...meta},...]},...}` (`{}` when
    /// empty).
    pub fn state_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (key, entries)) in self.keys.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_str_buf(out, key);
            out.extend_from_slice(b":{\"metas\":[");
            for (m, e) in entries.iter().enumerate() {
                if m > 0 {
                    out.push(b',');
                }
                e.meta.write_json(out);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b'}');
    }

    fn remove(&mut self, owner: OwnerId) -> Option<(Box<str>, Meta)> {
        let key = self.owners.remove(&owner)?;
        let entries = self.keys.get_mut(&key).expect("owner index is consistent");
        let i = find(entries, owner).expect("owner index is consistent");
        let e = entries.remove(i);
        if entries.is_empty() {
            self.keys.remove(&key);
        }
        Some((key, e.meta))
    }
}

fn find(entries: &[Entry], owner: OwnerId) -> Option<usize> {
    entries.binary_search_by_key(&owner, |e| e.owner).ok()
}

/// A presence change: the `presence_diff` payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// (key, meta) that joined.
    joins: Vec<(Box<str>, Meta)>,
    /// (key, meta) that left.
    leaves: Vec<(Box<str>, Meta)>,
}

impl Diff {
    /// The joined (key, meta) pairs.
    pub fn joins(&self) -> impl Iterator<Item = (&str, &Meta)> {
        self.joins.iter().map(|(k, m)| (&**k, m))
    }

    /// The left (key, meta) pairs.
    pub fn leaves(&self) -> impl Iterator<Item = (&str, &Meta)> {
        self.leaves.iter().map(|(k, m)| (&**k, m))
    }

    /// Whether the diff has neither joins nor leaves.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// Writes `{"joins":{...},"leaves":{...}}`, each side shaped like
    /// [`TopicPresence::state_json`] (keys sorted, metas of one key in the
    /// order they were added to the diff).
    pub fn to_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"joins\":");
        write_group(&self.joins, out);
        out.extend_from_slice(b",\"leaves\":");
        write_group(&self.leaves, out);
        out.push(b'}');
    }
}

fn write_group(items: &[(Box<str>, Meta)], out: &mut Vec<u8>) {
    out.push(b'{');
    match items {
        [] => {}
        [(key, meta)] => {
            write_str_buf(out, key);
            out.extend_from_slice(b":{\"metas\":[");
            meta.write_json(out);
            out.extend_from_slice(b"]}");
        }
        _ => {
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| items[a].0.cmp(&items[b].0));
            let mut prev: Option<&str> = None;
            for &i in &order {
                let (key, meta) = &items[i];
                if prev == Some(&**key) {
                    out.push(b',');
                } else {
                    if prev.is_some() {
                        out.extend_from_slice(b"]},");
                    }
                    write_str_buf(out, key);
                    out.extend_from_slice(b":{\"metas\":[");
                    prev = Some(key);
                }
                meta.write_json(out);
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'}');
}

/// A fresh `phx_ref`: base64url (no padding) of 12 random bytes, 16 chars.
/// (The Elixir tracker uses 8 bytes of nanosecond time + 4 bytes of hash and
/// counter; clients only compare refs for equality.)
pub fn new_phx_ref(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 12];
    rng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A server-generated presence key: a UUID v1 string (lower-case, hyphenated)
/// from the system clock, a process-wide random node id and the uuid crate's
/// shared clock sequence. This is the one clock read in this module; use
/// [`presence_key_at`] where time is passed in.
pub fn new_presence_key() -> String {
    uuid::Uuid::now_v1(node_id()).hyphenated().to_string()
}

/// A UUID v1 presence key for the given Unix time, 14-bit clock sequence
/// and node id.
pub fn presence_key_at(
    unix_secs: u64,
    subsec_nanos: u32,
    clock_seq: u16,
    node: &[u8; 6],
) -> String {
    let ts = uuid::Timestamp::from_unix_time(
        unix_secs,
        subsec_nanos,
        u128::from(clock_seq & 0x3fff),
        14,
    );
    uuid::Uuid::new_v1(ts, node).hyphenated().to_string()
}

fn node_id() -> &'static [u8; 6] {
    static NODE: OnceLock<[u8; 6]> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut n = [0u8; 6];
        rand::rng().fill_bytes(&mut n);
        n[0] |= 0x01; // multicast bit: a random, not an IEEE, node id (RFC 9562 6.10)
        n
    })
}

/// The channel's presence key from the join config's `presence.key`, or
/// `None` when the server must generate one: absent, `null`, or a string of
/// only whitespace (Ecto treats those as empty for the `:any` key field).
pub fn presence_key_from_config(key: Option<&Value>) -> Option<String> {
    match key? {
        Value::Null => None,
        Value::String(s) if s.trim_start().is_empty() => None,
        v => Some(key_to_string(v)),
    }
}

/// Stringifies a presence key as Elixir's `to_string/1` does when presence
/// groups by key: strings as is, integers in decimal, floats in Erlang's
/// shortest form (`1.5`, `100.0`, `1.0e3`), `true`/`false`, `null` as `""`,
/// arrays as chardata (code points and strings concatenated). Values Elixir
/// cannot stringify (objects, arrays of other things) crash the Elixir
/// channel; here they become their compact JSON text.
pub fn key_to_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let mut s = String::new();
            if let Some(u) = n.as_u64() {
                let _ = write!(s, "{u}");
            } else if let Some(i) = n.as_i64() {
                let _ = write!(s, "{i}");
            } else {
                format_erlang_float(n.as_f64().unwrap_or(0.0), &mut s);
            }
            s
        }
        Value::Array(_) => {
            let mut s = String::new();
            if chardata(key, &mut s) {
                s
            } else {
                compact_json(key)
            }
        }
        Value::Object(_) => compact_json(key),
    }
}

fn chardata(v: &Value, out: &mut String) -> bool {
    match v {
        Value::String(s) => {
            out.push_str(s);
            true
        }
        Value::Number(n) => match n
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                true
            }
            None => false,
        },
        Value::Array(items) => items.iter().all(|i| chardata(i, out)),
        _ => false,
    }
}

fn compact_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_jason(v, &mut out);
    into_string(out)
}

fn into_string(bytes: Vec<u8>) -> String {
    // Only ever called on text we wrote from `&str`s and ASCII.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `v` as compact JSON the way Jason encodes the term Jason decoded
/// it into: object keys sorted bytewise (at every level), Jason's string
/// escaping, integers in decimal, floats in Erlang's shortest form.
pub fn write_jason(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                push_display(out, u);
            } else if let Some(i) = n.as_i64() {
                push_display(out, i);
            } else {
                let mut s = String::new();
                format_erlang_float(n.as_f64().unwrap_or(0.0), &mut s);
                out.extend_from_slice(s.as_bytes());
            }
        }
        Value::String(s) => write_str_buf(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_jason(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            write_object_members(map, out);
            out.push(b'}');
        }
    }
}

/// Writes the members of `map` (`"a":1,"b":2`, keys sorted) without braces.
fn write_object_members(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let write = |n: usize, k: &str, v: &Value, out: &mut Vec<u8>| {
        if n > 0 {
            out.push(b',');
        }
        write_str_buf(out, k);
        out.push(b':');
        write_jason(v, out);
    };
    // serde_json's default map is a BTreeMap (already sorted); with the
    // `preserve_order` feature it is not, so sort when needed.
    if map.keys().is_sorted() {
        for (n, (k, v)) in map.iter().enumerate() {
            write(n, k, v, out);
        }
    } else {
        let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        for (n, (k, v)) in pairs.into_iter().enumerate() {
            write(n, k, v, out);
        }
    }
}

fn push_display(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    let mut s = String::with_capacity(20);
    let _ = write!(s, "{n}");
    out.extend_from_slice(s.as_bytes());
}

/// Appends `f` formatted as Erlang's `float_to_binary(F, [short])` (which
/// Jason and `Float.to_string/1` use): the shortest round-trip digits, in
/// plain notation when that is no longer than scientific (`0.001`, `100.0`,
/// `123456.0`), else `d.ddde[-]x` (`1.0e3`, `1.0e-4`, `1.2345e20`); integral
/// values of magnitude at least 2^53 are always scientific.
pub fn format_erlang_float(f: f64, out: &mut String) {
    if !f.is_finite() {
        // Not representable in JSON or Erlang; never produced by a parser.
        out.push_str("0.0");
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    if a == 0.0 {
        out.push_str("0.0");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{a:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let l = digits.len() as i32;
    // value = digits * 10^place
    let place = exp - (l - 1);
    let exp_l = exp.to_string();
    let exp_cost = exp_l.len() as i32 + 2;
    let insert_exp = |out: &mut String| {
        out.push_str(&digits[..1]);
        if l == 1 {
            out.push_str(".0e");
        } else {
            out.push('.');
            out.push_str(&digits[1..]);
            out.push('e');
        }
        out.push_str(&exp_l);
    };
    if place < 0 {
        if exp >= 0 {
            let split = (l + place) as usize;
            out.push_str(&digits[..split]);
            out.push('.');
            out.push_str(&digits[split..]);
        } else if 2 - place - l <= exp_cost {
            out.push_str("0.");
            for _ in 0..(-place - l) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            insert_exp(out);
        }
    } else {
        let dot = i32::from(l == 1);
        if exp_cost + dot >= place + 2 && a < 9_007_199_254_740_992.0 {
            out.push_str(&digits);
            for _ in 0..place {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            insert_exp(out);
        }
    }
}

/// The per-channel client presence limiter: at most `max_calls` presence
/// messages per window. Like the Elixir server's, the window is **fixed**
/// and starts at the first call after the previous window expired
/// (`now > reset_at`); a refused call does not count. The first call of a
/// window is always allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPresenceLimiter {
    /// Calls allowed per window.
    max_calls: u32,
    /// Window length.
    window_ms: u64,
    /// Calls allowed in the current window.
    counter: u32,
    /// End of the current window (inclusive); `None` before the first call.
    reset_at: Option<u64>,
}

impl Default for ClientPresenceLimiter {
    fn default() -> Self {
        Self::new(
            DEFAULT_CLIENT_PRESENCE_MAX_CALLS,
            DEFAULT_CLIENT_PRESENCE_WINDOW_MS,
        )
    }
}

impl ClientPresenceLimiter {
    /// A limiter allowing `max_calls` per `window_ms`.
    pub fn new(max_calls: u32, window_ms: u64) -> Self {
        ClientPresenceLimiter {
            max_calls,
            window_ms,
            counter: 0,
            reset_at: None,
        }
    }

    /// Counts one presence message at `now_ms`; `false` means the limit is
    /// exceeded (the server then shuts the channel down with
    /// `Client presence rate limit exceeded`).
    pub fn allow(&mut self, now_ms: u64) -> bool {
        match self.reset_at {
            Some(reset_at) if now_ms <= reset_at => {
                if self.counter >= self.max_calls {
                    false
                } else {
                    self.counter += 1;
                    true
                }
            }
            _ => {
                self.counter = 1;
                self.reset_at = Some(now_ms.saturating_add(self.window_ms));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn diff_json(d: &Diff) -> String {
        let mut out = Vec::new();
        d.to_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn state(p: &TopicPresence) -> String {
        let mut out = Vec::new();
        p.state_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// The refs a fresh `StdRng::seed_from_u64(seed)` produces, in order.
    fn refs(seed: u64, n: usize) -> Vec<String> {
        let mut r = StdRng::seed_from_u64(seed);
        (0..n).map(|_| new_phx_ref(&mut r)).collect()
    }

    #[test]
    fn join_update_leave_diffs_byte_exact() {
        let mut rng = StdRng::seed_from_u64(7);
        let r = refs(7, 2);
        let mut p = TopicPresence::default();

        let d = p
            .track_with(1, "k", obj(json!({"user": "a", "at": 1})), &mut rng)
            .unwrap();
        assert_eq!(
            diff_json(&d),
            format!(
                r#"{{"joins":{{"k":{{"metas":[{{"phx_ref":"{}","at":1,"user":"a"}}]}}}},"leaves":{{}}}}"#,
                r[0]
            )
        );

        let d = p
            .track_with(1, "k", obj(json!({"user": "b"})), &mut rng)
            .unwrap();
        assert_eq!(
            diff_json(&d),
            format!(
                r#"{{"joins":{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}},"leaves":{{"k":{{"metas":[{{"phx_ref":"{0}","at":1,"user":"a"}}]}}}}}}"#,
                r[0], r[1]
            )
        );
        assert_eq!(
            state(&p),
            format!(
                r#"{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}}"#,
                r[0], r[1]
            )
        );

        let d = p.leave(1).unwrap();
        assert_eq!(
            diff_json(&d),
            format!(
                r#"{{"joins":{{}},"leaves":{{"k":{{"metas":[{{"phx_ref":"{1}","phx_ref_prev":"{0}","user":"b"}}]}}}}}}"#,
                r[0], r[1]
            )
        );
        assert!(p.is_empty());
        assert_eq!(state(&p), "{}");
    }

    #[test]
    fn second_update_leaves_the_meta_with_its_prev() {
        let mut rng = StdRng::seed_from_u64(1);
        let r = refs(1, 3);
        let mut p = TopicPresence::default();
        p.track_with(1, "k", obj(json!({"v": 1})), &mut rng);
        p.track_with(1, "k", obj(json!({"v": 2})), &mut rng);
        let d = p
            .track_with(1, "k", obj(json!({"v": 3})), &mut rng)
            .unwrap();
        let (_, left) = d.leaves().next().unwrap();
        assert_eq!(
            (left.phx_ref(), left.phx_ref_prev()),
            (r[1].as_str(), Some(r[0].as_str()))
        );
        let (_, joined) = d.joins().next().unwrap();
        assert_eq!(
            (joined.phx_ref(), joined.phx_ref_prev()),
            (r[2].as_str(), Some(r[1].as_str()))
        );
    }

    #[test]
    fn retrack_same_meta_is_noop() {
        let mut p = TopicPresence::default();
        assert!(p.track(1, "k", obj(json!({"a": 1, "b": [1, 2]}))).is_some());
        // Same content in another key order: still the same map.
        let mut m = Map::new();
        m.insert("b".into(), json!([1, 2]));
        m.insert("a".into(), json!(1));
        assert!(p.track(1, "k", m).is_none());
        // 1 and 1.0 are different terms in Elixir.
        assert!(p
            .track(1, "k", obj(json!({"a": 1.0, "b": [1, 2]})))
            .is_some());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn untrack_unknown_owner() {
        let mut p = TopicPresence::default();
        assert!(p.untrack(9).is_none());
        assert!(p.leave(9).is_none());
        p.track(1, "k", Map::new());
        assert!(p.untrack(2).is_none());
        assert!(p.untrack(1).is_some());
        assert!(p.untrack(1).is_none());
        // After untrack the same meta tracks again (a join).
        let d = p.track(1, "k", Map::new()).unwrap();
        assert_eq!(d.leaves().count(), 0);
    }

    #[test]
    fn multiple_owners_under_one_key_in_owner_order() {
        let mut rng = StdRng::seed_from_u64(3);
        let r = refs(3, 4);
        let mut p = TopicPresence::default();
        p.track_with(2, "k", obj(json!({"n": 2})), &mut rng);
        p.track_with(1, "k", obj(json!({"n": 1})), &mut rng);
        p.track_with(3, "a", obj(json!({})), &mut rng);
        assert_eq!(p.len(), 3);
        assert_eq!(p.nr_keys(), 2);
        assert_eq!(
            state(&p),
            format!(
                r#"{{"a":{{"metas":[{{"phx_ref":"{2}"}}]}},"k":{{"metas":[{{"phx_ref":"{1}","n":1}},{{"phx_ref":"{0}","n":2}}]}}}}"#,
                r[0], r[1], r[2]
            )
        );
        // An update keeps the owner's place.
        p.track_with(2, "k", obj(json!({"n": 22})), &mut rng);
        assert_eq!(
            state(&p),
            format!(
                r#"{{"a":{{"metas":[{{"phx_ref":"{2}"}}]}},"k":{{"metas":[{{"phx_ref":"{1}","n":1}},{{"phx_ref":"{3}","phx_ref_prev":"{0}","n":22}}]}}}}"#,
                r[0], r[1], r[2], r[3]
            )
        );
        p.untrack(1);
        p.untrack(2);
        assert_eq!(
            state(&p),
            format!(r#"{{"a":{{"metas":[{{"phx_ref":"{}"}}]}}}}"#, r[2])
        );
        assert_eq!(p.get(3).map(|(k, _)| k), Some("a"));
    }

    #[test]
    fn owner_moving_keys_leaves_and_joins() {
        let mut p = TopicPresence::default();
        p.track(1, "a", Map::new());
        let d = p.track(1, "b", Map::new()).unwrap();
        assert_eq!(d.leaves().map(|(k, _)| k).collect::<Vec<_>>(), ["a"]);
        assert_eq!(d.joins().map(|(k, _)| k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(p.nr_keys(), 1);
    }

    #[test]
    fn meta_encoding_matches_jason() {
        let mut p = TopicPresence::default();
        p.track(
            1,
            "k\"q",
            obj(json!({"z": {"b": 1, "a": [true, null, -5, 1.5, 1000.0]}, "phx_ref": "user", "s": "a\u{1}\n/é"})),
        );
        let (_, m) = p.get(1).unwrap();
        assert_eq!(
            m.members_json(),
            r#""phx_ref":"user","s":"a\u0001\n/é","z":{"a":[true,null,-5,1.5,1.0e3],"b":1}"#
        );
        let s = state(&p);
        assert!(s.starts_with(r#"{"k\"q":{"metas":[{"phx_ref":""#), "{s}");
    }

    #[test]
    fn diff_groups_by_key() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut a = TopicPresence::default();
        let mut d = a.track_with(1, "b", Map::new(), &mut rng).unwrap();
        let d2 = a.track_with(2, "a", Map::new(), &mut rng).unwrap();
        let d3 = a.track_with(3, "b", Map::new(), &mut rng).unwrap();
        d.joins.extend(d2.joins);
        d.joins.extend(d3.joins);
        let r = refs(5, 3);
        assert_eq!(
            diff_json(&d),
            format!(
                r#"{{"joins":{{"a":{{"metas":[{{"phx_ref":"{1}"}}]}},"b":{{"metas":[{{"phx_ref":"{0}"}},{{"phx_ref":"{2}"}}]}}}},"leaves":{{}}}}"#,
                r[0], r[1], r[2]
            )
        );
        assert!(Diff::default().is_empty());
        assert_eq!(diff_json(&Diff::default()), r#"{"joins":{},"leaves":{}}"#);
    }

    #[test]
    fn phx_ref_shape() {
        let r = new_phx_ref(&mut rand::rng());
        assert_eq!(r.len(), 16);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn presence_keys_are_uuid_v1() {
        let k = new_presence_key();
        let u = uuid::Uuid::parse_str(&k).unwrap();
        assert_eq!(u.get_version_num(), 1);
        assert_eq!(k, k.to_lowercase());
        assert_ne!(k, new_presence_key());
        let k = presence_key_at(1_700_000_000, 5, 7, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(k, presence_key_at(1_700_000_000, 5, 7, &[1, 2, 3, 4, 5, 6]));
        assert!(k.ends_with("-8007-010203040506"), "{k}");
        assert_eq!(uuid::Uuid::parse_str(&k).unwrap().get_version_num(), 1);
    }

    #[test]
    fn key_stringification() {
        assert_eq!(key_to_string(&json!("abc")), "abc");
        assert_eq!(key_to_string(&json!(42)), "42");
        assert_eq!(key_to_string(&json!(-7)), "-7");
        assert_eq!(key_to_string(&json!(1.5)), "1.5");
        assert_eq!(key_to_string(&json!(100.0)), "100.0");
        assert_eq!(key_to_string(&json!(1000.0)), "1.0e3");
        assert_eq!(key_to_string(&json!(true)), "true");
        assert_eq!(key_to_string(&json!(null)), "");
        assert_eq!(key_to_string(&json!(["ab", 99, ["d"]])), "abcd");
        assert_eq!(key_to_string(&json!([1.5])), "[1.5]");
        assert_eq!(key_to_string(&json!({"b": 1, "a": 2})), r#"{"a":2,"b":1}"#);
        assert_eq!(presence_key_from_config(None), None);
        assert_eq!(presence_key_from_config(Some(&json!(null))), None);
        assert_eq!(presence_key_from_config(Some(&json!(""))), None);
        assert_eq!(presence_key_from_config(Some(&json!(" \t"))), None);
        assert_eq!(
            presence_key_from_config(Some(&json!(" a"))),
            Some(" a".into())
        );
        assert_eq!(presence_key_from_config(Some(&json!(0))), Some("0".into()));
    }

    #[test]
    fn erlang_float_format() {
        let f = |x: f64| {
            let mut s = String::new();
            format_erlang_float(x, &mut s);
            s
        };
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (0.001, "0.001"),
            (0.0001, "1.0e-4"),
            (0.00012, "1.2e-4"),
            (0.0012, "0.0012"),
            (10.0, "10.0"),
            (100.0, "100.0"),
            (1000.0, "1.0e3"),
            (1234.0, "1234.0"),
            (123456.0, "123456.0"),
            (1.0e20, "1.0e20"),
            (1.5e20, "1.5e20"),
            (12.5, "12.5"),
            (12.375, "12.375"),
            (9007199254740992.0, "9.007199254740992e15"),
            (9007199254740991.0, "9007199254740991.0"),
            (5e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (123.456e-10, "1.23456e-8"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "{x:e}");
        }
    }

    #[test]
    fn limiter_fixed_window() {
        let mut l = ClientPresenceLimiter::new(5, 30_000);
        for i in 0..5 {
            assert!(l.allow(1000 + i), "call {i}");
        }
        assert!(!l.allow(2000));
        assert!(
            !l.allow(31_000),
            "reset_at itself is still inside the window"
        );
        assert!(l.allow(31_001), "new window");
        for _ in 0..4 {
            assert!(l.allow(31_002));
        }
        assert!(!l.allow(61_001));
        assert!(l.allow(61_002));
        assert_eq!(
            ClientPresenceLimiter::default(),
            ClientPresenceLimiter::new(5, 30_000)
        );
    }

    #[test]
    fn limiter_zero_calls_still_allows_the_first() {
        let mut l = ClientPresenceLimiter::new(0, 10);
        assert!(l.allow(0));
        assert!(!l.allow(5));
        assert!(l.allow(11));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            // Any finite float: serde_json is built with float_roundtrip.
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn long_mantissa_floats_survive_a_retrack() {
        // Found by the property below before float_roundtrip was enabled:
        // a re-encoded meta differed by one ULP and a no-op track became an update.
        let meta: Map<String, Value> = serde_json::from_str(r#"{"":{"":1.0171072165766497e+182}}"#).unwrap();
        let mut p = TopicPresence::default();
        p.track(1, "k", meta.clone());
        assert!(p.track(1, "k", meta).is_none());
    }

    proptest! {
        #[test]
        fn erlang_floats_round_trip(x in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut s = String::new();
            format_erlang_float(x, &mut s);
            prop_assert_eq!(s.parse::<f64>().unwrap(), x);
            prop_assert!(s.contains('.'));
        }

        #[test]
        fn meta_json_is_valid_and_equal(meta in proptest::collection::btree_map("[a-z]{0,4}", arb_json(), 0..5)) {
            let meta: Map<String, Value> = meta.into_iter().collect();
            let mut p = TopicPresence::default();
            p.track(1, "k", meta.clone());
            let s = state(&p);
            let v: Value = serde_json::from_str(&s).unwrap();
            let got = v["k"]["metas"][0].as_object().unwrap().clone();
            for (k, val) in &meta {
                if k != "phx_ref" {
                    let g = &got[k];
                    prop_assert_eq!(g, val);
                }
            }
            prop_assert!(p.track(1, "k", meta).is_none());
        }

        #[test]
        fn random_ops_keep_index_consistent(ops in proptest::collection::vec((0u64..6, 0u8..3, 0u8..3, any::<bool>()), 0..60)) {
            let mut p = TopicPresence::default();
            let mut model: BTreeMap<u64, (String, u8)> = BTreeMap::new();
            for (owner, key, val, untrack) in ops {
                let key = format!("k{key}");
                if untrack {
                    let d = p.untrack(owner);
                    prop_assert_eq!(d.is_some(), model.remove(&owner).is_some());
                } else {
                    let d = p.track(owner, &key, obj(json!({"v": val})));
                    let same = model.get(&owner) == Some(&(key.clone(), val));
                    prop_assert_eq!(d.is_none(), same);
                    model.insert(owner, (key, val));
                }
                prop_assert_eq!(p.len(), model.len());
                let v: Value = serde_json::from_str(&state(&p)).unwrap();
                let n: usize = v.as_object().unwrap().values().map(|k| k["metas"].as_array().unwrap().len()).sum();
                prop_assert_eq!(n, model.len());
            }
        }
    }
}
