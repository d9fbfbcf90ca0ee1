//! Statements with bound parameters (the extended query protocol) against
//! the project's dev database: hostile text stays data, NULLs travel as
//! NULL, a failed statement leaves the connection usable, and bound
//! statements run inside an explicit transaction.

mod support;

use std::time::Duration;

use support::pg::{dev_db_url, parts};

use realtime::server::pgconn::{PgConfig, PgConn, PgError};

fn config() -> PgConfig {
    let (host, port, password) = parts(&dev_db_url());
    PgConfig {
        host,
        port: port.parse().unwrap(),
        dbname: "postgres".into(),
        user: "postgres".into(),
        password,
        replication: false,
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

const HOSTILE: &[&str] = &[
    "it's",
    "'); drop table x; --",
    "back\\slash \\' \\\\",
    "$1 $$ $tag$ E'\\x00'",
    "\"quoted\" ident",
    "multi-byte: \u{e9}\u{4e2d}\u{1f600} \u{202e}rtl",
    "",
    "line\nbreak\ttab\r",
];

#[test]
fn hostile_text_round_trips_as_data() {
    run(|| async {
        let mut c = PgConn::connect(&config()).await.unwrap();
        c.simple_query("create temp table x (v text); create temp table t (id int, v text)")
            .await
            .unwrap();
        for (i, v) in HOSTILE.iter().enumerate() {
            let id = i.to_string();
            let r = c
                .query(
                    "insert into t (id, v) values ($1::int, $2) returning v, length($2)",
                    &[Some(&id), Some(v)],
                )
                .await
                .unwrap();
            assert_eq!(r.tag, "INSERT 0 1");
            assert_eq!(r.columns, ["v", "length"]);
            assert_eq!(r.rows[0][0].as_deref(), Some(*v));
            assert_eq!(
                r.rows[0][1].as_deref(),
                Some(v.chars().count().to_string().as_str())
            );
        }
        // Stored as given, and the table named in a value still exists.
        for (i, v) in HOSTILE.iter().enumerate() {
            let id = i.to_string();
            let r = c
                .query("select v from t where id = $1::int", &[Some(&id)])
                .await
                .unwrap();
            assert_eq!(r.rows, vec![vec![Some(v.to_string())]]);
        }
        let r = c.query("select count(*) from x", &[]).await.unwrap();
        assert_eq!(r.rows, vec![vec![Some("0".to_owned())]]);
        c.terminate().await;
    });
}

#[test]
fn nulls_bind_and_come_back_as_none() {
    run(|| async {
        let mut c = PgConn::connect(&config()).await.unwrap();
        let r = c
            .query(
                "select $1::text is null, $2::int, $3::text, null::jsonb as j",
                &[None, None, Some("x")],
            )
            .await
            .unwrap();
        assert_eq!(r.columns, ["?column?", "int4", "text", "j"]);
        assert_eq!(
            r.rows,
            vec![vec![Some("t".to_owned()), None, Some("x".to_owned()), None]]
        );
        // A statement without a result set: no columns, a tag.
        let r = c
            .query("set application_name = 'bound'", &[])
            .await
            .unwrap();
        assert_eq!((r.columns.len(), r.tag.as_str()), (0, "SET"));
        c.terminate().await;
    });
}

#[test]
fn a_nul_byte_is_refused_before_sending_and_the_connection_stays_usable() {
    run(|| async {
        let mut c = PgConn::connect(&config()).await.unwrap();
        let e = c
            .query("select $1::text", &[Some("a\0b")])
            .await
            .unwrap_err();
        assert!(matches!(e, PgError::Param(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot send: parameter $1 contains a NUL byte, which Postgres text cannot hold"
        );
        let r = c.query("select $1::text", &[Some("ab")]).await.unwrap();
        assert_eq!(r.rows[0][0].as_deref(), Some("ab"));
        c.terminate().await;
    });
}

#[test]
fn a_failing_statement_then_a_good_one_on_the_same_connection() {
    run(|| async {
        let mut c = PgConn::connect(&config()).await.unwrap();
        let e = c
            .query("select * from no_such_table where a = $1", &[Some("1")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("42P01"), "{e}");
        // An error at execution (after Parse and Bind succeeded).
        let e = c
            .query("select 1 / $1::int", &[Some("0")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("22012"), "{e}");
        // A value that is not of the parameter's type.
        let e = c
            .query("select $1::int", &[Some("1; select 2")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("22P02"), "{e}");
        let r = c
            .query("select $1::int + 1 as n", &[Some("41")])
            .await
            .unwrap();
        assert_eq!(r.rows, vec![vec![Some("42".to_owned())]]);
        assert_eq!(r.tag, "SELECT 1");
        c.terminate().await;
    });
}

#[test]
fn bound_statements_inside_a_transaction() {
    run(|| async {
        let mut c = PgConn::connect(&config()).await.unwrap();
        c.simple_query("create temp table tx (k text primary key, n int)")
            .await
            .unwrap();
        c.simple_query("begin").await.unwrap();
        for (k, n) in [("a", "1"), ("b", "2")] {
            c.query("insert into tx values ($1, $2::int)", &[Some(k), Some(n)])
                .await
                .unwrap();
        }
        c.query("update tx set n = n + $1::int", &[Some("10")])
            .await
            .unwrap();
        c.simple_query("commit").await.unwrap();
        let r = c
            .query("select k, n from tx order by k", &[])
            .await
            .unwrap();
        assert_eq!(
            r.rows,
            vec![
                vec![Some("a".to_owned()), Some("11".to_owned())],
                vec![Some("b".to_owned()), Some("12".to_owned())],
            ]
        );
        // A failed statement aborts the transaction; ROLLBACK undoes the rest.
        c.simple_query("begin").await.unwrap();
        c.query("insert into tx values ($1, 3)", &[Some("c")])
            .await
            .unwrap();
        let e = c
            .query("insert into tx values ($1, 4)", &[Some("a")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("23505"), "{e}");
        let e = c.query("select 1", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some("25P02"), "{e}");
        c.simple_query("rollback").await.unwrap();
        let r = c.query("select count(*) from tx", &[]).await.unwrap();
        assert_eq!(r.rows, vec![vec![Some("2".to_owned())]]);
        c.terminate().await;
    });
}

#[test]
fn a_statement_past_the_deadline_times_out_and_abandons_the_connection() {
    run(|| async {
        let mut cfg = config();
        cfg.timeout = Duration::from_millis(300);
        let mut c = PgConn::connect(&cfg).await.unwrap();
        let t0 = std::time::Instant::now();
        let e = c
            .query("select pg_sleep($1::float8)", &[Some("5")])
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "timeout: no answer to query within 300 ms");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // The late reply would be read as the next statement's: refused.
        let e = c.query("select 1", &[]).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeout: connection abandoned after an earlier timeout"
        );
    });
}
