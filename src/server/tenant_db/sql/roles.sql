-- The role that owns the realtime objects: it may act as each API role
-- (without inheriting their rights) and may raise its own log level.
do $roles$
begin
    if exists (select from pg_catalog.pg_roles where rolname = 'supabase_realtime_admin') then
        return;
    end if;
    create role supabase_realtime_admin
        nosuperuser noinherit nocreaterole nocreatedb nologin noreplication nobypassrls;
    alter role supabase_realtime_admin set search_path to 'public', 'extensions', 'realtime';
    -- INHERIT FALSE on a membership exists from PostgreSQL 16 on; 15 has
    -- only the role-wide NOINHERIT above, which has the same effect here.
    if current_setting('server_version_num')::int >= 160000 then
        execute 'grant anon, authenticated, service_role to supabase_realtime_admin
                 with inherit false granted by supabase_admin';
    else
        execute 'grant anon, authenticated, service_role to supabase_realtime_admin
                 granted by supabase_admin';
    end if;
    grant set on parameter log_min_messages to supabase_realtime_admin;
end
$roles$;
