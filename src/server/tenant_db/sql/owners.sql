-- Owners, as the Elixir server's last migration leaves them:
-- supabase_realtime_admin owns what the realtime schema holds.
alter type realtime.action owner to supabase_realtime_admin;
alter type realtime.equality_op owner to supabase_realtime_admin;
alter type realtime.user_defined_filter owner to supabase_realtime_admin;
alter type realtime.wal_column owner to supabase_realtime_admin;
alter type realtime.wal_rls owner to supabase_realtime_admin;
alter table realtime.messages owner to supabase_realtime_admin;
alter table realtime.subscription owner to supabase_realtime_admin;
alter function realtime.apply_rls(jsonb, integer) owner to supabase_realtime_admin;
alter function realtime.broadcast_changes(text, text, text, text, text, record, record, text) owner to supabase_realtime_admin;
alter function realtime.build_prepared_statement_sql(text, regclass, realtime.wal_column[]) owner to supabase_realtime_admin;
alter function realtime."cast"(text, regtype) owner to supabase_realtime_admin;
alter function realtime.check_equality_op(realtime.equality_op, regtype, text, text) owner to supabase_realtime_admin;
alter function realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.is_visible_through_filters(realtime.wal_column[], realtime.user_defined_filter[]) owner to supabase_realtime_admin;
alter function realtime.list_changes(name, name, integer, integer) owner to supabase_realtime_admin;
alter function realtime.quote_wal2json(regclass) owner to supabase_realtime_admin;
alter function realtime.send(jsonb, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.send_binary(bytea, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.subscription_check_filters() owner to supabase_realtime_admin;
alter function realtime.to_regrole(text) owner to supabase_realtime_admin;
alter function realtime.topic() owner to supabase_realtime_admin;
alter function realtime.wal2json_escape_identifier(text) owner to supabase_realtime_admin;
