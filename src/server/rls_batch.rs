//! A tenant's RLS checker: authorisation that stays fast with thousands
//! of private joins (issue 13, item 3).
//!
//! - Checks asking the same question (role, claims, `sub`, headers, topic,
//!   which checks) while one such is unanswered share it: one check,
//!   every asker gets its answer.
//! - Checks waiting at the same moment go to the database together: a
//!   runner takes every waiting check (up to [`MAX_BATCH`]) and writes
//!   their statements on one connection at once, each check still its own
//!   transaction rolled back (`rls_script`), and reads the outcomes in one
//!   round trip. At most one runner per pool connection, so while the pool
//!   is busy new checks gather for the next round trip.
//!
//! A check that fails decides only its own answer: a later check in the
//! same batch runs in its own transaction after the failed one's
//! `ROLLBACK`; should a `ROLLBACK` fail, every later check of the batch is
//! answered `DatabaseUnavailable`, never granted, and the connection is
//! closed.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use realtime_shards::ShardStats;

use super::deadline::within;
use super::pgconn::PgError;
use super::rls_pool::{AuthPool, Lease};
use super::rls_script::{self, map_error, Probes};
use crate::realtime::authz::{AuthAnswer, AuthError, AuthRequest};

/// Most checks one round trip carries.
pub const MAX_BATCH: usize = 256;

/// What makes two checks the same question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Question {
    role: Box<str>,
    claims: Box<str>,
    sub: Option<Box<str>>,
    headers: Rc<str>,
    topic: Box<str>,
    read: Option<bool>,
    write: bool,
}

impl Question {
    fn of(req: &AuthRequest) -> Question {
        let c = &req.ctx;
        Question {
            role: c.role.clone(),
            claims: c.claims.clone(),
            sub: c.sub.clone(),
            headers: c.headers.clone(),
            topic: c.topic.clone(),
            read: req.read,
            write: req.write,
        }
    }
}

/// One check to run, and who waits for its answer.
struct Slot {
    question: Question,
    req: AuthRequest,
    answer: RefCell<Option<AuthAnswer>>,
    wakers: RefCell<Vec<Waker>>,
}

