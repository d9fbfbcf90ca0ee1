//! Tenants from the config file's `[[tenants]]` tables, without a control
//! database: each is picked by its Host and takes only its own secret, two
//! of them never hear each other, a limit from the file applies, an
//! unknown Host is refused as the Elixir server refuses it, a tenant with
//! a database streams Postgres Changes, and a bad table stops the server
//! at start with a message naming the file, the table and the key.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::control::{client_token, connect, next_event, send_event};
use support::pg::{dev_db_url, parts, psql, psql_bin};
use support::*;

const SECRET_A: &str = "file-tenant-a-secret-of-32-bytes-x";
const SECRET_B: &str = "file-tenant-b-secret-of-32-bytes-x";

/// A config file of this test process's own, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(tag: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "realtime-file-tenants-{}-{tag}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn two_tenants() -> String {
    format!(
        r#"
[[tenants]]
external_id = "filea"
jwt_secret = "{SECRET_A}"
max_channels_per_client = 1

[[tenants]]
external_id = "fileb"
jwt_secret = "{SECRET_B}"
"#
    )
}

fn join(ws: &mut Ws, join_ref: &str, topic: &str) -> serde_json::Value {
    ws.join_v2(
        join_ref,
        topic,
        json!({"broadcast": {"self": false}, "presence": {"enabled": false}}),
    )
}

