//! The server's own Postgres connection against the project's dev database:
//! SCRAM-SHA-256 login, simple queries with errors mapped to SQLSTATE, and a
//! logical replication stream whose XLogData decodes with the pgoutput codec.

mod support;

use std::time::Duration;

use support::pg::{dev_db_url, parts};

use realtime::proto::pg::pgoutput::{self, Message};
use realtime::proto::pg::replication::ReplicationMessage;
use realtime::server::pgconn::{CopyMsg, PgConfig, PgConn, PgError};

fn dev_db() -> (String, u16, String) {
    let (host, port, password) = parts(&dev_db_url());
    (host, port.parse().unwrap(), password)
}

fn config(replication: bool) -> PgConfig {
    let (host, port, password) = dev_db();
    PgConfig {
        host,
        port,
        dbname: "postgres".into(),
        user: "postgres".into(),
        password,
        replication,
        application_name: "realtime-test".into(),
        timeout: Duration::from_secs(5),
        tls: Default::default(),
    }
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn scram_login_queries_and_sqlstate_errors() {
    run(|| async {
        let mut c = PgConn::connect(&config(false)).await.expect("SCRAM login");
        assert_eq!(c.params.get("TimeZone").map(String::as_str), Some("UTC"));
        let r = c
            .simple_query("select 1 as one, null::text as nothing; select 'b'")
            .await
            .unwrap();
        assert_eq!(r[0].columns, ["one", "nothing"]);
        assert_eq!(r[0].rows, vec![vec![Some("1".to_owned()), None]]);
        assert_eq!(r[1].rows[0][0].as_deref(), Some("b"));
        let e = c
            .simple_query("select * from no_such_table")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("42P01"), "{e}");
        // The connection is usable after an error.
        assert_eq!(
            c.simple_query("select 2").await.unwrap()[0].rows[0][0].as_deref(),
            Some("2")
        );
        c.terminate().await;

        let mut bad = config(false);
        bad.password = "wrong".into();
        match PgConn::connect(&bad).await {
            Err(PgError::Db { code, .. }) => assert_eq!(code, "28P01"),
            other => panic!("expected invalid_password, got {:?}", other.err()),
        }
    });
}

#[test]
fn replication_stream_carries_decodable_pgoutput() {
    run(|| async {
        let mut sql = PgConn::connect(&config(false)).await.unwrap();
        sql.simple_query(
            "drop table if exists pgconn_stream; create table pgconn_stream (id int primary key, v text);
             drop publication if exists pgconn_pub; create publication pgconn_pub for table pgconn_stream",
        )
        .await
        .unwrap();
        let mut repl = PgConn::connect(&config(true)).await.unwrap();
        let ident = repl.simple_query("IDENTIFY_SYSTEM").await.unwrap();
        assert_eq!(ident[0].columns[0], "systemid");
        repl.simple_query(
            "CREATE_REPLICATION_SLOT pgconn_slot TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT",
        )
        .await
        .unwrap();
        repl.start_copy_both("START_REPLICATION SLOT pgconn_slot LOGICAL 0/0 (proto_version '1', publication_names 'pgconn_pub')")
            .await
            .unwrap();
        sql.simple_query("insert into pgconn_stream values (7, 'seven')")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !seen.iter().any(|m| matches!(m, Message::Commit(_))) {
            let CopyMsg::Data(d) = repl.recv_copy().await.unwrap() else {
                panic!("copy ended")
            };
            if let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(d).unwrap() {
                seen.push(pgoutput::decode(x.data).unwrap());
            }
        }
        let kinds: Vec<&str> = seen
            .iter()
            .map(|m| match m {
                Message::Begin(_) => "B",
                Message::Relation(_) => "R",
                Message::Insert(_) => "I",
                Message::Commit(_) => "C",
                _ => "?",
            })
            .collect();
        assert_eq!(kinds, ["B", "R", "I", "C"]);
        sql.simple_query("drop publication pgconn_pub; drop table pgconn_stream")
            .await
            .unwrap();
    });
}
