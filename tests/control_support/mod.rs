//! A database of its own per test on the dev cluster (`ctl_<pid>_<n>`,
//! dropped when the test ends), so tests running in parallel, and servers
//! using the cluster, never see each other's control schema.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use realtime::server::pgconn::PgConfig;

use crate::support::pg::{psql_bin, DevDb};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty database.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// The cluster, connected to this database (`psql` runs here).
    pub db: DevDb,
    admin: DevDb,
}

impl TestDb {
    pub fn new() -> TestDb {
        let admin = DevDb::shared();
        let name = format!(
            "ctl_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        admin.psql(&format!("drop database if exists {name} with (force)"));
        admin.psql(&format!("create database {name}"));
        let mut db = admin.clone();
        let base = db.url.rsplit_once('/').unwrap().0.to_owned();
        db.url = format!("{base}/{name}");
        TestDb { name, db, admin }
    }

    /// Connection settings for the server's own client.
    pub fn config(&self) -> PgConfig {
        PgConfig {
            host: self.db.host.clone(),
            port: self.db.port.parse().unwrap(),
            dbname: self.name.clone(),
            user: "postgres".into(),
            password: self.db.password.clone(),
            replication: false,
            application_name: "realtime-test".into(),
            timeout: Duration::from_secs(10),
            tls: Default::default(),
        }
    }

    pub fn psql(&self, sql: &str) -> String {
        self.db.psql(sql)
    }

    /// Runs an SQL file of `tests/fixtures` in one transaction.
    pub fn load(&self, fixture: &str) {
        let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        self.load_sql(&std::fs::read_to_string(&path).expect(&path), fixture);
    }

    /// Runs `sql` (any number of statements) in one transaction; `what`
    /// names it in a failure.
    pub fn load_sql(&self, sql: &str, what: &str) {
        use std::io::Write;
        let mut child = Command::new(psql_bin())
            .args([&self.db.url, "-v", "ON_ERROR_STOP=1", "-q", "-1", "-f", "-"])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().expect("psql");
        assert!(
            out.status.success(),
            "load {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `_realtime` schema's shape: relations, columns in order with
    /// type, default and nullability, indexes and constraints; one sorted
    /// line each.
    pub fn catalog(&self) -> String {
        self.psql(CATALOG)
    }

    /// Every row of the control tables, as text.
    pub fn data(&self) -> String {
        self.psql(
            "select 'tenant ' || t::text from _realtime.tenants t
             union all select 'extension ' || e::text from _realtime.extensions e
             union all select 'flag ' || f::text from _realtime.feature_flags f
             union all select 'version ' || m::text from _realtime.schema_migrations m
             order by 1",
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.admin.try_psql(&format!(
            "drop database if exists {} with (force)",
            self.name
        ));
    }
}

const CATALOG: &str = "
with cols as (
    select format('column %s %s %s %s default=%s notnull=%s',
        c.relname,
        lpad((row_number() over (partition by c.oid order by a.attnum))::text, 2, '0'),
        a.attname,
        format_type(a.atttypid, a.atttypmod),
        coalesce(pg_get_expr(d.adbin, d.adrelid), '-'),
        a.attnotnull) as l
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
    where n.nspname = '_realtime' and c.relkind = 'r'
)
select l from cols
union all
select format('relation %s %s', c.relname, c.relkind)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = '_realtime'
union all
select format('index %s', indexdef) from pg_indexes where schemaname = '_realtime'
union all
select format('constraint %s %s %s %s', c.relname, k.conname, k.contype,
        pg_get_constraintdef(k.oid))
    from pg_constraint k
    join pg_class c on c.oid = k.conrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = '_realtime'
order by 1";

/// Runs `f` on a glommio executor of its own and returns its output.
pub fn run<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}
