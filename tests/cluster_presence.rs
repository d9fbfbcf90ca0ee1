//! Presence is one view across the nodes of a cluster (a real
//! nats-server): every client, whichever node it is on, converges to the
//! union of all nodes' entries, with the same metas and refs; a socket
//! that goes leaves on every node. A node killed with SIGKILL, or stopped
//! (SIGSTOP) past `NODE_TIMEOUT_MS`, leaves the others' views; a stopped
//! node that resumes, and nodes cut off from NATS for a while, come back
//! to the union without a restart.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::nats::{until_connected, Nats};
use support::*;

/// Its name has the fault hook that delays other nodes' answers to a
/// shard's ask for their entries: joins must wait for them all the same.
const TOPIC: &str = "realtime:lobby__slow_answer__";

/// `n` nodes on `nats`, each connected on every shard, with `env` more.
fn cluster(nats: &Nats, n: usize, env: &[(&str, &str)]) -> Vec<Server> {
    let url = nats.url();
    let nodes: Vec<Server> = (0..n)
        .map(|i| {
            let name = format!("node-{i}");
            let mut all = vec![("NATS_URL", url.as_str()), ("NODE_NAME", name.as_str())];
            all.extend_from_slice(env);
            Server::start(&all)
        })
        .collect();
    for node in &nodes {
        until_connected(node, true);
    }
    // And every shard hears every other node's shards, so a join waits
    // for their entries.
    let shards = nodes[0].metric_by_shard("realtime_connections").len() as i64;
    for node in &nodes {
        until_peers(node, (n as i64 - 1) * shards * shards);
    }
    nodes
}

/// A client's presence view, kept as realtime-js keeps it: the state,
/// then each diff's leaves (by `phx_ref`) and joins applied.
struct Member {
    ws: Ws,
    view: BTreeMap<String, Vec<Value>>,
}

impl Member {
    /// Joins [`TOPIC`] on `port` with presence key `key`.
    fn join(port: u16, key: &str) -> Member {
        let mut ws = Ws::connect(port, "2.0.0", &token("anon", 3600));
        let reply = ws.join_v2(
            "1",
            TOPIC,
            json!({"presence": {"key": key, "enabled": true}}),
        );
        assert_eq!(reply[4]["status"], "ok", "{reply}");
        let mut m = Member {
            ws,
            view: BTreeMap::new(),
        };
        let state = m.ws.recv_json();
        m.apply(&state);
        m
    }

    fn apply(&mut self, msg: &Value) {
        match msg[3].as_str() {
            Some("presence_state") => {
                self.view = msg[4]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v["metas"].as_array().unwrap().clone()))
                    .collect();
            }
            Some("presence_diff") => {
                for (k, v) in msg[4]["leaves"].as_object().unwrap() {
                    let gone: Vec<&Value> = v["metas"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| &m["phx_ref"])
                        .collect();
                    if let Some(metas) = self.view.get_mut(k) {
                        metas.retain(|m| !gone.contains(&&m["phx_ref"]));
                        if metas.is_empty() {
                            self.view.remove(k);
                        }
                    }
                }
                for (k, v) in msg[4]["joins"].as_object().unwrap() {
                    let metas = self.view.entry(k.clone()).or_default();
                    metas.extend(v["metas"].as_array().unwrap().iter().cloned());
                }
            }
            _ => {}
        }
    }

    /// Tracks `meta`; its own diff and the reply are read (and the diff
    /// applied), along with whatever came before them.
    fn track(&mut self, r: &str, meta: Value) {
        self.ws.text(
            &json!(["1", r, TOPIC, "presence", {"type": "presence", "event": "track", "payload": meta}])
                .to_string(),
        );
        loop {
            let msg = self.ws.recv_json();
            if msg[3] == "phx_reply" && msg[1] == r {
                assert_eq!(msg[4]["status"], "ok", "{msg}");
                return;
            }
            self.apply(&msg);
        }
    }

    /// The keys in view.
    fn keys(&self) -> Vec<&str> {
        self.view.keys().map(String::as_str).collect()
    }

    /// Reads presence messages until the view holds exactly `keys`, for at
    /// most `within`; panics with the view if it does not.
    fn until_keys(&mut self, keys: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        while self.keys() != keys {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "view {:?}, waiting for {keys:?}",
                self.keys()
            );
            match self.ws.recv_for(left.as_millis() as u64) {
                Recv::Frame(Frame::Text(t)) => self.apply(&serde_json::from_str(&t).unwrap()),
                Recv::Frame(_) | Recv::Timeout => {}
                Recv::Eof => panic!("socket closed, view {:?}", self.keys()),
            }
        }
    }
}

