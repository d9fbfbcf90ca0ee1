//! The tenant database's `realtime` schema against the dev cluster, each
//! test in a database of its own (the Supabase roles, being cluster-wide,
//! are created once and kept): from nothing (then nothing again), over a
//! database the Elixir server migrated fully (nothing to do) or to
//! 20260626120000 (the last three steps, ending where a fresh one does),
//! an older partial one refused, missing roles named, the objects at work,
//! the partitions kept, and the admin API's creation migrating the
//! tenant's database.

mod control_support;
mod support;

use control_support::{run, TestDb};
use realtime::server::migrator::{self, MigrateError, Migrated};
use realtime::server::pgconn::{PgConfig, PgConn};
use realtime::server::shard::now_unix;
use realtime::server::tenant_db::{self, migrations, partitions};
use serde_json::json;
use support::control::{admin, ControlDb};
use support::pg::parts;
use support::Server;

/// The API roles of a Supabase database and `supabase_realtime_admin` as
/// the schema makes it (shared with the private channel tests).
fn supabase_roles(db: &TestDb) {
    support::rls::supabase_roles(&db.db.url);
}

fn new_db() -> TestDb {
    let db = TestDb::new();
    supabase_roles(&db);
    db
}

/// A database of its own with the schema this server installs.
fn migrated_db() -> TestDb {
    let db = new_db();
    migrate_once(db.config()).unwrap();
    db
}

fn migrate_once(cfg: PgConfig) -> Result<Migrated, String> {
    run(move || async move { tenant_db::migrate(&cfg).await.map_err(|e| e.to_string()) })
}

/// The schema as the Elixir server leaves it after its last migration:
/// Ecto's bookkeeping table, the objects, the 81 versions.
fn load_elixir_full(db: &TestDb) {
    db.load_sql(
        "create schema realtime;
         create table realtime.schema_migrations
             (version bigint, inserted_at timestamp(0), primary key (version));",
        "bookkeeping",
    );
    db.load_sql(migrations::BASELINE, "schema");
    db.load("tenant_elixir_versions.sql");
}

/// The realtime schema's shape: relations, columns, indexes, constraints,
/// functions (signature, body digest, owner, rights), types and owners,
/// policies of rights on tables; one sorted line each.
fn catalog(db: &TestDb) -> String {
    db.psql(
        "select format('rel %s %s owner=%s acl=%s', c.relname, c.relkind, c.relowner::regrole,
                (select array_agg(a::text order by a::text) from unnest(c.relacl) a))
             from pg_class c where c.relnamespace = 'realtime'::regnamespace
                 and c.relname not like 'messages\\_2%'
         union all
         select format('col %s %s %s %s %s %s', c.relname, a.attnum, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid))
             from pg_attribute a join pg_class c on c.oid = a.attrelid
             left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
             where c.relnamespace = 'realtime'::regnamespace and a.attnum > 0
                 and not a.attisdropped and c.relname not like 'messages\\_2%'
         union all
         select format('idx %s', indexdef) from pg_indexes where schemaname = 'realtime'
                 and tablename not like 'messages\\_2%'
         union all
         select format('con %s %s', conname, pg_get_constraintdef(oid)) from pg_constraint
             where connamespace = 'realtime'::regnamespace
         union all
         select format('fn %s owner=%s md5=%s acl=%s', p.oid::regprocedure, p.proowner::regrole,
                md5(p.prosrc), (select array_agg(a::text order by a::text) from unnest(p.proacl) a))
             from pg_proc p where p.pronamespace = 'realtime'::regnamespace
         union all
         select format('type %s owner=%s', t.oid::regtype, t.typowner::regrole) from pg_type t
             where t.typnamespace = 'realtime'::regnamespace and t.typtype in ('e', 'c')
         union all
         select format('schema owner=%s acl=%s', n.nspowner::regrole,
                (select array_agg(a::text order by a::text) from unnest(n.nspacl) a))
             from pg_namespace n where n.nspname = 'realtime'
         union all
         select format('trigger %s', tgname) from pg_trigger
             where tgrelid = 'realtime.subscription'::regclass
         order by 1",
    )
}

