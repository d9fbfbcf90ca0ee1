use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::tests::{diff_json, obj, state};
use super::topic::Entry;
use super::*;

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);
const C: ReplicaId = ReplicaId(3);

#[test]
fn meta_parts_round_trip() {
    let m = Meta::from_parts("r1", Some("r0"), r#""a":1"#);
    assert_eq!(m.as_json(), r#"{"phx_ref":"r1","phx_ref_prev":"r0","a":1}"#);
    assert_eq!(
        (m.phx_ref(), m.phx_ref_prev(), m.members_json()),
        ("r1", Some("r0"), r#""a":1"#)
    );
    let m = Meta::from_parts("r1", None, "");
    assert_eq!(m.as_json(), r#"{"phx_ref":"r1"}"#);
    assert_eq!((m.phx_ref_prev(), m.members_json()), (None, ""));
}

/// A local change made on a replica.
type Step<'a> = &'a dyn Fn(&mut TopicPresence, &mut StdRng) -> Option<Diff>;

#[test]
fn deltas_mirror_local_changes_byte_for_byte() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut a = TopicPresence::new(A);
    let mut b = TopicPresence::new(B);
    let steps: [Step; 4] = [
        &|p, r| p.track_with(7, "k", obj(json!({"v": 1})), r),
        &|p, r| p.track_with(7, "k", obj(json!({"v": 2})), r),
        &|p, r| p.track_with(7, "j", obj(json!({"v": 2})), r),
        &|p, _| p.leave(7),
    ];
    for step in steps {
        let local = step(&mut a, &mut rng).unwrap();
        let delta = a.local_delta(7);
        assert_eq!(delta.origin(), A);
        let remote = b.apply_delta(&delta);
        assert_eq!(diff_json(&remote), diff_json(&local));
        assert_eq!(state(&b), state(&a));
        assert!(b.apply_delta(&delta).is_empty(), "a delta applied twice");
    }
    assert!(b.is_empty());
    // A replica is the authority for its own entries.
    a.track_with(1, "k", Map::new(), &mut rng);
    let before = state(&a);
    assert!(a
        .apply_delta(&PresenceDelta::new(A, vec![Change::Remove { owner: 1 }]))
        .is_empty());
    assert!(a
        .replace_origin(&PresenceSnapshot::from_entries(A, Vec::new()))
        .is_empty());
    assert_eq!(state(&a), before);
}

#[test]
fn merged_state_orders_metas_by_owner_then_origin() {
    let mut a = TopicPresence::new(A);
    let mut b = TopicPresence::new(B);
    let m = |r: &str| Meta::from_parts(r, None, "");
    let put = |owner, key: &str, r| Change::Put {
        owner,
        key: key.into(),
        meta: m(r),
    };
    // Owner 5 exists on both replicas: two entries, never confused.
    let from_b = PresenceDelta::new(B, vec![put(5, "k", "b5"), put(2, "k", "b2")]);
    let from_c = PresenceDelta::new(C, vec![put(5, "k", "c5"), put(9, "a", "c9")]);
    let mut rng = StdRng::seed_from_u64(1);
    a.track_with(5, "k", Map::new(), &mut rng);
    let a5 = a.get(5).unwrap().1.phx_ref().to_owned();
    b.put(A, 5, "k", a.get(5).unwrap().1.clone(), &mut Diff::default());
    b.put(B, 5, "k", m("b5"), &mut Diff::default());
    b.put(B, 2, "k", m("b2"), &mut Diff::default());
    a.apply_delta(&from_b);
    a.apply_delta(&from_c);
    b.apply_delta(&from_c);
    let want = format!(
        r#"{{"a":{{"metas":[{{"phx_ref":"c9"}}]}},"k":{{"metas":[{{"phx_ref":"b2"}},{{"phx_ref":"{a5}"}},{{"phx_ref":"b5"}},{{"phx_ref":"c5"}}]}}}}"#
    );
    assert_eq!(state(&a), want);
    assert_eq!(state(&b), want);
    assert_eq!(a.len(), 5);
    assert_eq!(a.remote_origins(), [B, C]);
    assert_eq!(b.remote_origins(), [A, C]);
    assert!(a.is_tracking(5) && !a.is_tracking(2));
    assert_eq!(a.get_from(C, 9).map(|(k, _)| k), Some("a"));
}

#[test]
fn replace_origin_converges_and_is_idempotent() {
    let m = |r: &str, members: &str| Meta::from_parts(r, None, members);
    let mut p = TopicPresence::new(A);
    p.track(1, "mine", Map::new());
    let old = PresenceSnapshot::from_entries(
        B,
        vec![
            (1, "k".into(), m("r1", "")),
            (2, "k".into(), m("r2", "")),
            (3, "k".into(), m("r3", "")),
            (4, "x".into(), m("r4", "")),
        ],
    );
    assert_eq!(p.replace_origin(&old).joins().count(), 4);
    // 1 same, 2 gone, 3 updated, 4 moved key, 5 new.
    let new = PresenceSnapshot::from_entries(
        B,
        vec![
            (5, "k".into(), m("r5", "")),
            (1, "k".into(), m("r1", "")),
            (3, "k".into(), m("r3b", r#""v":2"#)),
            (4, "y".into(), m("r4", "")),
        ],
    );
    let d = p.replace_origin(&new);
    let refs = |it: &mut dyn Iterator<Item = (&str, &Meta)>| {
        let mut v: Vec<String> = it.map(|(k, m)| format!("{k}/{}", m.phx_ref())).collect();
        v.sort();
        v
    };
    assert_eq!(refs(&mut d.leaves()), ["k/r2", "k/r3", "x/r4"]);
    assert_eq!(refs(&mut d.joins()), ["k/r3b", "k/r5", "y/r4"]);
    assert!(p.replace_origin(&new).is_empty(), "idempotent");
    assert_eq!(p.snapshot_of(B), new);
    assert!(p.is_tracking(1), "the local entry is not B's to replace");
    assert_eq!(p.len(), 5);
}

#[test]
fn delta_before_its_snapshot_converges() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut a = TopicPresence::new(A);
    let mut b = TopicPresence::new(B);
    a.track_with(1, "k", obj(json!({"v": 1})), &mut rng);
    a.track_with(2, "k", obj(json!({"v": 1})), &mut rng);
    // B joined late: it gets the delta of a change, then the snapshot
    // taken after that change (same queue, so in that order).
    a.track_with(1, "k", obj(json!({"v": 2})), &mut rng);
    let delta = a.local_delta(1);
    let snap = a.snapshot();
    assert_eq!(b.apply_delta(&delta).joins().count(), 1);
    let d = b.replace_origin(&snap);
    assert_eq!((d.joins().count(), d.leaves().count()), (1, 0));
    assert_eq!(state(&b), state(&a));
}

#[test]
fn remove_origin_drops_only_that_replica() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut a = TopicPresence::new(A);
    let mut b = TopicPresence::new(B);
    let mut c = TopicPresence::new(C);
    b.track_with(1, "k", Map::new(), &mut rng);
    b.track_with(2, "j", Map::new(), &mut rng);
    c.track_with(1, "k", Map::new(), &mut rng);
    a.track_with(1, "k", Map::new(), &mut rng);
    a.replace_origin(&b.snapshot());
    a.replace_origin(&c.snapshot());
    assert_eq!(a.len(), 4);
    let d = a.remove_origin(B);
    assert_eq!((d.leaves().count(), d.joins().count()), (2, 0));
    assert_eq!(a.remote_origins(), [C]);
    assert!(a.remove_origin(B).is_empty());
    let d = a.remove_remote();
    assert_eq!(d.leaves().count(), 1);
    assert_eq!(a.len(), 1);
    assert!(a.is_tracking(1));
    assert!(a.remove_remote().is_empty());
}

#[test]
fn a_closed_socket_is_one_delta() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = TopicPresence::new(A);
    let mut b = TopicPresence::new(B);
    for owner in [1, 2, 3] {
        a.track_with(owner, "k", Map::new(), &mut rng);
    }
    b.apply_delta(&a.local_delta_of([1, 2, 3]));
    a.leave(1);
    a.leave(3);
    let delta = a.local_delta_of([1, 3]);
    assert_eq!(
        delta.changes(),
        [Change::Remove { owner: 1 }, Change::Remove { owner: 3 }]
    );
    assert_eq!(b.apply_delta(&delta).leaves().count(), 2);
    assert_eq!(state(&b), state(&a));
}

#[test]
fn snapshot_entries_dedupe_last_wins() {
    let m = |r: &str| Meta::from_parts(r, None, "");
    let s = PresenceSnapshot::from_entries(
        B,
        vec![
            (2, "k".into(), m("x")),
            (1, "k".into(), m("y")),
            (2, "j".into(), m("z")),
        ],
    );
    let got: Vec<_> = s.entries().map(|(o, k, m)| (o, k, m.phx_ref())).collect();
    assert_eq!(got, [(1, "k", "y"), (2, "j", "z")]);
    assert_eq!((s.len(), s.is_empty(), s.origin()), (2, false, B));
}

/// A message on the queue from one replica to another.
#[derive(Debug, Clone)]
enum Msg {
    Delta(PresenceDelta),
    Snapshot(PresenceSnapshot),
}

#[derive(Debug, Clone)]
enum Op {
    /// Track (join or update) on a replica; `now` sends the delta at once,
    /// else the owner waits for the replica's next flush.
    Track {
        r: usize,
        owner: u64,
        key: u8,
        val: u8,
        now: bool,
    },
    Untrack {
        r: usize,
        owner: u64,
        now: bool,
    },
    /// A socket closed: its channels (owners in `mask`) leave, one delta.
    SocketClosed {
        r: usize,
        mask: u8,
    },
    /// Sends the replica's batched changes.
    Flush {
        r: usize,
    },
    /// Delivers the next message from `from` to `to`.
    Deliver {
        from: usize,
        to: usize,
    },
    /// The last message `from` sent `to` did not fit in the queue: it is
    /// lost, and `from` owes `to` a snapshot.
    Lose {
        from: usize,
        to: usize,
    },
    /// `from` sends its snapshot to `to`.
    SendSnapshot {
        from: usize,
        to: usize,
    },
    /// `r` drops all remote state and asks every other replica for a
    /// snapshot.
    Resync {
        r: usize,
    },
    /// `from` answers a pending snapshot request of `to`.
    Answer {
        from: usize,
        to: usize,
    },
    /// `r` dies (the others drop its entries) and comes back empty.
    Restart {
        r: usize,
    },
}

const NR_OWNERS: u64 = 4;

fn arb_op(n: usize) -> impl Strategy<Value = Op> {
    let r = 0..n;
    let owner = 0..NR_OWNERS;
    prop_oneof![
        6 => (r.clone(), owner.clone(), 0u8..3, 0u8..3, any::<bool>())
            .prop_map(|(r, owner, key, val, now)| Op::Track { r, owner, key, val, now }),
        2 => (r.clone(), owner, any::<bool>()).prop_map(|(r, owner, now)| Op::Untrack { r, owner, now }),
        1 => (r.clone(), any::<u8>()).prop_map(|(r, mask)| Op::SocketClosed { r, mask }),
        2 => r.clone().prop_map(|r| Op::Flush { r }),
        10 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::Deliver { from, to }),
        1 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::Lose { from, to }),
        1 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::SendSnapshot { from, to }),
        1 => r.clone().prop_map(|r| Op::Resync { r }),
        2 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::Answer { from, to }),
        1 => r.prop_map(|r| Op::Restart { r }),
    ]
}

