//! [`Stream`] fed recorded CopyData payloads: the XLogData and keepalive
//! framing of the walsender around pgoutput messages, written byte by byte.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::realtime::postgres_changes::test_support::{REL_OID, W};

/// A keepalive payload (`k`).
fn keepalive(end: u64, reply: bool) -> Bytes {
    W::tag(b'k')
        .i64(end as i64)
        .i64(0)
        .u8(u8::from(reply))
        .bytes()
}

/// An XLogData payload (`w`) starting at `start` and carrying `msg`.
fn xlog(start: u64, msg: W) -> Bytes {
    let body = msg.bytes();
    let mut w = W::tag(b'w').i64(start as i64).i64(start as i64).i64(0);
    for b in body.iter() {
        w = w.u8(*b);
    }
    w.bytes()
}

fn relation() -> W {
    W::tag(b'R')
        .i32(REL_OID)
        .str("public")
        .str("t")
        .u8(b'd')
        .i16(1)
        .u8(1)
        .str("id")
        .i32(23)
        .i32(-1)
}

fn begin(xid: u32) -> W {
    W::tag(b'B').i64(0).i64(0).i32(xid as i32)
}

fn insert(v: &str) -> W {
    W::tag(b'I').i32(REL_OID).u8(b'N').tuple(&[v])
}

fn commit(end: u64) -> W {
    W::tag(b'C')
        .u8(0)
        .i64(end as i64 - 1)
        .i64(end as i64)
        .i64(0)
}

/// A stream whose gate holds nothing back and whose status interval
/// never passes on its own.
fn stream(now: Instant) -> Stream {
    Stream::new(
        Duration::from_secs(3600),
        FlushGate::new(Duration::ZERO),
        now,
    )
}

/// Feeds `payload`, which must succeed.
fn feed(s: &mut Stream, payload: Bytes) -> Action {
    s.on_copy_data(payload, || true).expect("valid message")
}

/// Feeds a Relation and answers its lookup as the driver would.
fn describe(s: &mut Stream, at: u64) {
    match feed(s, xlog(at, relation())) {
        Action::Resolve(rel) => s.resolved(rel.oid, vec![0]),
        other => panic!("a relation asks for a lookup, got {other:?}"),
    }
}

#[test]
fn a_keepalive_outside_a_transaction_confirms_its_end() {
    let t0 = Instant::now();
    let mut s = stream(t0);
    assert_eq!(feed(&mut s, keepalive(100, false)), Action::Nothing);
    assert_eq!(s.confirmed(), Lsn(100));
    assert_eq!(
        s.report_status(t0, true),
        Some(Status {
            received: Lsn(100),
            flushed: Lsn(100)
        })
    );
}

#[test]
fn a_keepalive_inside_a_transaction_confirms_nothing() {
    let t0 = Instant::now();
    let mut s = stream(t0);
    describe(&mut s, 10);
    feed(&mut s, xlog(20, begin(7)));
    feed(&mut s, keepalive(500, false));
    assert_eq!(s.confirmed(), Lsn(0));
    assert_eq!(s.status(t0).received, Lsn(500));
}

#[test]
fn a_commit_confirms_its_end_only_once_flushed() {
    let t0 = Instant::now();
    let mut s = stream(t0);
    describe(&mut s, 10);
    feed(&mut s, xlog(20, begin(7)));
    assert_eq!(feed(&mut s, xlog(30, insert("1"))), Action::Nothing);
    let tx = Tx {
        xid: 7,
        committed: true,
    };
    assert_eq!(feed(&mut s, xlog(40, commit(50))), Action::Flush(tx));
    assert_eq!(s.pending_mut().len(), 1);
    // Not yet delivered: neither the commit nor a keepalive meanwhile
    // may confirm anything.
    assert_eq!(s.confirmed(), Lsn(0));
    assert_eq!(s.report_status(t0, true).unwrap().flushed, Lsn(0));
    s.pending_mut().clear();
    s.flushed(tx, true);
    assert_eq!(s.confirmed(), Lsn(50));
    assert_eq!(s.report_status(t0, true).unwrap().flushed, Lsn(50));
}

