//! What a `postgres-changes` run costs the database: the CPU of every
//! process of the Postgres cluster, and the transactions other clients
//! (in practice the server under test) committed in the database.
//!
//! Round trips are counted from `pg_stat_database.xact_commit`, which
//! needs no extension: the server states every query it makes as one
//! simple-query message that is one transaction (an autocommit statement,
//! or `BEGIN ... COMMIT` sent together), so each of its round trips is one
//! commit. From the counter's change over the window the meter takes away
//! what the loadgen did itself: the writer's commits, and the fixed cost
//! (measured before the window, with nothing else running) of each
//! connection the loadgen opened to read the counter or to write. Rolled
//! back transactions are left out: the walsender's logical decoding runs
//! each decoded transaction inside one it aborts, so rollbacks count the
//! decoding, not the server's queries. A backend publishes its counts
//! when it exits, or once it has been idle long enough: at most once a
//! second, and when it was busy until then only after 10 s of idleness
//! (`PGSTAT_IDLE_INTERVAL` in Postgres 15). The final reading therefore
//! waits that long after the deliveries, then until two readings in a row
//! agree.

use std::time::Duration;

use super::pg_db::Db;
use crate::procfs;

/// Idle time after which every backend has published its counts (10 s
/// in Postgres 15, plus a margin).
const SETTLE_IDLE: Duration = Duration::from_millis(12_000);
/// Pause between the readings that confirm the counter stands still.
const SETTLE_PAUSE: Duration = Duration::from_millis(1_000);
/// Most readings taken while waiting for the counter to settle.
const MAX_SETTLE_READS: u64 = 20;

/// Reads the database's costs around one measured window.
#[derive(Debug, Clone)]
pub struct PgMeter {
    /// The postmaster, when the cluster runs on this machine.
    postmaster: Option<u32>,
    /// `xact_commit` at the start (after calibration).
    base: u64,
    /// Commits one counter-reading connection adds (startup + the query).
    probe: u64,
    /// Readings taken since `base`.
    reads: u64,
}

/// `xact_commit` of the current database.
fn commits(db: &Db) -> Result<u64, String> {
    db.scalar("select xact_commit::text from pg_stat_database where datname = current_database()")?
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "pg_stat_database has no row for this database".into())
}

/// The postmaster's pid: the process listening on the database port, else
/// the first line of `postmaster.pid` in the data directory.
fn find_postmaster(db: &Db) -> Option<u32> {
    procfs::find_listener_pid(db.cfg.port).or_else(|| {
        let dir = db
            .scalar("select current_setting('data_directory')")
            .ok()??;
        let text = std::fs::read_to_string(format!("{dir}/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    })
}

/// Commits by others between `base` and a reading `now`, taken after
/// `reads` readings since `base` (the last of them being `now`): each
/// reading's own connection adds `probe` commits once it ended, so `now`
/// holds `reads - 1` of them plus the one `base` was read with; the
/// writer added `probe` for its connection and `writer_commits` more.
pub fn others_commits(base: u64, now: u64, probe: u64, reads: u64, writer_commits: u64) -> i64 {
    now as i64 - base as i64 - (reads as i64 * probe as i64) - probe as i64 - writer_commits as i64
}

impl PgMeter {
    /// Waits until what happened before (the subscribers' joins) is
    /// published ([`SETTLE_IDLE`]; nothing else may run on the database
    /// then), calibrates with readings back to back until two steps agree
    /// and a third, a pause later, moved by the same step (so the counter
    /// moved by the readings alone), and starts counting from there.
    pub fn start(db: &Db) -> Result<PgMeter, String> {
        std::thread::sleep(SETTLE_IDLE);
        let mut r = [commits(db)?, commits(db)?, commits(db)?];
        for _ in 0..10 {
            let step = r[1].saturating_sub(r[0]);
            if r[2].saturating_sub(r[1]) == step {
                std::thread::sleep(SETTLE_PAUSE);
                let later = commits(db)?;
                if later.saturating_sub(r[2]) == step {
                    r = [r[1], r[2], later];
                    break;
                }
                r = [r[1], r[2], later];
            } else {
                r = [r[1], r[2], commits(db)?];
            }
        }
        Ok(PgMeter {
            postmaster: find_postmaster(db),
            base: r[2],
            probe: r[2].saturating_sub(r[1]),
            reads: 0,
        })
    }

    /// CPU seconds of the whole cluster so far (None when it is not local
    /// or /proc is not readable).
    pub fn cpu_s(&self) -> Option<f64> {
        self.postmaster.and_then(procfs::family_cpu_seconds)
    }

    /// Commits one reading connection adds.
    pub fn probe(&self) -> u64 {
        self.probe
    }

    /// Once the load is over: waits until the backends have published
    /// their counts ([`SETTLE_IDLE`], then until two readings in a row
    /// agree) and returns the settled counter for [`Self::others`].
    pub fn settle(&mut self, db: &Db) -> Result<u64, String> {
        let until = std::time::Instant::now() + SETTLE_IDLE;
        let mut last: Option<i64> = None;
        loop {
            std::thread::sleep(SETTLE_PAUSE);
            let now = commits(db)?;
            self.reads += 1;
            let est = others_commits(self.base, now, self.probe, self.reads, 0);
            let idle_enough = std::time::Instant::now() >= until;
            if (idle_enough && last == Some(est)) || self.reads >= MAX_SETTLE_READS {
                return Ok(now);
            }
            last = Some(est);
        }
    }

    /// Commits by others given the settled reading and the writer's commits.
    pub fn others(&self, settled: u64, writer_commits: u64) -> i64 {
        others_commits(self.base, settled, self.probe, self.reads, writer_commits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_connections_and_the_writer_are_taken_away() {
        // base 100; each connection adds 2 (startup + query); the writer
        // committed 40 times; three readings since base; the server 7.
        let now = 100 + 2 /* base's own */ + 2 * 2 /* earlier readings */
            + 2 + 40 /* writer */ + 7;
        assert_eq!(others_commits(100, now, 2, 3, 40), 7);
        // Nothing but the loadgen: zero, not a guess.
        assert_eq!(others_commits(100, 100 + 2 + 2 + 40, 2, 1, 40), 0);
    }
}
