//! The tenant database's `realtime` schema history under the Elixir
//! server's version numbers (`lib/realtime/tenants/migrations.ex`: 81
//! migrations, 20211116024918 to 20260709120000), and what this server
//! carries of it:
//!
//! - [`BASELINE`]: the schema as the last version leaves it (what the
//!   Elixir server loads from `priv/repo/tenant_db_dump_*.sql` into a
//!   fresh database), for a database with none of the versions; every
//!   version is then recorded.
//! - [`STEPS`]: the last versions one by one, for a database the Elixir
//!   server migrated to [`History::oldest_upgradable`] (20260626120000) or
//!   later. An older partial database is refused with an error naming that
//!   version: the Elixir server (or a newer one of ours) must bring it that
//!   far. Writing all 81 historic steps again (most rewrite the same Postgres
//!   Changes functions) would buy only that.
//!
//! The SQL lives in `sql/`, one file per group of objects; a step that
//! replaces a function shares the function's file with the baseline, which
//! is right because a step is the function's final form (no later step
//! changes it again: the test `steps_are_final_forms` is the reminder).
//!
//! Never edit a shipped step's effect: add a version.

use crate::server::migrator::{m, History, Migration};

/// Advisory lock key of a tenant-database migration run (`tenantdb` in
/// ASCII), apart from the control database's.
pub const LOCK_KEY: i64 = 0x7465_6e61_6e74_6462;

/// Every version of the Elixir server's tenant migrations, oldest first.
pub const VERSIONS: &[i64] = &[
    20211116024918, // create_realtime_subscription_table
    20211116045059, // create_realtime_check_filters_trigger
    20211116050929, // create_realtime_quote_wal2json_function
    20211116051442, // create_realtime_check_equality_op_function
    20211116212300, // create_realtime_build_prepared_statement_sql_function
    20211116213355, // create_realtime_cast_function
    20211116213934, // create_realtime_is_visible_through_filters_function
    20211116214523, // create_realtime_apply_rls_function
    20211122062447, // grant_realtime_usage_to_authenticated_role
    20211124070109, // enable_realtime_apply_rls_function_postgrest_9_compatibility
    20211202204204, // update_realtime_subscription_check_filters_function_security
    20211202204605, // update_realtime_build_prepared_statement_sql_function_for_compatibility_with_all_types
    20211210212804, // enable_generic_subscription_claims
    20211228014915, // add_wal_payload_on_errors_in_apply_rls_function
    20220107221237, // update_change_timestamp_to_iso_8601_zulu_format
    20220228202821, // update_subscription_check_filters_function_dynamic_table_name
    20220312004840, // update_apply_rls_function_to_apply_iso_8601
    20220603231003, // add_quoted_regtypes_support
    20220603232444, // add_output_for_data_less_than_equal_64_bytes_when_payload_too_large
    20220615214548, // add_quoted_regtypes_backward_compatibility_support
    20220712093339, // recreate_realtime_build_prepared_statement_sql_function
    20220908172859, // null_passes_filters_recreate_is_visible_through_filters
    20220916233421, // update_apply_rls_function_to_pass_through_delete_events_on_filter
    20230119133233, // millisecond_precision_for_walrus
    20230128025114, // add_in_op_to_filters
    20230128025212, // enable_filtering_on_delete_record
    20230227211149, // update_subscription_check_filters_for_in_filter_non_text_types
    20230228184745, // convert_commit_timestamp_to_utc
    20230308225145, // output_full_record_when_unchanged_toast
    20230328144023, // create_list_changes_function
    20231018144023, // create_channels
    20231204144023, // set_required_grants
    20231204144024, // create_rls_helper_functions
    20231204144025, // enable_channels_rls
    20240108234812, // add_channels_column_for_write_check
    20240109165339, // add_update_grant_to_channels
    20240227174441, // add_broadcast_permissions_table
    20240311171622, // add_insert_and_delete_grant_to_channels
    20240321100241, // add_presences_permissions_table
    20240401105812, // create_realtime_admin_and_move_ownership
    20240418121054, // remove_check_columns
    20240523004032, // redefine_authorization_tables
    20240618124746, // fix_walrus_role_handling
    20240801235015, // unlogged_messages_table
    20240805133720, // logged_messages_table
    20240827160934, // filter_delete_postgres_changes
    20240919163303, // add_payload_to_messages
    20240919163305, // change_messages_id_type
    20241019105805, // uuid_auto_generation
    20241030150047, // messages_partitioning
    20241108114728, // messages_using_uuid
    20241121104152, // fix_send_function_
    20241130184212, // recreate_entity_index_using_btree
    20241220035512, // fix_send_function_partition_creation
    20241220123912, // realtime_send_handle_exceptions_remove_partition_creation
    20241224161212, // realtime_send_sets_config
    20250107150512, // realtime_subscription_unlogged
    20250110162412, // realtime_subscription_logged
    20250123174212, // remove_unused_publications
    20250128220012, // realtime_send_sets_topic_config
    20250506224012, // subscription_index_bridging_disabled
    20250523164012, // run_subscription_index_bridging_disabled
    20250714121412, // broadcast_send_error_logging
    20250905041441, // create_messages_replay_index
    20251103001201, // broadcast_send_include_payload_id
    20251120212548, // add_action_to_subscriptions
    20251120215549, // filter_action_postgres_changes
    20260218120000, // fix_bytea_double_encoding_in_cast
    20260326120000, // list_changes_with_slot_count
    20260514120000, // add_binary_payload_to_messages
    20260527120000, // add_select_columns_to_subscriptions
    20260528120000, // wal2json_escape_special_chars
    20260603120000, // add_send_binary_function
    20260605120000, // rename_broadcast_send_warning
    20260606110000, // subscription_check_filters_use_pg_attribute
    20260616120000, // add_postgrest_filter_ops
    20260624120000, // revert_postgrest_filter_ops
    20260626120000, // readd_postgrest_filter_ops
    20260706120000, // grant_check_equality_op_5_arg
    20260707120000, // restrict_realtime_schema
    20260709120000, // fix_apply_rls_filter_role_leak
];

