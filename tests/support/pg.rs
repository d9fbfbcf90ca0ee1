//! Test support for Postgres: the project's dev database (shared, or a
//! private instance a test may stop and crash), psql, and a steady writer.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{free_port, Frame, Recv, Ws};

/// A dev-db cluster: the shared one, or a private instance (stopped when
/// the `DevDb` that started it drops; clones only use it).
#[derive(Debug)]
pub struct DevDb {
    /// `postgres://postgres:PW@HOST:PORT/postgres`.
    pub url: String,
    pub host: String,
    pub port: String,
    pub password: String,
    /// `DEV_DB_INSTANCE` of a private cluster.
    instance: Option<String>,
    /// This value stops the private cluster on drop.
    owner: bool,
}

impl Clone for DevDb {
    fn clone(&self) -> Self {
        DevDb {
            url: self.url.clone(),
            host: self.host.clone(),
            port: self.port.clone(),
            password: self.password.clone(),
            instance: self.instance.clone(),
            owner: false,
        }
    }
}

fn dev_db_script(instance: Option<&str>, port: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"));
    cmd.args(args);
    if let Some(i) = instance {
        cmd.env("DEV_DB_INSTANCE", i);
    }
    if let Some(p) = port {
        cmd.env("DEV_DB_PORT", p);
    }
    let out = cmd.output().expect("run scripts/dev-db");
    assert!(
        out.status.success(),
        "dev-db {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl DevDb {
    fn from_url(url: &str, instance: Option<String>) -> DevDb {
        let rest = url
            .trim()
            .strip_prefix("postgres://")
            .expect("postgres URL");
        let (cred, hostdb) = rest.split_once('@').unwrap();
        let (_, pw) = cred.split_once(':').unwrap();
        let (hp, _) = hostdb.split_once('/').unwrap();
        let (h, p) = hp.rsplit_once(':').unwrap();
        DevDb {
            url: url.trim().to_owned(),
            host: h.into(),
            port: p.into(),
            password: pw.into(),
            owner: instance.is_some(),
            instance,
        }
    }

    /// The cluster shared by the test suite (`DEV_DB_URL`, else
    /// `scripts/dev-db start`). Never stop it.
    pub fn shared() -> DevDb {
        let url = std::env::var("DEV_DB_URL").unwrap_or_else(|_| {
            dev_db_script(None, None, &["start"])
                .lines()
                .last()
                .unwrap()
                .to_owned()
        });
        DevDb::from_url(&url, None)
    }

    /// A private cluster `target/pg-NAME` on a fresh port, that this test
    /// alone uses and may stop: leftovers of an earlier run (a postmaster,
    /// slots) are cleared first.
    pub fn private(name: &str) -> DevDb {
        dev_db_script(Some(name), None, &["stop", "immediate"]);
        let port = free_port().to_string();
        let url = dev_db_script(Some(name), Some(&port), &["start"]);
        let db = DevDb::from_url(url.lines().last().unwrap(), Some(name.to_owned()));
        db.psql(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots where not active",
        );
        db
    }

    /// Stops a private cluster (`fast`, `immediate`, ...).
    pub fn stop(&self, mode: &str) {
        let i = self
            .instance
            .as_deref()
            .expect("only private clusters stop");
        dev_db_script(Some(i), Some(&self.port), &["stop", mode]);
    }

    /// Starts a private cluster again on its port.
    pub fn start(&self) {
        let i = self
            .instance
            .as_deref()
            .expect("only private clusters start");
        dev_db_script(Some(i), Some(&self.port), &["start"]);
    }

    /// Environment for a server streaming from this database.
    pub fn server_env(&self, slot_suffix: &str) -> Vec<(String, String)> {
        vec![
            ("DB_HOST".into(), self.host.clone()),
            ("DB_PORT".into(), self.port.clone()),
            ("DB_NAME".into(), "postgres".into()),
            ("DB_USER".into(), "postgres".into()),
            ("DB_PASSWORD".into(), self.password.clone()),
            ("SLOT_NAME_SUFFIX".into(), slot_suffix.into()),
        ]
    }

    /// Runs `sql`; its output (unaligned, tuples only), or the error text.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(psql_bin())
            .args([&self.url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql`, panicking on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// Drops a slot, waiting for a stopping server's walsender to let go.
    pub fn drop_slot(&self, slot: &str) {
        // A server's messages stream (Broadcast from Database) keeps a
        // slot of its own beside it.
        let messages = slot
            .strip_prefix("supabase_realtime_replication_slot")
            .map(|suffix| format!("realtime_messages_slot{suffix}"))
            .unwrap_or_default();
        let q = format!(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where slot_name in ('{slot}', '{messages}')"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = self.try_psql(&q) {
            assert!(Instant::now() < deadline, "drop slot {slot}: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ids of `table`, ascending.
    pub fn ids(&self, table: &str) -> BTreeSet<i64> {
        self.psql(&format!("select id from public.{table}"))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }
}

impl Drop for DevDb {
    fn drop(&mut self) {
        if let (Some(i), true) = (&self.instance, self.owner) {
            let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"))
                .args(["stop", "fast"])
                .env("DEV_DB_INSTANCE", i)
                .env("DEV_DB_PORT", &self.port)
                .output();
        }
    }
}

pub fn psql_bin() -> String {
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("{}/psql", String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin/psql".into())
}

/// Creates `public.TABLE (id bigint primary key)` in the publication and a
/// procedure `TABLE_write(first, last)` committing one row per id.
pub fn create_numbered_table(db: &DevDb, table: &str) {
    db.psql(&format!(
        "create table public.{table} (id bigint primary key, at timestamptz default now());
         alter publication supabase_realtime add table public.{table};
         create procedure public.{table}_write(first bigint, last bigint) language plpgsql as $$
         begin
           for i in first..last loop
             insert into public.{table} (id) values (i);
             commit;
             perform pg_sleep(0.004);
           end loop;
         end $$;"
    ));
}

/// Drops what [`create_numbered_table`] made.
pub fn drop_numbered_table(db: &DevDb, table: &str) {
    db.psql(&format!(
        "alter publication supabase_realtime drop table public.{table};
         drop table public.{table}; drop procedure public.{table}_write;"
    ));
}

/// A writer committing rows `1..=total` of `table` one transaction each,
/// riding out database restarts: after an error it resumes after the
/// highest committed id. Joining returns once all are committed.
pub fn spawn_writer(db: &DevDb, table: &str, total: i64) -> (JoinHandle<()>, Arc<AtomicBool>) {
    let db = db.clone();
    let table = table.to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let h = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "writer did not finish");
            let next = match db.try_psql(&format!(
                "select coalesce(max(id), 0) + 1 from public.{table}"
            )) {
                Ok(n) => n.parse::<i64>().unwrap(),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if next > total {
                break;
            }
            let _ = db.try_psql(&format!("call public.{table}_write({next}, {total})"));
        }
        flag.store(true, Ordering::SeqCst);
    });
    (h, done)
}

/// What a subscriber saw of one table.
#[derive(Debug, Default)]
pub struct Seen {
    /// INSERTed ids in arrival order, duplicates included.
    pub inserts: Vec<i64>,
    /// `system` messages (status, message).
    pub system: Vec<(String, String)>,
}

impl Seen {
    pub fn distinct(&self) -> BTreeSet<i64> {
        self.inserts.iter().copied().collect()
    }

    pub fn duplicates(&self) -> usize {
        self.inserts.len() - self.distinct().len()
    }

    /// Reads `ws` until `stop(self)` holds, the socket ends (false) or
    /// `deadline` passes (false).
    pub fn read(
        &mut self,
        ws: &mut Ws,
        table: &str,
        deadline: Instant,
        mut stop: impl FnMut(&Seen) -> bool,
    ) -> bool {
        while !stop(self) {
            if Instant::now() > deadline {
                return false;
            }
            match ws.recv_for(200) {
                Recv::Frame(Frame::Text(t)) => {
                    let m: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if m[3] == "system" {
                        self.system.push((
                            m[4]["status"].as_str().unwrap_or("").into(),
                            m[4]["message"].as_str().unwrap_or("").into(),
                        ));
                    } else if m[3] == "postgres_changes"
                        && m[4]["data"]["table"] == table
                        && m[4]["data"]["type"] == "INSERT"
                    {
                        self.inserts
                            .push(m[4]["data"]["record"]["id"].as_i64().unwrap());
                    }
                }
                Recv::Frame(Frame::Close(_)) | Recv::Eof => return false,
                Recv::Frame(_) | Recv::Timeout => {}
            }
        }
        true
    }
}

/// Connects, joins `realtime:TOPIC` with an INSERT binding on `table`, and
/// waits for `Subscribed to PostgreSQL`.
pub fn subscribe(port: u16, topic: &str, table: &str, seen: &mut Seen) -> Ws {
    let mut ws = Ws::connect(port, "2.0.0", &super::token("anon", 3600));
    let binding = serde_json::json!({"event": "INSERT", "schema": "public", "table": table});
    let reply = ws.join_v2(
        "1",
        &format!("realtime:{topic}"),
        serde_json::json!({"postgres_changes": [binding]}),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let ok = seen.read(
        &mut ws,
        table,
        Instant::now() + Duration::from_secs(30),
        |s| {
            s.system
                .last()
                .is_some_and(|(_, m)| m == "Subscribed to PostgreSQL")
        },
    );
    assert!(ok, "no `Subscribed to PostgreSQL`: {:?}", seen.system);
    ws
}

/// A socket of `user` (role `authenticated`, claim `sub`) joined to
/// `topic` with one INSERT binding on `table`, once its subscription is
/// ready (`Subscribed to PostgreSQL`).
pub fn subscribed_as(port: u16, user: &str, table: &str, topic: &str) -> Ws {
    let claims = serde_json::json!({"role": "authenticated", "sub": user});
    let mut ws = Ws::connect(port, "2.0.0", &super::token_with(claims, 3600));
    let binding = serde_json::json!([{"event": "INSERT", "schema": "public", "table": table}]);
    let reply = ws.join_v2(
        "1",
        topic,
        serde_json::json!({ "postgres_changes": binding }),
    );
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    loop {
        let m = ws.recv_json();
        if m[3] == "system" {
            assert_eq!(m[4]["message"], "Subscribed to PostgreSQL", "{m}");
            return ws;
        }
    }
}

// Free functions over a database URL, for tests that need no private
// cluster.

/// URL of the running development database, starting it if needed.
pub fn dev_db_url() -> String {
    std::env::var("DEV_DB_URL").unwrap_or_else(|_| {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"))
            .arg("start")
            .output()
            .expect("run scripts/dev-db");
        assert!(
            out.status.success(),
            "dev-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned()
    })
}

/// Runs `sql`; panics on error. Returns the unaligned, tuples-only output
/// (`|`-separated columns, one row a line).
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new(psql_bin())
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (host, port, password) of a postgres:// URL.
pub fn parts(url: &str) -> (String, String, String) {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (cred, hostdb) = rest.split_once('@').unwrap();
    let (_, pw) = cred.split_once(':').unwrap();
    let (hp, _) = hostdb.split_once('/').unwrap();
    let (h, p) = hp.rsplit_once(':').unwrap();
    (h.into(), p.into(), pw.into())
}

/// Server environment for the database at `url`, with its own slot.
pub fn server_env(url: &str, slot_suffix: &str) -> Vec<(String, String)> {
    let (host, port, pw) = parts(url);
    vec![
        ("DB_HOST".into(), host),
        ("DB_PORT".into(), port),
        ("DB_NAME".into(), "postgres".into()),
        ("DB_USER".into(), "postgres".into()),
        ("DB_PASSWORD".into(), pw),
        ("SLOT_NAME_SUFFIX".into(), slot_suffix.into()),
    ]
}

/// Drops the slot a server with `slot_suffix` created.
pub fn drop_slot(url: &str, slot_suffix: &str) {
    psql(
        url,
        &format!(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where slot_name in ('supabase_realtime_replication_slot{slot_suffix}', \
             'realtime_messages_slot{slot_suffix}') and not active"
        ),
    );
}
