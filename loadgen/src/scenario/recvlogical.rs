//! The walsender's own ceiling: the same max-rate workload drained by
//! `pg_recvlogical` with pgoutput on a slot of its own.
//!
//! It writes into a twin table (`<table>_ceil`) published by a publication
//! of its own, so the server (whose walsender streams `supabase_realtime`)
//! delivers nothing while pg_recvlogical is measured and the server's rows
//! are not counted twice. Its stdout is read in a thread that counts bytes
//! and looks for the marker written into the last row; the drain time is
//! from the first commit to the moment that marker arrives. With
//! `--backlog`, pg_recvlogical is held with SIGSTOP while the rows are
//! written, exactly as the server is, and timed from SIGCONT.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memchr::memmem;
use serde::Serialize;

use super::pg_db::{create_table_sql, spawn_writer, Db, Pace, WriteJob, WriteOut};
use crate::cli::PgArgs;
use crate::runner::Shared;
use crate::stats::now_ns;

/// What pg_recvlogical achieved.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// The binary used.
    pub bin: String,
    /// Rows written (and received).
    pub rows: u64,
    /// Seconds from the first commit (with --backlog: from letting
    /// pg_recvlogical go on) to the last row's arrival.
    pub drain_s: f64,
    /// rows / drain_s.
    pub rows_per_sec: f64,
    /// Seconds the writer took (its own ceiling).
    pub write_s: f64,
    /// Rows/s the writer committed.
    pub write_rows_per_sec: f64,
    /// Bytes pg_recvlogical wrote out.
    pub bytes: u64,
}

/// Finds pg_recvlogical: the option, `pg_config --bindir`, the PG15
/// package directory, then PATH.
fn binary(a: &PgArgs) -> PathBuf {
    if let Some(b) = &a.recvlogical_bin {
        return b.clone();
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("pg_recvlogical"));
    let candidates = from_pg_config.into_iter().chain(Some(PathBuf::from(
        "/usr/lib/postgresql/15/bin/pg_recvlogical",
    )));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    PathBuf::from("pg_recvlogical")
}

