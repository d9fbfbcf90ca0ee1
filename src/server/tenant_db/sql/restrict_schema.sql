-- Step 20260707120000 (restrict_realtime_schema): supabase_realtime_admin
-- owns every realtime object; with supautils policy grants on both tables
-- postgres stops being a member of it and may no longer create in the
-- schema; nobody but the migrator touches the bookkeeping.
do $r$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'supabase_realtime_admin') then
        create role supabase_realtime_admin with noinherit nologin noreplication;
    end if;
    -- OrioleDB cannot change the owner of a type an index uses.
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        drop index if exists realtime.subscription_subscription_id_entity_filters_action_filter_selec;
    end if;
end
$r$;
