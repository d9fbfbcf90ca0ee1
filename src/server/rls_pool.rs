//! A tenant's authorization connections: a small pool on its home shard
//! that the RLS checks of private channels borrow (see `rls`). A leaf the
//! shard state can hold without knowing the checks.
//!
//! Connections open on first need, up to the tenant's `db_pool`, and stay
//! open while the tenant is active here; the pool goes with the tenant's
//! database work (a changed or deleted tenant, see `tenants`), and a
//! connection borrowed then is closed when its check returns it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::deadline::within;
use super::pgconn::{PgConfig, PgConn};
use crate::realtime::authz::AuthError;

/// The pool of one tenant on its home shard.
pub struct AuthPool {
    /// Where the database is; `timeout` bounds every step of a check and
    /// the wait for a free connection.
    pub cfg: PgConfig,
    /// Connections at most.
    size: usize,
    /// Open connections nobody uses.
    idle: RefCell<Vec<PgConn>>,
    /// Connections lent out or being opened.
    busy: Cell<usize>,
    /// Checks waiting for a connection, first come first served.
    waiters: RefCell<VecDeque<Waker>>,
    /// Set when the tenant's database work stopped: nothing is kept.
    closed: Cell<bool>,
}

/// A borrowed connection; dropped, it goes back to the pool if the check
/// said it is clean ([`Lease::keep`]), else it is closed.
pub struct Lease {
    pool: Rc<AuthPool>,
    /// The connection (taken out only on drop).
    pub conn: Option<PgConn>,
    /// It was idle in the pool (it may have died meanwhile), not opened
    /// for this lease.
    pub reused: bool,
    keep: bool,
}

impl Lease {
    /// The connection ended its last transaction cleanly: reuse it.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let pool = &self.pool;
        pool.busy.set(pool.busy.get().saturating_sub(1));
        if let (true, Some(c), false) = (self.keep, self.conn.take(), pool.closed.get()) {
            pool.idle.borrow_mut().push(c);
        }
        pool.wake_one();
    }
}

impl AuthPool {
    /// A pool of at most `size` connections to `cfg`'s database.
    pub fn new(cfg: PgConfig, size: usize) -> Rc<AuthPool> {
        Rc::new(AuthPool {
            cfg,
            size: size.max(1),
            idle: RefCell::new(Vec::new()),
            busy: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
            closed: Cell::new(false),
        })
    }

    /// Connections at most.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The tenant's database work stopped: idle connections close now,
    /// borrowed ones when returned.
    pub fn close(&self) {
        self.closed.set(true);
        self.idle.borrow_mut().clear();
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn wake_one(&self) {
        if let Some(w) = self.waiters.borrow_mut().pop_front() {
            w.wake();
        }
    }

    /// Lends a connection: an idle one, a new one while under the size,
    /// else the first one returned within the deadline
    /// (`IncreaseConnectionPool` otherwise). A connection that cannot be
    /// opened is `DatabaseUnavailable`.
    pub async fn acquire(self: &Rc<Self>) -> Result<Lease, AuthError> {
        let waited = within(self.cfg.timeout, self.turn()).await;
        let reuse = match waited {
            None => return Err(AuthError::IncreaseConnectionPool),
            Some(None) => return Err(unavailable("the tenant's database work stopped")),
            Some(Some(c)) => c,
        };
        // The slot is counted from here: a lease releases it on drop.
        let mut lease = Lease {
            pool: self.clone(),
            reused: reuse.is_some(),
            conn: reuse,
            keep: false,
        };
        if lease.conn.is_none() {
            match PgConn::connect(&self.cfg).await {
                Ok(c) => lease.conn = Some(c),
                Err(e) => return Err(unavailable(&e.to_string())),
            }
        }
        Ok(lease)
    }

    /// Waits for a slot: `Some(Some(conn))` an idle connection, `Some(None)`
    /// room to open one, `None` the pool closed. The slot is counted busy.
    async fn turn(&self) -> Option<Option<PgConn>> {
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                return Poll::Ready(None);
            }
            if let Some(c) = self.idle.borrow_mut().pop() {
                self.busy.set(self.busy.get() + 1);
                return Poll::Ready(Some(Some(c)));
            }
            if self.busy.get() < self.size {
                self.busy.set(self.busy.get() + 1);
                return Poll::Ready(Some(None));
            }
            self.waiters.borrow_mut().push_back(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

fn unavailable(why: &str) -> AuthError {
    AuthError::DatabaseUnavailable(why.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::SslMode;
    use crate::server::tls::DbTls;

    fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    /// A pool of one connection to a port nobody listens on.
    fn pool(timeout_ms: u64) -> Rc<AuthPool> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        AuthPool::new(
            PgConfig {
                host: "127.0.0.1".into(),
                port,
                dbname: "x".into(),
                user: "x".into(),
                password: String::new(),
                replication: false,
                application_name: "test".into(),
                timeout: Duration::from_millis(timeout_ms),
                tls: DbTls {
                    mode: SslMode::Disable,
                    root_cert: None,
                },
            },
            1,
        )
    }

    /// Holds the pool's only slot, as a check in progress does.
    async fn hold(p: &Rc<AuthPool>) -> Lease {
        assert!(matches!(p.turn().await, Some(None)), "a free slot");
        Lease {
            pool: p.clone(),
            conn: None,
            reused: false,
            keep: false,
        }
    }

    #[test]
    fn a_pool_busy_past_its_deadline_says_increase_connection_pool() {
        let (waited, outcome) = on_executor(|| async {
            let p = pool(100);
            let _held = hold(&p).await;
            let started = Instant::now();
            let r = p.acquire().await.err();
            (started.elapsed(), r)
        });
        assert_eq!(outcome, Some(AuthError::IncreaseConnectionPool));
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
    }

    #[test]
    fn a_returned_slot_goes_to_the_waiter_and_a_dead_database_is_unavailable() {
        let outcome = on_executor(|| async {
            let p = pool(5_000);
            let held = hold(&p).await;
            let waiter = {
                let p = p.clone();
                glommio::spawn_local(async move { p.acquire().await.err() })
            };
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let released = Instant::now();
            drop(held);
            let r = waiter.await;
            // Woken by the release, not by its own deadline.
            assert!(released.elapsed() < Duration::from_secs(2));
            // Its slot is given back when the open fails.
            assert_eq!(p.busy.get(), 0);
            r
        });
        assert!(
            matches!(outcome, Some(AuthError::DatabaseUnavailable(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_closed_pool_keeps_nothing_and_lends_nothing() {
        let outcome = on_executor(|| async {
            let p = pool(5_000);
            p.close();
            p.acquire().await.err()
        });
        assert_eq!(
            outcome,
            Some(unavailable("the tenant's database work stopped")),
            "refused without trying the database"
        );
    }
}