fn send_signal(node: &Server, sig: i32) {
    // SAFETY: kill(2) with plain integers on a child the test owns and has
    // not reaped, so its pid is not reused.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, sig) }, 0);
}

const CONVERGE: Duration = Duration::from_secs(10);

#[test]
fn presence_is_one_view_across_nodes() {
    let nats = Nats::start("");
    let nodes = cluster(&nats, 3, &[]);
    let mut alice = Member::join(nodes[0].port, "alice");
    alice.track("2", json!({"n": 1}));
    // A join on a node new to the topic waits for the other nodes'
    // entries: they are in its presence_state, as on one node.
    let mut bob = Member::join(nodes[1].port, "bob");
    assert_eq!(bob.keys(), ["alice"], "in bob's presence_state");
    bob.track("2", json!({"n": 2}));
    let mut carol = Member::join(nodes[2].port, "carol");
    assert_eq!(carol.keys(), ["alice", "bob"], "in carol's presence_state");
    carol.track("2", json!({"n": 3}));
    for m in [&mut alice, &mut bob, &mut carol] {
        m.until_keys(&["alice", "bob", "carol"], CONVERGE);
    }
    // The same metas everywhere, refs included.
    assert_eq!(alice.view, bob.view);
    assert_eq!(bob.view, carol.view);
    assert_eq!(carol.view["alice"][0]["n"], 1);

    // An update replaces the meta on every node, refs carried over.
    alice.track("3", json!({"n": 10}));
    let updated = |m: &Member| m.view["alice"].len() == 1 && m.view["alice"][0]["n"] == 10;
    for m in [&mut bob, &mut carol] {
        let deadline = Instant::now() + CONVERGE;
        while !updated(m) {
            assert!(Instant::now() < deadline, "update not seen: {:?}", m.view);
            let msg = m.ws.recv_json();
            m.apply(&msg);
        }
    }
    assert_eq!(alice.view, bob.view);
    assert_eq!(bob.view, carol.view);

    // Bob's socket goes without a goodbye: he leaves on every node.
    drop(bob);
    for m in [&mut alice, &mut carol] {
        m.until_keys(&["alice", "carol"], CONVERGE);
    }
    // A newcomer on any node sees the same.
    let mut dave = Member::join(nodes[1].port, "dave");
    dave.until_keys(&["alice", "carol"], CONVERGE);
    assert_eq!(dave.view, carol.view);
}

#[test]
fn a_killed_node_leaves_every_view_within_the_timeout() {
    let nats = Nats::start("");
    let timeout = 1500;
    let mut nodes = cluster(&nats, 3, &[("NODE_TIMEOUT_MS", "1500")]);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(key, node)| {
            let mut m = Member::join(node.port, key);
            m.track("2", json!({}));
            m
        })
        .collect();
    for m in &mut members {
        m.until_keys(&["a", "b", "c"], CONVERGE);
    }
    // Every shard of node 0 hears every shard of the two others.
    let shards = nodes[0].metric_by_shard("realtime_connections").len() as i64;
    until_peers(&nodes[0], 2 * shards * shards);
    let killed = Instant::now();
    nodes[2].kill();
    members.truncate(2);
    for m in &mut members {
        m.until_keys(&["a", "b"], CONVERGE);
    }
    // Gone after the timeout, not before: heartbeats came until the kill.
    assert!(killed.elapsed() >= Duration::from_millis(timeout));
    until_peers(&nodes[0], shards * shards);
}

