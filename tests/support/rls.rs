//! Test support for private channels: a database of its own on the dev
//! cluster with the minimal tenant schema their RLS checks need, and a
//! server whose tenant database it is.

use super::pg::{dev_db_url, parts, psql};
use super::Server;

/// Lays down the part of the tenant schema private channels read: the
/// Supabase API roles (if the cluster lacks them), `realtime.messages`
/// partitioned by range on `inserted_at` with a partition around today
/// (`realtime.messages_today`, yesterday to tomorrow in UTC, so a run
/// across midnight still finds one), row level security on, the API
/// roles' grants, and `realtime.topic()`. The full tenant migrations
/// (another branch) will replace this function; nothing else here knows
/// the schema.
pub fn install_messages_schema(url: &str) {
    psql(
        url,
        "do $$ begin
           if not exists (select from pg_roles where rolname = 'anon') then
             create role anon nologin noinherit; end if;
           if not exists (select from pg_roles where rolname = 'authenticated') then
             create role authenticated nologin noinherit; end if;
           if not exists (select from pg_roles where rolname = 'service_role') then
             create role service_role nologin noinherit bypassrls; end if;
         end $$;
         create schema if not exists realtime;
         grant usage on schema realtime to anon, authenticated, service_role;
         create table realtime.messages (
           topic text not null,
           extension text not null,
           payload jsonb,
           event text,
           private boolean default false,
           updated_at timestamp not null default now(),
           inserted_at timestamp not null default now(),
           id uuid not null default gen_random_uuid(),
           primary key (id, inserted_at)
         ) partition by range (inserted_at);
         do $$ begin
           execute format(
             'create table realtime.messages_today partition of realtime.messages
              for values from (%L) to (%L)',
             (now() at time zone 'utc')::date - 1, (now() at time zone 'utc')::date + 2);
         end $$;
         alter table realtime.messages enable row level security;
         grant select, insert, update on realtime.messages to anon, authenticated, service_role;
         create function realtime.topic() returns text language sql stable as
           $$ select nullif(current_setting('realtime.topic', true), '')::text $$;",
    );
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
}

impl Drop for SchemaDb {
    fn drop(&mut self) {
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
        let (host, port, pw) = parts(&db.admin);
        let env = vec![
            ("DB_HOST".to_owned(), host),
            ("DB_PORT".to_owned(), port),
            ("DB_NAME".to_owned(), db.name.clone()),
            ("DB_USER".to_owned(), "postgres".to_owned()),
            ("DB_PASSWORD".to_owned(), pw),
            ("SLOT_NAME_SUFFIX".to_owned(), format!("_{}", db.name)),
        ];
        let srv = Server::start_env(&env);
        TenantDb { srv, db }
    }

    /// Runs `sql` in the test's database.
    pub fn sql(&self, sql: &str) -> String {
        self.db.sql(sql)
    }
}
