//! Test support for private channels: a database of its own on the dev
//! cluster with the minimal tenant schema their RLS checks need, and a
//! server whose tenant database it is.

use super::pg::{dev_db_url, parts, psql};
use super::Server;

/// The Supabase roles a tenant database has (cluster-wide, so created
/// once and kept; one test at a time creates them), and the role the
/// `realtime` schema's objects belong to.
pub fn supabase_roles(url: &str) {
    psql(
        url,
        &format!(
            "select pg_advisory_lock(7273001);
             do $r$
             declare r text[];
             begin
                 -- As a Supabase database has them: the API roles without
                 -- login, service_role past row level security.
                 foreach r slice 1 in array array[
                     ['anon', 'nologin noinherit'],
                     ['authenticated', 'nologin noinherit'],
                     ['service_role', 'nologin noinherit bypassrls'],
                     ['supabase_admin', 'nologin'],
                     ['dashboard_user', 'nologin']] loop
                     if not exists (select from pg_roles where rolname = r[1]) then
                         execute format('create role %I %s', r[1], r[2]);
                     end if;
                 end loop;
             end
             $r$;
             {}
             select pg_advisory_unlock(7273001);",
            include_str!("../../src/server/tenant_db/sql/roles.sql")
        ),
    );
}

/// The tenant schema as the server installs it: the Supabase roles, the
/// `realtime` migrations and the daily `realtime.messages` partitions
/// (yesterday to today + 3), run the way the server runs them on a
/// tenant's activation, before the test's server starts.
pub fn install_messages_schema(url: &str) {
    supabase_roles(url);
    let (host, port, password) = parts(url);
    let dbname = url.rsplit_once('/').unwrap().1.to_owned();
    let cfg = realtime::server::pgconn::PgConfig {
        host,
        port: port.parse().unwrap(),
        dbname,
        user: "postgres".into(),
        password,
        replication: false,
        application_name: "realtime-test".into(),
        timeout: std::time::Duration::from_secs(10),
        tls: Default::default(),
    };
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            use realtime::server::tenant_db;
            tenant_db::migrate(&cfg).await.expect("tenant migrations");
            tenant_db::maintain_once(&cfg).await.expect("partitions");
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Today's `realtime.messages` partition (UTC), as the server names it.
pub fn todays_partition() -> String {
    let now = realtime::server::shard::now_unix();
    format!(
        "realtime.{}",
        realtime::server::tenant_db::partitions::Day::of_unix(now).partition()
    )
}

/// A database of the dev cluster made for one test (dropped with it),
/// holding [`install_messages_schema`] and the test's policies.
pub struct SchemaDb {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// The cluster's `postgres` database, to create and drop it.
    admin: String,
}

impl SchemaDb {
    /// Creates database `rls_<tag>_<pid>` with [`install_messages_schema`]
    /// (unless `schema` is false) and `setup` (policies).
    pub fn create(tag: &str, schema: bool, setup: &str) -> SchemaDb {
        let admin = dev_db_url();
        let name = format!("rls_{tag}_{}", std::process::id());
        psql(
            &admin,
            &format!("drop database if exists {name} with (force)"),
        );
        psql(&admin, &format!("create database {name}"));
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        if schema {
            install_messages_schema(&url);
        }
        if !setup.is_empty() {
            psql(&url, setup);
        }
        SchemaDb { url, name, admin }
    }

    /// Runs `sql` in it.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }

    /// Environment for a server whose (environment) tenant database it
    /// is, with a slot suffix of its own.
    pub fn server_env(&self) -> Vec<(String, String)> {
        let (host, port, pw) = parts(&self.admin);
        vec![
            ("DB_HOST".to_owned(), host),
            ("DB_PORT".to_owned(), port),
            ("DB_NAME".to_owned(), self.name.clone()),
            ("DB_USER".to_owned(), "postgres".to_owned()),
            ("DB_PASSWORD".to_owned(), pw),
            ("SLOT_NAME_SUFFIX".to_owned(), format!("_{}", self.name)),
        ]
    }
}

impl Drop for SchemaDb {
    fn drop(&mut self) {
        // Its permanent slots (the messages stream's) would refuse the
        // drop; a walsender lets go of one a moment after its server stops.
        for _ in 0..50 {
            let left = std::process::Command::new(super::pg::psql_bin())
                .args([
                    &self.admin,
                    "-qAt",
                    "-c",
                    &format!(
                        "select count(pg_drop_replication_slot(slot_name) is null) filter (where not active), \
                         count(*) filter (where active) from pg_replication_slots where database = '{}'",
                        self.name
                    ),
                ])
                .output();
            match left {
                Ok(o) if String::from_utf8_lossy(&o.stdout).trim().ends_with("|0") => break,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                Err(_) => break,
            }
        }
        let _ = std::process::Command::new(super::pg::psql_bin())
            .args([
                &self.admin,
                "-qAt",
                "-c",
                &format!("drop database if exists {} with (force)", self.name),
            ])
            .output();
    }
}

/// A [`SchemaDb`] and a server whose (environment) tenant database it is.
pub struct TenantDb {
    /// The server (declared first: stopped before the database drops).
    pub srv: Server,
    /// The database.
    pub db: SchemaDb,
}

impl TenantDb {
    /// Creates the database with `setup`, then starts a server on it.
    pub fn start(tag: &str, setup: &str) -> TenantDb {
        let db = SchemaDb::create(tag, true, setup);
        let srv = Server::start_env(&db.server_env());
        TenantDb { srv, db }
    }

    /// Runs `sql` in the test's database.
    pub fn sql(&self, sql: &str) -> String {
        self.db.sql(sql)
    }
}
