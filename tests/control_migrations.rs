//! The control database's migrations against the dev cluster, each test in
//! a database of its own: from nothing (twice), over a schema the Elixir
//! server migrated fully (only this server's own steps, the Elixir data
//! untouched), over an older Elixir schema (only the missing versions), two
//! runners at once, and the data steps of a very old schema.

mod control_support;
mod support;

use control_support::{run, TestDb};
use realtime::server::control::migrate::{migrate, migrate_steps, Migrated};
use realtime::server::control::migrations::{MIGRATIONS, OWN_VERSIONS};
use realtime::server::pgconn::{PgConfig, PgConn};

fn migrate_once(cfg: PgConfig) -> Migrated {
    run(move || async move {
        let mut c = PgConn::connect(&cfg).await.unwrap();
        let m = migrate(&mut c).await.unwrap();
        c.terminate().await;
        m
    })
}

fn all_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// What this server's own steps add to the Elixir server's schema, as
/// catalog lines.
const OWN_CATALOG: [&str; 2] = [
    "column tenants 26 placement text default='home'::text notnull=t",
    "constraint tenants placement_must_be_home_or_spread c \
     CHECK ((placement = ANY (ARRAY['home'::text, 'spread'::text])))",
];

/// The lines of `catalog` that `elixir` lacks, and whether every line of
/// `elixir` is in `catalog`.
fn beyond<'a>(catalog: &'a str, elixir: &str) -> (Vec<&'a str>, bool) {
    let extra = catalog
        .lines()
        .filter(|l| !elixir.lines().any(|e| e == *l))
        .collect();
    let all = elixir.lines().all(|e| catalog.lines().any(|l| l == e));
    (extra, all)
}

/// The tenants as the Elixir server's columns hold them.
fn elixir_tenants(db: &TestDb) -> String {
    db.psql(
        "select (to_jsonb(t) - 'placement')::text from _realtime.tenants t order by external_id",
    )
}

#[test]
fn from_nothing_then_again_is_a_no_op() {
    let db = TestDb::new();
    let m = migrate_once(db.config());
    assert_eq!(m.applied, all_versions());
    assert!(m.unknown.is_empty());
    let catalog = db.catalog();
    let data = db.data();
    assert_eq!(data.lines().count(), MIGRATIONS.len(), "{data}");
    let m = migrate_once(db.config());
    assert_eq!(m, Migrated::default());
    assert_eq!(db.catalog(), catalog);
    assert_eq!(db.data(), data);
    // Recorded as Ecto records them: whole seconds, UTC.
    assert_eq!(
        db.psql(
            "select count(*) from _realtime.schema_migrations
             where inserted_at = date_trunc('second', inserted_at)
               and inserted_at > (now() at time zone 'utc') - interval '1 minute'"
        ),
        MIGRATIONS.len().to_string()
    );
}

#[test]
fn ours_from_nothing_has_the_shape_the_elixir_server_leaves_plus_our_own_steps() {
    let ours = TestDb::new();
    migrate_once(ours.config());
    let elixir = TestDb::new();
    elixir.load("control_elixir_full.sql");
    let (a, b) = (ours.catalog(), elixir.catalog());
    assert!(a.lines().count() > 40, "{a}");
    assert_eq!(beyond(&a, &b), (OWN_CATALOG.to_vec(), true));
}

#[test]
fn a_fully_migrated_elixir_database_gets_only_our_own_steps() {
    let db = TestDb::new();
    db.load("control_elixir_full.sql");
    let (catalog, tenants) = (db.catalog(), elixir_tenants(&db));
    let versions = "select string_agg(version::text || ' ' || inserted_at::text, ',' order by version) from _realtime.schema_migrations";
    let before = db.psql(versions);
    assert!(tenants.contains("realtime-dev"), "{tenants}");
    let m = migrate_once(db.config());
    assert_eq!(m.applied, OWN_VERSIONS);
    assert!(m.unknown.is_empty());
    assert_eq!(
        beyond(&db.catalog(), &catalog),
        (OWN_CATALOG.to_vec(), true)
    );
    // The Elixir server's rows are as they were; its tenants are home.
    assert_eq!(elixir_tenants(&db), tenants);
    assert_eq!(
        db.psql("select string_agg(distinct placement, ',') from _realtime.tenants"),
        "home"
    );
    assert!(db.psql(versions).starts_with(&before), "{before}");
    assert_eq!(migrate_once(db.config()), Migrated::default());
}

