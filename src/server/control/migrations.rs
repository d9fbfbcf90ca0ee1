//! The control database's schema history: one entry per migration of the
//! Elixir server, under its version number (the timestamp prefix of its
//! migration file), so `_realtime.schema_migrations` means the same thing
//! to both servers. Each step does what that migration did, with every
//! name qualified by `_realtime` (the Elixir server reaches the schema
//! through `search_path` instead) and the object names Ecto gives
//! (`<table>_<columns>_index`, `<table>_<column>_fkey`, `<table>_pkey`).
//!
//! Ecto's column types: `:string` is `varchar(255)`, `:map` is `jsonb`,
//! `:binary_id` is `uuid`, timestamps are `timestamp(0)` (without time
//! zone, UTC by convention) and NOT NULL without a default.
//!
//! Never edit a step that has shipped: add a new one. A database holding a
//! version means that step's effect is there, whoever applied it.
//!
//! This server's own steps ([`OWN_VERSIONS`]) follow, numbered the same
//! way (the UTC time they were written), in order with the Elixir ones.
//! They only add what the Elixir server never reads (a column with a
//! default it leaves out of its inserts): its tables keep working for it,
//! and its migrator passes over versions it has no file for.

use crate::server::migrator::m;
pub use crate::server::migrator::Migration;

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    m(
        20210706140551,
        "create_tenant",
        "create table _realtime.tenants (
            id uuid primary key,
            name varchar(255),
            external_id varchar(255),
            jwt_secret varchar(500),
            max_concurrent_users integer default 10000,
            inserted_at timestamp(0) not null,
            updated_at timestamp(0) not null
        );
        create unique index tenants_external_id_index on _realtime.tenants (external_id);",
    ),
    m(
        20220329161857,
        "add_extensions_table",
        "create table _realtime.extensions (
            id uuid primary key,
            type varchar(255),
            settings jsonb,
            tenant_external_id varchar(255)
                constraint extensions_tenant_external_id_fkey
                references _realtime.tenants (external_id) on delete cascade,
            inserted_at timestamp(0) not null,
            updated_at timestamp(0) not null
        );
        create unique index extensions_tenant_external_id_type_index
            on _realtime.extensions (tenant_external_id, type);",
    ),
    m(
        20220410212326,
        "add_tenant_max_eps",
        "alter table _realtime.tenants add column max_events_per_second integer default 10000;",
    ),
    m(
        20220506102948,
        "rename_poll_interval_to_poll_interval_ms",
        // The key moves; an absent key becomes an explicit null, as the
        // Elixir code's map update did. Only the RLS extension's settings,
        // and only rows that change get a new updated_at.
        "update _realtime.extensions
            set settings = (settings - 'poll_interval')
                    || jsonb_build_object('poll_interval_ms', settings -> 'poll_interval'),
                updated_at = date_trunc('second', now() at time zone 'utc')
            where type = 'postgres_cdc_rls'
                and jsonb_typeof(settings) = 'object'
                and settings is distinct from (settings - 'poll_interval')
                    || jsonb_build_object('poll_interval_ms', settings -> 'poll_interval');",
    ),
    m(
        20220527210857,
        "add_external_id_uniq_index",
        "alter table _realtime.tenants add constraint uniq_external_id unique (external_id);",
    ),
    m(
        20220815211129,
        "new_max_events_per_second_default",
        "alter table _realtime.tenants
            alter column max_events_per_second type integer,
            alter column max_events_per_second set not null,
            alter column max_events_per_second set default 1000;",
    ),
    m(
        20220815215024,
        "set_current_max_events_per_second",
        "update _realtime.tenants set max_events_per_second = 1000;",
    ),
    m(
        20220818141501,
        "change_limits_defaults",
        "alter table _realtime.tenants
            alter column max_events_per_second type integer,
            alter column max_events_per_second set not null,
            alter column max_events_per_second set default 100,
            alter column max_concurrent_users type integer,
            alter column max_concurrent_users set not null,
            alter column max_concurrent_users set default 200;",
    ),
    m(
        20221018173709,
        "add_cdc_default",
        "alter table _realtime.tenants
            add column postgres_cdc_default varchar(255) default 'postgres_cdc_rls';",
    ),
    m(
        20221102172703,
        "rename_pg_type",
        // Every extension was the RLS one when it was called `postgres`.
        "update _realtime.extensions set type = 'postgres_cdc_rls';",
    ),
    m(
        20221223010058,
        "drop_tenants_uniq_external_id_index",
        // The unique index of the first migration still backs the key.
        "alter table if exists _realtime.tenants drop constraint if exists uniq_external_id;",
    ),
    m(
        20230110180046,
        "add_limits_fields_to_tenants",
        "alter table _realtime.tenants
            add column max_bytes_per_second integer not null default 100000,
            add column max_channels_per_client integer not null default 100,
            add column max_joins_per_second integer not null default 500;",
    ),
    m(
        20230810220907,
        "alter_tenants_table_columns_to_text",
        "alter table _realtime.tenants
            alter column name type text,
            alter column external_id type text,
            alter column jwt_secret type text,
            alter column postgres_cdc_default type text,
            alter column postgres_cdc_default set default 'postgres_cdc_rls';",
    ),
    m(
        20230810220924,
        "alter_extensions_table_columns_to_text",
        "alter table _realtime.extensions
            alter column type type text,
            alter column tenant_external_id type text;",
    ),
    m(
        20231024094642,
        "add_tenant_suspend_flag",
        "alter table _realtime.tenants add column suspend boolean default false;",
    ),
    m(
        20240306114423,
        "add_tenant_jwt_jwks",
        "alter table _realtime.tenants add column jwt_jwks jsonb;",
    ),
    m(
        20240418082835,
        "add_authorization_flag",
        "alter table _realtime.tenants add column enable_authorization boolean default false;",
    ),
    m(
        20240625211759,
        "remove_enable_authorization_flag",
        "alter table _realtime.tenants drop column enable_authorization;",
    ),
    m(
        20240704172020,
        "add_notify_private_alpha",
        "alter table _realtime.tenants add column notify_private_alpha boolean default false;",
    ),
    m(
        20240902173232,
        "add_extension_external_id_index",
        "create index if not exists extensions_tenant_external_id_index
            on _realtime.extensions (tenant_external_id);",
    ),
    m(
        20241106103258,
        "add_private_only_flag_column_to_tenant",
        "alter table _realtime.tenants add column private_only boolean not null default false;",
    ),
    m(
        20250424203323,
        "add_migrations_ran_to_tenant",
        "alter table _realtime.tenants add column migrations_ran integer default 0;",
    ),
    m(
        20250613072131,
        "add_tenant_broadcast_adapter",
        "alter table _realtime.tenants
            add column broadcast_adapter varchar(255) default 'phoenix';",
    ),
    m(
        20250711044927,
        "change_default_broadcast_adapter_to_gen_rpc",
        "alter table _realtime.tenants
            alter column broadcast_adapter type varchar(255),
            alter column broadcast_adapter set default 'gen_rpc';",
    ),
    m(
        20250811121559,
        "add_max_presence_events_per_second",
        "alter table _realtime.tenants
            add column max_presence_events_per_second integer default 10000,
            add column max_payload_size_in_kb integer default 3000;",
    ),
    m(
        20250926223044,
        "set_default_presence_value",
        "alter table _realtime.tenants
            alter column max_presence_events_per_second type integer,
            alter column max_presence_events_per_second set default 1000;",
    ),
    m(
        20251204170944,
        "nullable_jwt_secrets",
        "alter table _realtime.tenants
            alter column jwt_secret type text,
            alter column jwt_secret drop not null;
        alter table _realtime.tenants add constraint jwt_secret_or_jwt_jwks_required
            check (jwt_secret is not null or jwt_jwks is not null);",
    ),
    m(
        20251218000543,
        "ensure_jwt_secret_is_text",
        "alter table _realtime.tenants
            alter column jwt_secret type text,
            alter column jwt_secret drop not null;",
    ),
    m(
        20260209232800,
        "add_max_client_presence_events_per_second",
        "alter table _realtime.tenants
            add column max_client_presence_events_per_window integer,
            add column client_presence_window_ms integer;",
    ),
    m(
        20260304000000,
        "add_presence_enabled_to_tenants",
        "alter table _realtime.tenants
            add column presence_enabled boolean not null default false;",
    ),
    m(
        20260422000000,
        "create_feature_flags",
        "create table _realtime.feature_flags (
            id uuid primary key,
            name varchar(255) not null,
            enabled boolean not null default false,
            inserted_at timestamp(0) not null,
            updated_at timestamp(0) not null
        );
        create unique index feature_flags_name_index on _realtime.feature_flags (name);
        alter table _realtime.tenants add column feature_flags jsonb not null default '{}';",
    ),
    m(
        20260709151810,
        "add_feature_flag_rollout_percentage",
        "alter table _realtime.feature_flags
            add column rollout_percentage integer not null default 100,
            add column bucket_key varchar(255);
        alter table _realtime.feature_flags
            add constraint rollout_percentage_must_be_between_0_and_100
            check (rollout_percentage >= 0 and rollout_percentage <= 100);",
    ),
    m(
        20260805000000,
        "add_gcm_migrated_at_to_tenants",
        "alter table _realtime.tenants add column gcm_migrated_at timestamp(0);",
    ),
    m(
        20261207141500,
        "add_placement_to_tenants",
        "alter table _realtime.tenants
            add column placement text not null default 'home',
            add constraint placement_must_be_home_or_spread
            check (placement in ('home', 'spread'));",
    ),
];

/// The versions of this server's own steps, which no Elixir server writes.
pub const OWN_VERSIONS: &[i64] = &[20261207141500];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_elixir_servers_in_order() {
        assert_eq!(MIGRATIONS.len(), 34);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 20210706140551);
        assert_eq!(MIGRATIONS[32].version, 20260805000000);
        for v in OWN_VERSIONS {
            assert!(MIGRATIONS.iter().any(|m| m.version == *v), "{v}");
        }
        // Every statement names the schema: nothing depends on search_path.
        for m in MIGRATIONS {
            assert!(m.sql.contains("_realtime."), "{}", m.name);
        }
    }
}