/// Waits until `node`'s shards hear `n` other nodes' shards in all.
fn until_peers(node: &Server, n: i64) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let now = node.metric("realtime_nats_peers");
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} peers heard, expected {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_paused_node_leaves_and_then_returns_to_the_union() {
    let nats = Nats::start("");
    let nodes = cluster(&nats, 3, &[("NODE_TIMEOUT_MS", "1500")]);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(key, node)| {
            let mut m = Member::join(node.port, key);
            m.track("2", json!({"k": key}));
            m
        })
        .collect();
    for m in &mut members {
        m.until_keys(&["a", "b", "c"], CONVERGE);
    }
    send_signal(&nodes[1], libc::SIGSTOP);
    // Past the timeout, b is gone from the others' views.
    members[0].until_keys(&["a", "c"], CONVERGE);
    members[2].until_keys(&["a", "c"], CONVERGE);
    // Meanwhile a and c change, unseen by b (no join: nothing asks b
    // for its entries but its being heard again).
    members[0].track("3", json!({"k": "a2"}));
    members[2].track("3", json!({"k": "c2"}));
    for i in [0, 2] {
        let deadline = Instant::now() + CONVERGE;
        while members[i].view["a"][0]["k"] != "a2" || members[i].view["c"][0]["k"] != "c2" {
            assert!(Instant::now() < deadline, "{:?}", members[i].view);
            let msg = members[i].ws.recv_json();
            members[i].apply(&msg);
        }
    }
    send_signal(&nodes[1], libc::SIGCONT);
    for m in &mut members {
        m.until_keys(&["a", "b", "c"], CONVERGE);
    }
    // And b's view is everyone's: the new metas, not the old ones.
    let deadline = Instant::now() + CONVERGE;
    while members[1].view != members[0].view {
        assert!(
            Instant::now() < deadline,
            "b: {:?}\na: {:?}",
            members[1].view,
            members[0].view
        );
        if let Recv::Frame(Frame::Text(t)) = members[1].ws.recv_for(100) {
            members[1].apply(&serde_json::from_str(&t).unwrap());
        }
    }
    assert_eq!(members[2].view, members[0].view);
    assert_eq!(members[0].view["a"][0]["k"], "a2");
    assert_eq!(members[0].view["c"][0]["k"], "c2");
}

/// Two nodes on `nats` with `NODE_TIMEOUT_MS` = `timeout`, a member
/// tracking `{"v": 1}` on each, both seen by both.
fn two_tracked(nats: &Nats, timeout: &str) -> (Vec<Server>, Member, Member) {
    let nodes = cluster(nats, 2, &[("NODE_TIMEOUT_MS", timeout)]);
    let mut a = Member::join(nodes[0].port, "a");
    a.track("2", json!({"v": 1}));
    let mut b = Member::join(nodes[1].port, "b");
    b.track("2", json!({"v": 1}));
    for m in [&mut a, &mut b] {
        m.until_keys(&["a", "b"], CONVERGE);
    }
    (nodes, a, b)
}

/// Stops `nats` until every node saw it go, runs `meanwhile`, then starts
/// it again until every node is back.
fn nats_outage(nats: &mut Nats, nodes: &[Server], meanwhile: impl FnOnce()) {
    nats.stop();
    for node in nodes {
        until_connected(node, false);
    }
    meanwhile();
    nats.restart();
    for node in nodes {
        until_connected(node, true);
    }
}

/// Reads `m`'s presence messages until `key`'s first meta has `v` = `v`.
fn until_v(m: &mut Member, key: &str, v: i64) {
    let deadline = Instant::now() + CONVERGE;
    while m.view.get(key).is_none_or(|metas| metas[0]["v"] != v) {
        assert!(Instant::now() < deadline, "{:?}", m.view);
        let msg = m.ws.recv_json();
        m.apply(&msg);
    }
}

#[test]
fn presence_comes_back_after_nats_does() {
    let mut nats = Nats::start("");
    let (nodes, mut a, mut b) = two_tracked(&nats, "1500");
    nats_outage(&mut nats, &nodes, || {
        // Alone, past the timeout, each node keeps only its own; a change
        // while cut off reaches the other node once NATS is back.
        a.until_keys(&["a"], CONVERGE);
        b.until_keys(&["b"], CONVERGE);
        a.track("3", json!({"v": 2}));
    });
    for m in [&mut a, &mut b] {
        m.until_keys(&["a", "b"], CONVERGE);
    }
    until_v(&mut b, "a", 2);
    assert_eq!(a.view, b.view);
}

#[test]
fn a_change_made_while_nats_is_down_reaches_the_others_once_it_is_back() {
    let mut nats = Nats::start("");
    // Nobody times out here: the change must travel by itself.
    let (nodes, mut a, mut b) = two_tracked(&nats, "600000");
    nats_outage(&mut nats, &nodes, || a.track("3", json!({"v": 2})));
    until_v(&mut b, "a", 2);
    assert_eq!(a.view, b.view);
}