#[test]
fn an_older_elixir_database_gets_only_the_missing_versions() {
    let db = TestDb::new();
    db.load("control_elixir_2024.sql");
    let before = db.psql("select string_agg(version::text || ' ' || inserted_at::text, ',' order by version) from _realtime.schema_migrations");
    let m = migrate_once(db.config());
    assert_eq!(m.applied, all_versions()[21..].to_vec());
    assert_eq!(m.applied.len(), 12 + OWN_VERSIONS.len());
    let full = TestDb::new();
    full.load("control_elixir_full.sql");
    assert_eq!(
        beyond(&db.catalog(), &full.catalog()),
        (OWN_CATALOG.to_vec(), true)
    );
    // The old versions' rows are as they were.
    assert_eq!(
        db.psql("select string_agg(version::text || ' ' || inserted_at::text, ',' order by version) from _realtime.schema_migrations where version <= 20241106103258"),
        before
    );
    // The tenant kept its values; each new column took the default it had
    // when added (a later default change does not touch existing rows).
    assert_eq!(
        db.psql(
            "select name, max_concurrent_users, max_events_per_second, suspend, private_only,
                    migrations_ran, broadcast_adapter, max_presence_events_per_second,
                    max_payload_size_in_kb, presence_enabled, feature_flags,
                    gcm_migrated_at is null, placement, updated_at
             from _realtime.tenants"
        ),
        "realtime-dev|250|150|t|t|0|phoenix|10000|3000|f|{}|t|home|2024-02-03 04:05:06"
    );
    assert_eq!(
        db.psql("select count(*) from _realtime.extensions where type = 'postgres_cdc_rls'"),
        "1"
    );
    // And a second run finds nothing to do.
    assert_eq!(migrate_once(db.config()), Migrated::default());
}

#[test]
fn two_runners_at_once_apply_each_version_once() {
    let db = TestDb::new();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let cfg = db.config();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                run(move || async move {
                    let mut c = PgConn::connect(&cfg).await.unwrap();
                    barrier.wait();
                    let m = migrate(&mut c).await;
                    c.terminate().await;
                    m.map_err(|e| e.to_string())
                })
            })
        })
        .collect();
    let mut applied: Vec<usize> = runners
        .into_iter()
        .map(|t| t.join().unwrap().unwrap().applied.len())
        .collect();
    applied.sort_unstable();
    assert_eq!(applied, [0, MIGRATIONS.len()]);
    let n = MIGRATIONS.len();
    assert_eq!(
        db.psql("select count(*), count(distinct version) from _realtime.schema_migrations"),
        format!("{n}|{n}")
    );
}

#[test]
fn the_data_steps_of_an_old_schema_run_as_the_elixir_ones_did() {
    let db = TestDb::new();
    // The schema as of spring 2022: tenants and extensions only.
    let cfg = db.config();
    let m = run(move || async move {
        let mut c = PgConn::connect(&cfg).await.unwrap();
        let m = migrate_steps(&mut c, &MIGRATIONS[..2]).await.unwrap();
        c.terminate().await;
        m
    });
    assert_eq!(m.applied, all_versions()[..2].to_vec());
    db.psql(
        "insert into _realtime.tenants (id, name, external_id, jwt_secret, inserted_at, updated_at)
         values ('00000000-0000-0000-0000-000000000001', 'old', 'old', 's', '2022-01-01', '2022-01-01');
         insert into _realtime.extensions (id, type, settings, tenant_external_id, inserted_at, updated_at)
         values ('00000000-0000-0000-0000-000000000002', 'postgres', '{\"poll_interval\": 100}', 'old', '2022-01-01', '2022-01-01')",
    );
    let m = migrate_once(db.config());
    assert_eq!(m.applied, all_versions()[2..].to_vec());
    assert_eq!(
        db.psql(
            "select t.max_events_per_second, t.max_concurrent_users, e.type, e.settings
             from _realtime.tenants t join _realtime.extensions e on e.tenant_external_id = t.external_id"
        ),
        // The settings rename ran while the type was still `postgres`, so
        // (as on the Elixir server) it left them alone.
        "1000|10000|postgres_cdc_rls|{\"poll_interval\": 100}"
    );
    // Deleting the tenant takes its extensions with it.
    db.psql("delete from _realtime.tenants");
    assert_eq!(db.psql("select count(*) from _realtime.extensions"), "0");
}

#[test]
fn an_up_to_date_database_needs_no_create_privilege() {
    let db = TestDb::new();
    db.load("control_elixir_full.sql");
    // Up to date: the Elixir server's steps and this server's own.
    migrate_once(db.config());
    // A role that may use the schema (and take Ecto's lock) but create
    // nothing, as an operator may give a server that never migrates.
    let role = format!("{}_user", db.name);
    db.psql(&format!(
        "create role {role} login password 'pw';
         grant usage on schema _realtime to {role};
         grant select, update on _realtime.schema_migrations to {role}"
    ));
    let mut cfg = db.config();
    cfg.user = role.clone();
    cfg.password = "pw".into();
    let m = run(move || async move {
        let mut c = PgConn::connect(&cfg).await.unwrap();
        let m = migrate(&mut c).await.map_err(|e| e.to_string());
        c.terminate().await;
        m
    });
    db.psql(&format!("drop owned by {role}"));
    let _ = db.db.try_psql(&format!("drop role {role}"));
    assert_eq!(m, Ok(Migrated::default()));
}