/// The whole schema, in dependency order: roles, types, the functions the
/// tables use, tables, the functions that use the tables, owners, rights.
pub const BASELINE: &str = concat!(
    include_str!("sql/roles.sql"),
    include_str!("sql/types.sql"),
    include_str!("sql/filters.sql"),
    include_str!("sql/check_filters.sql"),
    include_str!("sql/tables.sql"),
    include_str!("sql/apply_rls.sql"),
    include_str!("sql/list_changes.sql"),
    include_str!("sql/broadcast.sql"),
    include_str!("sql/owners.sql"),
    include_str!("sql/grants.sql"),
);

/// The last versions, one by one.
pub const STEPS: &[Migration] = &[
    m(
        20260706120000,
        "grant_check_equality_op_5_arg",
        "grant execute on function
            realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean)
            to postgres, anon, authenticated, service_role;",
    ),
    m(
        20260707120000,
        "restrict_realtime_schema",
        concat!(
            include_str!("sql/restrict_schema.sql"),
            include_str!("sql/owners.sql"),
            include_str!("sql/restrict_schema_end.sql"),
        ),
    ),
    m(
        20260709120000,
        "fix_apply_rls_filter_role_leak",
        include_str!("sql/apply_rls.sql"),
    ),
];

/// Roles the schema owns things as or grants to: a Supabase database has
/// them all. `supabase_realtime_admin` is not among them: the schema
/// creates it.
pub const ROLES: &[&str] = &[
    "anon",
    "authenticated",
    "service_role",
    "supabase_admin",
    "postgres",
    "dashboard_user",
];

/// The tenant database's history: `realtime.schema_migrations`.
pub const HISTORY: History<'static> = History {
    schema: "realtime",
    lock_key: LOCK_KEY,
    versions: VERSIONS,
    steps: STEPS,
    baseline: Some(BASELINE),
    roles: ROLES,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_elixir_servers_in_order() {
        assert_eq!(VERSIONS.len(), 81);
        assert!(VERSIONS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(VERSIONS[0], 20211116024918);
        assert_eq!(VERSIONS[80], 20260709120000);
        assert_ne!(LOCK_KEY, crate::server::control::migrate::LOCK_KEY);
    }

    #[test]
    fn steps_are_the_last_versions() {
        let tail = &VERSIONS[VERSIONS.len() - STEPS.len()..];
        let steps: Vec<i64> = STEPS.iter().map(|s| s.version).collect();
        assert_eq!(steps, tail);
        assert_eq!(HISTORY.oldest_upgradable(), Some(20260626120000));
    }

    /// A step that shares a function's file with the baseline must be the
    /// last to replace that function: a later step that changes it again
    /// needs the step's own (then historic) definition instead.
    #[test]
    fn steps_are_final_forms() {
        let replaces = |sql: &str, f: &str| sql.contains(&format!("function realtime.{f}("));
        for (i, s) in STEPS.iter().enumerate() {
            if replaces(s.sql, "apply_rls") && s.sql.contains("create or replace") {
                assert!(STEPS[i + 1..].iter().all(|l| !replaces(l.sql, "apply_rls")));
            }
        }
    }

    #[test]
    fn every_statement_names_its_schema() {
        for file in [BASELINE, STEPS[1].sql, STEPS[2].sql] {
            for line in file.lines().map(str::trim) {
                for kw in ["create table ", "create function ", "create type "] {
                    if let Some(rest) = line.strip_prefix(kw) {
                        assert!(rest.starts_with("realtime."), "{line}");
                    }
                }
            }
        }
    }
}