/// The shape a fresh database gets from this server, and a database
/// laid down as the Elixir server's last migration leaves it.
fn fresh_shape_and_elixir_db() -> (String, TestDb) {
    let fresh = migrated_db();
    let db = new_db();
    load_elixir_full(&db);
    (catalog(&fresh), db)
}

fn versions(db: &TestDb) -> String {
    db.psql("select count(*), min(version), max(version) from realtime.schema_migrations")
}

#[test]
fn a_fresh_database_gets_the_whole_schema_then_nothing() {
    let db = new_db();
    let m = migrate_once(db.config()).unwrap();
    assert!(m.baseline);
    assert_eq!(m.applied, migrations::VERSIONS);
    assert_eq!(versions(&db), "81|20211116024918|20260709120000");
    let shape = catalog(&db);
    assert!(
        shape.contains("fn realtime.send(jsonb,text,text,boolean) owner=supabase_realtime_admin"),
        "{shape}"
    );
    assert!(
        shape.contains("rel messages p owner=supabase_realtime_admin"),
        "{shape}"
    );
    let stamps =
        db.psql("select string_agg(inserted_at::text, ',') from realtime.schema_migrations");
    assert_eq!(migrate_once(db.config()).unwrap(), Migrated::default());
    assert_eq!(catalog(&db), shape);
    assert_eq!(
        db.psql("select string_agg(inserted_at::text, ',') from realtime.schema_migrations"),
        stamps
    );
    // As the Elixir server records them: whole seconds.
    assert_eq!(
        db.psql("select bool_and(inserted_at = date_trunc('second', inserted_at)) from realtime.schema_migrations"),
        "t"
    );
}

#[test]
fn an_elixir_database_at_the_last_version_is_left_alone() {
    let (fresh_shape, db) = fresh_shape_and_elixir_db();
    let before = catalog(&db);
    assert_eq!(before, fresh_shape);
    assert_eq!(migrate_once(db.config()).unwrap(), Migrated::default());
    assert_eq!(catalog(&db), before);
}

#[test]
fn an_elixir_database_at_20260626_gets_only_the_last_three_steps() {
    let (fresh_shape, db) = fresh_shape_and_elixir_db();
    db.load("tenant_elixir_20260626.sql");
    assert_ne!(catalog(&db), fresh_shape);
    let m = migrate_once(db.config()).unwrap();
    assert!(!m.baseline);
    assert_eq!(m.applied, [20260706120000, 20260707120000, 20260709120000]);
    assert_eq!(catalog(&db), fresh_shape);
    assert_eq!(versions(&db), "81|20211116024918|20260709120000");
    // The older rows were kept as the Elixir server wrote them.
    assert_eq!(
        db.psql(
            "select inserted_at from realtime.schema_migrations where version = 20211116024918"
        ),
        "2021-11-16 02:49:18"
    );
}

#[test]
fn an_older_partial_database_is_refused_naming_the_oldest_upgradable_version() {
    let db = new_db();
    load_elixir_full(&db);
    db.psql("delete from realtime.schema_migrations where version >= 20260616120000");
    let e = migrate_once(db.config()).unwrap_err();
    assert!(e.contains("missing 20260616120000"), "{e}");
    assert!(e.contains("upgrades from version 20260626120000"), "{e}");
    assert_eq!(versions(&db), "75|20211116024918|20260606110000");
}

