//! TLS to the tenant database (`DB_SSL_MODE`): `require` streams changes
//! over TLS end to end; `verify-full` accepts the dev cluster's CA and
//! refuses a certificate it cannot chain; `require` against a server that
//! answers `N` to SSLRequest fails with a clear error, while `prefer` goes on
//! in plain text.

mod support;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use realtime::server::pgconn::{PgConfig, PgConn, PgError};
use realtime::server::tls::{DbTls, SslMode};
use support::pg::*;
use support::*;

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn config(db: &DevDb, tls: DbTls) -> PgConfig {
    PgConfig {
        host: db.host.clone(),
        port: db.port.parse().unwrap(),
        dbname: "postgres".into(),
        user: "postgres".into(),
        password: db.password.clone(),
        replication: false,
        application_name: "realtime-tls-test".into(),
        timeout: Duration::from_secs(5),
        tls,
    }
}

/// The CA of the dev cluster started by scripts/dev-db (absent when the
/// tests run against an outside DEV_DB_URL).
fn dev_ca() -> Option<String> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pg/tls/ca.crt");
    (std::env::var("DEV_DB_URL").is_err() && std::path::Path::new(p).exists()).then(|| p.into())
}

#[test]
fn require_streams_a_change_over_tls() {
    let db = DevDb::shared();
    let table = format!("tls_e2e_{}", std::process::id());
    let suffix = format!("_tls{}", std::process::id());
    let slot = format!("supabase_realtime_replication_slot{suffix}");
    create_numbered_table(&db, &table);
    let mut env = db.server_env(&suffix);
    env.push(("DB_SSL_MODE".into(), "require".into()));
    let mut srv = Server::start_env(&env);
    let mut seen = Seen::default();
    let mut ws = subscribe(srv.port, "tls", &table, &mut seen);
    db.psql(&format!("insert into public.{table} (id) values (7)"));
    let deadline = Instant::now() + Duration::from_secs(20);
    assert!(seen.read(&mut ws, &table, deadline, |s| !s.inserts.is_empty()));
    assert_eq!(seen.inserts, [7]);
    // The walsender serving our slot sits on an encrypted connection.
    let ssl = db.psql(&format!(
        "select s.ssl from pg_replication_slots r join pg_stat_ssl s on s.pid = r.active_pid \
         where r.slot_name = '{slot}'"
    ));
    assert_eq!(ssl, "t");
    srv.stop();
    db.drop_slot(&slot);
    drop_numbered_table(&db, &table);
}

#[test]
fn verify_full_accepts_the_dev_ca_and_refuses_unknown_roots() {
    let db = DevDb::shared();
    let Some(ca) = dev_ca() else {
        eprintln!("skipped: no dev-db CA (DEV_DB_URL points elsewhere)");
        return;
    };
    let trusted = config(
        &db,
        DbTls {
            mode: SslMode::VerifyFull,
            root_cert: Some(ca),
        },
    );
    let webpki_only = config(
        &db,
        DbTls {
            mode: SslMode::VerifyFull,
            root_cert: None,
        },
    );
    run(move || async move {
        let mut c = PgConn::connect(&trusted)
            .await
            .expect("verify-full with the dev CA");
        assert!(c.is_tls());
        let r = c
            .simple_query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .await
            .unwrap();
        assert_eq!(r[0].rows[0][0].as_deref(), Some("t"));
        let e = PgConn::connect(&webpki_only)
            .await
            .err()
            .expect("unknown CA");
        assert!(matches!(e, PgError::Tls(_)), "{e}");
        assert!(e.to_string().contains("handshake"), "{e}");
    });
}

/// A fake database that answers `N` to SSLRequest and records what came
/// next; returns its port.
fn refuses_tls() -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).unwrap();
        assert_eq!(req, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "SSLRequest");
        s.write_all(b"N").unwrap();
        let mut next = vec![0u8; 512];
        let n = s.read(&mut next).unwrap_or(0);
        next.truncate(n);
        next
    });
    (port, h)
}

/// A fake database that answers `S` to SSLRequest and then closes (a broken
/// TLS setup), and records what a second connection sends first.
fn breaks_tls() -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).unwrap();
        s.write_all(b"S").unwrap();
        drop(s);
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut first = vec![0u8; 512];
        let n = s.read(&mut first).unwrap_or(0);
        first.truncate(n);
        first
    });
    (port, h)
}

#[test]
fn prefer_falls_back_to_plain_when_the_handshake_fails() {
    let (port, fake) = breaks_tls();
    let cfg = PgConfig {
        host: "127.0.0.1".into(),
        port,
        dbname: "postgres".into(),
        user: "postgres".into(),
        password: "x".into(),
        replication: false,
        application_name: "t".into(),
        timeout: Duration::from_secs(5),
        tls: DbTls {
            mode: SslMode::Prefer,
            root_cert: None,
        },
    };
    run(move || async move {
        let e = PgConn::connect(&cfg).await.err().expect("fake closes");
        assert!(!matches!(e, PgError::Tls(_)), "{e}");
    });
    let first = fake.join().unwrap();
    assert!(
        first.len() > 8 && first[4..8] == [0, 3, 0, 0],
        "the second connection starts in plain text: {first:?}"
    );
}

#[test]
fn require_fails_clearly_when_the_server_refuses_tls_and_prefer_goes_plain() {
    let (port, fake) = refuses_tls();
    let mut cfg = PgConfig {
        host: "127.0.0.1".into(),
        port,
        dbname: "postgres".into(),
        user: "postgres".into(),
        password: "x".into(),
        replication: false,
        application_name: "t".into(),
        timeout: Duration::from_secs(5),
        tls: DbTls {
            mode: SslMode::Require,
            root_cert: None,
        },
    };
    let require = cfg.clone();
    run(move || async move {
        let e = PgConn::connect(&require).await.err().expect("refused");
        assert!(matches!(e, PgError::Tls(_)), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("does not accept TLS") && text.contains("DB_SSL_MODE=require"),
            "{text}"
        );
    });
    assert!(
        fake.join().unwrap().is_empty(),
        "nothing is sent in the clear"
    );

    let (port, fake) = refuses_tls();
    cfg.port = port;
    cfg.tls.mode = SslMode::Prefer;
    run(move || async move {
        // The fake closes after the startup message: an i/o error, not TLS.
        let e = PgConn::connect(&cfg).await.err().expect("fake closes");
        assert!(!matches!(e, PgError::Tls(_)), "{e}");
    });
    let startup = fake.join().unwrap();
    assert!(
        startup.len() > 8 && startup[4..8] == [0, 3, 0, 0],
        "prefer sends the startup message in plain text: {startup:?}"
    );
}