/// Runs the ceiling measurement for `rows` rows; cleans up its table,
/// publication and slot whatever happens. With `send_topic` (db-broadcast)
/// the rows are `realtime.send()` calls to that topic, streamed through
/// the server's own messages publication (nobody is joined to the topic).
pub fn measure(
    db: &Db,
    a: &PgArgs,
    rows: u64,
    send_topic: Option<&str>,
) -> Result<Ceiling, String> {
    if let Some(topic) = send_topic {
        let slot = format!("lg_recv_msg_{}", std::process::id());
        let publication = "supabase_realtime_messages_publication";
        let r = db
            .exec(&format!(
                "select pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ))
            .and_then(|_| drain(db, a, rows, "", publication, &slot, Some(topic)));
        drop_slot(db, &slot);
        return r;
    }
    let table = format!("{}_ceil", a.table);
    let publication = format!("{}_ceil_pub", a.table);
    let slot = format!("lg_recv_{}", std::process::id());
    db.exec(&format!(
        "{}
         drop publication if exists {publication};
         create publication {publication} for table public.{table};",
        create_table_sql(&table, false)
    ))?;
    let r = db
        .exec(&format!(
            "select pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .and_then(|_| drain(db, a, rows, &table, &publication, &slot, None));
    drop_slot(db, &slot);
    let _ = db.exec(&format!(
        "drop publication if exists {publication}; drop table if exists public.{table};"
    ));
    r
}

/// Drops `slot` once its walsender has let go of it.
fn drop_slot(db: &Db, slot: &str) {
    for _ in 0..50 {
        let gone = db.exec(&format!(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where slot_name = '{slot}' and not active"
        ));
        let left = db.scalar(&format!(
            "select count(*) from pg_replication_slots where slot_name = '{slot}'"
        ));
        if gone.is_ok() && left.ok().flatten().as_deref() == Some("0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Streams with pg_recvlogical while the writer commits `rows` rows.
fn drain(
    db: &Db,
    a: &PgArgs,
    rows: u64,
    table: &str,
    publication: &str,
    slot: &str,
    send_topic: Option<&str>,
) -> Result<Ceiling, String> {
    // Counters of its own: the subscribers' run has not begun.
    let shared = Shared::new(1);
    let bin = binary(a);
    let spawn = || {
        Command::new(&bin)
            .args(["-h", &a.db_host, "-p", &a.db_port.to_string()])
            .args(["-U", &a.db_user, "-d", &a.db_name, "-S", slot])
            .args(["--start", "--no-loop", "-f", "-", "-F", "0"])
            .args(["-o", "proto_version=1"])
            .arg("-o")
            .arg(format!("publication_names={publication}"))
            .env("PGPASSWORD", &a.db_password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))
    };
    let marker = format!("lgend{}", std::process::id());
    let mut end_marker = marker.clone();
    while end_marker.len() < a.pad {
        end_marker.push('x');
    }
    let job = WriteJob {
        table: table.to_string(),
        rows_per_commit: a.rows_per_commit,
        pad: a.pad,
        pace: Pace::Burst(rows),
        end_marker: Some(end_marker),
        slot: 0,
        owners: None,
        send_topic: send_topic.map(str::to_owned),
    };
    let write = || -> Result<WriteOut, String> {
        shared.start(now_ns());
        spawn_writer(db, job.clone(), shared.clone())?
            .join()
            .map_err(|e| format!("writer thread: {e}"))?
    };
    let mut child = spawn()?;
    let seen = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut stdout = child.stdout.take().ok_or("pg_recvlogical has no stdout")?;
    let reader = {
        let (seen, bytes, marker) = (seen.clone(), bytes.clone(), marker.clone());
        std::thread::spawn(move || {
            let finder = memmem::Finder::new(marker.as_bytes());
            let keep = marker.len() - 1;
            let mut buf = vec![0u8; 256 * 1024];
            let mut have = 0;
            loop {
                let n = match stdout.read(&mut buf[have..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                have += n;
                if seen.load(Ordering::Relaxed) == 0 && finder.find(&buf[..have]).is_some() {
                    seen.store(now_ns(), Ordering::Release);
                }
                // Keep a tail so a marker split across reads is still found.
                let tail = have.min(keep);
                buf.copy_within(have - tail..have, 0);
                have = tail;
            }
        })
    };
    let result = (|| {
        // Streaming has begun once the slot is active.
        let deadline = now_ns() + 10_000_000_000;
        loop {
            let active = db.scalar(&format!(
                "select active::text from pg_replication_slots where slot_name = '{slot}'"
            ))?;
            if active.as_deref() == Some("true") {
                break;
            }
            if now_ns() > deadline {
                return Err("pg_recvlogical did not start streaming within 10 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !a.backlog {
            let w = write()?;
            let first = w.first_ns;
            return Ok((w, first));
        }
        // Held back exactly like the server: stopped while the rows are
        // written (its walsender may fill the socket buffers meanwhile),
        // timed from the moment it may go on.
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let w = write();
        let resumed = now_ns();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        Ok((w?, resumed))
    })();
    let result = result.and_then(|(w, t0)| {
        let wait_until = w.last_ns + (a.drain.max(30.0) * 1e9) as u64;
        while seen.load(Ordering::Acquire) == 0 && now_ns() < wait_until {
            std::thread::sleep(Duration::from_micros(500));
        }
        let at = seen.load(Ordering::Acquire);
        if at == 0 {
            return Err("pg_recvlogical did not receive the last row in time".to_string());
        }
        let drain_s = (at.saturating_sub(t0)) as f64 / 1e9;
        let write_s = (w.last_ns - w.first_ns) as f64 / 1e9;
        Ok(Ceiling {
            bin: bin.display().to_string(),
            rows: w.rows,
            drain_s,
            rows_per_sec: w.rows as f64 / drain_s.max(1e-9),
            write_s,
            write_rows_per_sec: w.rows as f64 / write_s.max(1e-9),
            bytes: 0,
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    result.map(|mut c| {
        c.bytes = bytes.load(Ordering::Relaxed);
        c
    })
}
