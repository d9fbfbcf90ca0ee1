-- Rights, as the Elixir server's last migration leaves them (owners: owners.sql).

-- The bookkeeping is the migrator's alone.
alter table realtime.schema_migrations owner to supabase_admin;
revoke all on realtime.schema_migrations
    from postgres, dashboard_user, anon, authenticated, service_role, supabase_realtime_admin;

-- The schema: the API roles may use it.
grant usage on schema realtime to postgres with grant option;
grant usage on schema realtime to anon, authenticated, service_role;
grant all on schema realtime to supabase_realtime_admin with grant option;

-- Functions: executable by everyone (PUBLIC keeps its default EXECUTE);
-- the dump names each role explicitly as well.
grant all on function
    realtime.apply_rls(jsonb, integer),
    realtime.build_prepared_statement_sql(text, regclass, realtime.wal_column[]),
    realtime."cast"(text, regtype),
    realtime.check_equality_op(realtime.equality_op, regtype, text, text),
    realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean),
    realtime.is_visible_through_filters(realtime.wal_column[], realtime.user_defined_filter[]),
    realtime.quote_wal2json(regclass),
    realtime.subscription_check_filters(),
    realtime.to_regrole(text)
    to postgres, dashboard_user, anon, authenticated, service_role;
grant all on function
    realtime.broadcast_changes(text, text, text, text, text, record, record, text),
    realtime.list_changes(name, name, integer, integer),
    realtime.send(jsonb, text, text, boolean),
    realtime.send_binary(bytea, text, text, boolean),
    realtime.topic(),
    realtime.wal2json_escape_identifier(text)
    to postgres, dashboard_user;

-- Tables: the API roles read and write messages (policies decide which),
-- and read subscriptions.
grant all on table realtime.messages, realtime.subscription to postgres, dashboard_user;
grant select, insert, update on table realtime.messages to anon, authenticated, service_role;
grant select on table realtime.subscription to anon, authenticated, service_role;
grant all on sequence realtime.subscription_id_seq to postgres, dashboard_user;
grant usage on sequence realtime.subscription_id_seq to anon, authenticated, service_role;

-- What supabase_admin creates here later is open to postgres and the
-- dashboard.
alter default privileges for role supabase_admin in schema realtime
    grant all on sequences to postgres, dashboard_user;
alter default privileges for role supabase_admin in schema realtime
    grant all on functions to postgres, dashboard_user;
alter default privileges for role supabase_admin in schema realtime
    grant all on tables to postgres, dashboard_user;
