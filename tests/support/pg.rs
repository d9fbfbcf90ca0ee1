//! The project's development database for integration tests: started by
//! `scripts/dev-db` (or taken from `DEV_DB_URL`), driven with `psql`.

#![allow(dead_code)]

use std::process::Command;

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

fn psql_bin() -> String {
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map(|o| format!("{}/psql", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/psql".into())
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
             where slot_name = 'supabase_realtime_replication_slot{slot_suffix}' and not active"
        ),
    );
}
