//! The state of one replication stream, without its sockets.
//!
//! [`Stream`] takes each CopyData payload the walsender sends and says
//! what the driver must do next ([`Action`]); the driver (`session`) does
//! it with its database connections and reports back. Keeping the I/O out
//! makes the bookkeeping that decides what Postgres may forget (received
//! and confirmed LSNs, the [`FlushGate`], transactions half-seen) testable
//! from recorded bytes.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::confirm::FlushGate;
use crate::proto::pg::pgoutput::{self, Message, Relation};
use crate::proto::pg::relcache::RelCache;
use crate::proto::pg::replication::{Lsn, PgTimestamp, PrimaryKeepalive, ReplicationMessage};
use crate::proto::pg::Oid;
use crate::server::pgconn::PgError;

/// Most changes held before they are authorised and delivered: a batch
/// ends at a commit or at this many changes, whichever comes first (a batch
/// with rows of RLS tables always waits for its commit; see `flush`).
pub const MAX_BATCH: usize = 512;

/// A change waiting for its batch to be authorised and delivered.
pub struct Pending {
    /// The Insert, Update or Delete.
    pub msg: Message,
    /// Its relation as last described.
    pub rel: Arc<Relation>,
    /// Positions of its primary key columns.
    pub pk: Rc<[usize]>,
    /// Its transaction's commit time.
    pub commit_time: PgTimestamp,
}

/// The transaction a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tx {
    /// Its id (pgoutput's 32-bit xid).
    pub xid: u32,
    /// Its commit has been decoded.
    pub committed: bool,
}

/// What the driver must do after a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing beyond the periodic status check.
    Nothing,
    /// Look up this relation's column types and primary key, then call
    /// [`Stream::resolved`].
    Resolve(Arc<Relation>),
    /// Authorise and deliver [`Stream::pending_mut`], then call
    /// [`Stream::flushed`].
    Flush(Tx),
    /// Send a status update now (the walsender asked for one).
    Status,
}

/// Positions to put in a standby status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Last position received.
    pub received: Lsn,
    /// Last position that may be reported flushed (and applied).
    pub flushed: Lsn,
}

/// One stream's bookkeeping.
pub struct Stream {
    relcache: RelCache,
    primary_keys: HashMap<Oid, Rc<[usize]>>,
    pending: Vec<Pending>,
    /// Pending changes that cut a batch before its commit.
    next_flush: usize,
    xid: u32,
    commit_time: PgTimestamp,
    /// A Begin was seen and its Commit not yet handled.
    in_tx: bool,
    /// The end of a commit whose flush is under way.
    committing: Option<Lsn>,
    received: Lsn,
    confirmed: Lsn,
    gate: FlushGate,
    last_status: Instant,
    status_interval: Duration,
}

impl Stream {
    /// A stream reporting its status every `status_interval`, its LSNs
    /// held by `gate`, as of `now`.
    pub fn new(status_interval: Duration, gate: FlushGate, now: Instant) -> Stream {
        Stream {
            relcache: RelCache::new(),
            primary_keys: HashMap::new(),
            pending: Vec::new(),
            next_flush: MAX_BATCH,
            xid: 0,
            commit_time: PgTimestamp(0),
            in_tx: false,
            committing: None,
            received: Lsn(0),
            confirmed: Lsn(0),
            gate,
            last_status: now,
            status_interval,
        }
    }

    /// One CopyData payload. `anyone`: whether the tenant has a subscriber,
    /// asked only for a change (one nobody listens to is not kept, and its
    /// commit still confirms it).
    pub fn on_copy_data(
        &mut self,
        payload: Bytes,
        anyone: impl FnOnce() -> bool,
    ) -> Result<Action, PgError> {
        let msg =
            ReplicationMessage::parse(payload).map_err(|e| PgError::Protocol(e.to_string()))?;
        match msg {
            ReplicationMessage::Keepalive(k) => Ok(self.on_keepalive(&k)),
            ReplicationMessage::XLogData(x) => {
                self.received = self.received.max(x.start);
                let msg = pgoutput::decode(x.data).map_err(|e| PgError::Protocol(e.to_string()))?;
                match msg {
                    Message::Relation(_) => Ok(self.on_relation(&msg)),
                    Message::Type(_) => {
                        self.relcache.apply(&msg);
                        Ok(Action::Nothing)
                    }
                    Message::Begin(b) => {
                        self.commit_time = b.commit_time;
                        self.xid = b.xid;
                        self.in_tx = true;
                        Ok(Action::Nothing)
                    }
                    Message::Commit(c) => Ok(self.on_commit(c.end_lsn)),
                    Message::Insert(_) | Message::Update(_) | Message::Delete(_) => {
                        self.on_change(msg, anyone())
                    }
                    _ => Ok(Action::Nothing),
                }
            }
        }
    }