#[test]
fn file_tenants_are_picked_by_host_and_keep_their_secrets_limits_and_messages_apart() {
    let file = ConfigFile::new("two", &two_tenants());
    // One shard: both tenants live side by side on it, so nothing but
    // their being two tenants keeps them apart.
    let srv = Server::start_with_args(&["--config", file.path()], &[("SHARDS", "1")]);

    // Each tenant takes its own secret only; an unknown Host is no tenant.
    assert_eq!(connect(&srv, "filea", SECRET_B).err().unwrap().0, 401);
    assert_eq!(connect(&srv, "fileb", SECRET_A).err().unwrap().0, 401);
    assert_eq!(connect(&srv, "filea", SECRET).err().unwrap().0, 401);
    let (status, body) = connect(&srv, "filec", SECRET_A).err().expect("no tenant");
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"Tenant not found"}"#)
    );
    let auth = format!("Bearer {}", client_token(SECRET_A));
    let (status, _, body) = srv
        .try_http_host(
            "POST",
            "/api/broadcast",
            "filec.localhost",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            br#"{"messages":[]}"#,
        )
        .unwrap();
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (401, r#"{"message":"Tenant not found in database"}"#)
    );
    // The environment's tenant is still served on bare hosts.
    let mut home1 = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    let mut home2 = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    for ws in [&mut home1, &mut home2] {
        assert_eq!(join(ws, "1", "realtime:room")[4]["status"], "ok");
    }

    // One topic in two tenants: a message in one never reaches the other.
    // a's message is read on a before b sends, so b's reader must get b's
    // message first, and a's reader a's next one.
    let topic = "realtime:room";
    let mut a1 = connect(&srv, "filea", SECRET_A).unwrap();
    let mut a2 = connect(&srv, "filea", SECRET_A).unwrap();
    let mut b1 = connect(&srv, "fileb", SECRET_B).unwrap();
    let mut b2 = connect(&srv, "fileb", SECRET_B).unwrap();
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(join(ws, "1", topic)[4]["status"], "ok");
    }
    send_event(&mut a1, topic, "from-a");
    assert_eq!(next_event(&mut a2), "from-a");
    send_event(&mut b1, topic, "from-b");
    assert_eq!(next_event(&mut b2), "from-b");
    send_event(&mut a1, topic, "a-again");
    assert_eq!(next_event(&mut a2), "a-again");
    // The environment's tenant, on the same topic, heard neither: its
    // own message is the first it gets; and neither file tenant hears it.
    send_event(&mut home1, topic, "from-home");
    assert_eq!(next_event(&mut home2), "from-home");
    send_event(&mut a1, topic, "a-last");
    assert_eq!(next_event(&mut a2), "a-last");
    send_event(&mut b1, topic, "b-last");
    assert_eq!(next_event(&mut b2), "b-last");

    // filea allows one channel per client (from the file); fileb has the
    // server's default.
    assert_eq!(
        join(&mut a1, "2", "realtime:other"),
        json!(["2", "2", "realtime:other", "phx_reply", {"status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}}])
    );
    assert_eq!(join(&mut b1, "2", "realtime:other")[4]["status"], "ok");
}

/// A published table and the slot a test's tenant streams it through,
/// both removed when dropped, even after a failed assertion.
struct Published {
    url: String,
    table: String,
    slot: String,
}

impl Published {
    fn new(tag: &str) -> Self {
        let url = dev_db_url();
        let pid = std::process::id();
        let p = Self {
            table: format!("{tag}_pc_{pid}"),
            slot: format!("{tag}_slot_{pid}"),
            url,
        };
        psql(
            &p.url,
            &format!(
                "create table public.{t} (id int primary key, title text);
                 alter publication supabase_realtime add table public.{t};",
                t = p.table
            ),
        );
        p
    }
}

/// `psql` that never panics (a panic in `drop` while unwinding aborts).
fn psql_quiet(url: &str, sql: &str) -> String {
    Command::new(psql_bin())
        .args([url, "-qAt", "-c", sql])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Drop for Published {
    fn drop(&mut self) {
        psql_quiet(
            &self.url,
            &format!(
                "alter publication supabase_realtime drop table public.{t}; drop table public.{t};",
                t = self.table
            ),
        );
        // The server is gone; its walsender lets the slot go as soon as
        // it notices.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let drop_slot = format!(
            "select count(pg_drop_replication_slot(slot_name)) from pg_replication_slots \
             where slot_name = '{}' and not active",
            self.slot
        );
        let left = format!(
            "select count(*) from pg_replication_slots where slot_name = '{}'",
            self.slot
        );
        while psql_quiet(&self.url, &drop_slot).trim() == "0"
            && psql_quiet(&self.url, &left).trim() != "0"
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn a_file_tenant_with_a_database_streams_postgres_changes() {
    let db = Published::new("file_tenant");
    let (url, table, slot) = (&db.url, &db.table, &db.slot);
    let (host, port, pw) = parts(url);
    let file = ConfigFile::new(
        "pg",
        &format!(
            r#"
[[tenants]]
external_id = "filepg"
jwt_secret = "{SECRET_A}"
db_host = "{host}"
db_port = {port}
db_name = "postgres"
db_user = "postgres"
db_password = "{pw}"
slot_name = "{slot}"
ssl_enforced = false
"#
        ),
    );
    // No DB_HOST: the environment's tenant has no database, only the
    // file's tenant does.
    let mut srv = Server::start_with_args(&["--config", file.path()], &[]);
    let mut ws = connect(&srv, "filepg", SECRET_A).unwrap();
    let binding = json!({"event": "INSERT", "schema": "public", "table": table});
    let reply = ws.join_v2("1", "realtime:db", json!({"postgres_changes": [binding]}));
    assert_eq!(reply[4]["status"], "ok", "{reply}");
    let id = reply[4]["response"]["postgres_changes"][0]["id"].clone();
    let sys = ws.recv_json();
    assert_eq!(sys[4]["message"], "Subscribed to PostgreSQL", "{sys}");

    psql(
        url,
        &format!("insert into public.{table} (id, title) values (1, 'milk')"),
    );
    let m = loop {
        let m = ws.recv_json();
        if m[3] == "postgres_changes" && m[4]["data"]["table"] == table.as_str() {
            break m;
        }
        assert_ne!(m[3], "system", "{m}");
    };
    assert_eq!(m[4]["ids"], json!([id]));
    assert_eq!(m[4]["data"]["type"], "INSERT");
    assert_eq!(m[4]["data"]["record"], json!({"id": 1, "title": "milk"}));

    srv.stop();
}

/// Runs the binary with `args` and an empty environment: (status, stdout,
/// stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realtime"))
        .args(args)
        .env_clear()
        .output()
        .expect("run realtime");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_tenant_table_stops_the_server_and_check_prints_the_tenants_redacted() {
    let good = ConfigFile::new("check", &two_tenants());
    let (status, out, err) = run(&["--config", good.path(), "--check"]);
    assert_eq!(status, Some(0), "{err}");
    assert!(out.contains("[[tenants]]"), "{out}");
    assert!(out.contains(r#"external_id = "filea""#), "{out}");
    assert!(out.contains(r#"external_id = "fileb""#), "{out}");
    assert!(out.contains("max_channels_per_client = 1"), "{out}");
    assert!(
        !out.contains(SECRET_A) && !out.contains(SECRET_B),
        "secrets shown: {out}"
    );

    let bad = ConfigFile::new(
        "bad",
        &format!("{}max_chanels_per_client = 5\n", two_tenants()),
    );
    for extra in [&[][..], &["--check"][..]] {
        let args: Vec<&str> = ["--config", bad.path()]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let (status, _, err) = run(&args);
        assert_eq!(status, Some(2), "{err}");
        for part in [
            bad.path(),
            "[[tenants]] #2",
            "\"fileb\"",
            "`max_chanels_per_client`",
            "is unknown",
        ] {
            assert!(err.contains(part), "{part:?} missing: {err}");
        }
    }
}
