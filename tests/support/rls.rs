//! Test support for private channels: a database of its own on the dev
//! cluster with the minimal tenant schema their RLS checks need, and a
//! server whose tenant database it is.

use serde_json::{json, Value};

use super::pg::{dev_db_url, parts, psql};
use super::{token_with, Recv, Server, Ws};

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
        Self::start_with(tag, setup, &[])
    }

    /// [`TenantDb::start`] with more environment for the server.
    pub fn start_with(tag: &str, setup: &str, extra: &[(&str, &str)]) -> TenantDb {
        let db = SchemaDb::create(tag, true, setup);
        let env: Vec<(String, String)> = db
            .server_env()
            .into_iter()
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let srv = Server::start_env(&env);
        TenantDb { srv, db }
    }

    /// Runs `sql` in the test's database.
    pub fn sql(&self, sql: &str) -> String {
        self.db.sql(sql)
    }
}

/// A socket of an `authenticated` user whose `sub` is `sub`.
pub fn authed(port: u16, sub: &str) -> Ws {
    let claims = json!({"role": "authenticated", "sub": sub});
    Ws::connect(port, "2.0.0", &token_with(claims, 3600))
}

/// Joins `realtime:<name>` privately with `config` merged in; the reply.
pub fn join_private(ws: &mut Ws, jr: &str, name: &str, mut config: Value) -> Value {
    config["private"] = json!(true);
    ws.join_v2(jr, &format!("realtime:{name}"), config)
}

/// A join reply that says ok.
pub fn assert_ok(reply: &Value) {
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "ok", "{reply}");
}

/// A join reply refusing with `reason`.
pub fn assert_refused(reply: &Value, reason: &str) {
    assert_eq!(reply[3], "phx_reply", "{reply}");
    assert_eq!(reply[4]["status"], "error", "{reply}");
    assert_eq!(reply[4]["response"]["reason"], reason, "{reply}");
}

/// Nothing arrives within `ms`.
pub fn assert_quiet(ws: &mut Ws, ms: u64) {
    match ws.recv_for(ms) {
        Recv::Timeout => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

impl TenantDb {
    /// Detaches today's `realtime.messages` partition (checks then fail
    /// with a missing partition).
    pub fn detach_today(&self) {
        self.sql(&format!(
            "alter table realtime.messages detach partition {}",
            todays_partition()
        ));
    }

    /// Attaches today's partition back.
    pub fn attach_today(&self) {
        self.sql(&format!(
            "alter table realtime.messages attach partition {} \
             for values from ((now() at time zone 'utc')::date) to ((now() at time zone 'utc')::date + 1)",
            todays_partition()
        ));
    }

    /// `realtime.messages` is still there and holds nothing: every check
    /// was rolled back, no client value ran as SQL.
    pub fn assert_messages_untouched(&self) {
        assert_eq!(
            self.sql("select to_regclass('realtime.messages') is not null"),
            "t\n",
            "the table is still there"
        );
        assert_eq!(
            self.sql("select count(*) from realtime.messages"),
            "0\n",
            "the checks were rolled back"
        );
    }
}

/// `realtime.fail(kind)` for failing policies: raises `query_canceled`
/// for `'cancel'`, a plain error otherwise. Put before the policies.
pub const FAIL_FUNCTION: &str = "
  create function realtime.fail(kind text) returns boolean language plpgsql volatile as $$
  begin
    if kind = 'cancel' then
      raise exception 'canceling statement due to statement timeout' using errcode = 'query_canceled';
    end if;
    raise exception 'policy exploded';
  end $$;
";

/// The refusal of a private join without read.
pub fn unauthorized(name: &str) -> String {
    format!("Unauthorized: You do not have permissions to read from this Channel topic: {name}")
}