#[test]
fn the_gate_holds_a_confirmed_lsn_before_it_is_reported() {
    let t0 = Instant::now();
    let mut s = Stream::new(
        Duration::from_secs(3600),
        FlushGate::new(Duration::from_millis(100)),
        t0,
    );
    feed(&mut s, keepalive(100, false));
    assert_eq!(s.report_status(t0, true).unwrap().flushed, Lsn(0));
    let later = t0 + Duration::from_millis(100);
    assert_eq!(s.report_status(later, true).unwrap().flushed, Lsn(100));
}

#[test]
fn a_change_for_an_unknown_relation_is_a_protocol_error() {
    let mut s = stream(Instant::now());
    feed(&mut s, xlog(20, begin(7)));
    match s.on_copy_data(xlog(30, insert("1")), || true) {
        Err(PgError::Protocol(m)) => {
            assert_eq!(m, format!("change for unknown relation {REL_OID}"))
        }
        other => panic!("expected a protocol error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn garbage_is_a_protocol_error() {
    let mut s = stream(Instant::now());
    assert!(matches!(
        s.on_copy_data(Bytes::from_static(b"x"), || true),
        Err(PgError::Protocol(_))
    ));
    assert!(matches!(
        s.on_copy_data(xlog(1, W::tag(b'?')), || true),
        Err(PgError::Protocol(_))
    ));
}

#[test]
fn max_batch_cuts_a_batch_and_a_kept_batch_doubles_the_cut() {
    let mut s = stream(Instant::now());
    describe(&mut s, 10);
    feed(&mut s, xlog(20, begin(9)));
    let cut = Tx {
        xid: 9,
        committed: false,
    };
    for i in 1..MAX_BATCH {
        assert_eq!(
            feed(&mut s, xlog(20 + i as u64, insert("1"))),
            Action::Nothing
        );
    }
    assert_eq!(feed(&mut s, xlog(5000, insert("1"))), Action::Flush(cut));
    assert_eq!(s.pending_mut().len(), MAX_BATCH);
    // Kept (rows of RLS tables wait for the commit): the next cut comes
    // at twice as many, and nothing is confirmed.
    s.flushed(cut, false);
    for i in 0..MAX_BATCH - 1 {
        assert_eq!(
            feed(&mut s, xlog(6000 + i as u64, insert("1"))),
            Action::Nothing
        );
    }
    assert_eq!(feed(&mut s, xlog(9000, insert("1"))), Action::Flush(cut));
    assert_eq!(s.confirmed(), Lsn(0));
}

#[test]
fn changes_nobody_listens_to_are_not_kept_and_the_commit_confirms_them() {
    let mut s = stream(Instant::now());
    describe(&mut s, 10);
    s.on_copy_data(xlog(20, begin(7)), || false).unwrap();
    assert_eq!(
        s.on_copy_data(xlog(30, insert("1")), || false).unwrap(),
        Action::Nothing
    );
    assert!(s.pending_mut().is_empty());
    let tx = Tx {
        xid: 7,
        committed: true,
    };
    assert_eq!(
        s.on_copy_data(xlog(40, commit(60)), || false).unwrap(),
        Action::Flush(tx)
    );
    s.flushed(tx, true);
    assert_eq!(s.confirmed(), Lsn(60));
}

#[test]
fn reply_requested_asks_for_a_status_update_now() {
    let t0 = Instant::now();
    let mut s = stream(t0);
    assert_eq!(feed(&mut s, keepalive(100, true)), Action::Status);
    assert!(s.report_status(t0, true).is_some());
    // Otherwise only once the interval passed.
    let mut s = Stream::new(Duration::from_secs(10), FlushGate::new(Duration::ZERO), t0);
    assert_eq!(feed(&mut s, keepalive(100, false)), Action::Nothing);
    assert_eq!(s.report_status(t0 + Duration::from_secs(9), false), None);
    assert!(s
        .report_status(t0 + Duration::from_secs(10), false)
        .is_some());
    // A probe restarts the interval.
    s.probe(t0 + Duration::from_secs(15));
    assert_eq!(s.report_status(t0 + Duration::from_secs(24), false), None);
}