    /// A keepalive: outside a transaction, everything up to its end has
    /// been handled (no transaction is half-seen), so it is confirmed and
    /// the slot does not pin WAL of unpublished tables.
    pub fn on_keepalive(&mut self, k: &PrimaryKeepalive) -> Action {
        self.received = self.received.max(k.end);
        if !self.in_tx && self.committing.is_none() {
            self.confirmed = self.confirmed.max(k.end);
        }
        if k.reply_requested {
            Action::Status
        } else {
            Action::Nothing
        }
    }

    /// A Relation message: cached now, its types and key looked up by the
    /// driver.
    pub fn on_relation(&mut self, msg: &Message) -> Action {
        self.relcache.apply(msg);
        match msg {
            Message::Relation(r) => match self.relcache.get(r.oid) {
                Some(rel) => Action::Resolve(rel.clone()),
                None => Action::Nothing,
            },
            _ => Action::Nothing,
        }
    }

    /// The driver looked up `oid`'s primary key columns.
    pub fn resolved(&mut self, oid: Oid, pk: Vec<usize>) {
        self.primary_keys.insert(oid, pk.into());
    }

    /// An Insert, Update or Delete: kept for the next batch, which is cut
    /// when it holds enough.
    pub fn on_change(&mut self, msg: Message, anyone: bool) -> Result<Action, PgError> {
        let Some(oid) = change_relation(&msg) else {
            return Ok(Action::Nothing);
        };
        let rel =
            self.relcache.get(oid).cloned().ok_or_else(|| {
                PgError::Protocol(format!("change for unknown relation {}", oid.0))
            })?;
        if !anyone {
            return Ok(Action::Nothing);
        }
        let pk = self
            .primary_keys
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| Rc::from([]));
        self.pending.push(Pending {
            msg,
            rel,
            pk,
            commit_time: self.commit_time,
        });
        if self.pending.len() >= self.next_flush {
            Ok(Action::Flush(Tx {
                xid: self.xid,
                committed: false,
            }))
        } else {
            Ok(Action::Nothing)
        }
    }

    /// A Commit: the transaction's batch is flushed; its end is confirmed
    /// once [`Stream::flushed`] says so.
    pub fn on_commit(&mut self, end_lsn: Lsn) -> Action {
        self.committing = Some(end_lsn);
        Action::Flush(Tx {
            xid: self.xid,
            committed: true,
        })
    }

    /// The changes the driver flushes (it empties it when it delivered).
    pub fn pending_mut(&mut self) -> &mut Vec<Pending> {
        &mut self.pending
    }

    /// The flush asked for by [`Action::Flush`] ended; `delivered`: the
    /// batch went to subscriber queues (`false`: rows of RLS tables wait
    /// for the commit, so the next cut comes when twice as many are held).
    pub fn flushed(&mut self, tx: Tx, delivered: bool) {
        if tx.committed {
            // Everything of this transaction is in subscriber queues: its
            // end may be confirmed.
            if let Some(end) = self.committing.take() {
                self.confirmed = self.confirmed.max(end);
            }
            self.in_tx = false;
            self.next_flush = MAX_BATCH;
        } else {
            self.next_flush = if delivered {
                MAX_BATCH
            } else {
                self.next_flush * 2
            };
        }
    }

    /// The positions as they stand (for keep-alives sent during a batch).
    pub fn status(&mut self, now: Instant) -> Status {
        Status {
            received: self.received,
            flushed: self.gate.reportable(now),
        }
    }

    /// After each message (`now`: one clock reading for it): notes what is
    /// fanned out, and returns a status update to send if one was asked
    /// for (`asked`) or the interval passed since the last.
    pub fn report_status(&mut self, now: Instant, asked: bool) -> Option<Status> {
        self.gate.fanned_out(self.confirmed, now);
        if asked || now.saturating_duration_since(self.last_status) >= self.status_interval {
            self.last_status = now;
            Some(self.status(now))
        } else {
            None
        }
    }

    /// A status update sent out of turn (asking for a reply on a quiet
    /// stream).
    pub fn probe(&mut self, now: Instant) -> Status {
        self.last_status = now;
        self.status(now)
    }

    /// Everything up to here is in subscriber queues.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }
}

/// The relation of an Insert, Update or Delete.
fn change_relation(msg: &Message) -> Option<Oid> {
    match msg {
        Message::Insert(m) => Some(m.relation),
        Message::Update(m) => Some(m.relation),
        Message::Delete(m) => Some(m.relation),
        _ => None,
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