/// What a client subscribed on a replica sees: `presence_state` at join,
/// then every diff applied as phoenix.js does (joins, then leaves by ref).
#[derive(Default)]
struct ClientView(BTreeMap<String, BTreeMap<String, String>>);

impl ClientView {
    fn apply(&mut self, d: &Diff) {
        for (k, m) in d.joins() {
            let metas = self.0.entry(k.into()).or_default();
            metas.insert(m.phx_ref().into(), m.as_json().into());
        }
        for (k, m) in d.leaves() {
            let metas = self
                .0
                .get_mut(k)
                .expect("a leave of a key the client knows");
            assert!(
                metas.remove(m.phx_ref()).is_some(),
                "a leave of a meta the client knows"
            );
            if metas.is_empty() {
                self.0.remove(k);
            }
        }
    }

    fn of(p: &TopicPresence) -> BTreeMap<String, BTreeMap<String, String>> {
        let metas = |entries: &[Entry]| {
            let metas = entries
                .iter()
                .map(|e| (e.meta.phx_ref().into(), e.meta.as_json().into()));
            metas.collect()
        };
        p.keys
            .iter()
            .map(|(k, entries)| (k.to_string(), metas(entries)))
            .collect()
    }
}

struct Cluster {
    replicas: Vec<TopicPresence>,
    /// Each replica's client's view, fed every diff the replica makes.
    views: Vec<ClientView>,
    /// queues[from][to], FIFO.
    queues: Vec<Vec<VecDeque<Msg>>>,
    /// requested[from][to]: `to` waits for `from`'s snapshot.
    requested: Vec<Vec<bool>>,
    /// Owners changed since the replica's last flush.
    dirty: Vec<BTreeSet<u64>>,
    /// The authority: each replica's owners -> (key, val).
    model: Vec<BTreeMap<u64, (u8, u8)>>,
    rng: StdRng,
}