impl Slot {
    fn settle(&self, answer: AuthAnswer) {
        *self.answer.borrow_mut() = Some(answer);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// The checker of one tenant on its home shard.
pub struct Checker {
    /// The tenant's authorization connections.
    pub pool: Rc<AuthPool>,
    /// Counters of every shard (this one's are bumped).
    stats: Arc<[ShardStats]>,
    /// This shard.
    shard: usize,
    /// Checks not yet sent, oldest first.
    queue: RefCell<VecDeque<Rc<Slot>>>,
    /// Checks not yet answered (queued or under way), by question.
    open: RefCell<HashMap<Question, Rc<Slot>>>,
    /// Runners working (at most the pool's size).
    runners: Cell<usize>,
}

impl Checker {
    /// A checker over `pool`.
    pub fn new(pool: Rc<AuthPool>, stats: Arc<[ShardStats]>, shard: usize) -> Rc<Checker> {
        Rc::new(Checker {
            pool,
            stats,
            shard,
            queue: RefCell::new(VecDeque::new()),
            open: RefCell::new(HashMap::new()),
            runners: Cell::new(0),
        })
    }

    fn stats(&self) -> &ShardStats {
        &self.stats[self.shard]
    }

    /// The answer to `req`: shared with an unanswered check asking the
    /// same, else from a check of the next round trip.
    pub async fn check(self: &Rc<Self>, req: &AuthRequest) -> AuthAnswer {
        ShardStats::add(&self.stats().rls_checks, 1);
        if let Some(e) = rls_script::unsendable(&req.ctx) {
            return Err(e);
        }
        let question = Question::of(req);
        let existing = self.open.borrow().get(&question).cloned();
        let slot = match existing {
            Some(s) => s,
            None => {
                let s = Rc::new(Slot {
                    question: question.clone(),
                    req: AuthRequest {
                        ctx: req.ctx.clone(),
                        read: req.read,
                        write: req.write,
                    },
                    answer: RefCell::new(None),
                    wakers: RefCell::new(Vec::new()),
                });
                self.open.borrow_mut().insert(question, s.clone());
                self.queue.borrow_mut().push_back(s.clone());
                self.kick();
                s
            }
        };
        let answered = std::future::poll_fn(|cx| match slot.answer.borrow().clone() {
            Some(a) => Poll::Ready(a),
            None => {
                slot.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        });
        // A runner answers within its own deadlines (a wait for a
        // connection, two tries); this one only guards against a runner
        // that went away.
        let limit = self.pool.cfg.timeout.saturating_mul(4) + Duration::from_secs(1);
        within(limit, answered).await.unwrap_or_else(|| {
            Err(AuthError::DatabaseUnavailable(
                "no answer from the tenant's checker".into(),
            ))
        })
    }

    /// Starts a runner if there is room for one.
    fn kick(self: &Rc<Self>) {
        if self.runners.get() >= self.pool.size() {
            return;
        }
        self.runners.set(self.runners.get() + 1);
        glommio::spawn_local(self.clone().run()).detach();
    }

    /// Sends what waits, batch after batch, until nothing does.
    async fn run(self: Rc<Self>) {
        // Spawned, it starts once the task that asked yields: the checks
        // asked in that same turn have gathered by then.
        loop {
            let batch: Vec<Rc<Slot>> = {
                let mut q = self.queue.borrow_mut();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                self.runners.set(self.runners.get() - 1);
                return;
            }
            let answers = self.answer(&batch).await;
            for (slot, answer) in batch.iter().zip(answers) {
                self.open.borrow_mut().remove(&slot.question);
                slot.settle(answer);
            }
        }
    }

    /// The answers to `batch`, in order. A connection that waited in the
    /// pool and turns out dead (the database restarted) is closed and the
    /// batch runs once more on a new one: nothing of a check stays, so
    /// running one again changes nothing.
    async fn answer(&self, batch: &[Rc<Slot>]) -> Vec<AuthAnswer> {
        let all = |e: AuthError| batch.iter().map(|_| Err(e.clone())).collect();
        let lease = match self.pool.acquire().await {
            Ok(l) => l,
            Err(e) => return all(e),
        };
        let reused = lease.reused;
        match self.attempt(lease, batch).await {
            Ok(answers) => answers,
            Err((_, true)) if reused => match self.pool.acquire().await {
                Ok(lease) => self
                    .attempt(lease, batch)
                    .await
                    .unwrap_or_else(|(e, _)| all(e)),
                Err(e) => all(e),
            },
            Err((e, _)) => all(e),
        }
    }

    /// One round trip of `batch` on `lease`'s connection, which goes back
    /// to the pool only if every check ended its transaction. `Err` when
    /// the connection failed; true if the failure was the socket's (it may
    /// have been dead before the batch).
    async fn attempt(
        &self,
        mut lease: Lease,
        batch: &[Rc<Slot>],
    ) -> Result<Vec<AuthAnswer>, (AuthError, bool)> {
        let probes: Vec<Probes> = batch.iter().map(|_| Probes::fresh()).collect();
        let mut stmts = Vec::with_capacity(batch.iter().map(|s| rls_script::len(&s.req)).sum());
        for (slot, p) in batch.iter().zip(&probes) {
            rls_script::push(&slot.req, p, &mut stmts);
        }
        let Some(conn) = lease.conn.as_mut() else {
            return Err((
                AuthError::DatabaseUnavailable("no connection".into()),
                false,
            ));
        };
        ShardStats::add(&self.stats().rls_round_trips, 1);
        ShardStats::add(&self.stats().rls_queries, batch.len() as u64);
        let outcomes = match conn.pipeline(&stmts, rls_script::UNPREPARED).await {
            Ok(o) => o,
            Err(e) => {
                let dead = matches!(e, PgError::Io(_) | PgError::Protocol(_));
                return Err((map_error(&e), dead));
            }
        };
        let mut answers = Vec::with_capacity(batch.len());
        let mut clean = true;
        let mut at = 0;
        for (slot, p) in batch.iter().zip(&probes) {
            let n = rls_script::len(&slot.req);
            if clean {
                let r = rls_script::read(&slot.req, p, &outcomes[at..at + n], |e| {
                    map_error(&PgError::Db {
                        severity: e.severity.clone(),
                        code: e.code.clone(),
                        message: e.message.clone(),
                    })
                });
                clean = r.clean;
                answers.push(match r.answer {
                    Ok(_) if !clean => Err(AuthError::DatabaseUnavailable(
                        "the check's rollback failed".into(),
                    )),
                    a => a,
                });
            } else {
                answers.push(Err(AuthError::DatabaseUnavailable(
                    "an earlier check on its connection did not roll back".into(),
                )));
            }
            at += n;
        }
        if clean {
            lease.keep();
        }
        Ok(answers)
    }
}