#[test]
fn missing_roles_are_named_and_nothing_is_applied() {
    let db = TestDb::new();
    let cfg = db.config();
    let e = run(move || async move {
        let history = migrator::History {
            roles: &["anon", "rt_tdb_no_such_role"],
            ..migrations::HISTORY
        };
        let mut c = PgConn::connect(&cfg).await.unwrap();
        let r = migrator::migrate(&mut c, &history).await;
        c.terminate().await;
        r
    })
    .unwrap_err();
    match e {
        MigrateError::MissingRoles(r) => {
            assert!(r.contains(&"rt_tdb_no_such_role".to_owned()), "{r:?}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        db.psql("select to_regclass('realtime.messages') is null"),
        "t"
    );
}

#[test]
fn send_topic_and_broadcast_changes_write_messages() {
    let db = migrated_db();
    let cfg = db.config();
    run(move || async move { tenant_db::maintain_once(&cfg).await.unwrap() });
    db.psql("select realtime.send('{\"a\":1}', 'ev', 'room:1', true)");
    assert_eq!(
        db.psql(
            "select payload->>'a', payload->>'id' = id::text, event, topic, private, extension
             from realtime.messages"
        ),
        "1|t|ev|room:1|t|broadcast"
    );
    // An id of the caller's own is kept; send() never fails its caller.
    db.psql("select realtime.send('{\"id\":\"mine\"}', 'ev', 'room:2')");
    assert_eq!(
        db.psql("select payload->>'id', private from realtime.messages where topic = 'room:2'"),
        "mine|t"
    );
    db.psql("select realtime.send_binary('\\x0102', 'bin', 'room:3', false)");
    assert_eq!(
        db.psql("select binary_payload, payload is null, private from realtime.messages where topic = 'room:3'"),
        "\\x0102|t|f"
    );
    assert_eq!(db.psql("select realtime.topic() is null"), "t");
    assert_eq!(
        db.psql("select set_config('realtime.topic', 'room:9', true), realtime.topic()"),
        "room:9|room:9"
    );
    db.psql(
        "create table public.items (id int primary key, v text);
         create function public.items_changed() returns trigger language plpgsql as $$
         begin
             perform realtime.broadcast_changes('items:' || coalesce(new.id, old.id)::text,
                 tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
             return null;
         end $$;
         create trigger items_changed after insert or update or delete on public.items
             for each row execute function public.items_changed();
         insert into public.items values (7, 'x');
         update public.items set v = 'y' where id = 7;",
    );
    assert_eq!(
        db.psql(
            "select event, topic, private, payload->>'operation', payload->'record'->>'v',
                    coalesce(payload->'old_record'->>'v', '-'), payload->>'table', payload->>'schema'
             from realtime.messages where topic = 'items:7' order by inserted_at, event"
        ),
        "INSERT|items:7|t|INSERT|x|-|items|public\nUPDATE|items:7|t|UPDATE|y|x|items|public"
    );
}

#[test]
fn partitions_cover_yesterday_to_today_plus_three_and_old_ones_go() {
    let db = migrated_db();
    db.psql(
        "create table realtime.messages_2020_01_01 partition of realtime.messages
             for values from ('2020-01-01') to ('2020-01-02')",
    );
    let cfg = db.config();
    let m = run(move || async move { tenant_db::maintain_once(&cfg).await.unwrap() });
    let want: Vec<String> = partitions::wanted(now_unix())
        .map(|d| d.partition())
        .collect();
    assert_eq!(want.len(), 5);
    assert_eq!(m.created, want);
    assert_eq!(m.dropped, ["messages_2020_01_01"]);
    let list = db.psql(
        "select string_agg(c.relname || ':' || c.relowner::regrole::text, ',' order by c.relname)
         from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'realtime.messages'::regclass",
    );
    let expect: Vec<String> = want
        .iter()
        .map(|n| format!("{n}:supabase_realtime_admin"))
        .collect();
    assert_eq!(list, expect.join(","));
    let cfg = db.config();
    let again = run(move || async move { tenant_db::maintain_once(&cfg).await.unwrap() });
    assert_eq!(again, partitions::Maintained::default());
}

#[test]
fn the_admin_api_creation_migrates_the_tenants_database() {
    let tenant = new_db();
    let control = ControlDb::create("tdb");
    let srv = Server::start_env(&control.env());
    let (host, port, pw) = parts(&tenant.db.url);
    let body = json!({"tenant": {
        "external_id": "tdbmig", "name": "tdbmig",
        "jwt_secret": "tenant-db-migration-secret-32-by",
        "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "db_host": host, "db_port": port, "db_name": tenant.name,
            "db_user": "postgres", "db_password": pw, "region": "local",
            "ssl_enforced": false,
        }}],
    }});
    let (status, _, created) = admin(&srv, "POST", "/api/tenants", Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(versions(&tenant), "81|20211116024918|20260709120000");
    assert_eq!(
        tenant.psql("select to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null"),
        "t"
    );
}

#[test]
fn the_environment_tenant_migrates_on_activation_and_gets_its_partitions() {
    let db = new_db();
    let mut env = db.db.server_env(&format!("_tdb{}", std::process::id()));
    for (k, v) in env.iter_mut() {
        if k == "DB_NAME" {
            *v = db.name.clone();
        }
    }
    env.push(("LOG_LEVEL".into(), "info".into()));
    let (_srv, log) = Server::start_logged(&env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    assert!(
        log.wait_for(
            &["messages partitions maintained", "realtime-dev"],
            1,
            deadline
        ),
        "no partition pass logged"
    );
    assert_eq!(
        log.count(&[
            "tenant database schema migrated",
            "realtime-dev",
            "duration_ms"
        ]),
        1
    );
    assert_eq!(versions(&db), "81|20211116024918|20260709120000");
    assert_eq!(
        db.psql("select count(*) from pg_inherits where inhparent = 'realtime.messages'::regclass"),
        "5"
    );
}

/// The Postgres Changes objects are there for an Elixir server the
/// database goes back to: the filter trigger refuses an unknown column,
/// and apply_rls sends a change to the subscriptions whose filters pass
/// and, with row level security on, whose role's policy lets it see the
/// row.
#[test]
fn the_elixir_pollers_functions_filter_and_check_rls() {
    let db = migrated_db();
    let change = |action: &str, done: bool| {
        json!({"action": action, "schema": "public", "table": "todos",
            "timestamp": "2026-12-07 10:00:00.123+00",
            "pk": [{"name": "id", "type": "integer", "typeoid": 23}],
            "columns": [{"name": "id", "type": "integer", "typeoid": 23, "value": 1},
                        {"name": "done", "type": "boolean", "typeoid": 16, "value": done}],
            "identity": [{"name": "id", "type": "integer", "typeoid": 23, "value": 1}]})
        .to_string()
    };
    let visible = |wal: &str| {
        db.psql(&format!(
            "select string_agg(right(id::text, 1), ',' order by id) from realtime.apply_rls('{wal}')
             cross join lateral unnest(subscription_ids) id"
        ))
    };
    db.psql(
        "create table public.todos (id int primary key, done bool);
         grant select on public.todos to anon, authenticated;
         insert into realtime.subscription (subscription_id, entity, filters, claims) values
         ('00000000-0000-0000-0000-000000000001', 'public.todos',
          array[('done', 'eq', 'true', false)::realtime.user_defined_filter], '{\"role\": \"anon\"}'),
         ('00000000-0000-0000-0000-000000000002', 'public.todos', '{}', '{\"role\": \"authenticated\"}')",
    );
    let bad = db.db.try_psql(
        "insert into realtime.subscription (subscription_id, entity, filters, claims) values
         (gen_random_uuid(), 'public.todos',
          array[('nope', 'eq', '1', false)::realtime.user_defined_filter], '{\"role\": \"anon\"}')",
    );
    assert!(bad.unwrap_err().contains("invalid column for filter nope"));
    assert_eq!(visible(&change("I", true)), "1,2");
    assert_eq!(visible(&change("U", false)), "2");
    db.psql(
        "alter table public.todos enable row level security;
         create policy anon_sees on public.todos for select to anon using (true);
         insert into public.todos values (1, true)",
    );
    // authenticated has no policy: row level security hides the row.
    assert_eq!(visible(&change("I", true)), "1");
}