impl Cluster {
    fn new(n: usize, seed: u64) -> Cluster {
        Cluster {
            replicas: (0..n)
                .map(|i| TopicPresence::new(ReplicaId(i as u64 * 7)))
                .collect(),
            views: (0..n).map(|_| ClientView::default()).collect(),
            queues: vec![vec![VecDeque::new(); n]; n],
            requested: vec![vec![false; n]; n],
            dirty: vec![BTreeSet::new(); n],
            model: vec![BTreeMap::new(); n],
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn send(&mut self, from: usize, delta: PresenceDelta) {
        for to in 0..self.replicas.len() {
            if to != from && !delta.is_empty() {
                self.queues[from][to].push_back(Msg::Delta(delta.clone()));
            }
        }
    }

    fn local(&mut self, r: usize, owner: u64, now: bool, diff: Option<Diff>) {
        let Some(d) = diff else { return };
        self.views[r].apply(&d);
        if now {
            let delta = self.replicas[r].local_delta(owner);
            self.send(r, delta);
        } else {
            self.dirty[r].insert(owner);
        }
    }

    fn flush(&mut self, r: usize) {
        let owners = std::mem::take(&mut self.dirty[r]);
        let delta = self.replicas[r].local_delta_of(owners);
        self.send(r, delta);
    }

    fn deliver(&mut self, from: usize, to: usize) -> bool {
        let Some(msg) = self.queues[from][to].pop_front() else {
            return false;
        };
        let d = match msg {
            Msg::Delta(d) => self.replicas[to].apply_delta(&d),
            Msg::Snapshot(s) => self.replicas[to].replace_origin(&s),
        };
        self.views[to].apply(&d);
        true
    }

    fn answer(&mut self, from: usize, to: usize) -> bool {
        if !std::mem::take(&mut self.requested[from][to]) {
            return false;
        }
        let snap = self.replicas[from].snapshot();
        self.queues[from][to].push_back(Msg::Snapshot(snap));
        true
    }

    fn resync(&mut self, r: usize) {
        let d = self.replicas[r].remove_remote();
        self.views[r].apply(&d);
        for from in 0..self.replicas.len() {
            self.requested[from][r] = from != r;
        }
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Track {
                r,
                owner,
                key,
                val,
                now,
            } => {
                let meta = obj(json!({ "v": val }));
                let d = self.replicas[r].track_with(owner, &format!("k{key}"), meta, &mut self.rng);
                self.model[r].insert(owner, (key, val));
                self.local(r, owner, now, d);
            }
            Op::Untrack { r, owner, now } => {
                let d = self.replicas[r].untrack(owner);
                self.model[r].remove(&owner);
                self.local(r, owner, now, d);
            }
            Op::SocketClosed { r, mask } => {
                let owners: Vec<u64> = (0..NR_OWNERS).filter(|o| mask & (1 << o) != 0).collect();
                for &o in &owners {
                    if let Some(d) = self.replicas[r].leave(o) {
                        self.views[r].apply(&d);
                    }
                    self.model[r].remove(&o);
                }
                let delta = self.replicas[r].local_delta_of(owners);
                self.send(r, delta);
            }
            Op::Flush { r } => self.flush(r),
            Op::Deliver { from, to } => {
                self.deliver(from, to);
            }
            Op::Lose { from, to } => {
                if self.queues[from][to].pop_back().is_some() {
                    self.requested[from][to] = true;
                }
            }
            Op::SendSnapshot { from, to } => {
                if from != to {
                    let snap = self.replicas[from].snapshot();
                    self.queues[from][to].push_back(Msg::Snapshot(snap));
                }
            }
            Op::Resync { r } => self.resync(r),
            Op::Answer { from, to } => {
                self.answer(from, to);
            }
            Op::Restart { r } => {
                let id = self.replicas[r].local();
                for to in 0..self.replicas.len() {
                    self.queues[r][to].clear();
                    self.requested[r][to] = false;
                    if to != r {
                        let d = self.replicas[to].remove_origin(id);
                        self.views[to].apply(&d);
                    }
                }
                self.replicas[r] = TopicPresence::new(id);
                self.views[r] = ClientView::default();
                self.dirty[r].clear();
                self.model[r].clear();
                self.resync(r);
            }
        }
    }

    /// Flushes, answers and delivers everything.
    fn settle(&mut self) {
        let n = self.replicas.len();
        for r in 0..n {
            self.flush(r);
        }
        let mut busy = true;
        while busy {
            busy = false;
            for from in 0..n {
                for to in 0..n {
                    busy |= self.answer(from, to);
                    while self.deliver(from, to) {
                        busy = true;
                    }
                }
            }
        }
    }

    /// The `presence_state` of the union of every replica's own entries,
    /// written independently of `TopicPresence`.
    fn union_state(&self) -> String {
        let mut keys: BTreeMap<String, BTreeMap<(u64, ReplicaId), String>> = BTreeMap::new();
        for (r, p) in self.replicas.iter().enumerate() {
            let own: BTreeMap<u64, (u8, u8)> = p
                .snapshot()
                .entries()
                .map(|(owner, key, meta)| {
                    keys.entry(key.into())
                        .or_default()
                        .insert((owner, p.local()), meta.as_json().into());
                    let v: Value = serde_json::from_str(meta.as_json()).unwrap();
                    let val = v["v"].as_u64().unwrap() as u8;
                    (owner, (key[1..].parse().unwrap(), val))
                })
                .collect();
            assert_eq!(own, self.model[r], "replica {r}'s own entries");
        }
        let keys: Vec<String> = keys
            .into_iter()
            .map(|(k, metas)| {
                let metas: Vec<String> = metas.into_values().collect();
                format!(r#""{k}":{{"metas":[{}]}}"#, metas.join(","))
            })
            .collect();
        format!("{{{}}}", keys.join(","))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn presence_replicas_converge(
        (n, ops) in (2usize..5).prop_flat_map(|n| (Just(n), proptest::collection::vec(arb_op(n), 0..150))),
        seed in any::<u64>(),
    ) {
        let mut cluster = Cluster::new(n, seed);
        for op in ops {
            cluster.run(op);
        }
        cluster.settle();
        let want = cluster.union_state();
        for (r, p) in cluster.replicas.iter().enumerate() {
            prop_assert_eq!(&state(p), &want, "replica {}", r);
            prop_assert_eq!(&cluster.views[r].0, &ClientView::of(p), "client view on replica {}", r);
        }
    }
}
