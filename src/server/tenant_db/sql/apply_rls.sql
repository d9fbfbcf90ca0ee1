-- Postgres Changes for the Elixir server's poller: turns one wal2json
-- (format 2) change into the rows to deliver, one per subscriber role and
-- per set of selected columns, each with the subscriptions that may see
-- it (filters, then row level security under the subscriber's role and
-- claims, then column privileges).
create or replace function realtime.apply_rls(wal jsonb, max_record_bytes integer default (1024 * 1024))
    returns setof realtime.wal_rls
    language plpgsql
    as $fn$
declare
    entity_ regclass := (quote_ident(wal ->> 'schema') || '.' || quote_ident(wal ->> 'table'))::regclass;
    action realtime.action := case wal ->> 'action'
        when 'I' then 'INSERT'
        when 'U' then 'UPDATE'
        when 'D' then 'DELETE'
        else 'ERROR'
    end;
    is_rls_enabled bool := relrowsecurity from pg_class where oid = entity_;
    -- Only the subscriptions to this table that want this kind of change.
    subs realtime.subscription[] := array_agg(s)
        from realtime.subscription s
        where s.entity = entity_ and (s.action_filter = '*' or s.action_filter = action::text);
    too_big boolean := octet_length(wal::text) > max_record_bytes;
    new_cols realtime.wal_column[];
    old_cols realtime.wal_column[];
    v_role regrole;
    v_cols text[];
    v_sub uuid;
    v_claims jsonb;
    v_allowed bool;
    v_error text;
    -- Subscriptions of the current role that pass filters and RLS.
    role_visible uuid[];
    output jsonb;
    r record;
    g record;
begin
    perform set_config('role', null, true);

    -- Decode the new columns and the old identity once (typed values,
    -- primary key flags); `is_selectable` is set per role below.
    select
        array_agg(d.col order by d.n) filter (where d.k = 'columns'),
        array_agg(d.col order by d.n) filter (where d.k = 'identity')
    into new_cols, old_cols
    from (
        select list.k, x.n, (
                x.v ->> 'name', x.v ->> 'type', x.v ->> 'typeoid',
                realtime.cast((x.v -> 'value') #>> '{}',
                    coalesce((x.v ->> 'typeoid')::regtype, (x.v ->> 'type')::regtype)),
                exists (select 1 from jsonb_array_elements(wal -> 'pk') pk where pk ->> 'name' = x.v ->> 'name'),
                true
            )::realtime.wal_column as col
        from (values ('columns'), ('identity')) list(k)
        cross join lateral jsonb_array_elements(wal -> list.k) with ordinality x(v, n)
    ) d;

    for r in
        select claims_role from (select distinct claims_role from unnest(subs)) d
        order by claims_role::text
    loop
        v_role := r.claims_role;
        new_cols := array_agg((c.name, c.type_name, c.type_oid, c.value, c.is_pkey,
                pg_catalog.has_column_privilege(v_role, entity_, c.name, 'SELECT'))::realtime.wal_column)
            from unnest(new_cols) c;
        old_cols := array_agg((c.name, c.type_name, c.type_oid, c.value, c.is_pkey,
                pg_catalog.has_column_privilege(v_role, entity_, c.name, 'SELECT'))::realtime.wal_column)
            from unnest(old_cols) c;

        -- Inserts and updates need a primary key the role may read.
        v_error := null;
        if action <> 'DELETE' and count(1) = 0 from unnest(new_cols) c where c.is_pkey then
            v_error := 'Error 400: Bad Request, no primary key';
        elsif action <> 'DELETE'
            and sum(c.is_selectable::int) <> count(1) from unnest(new_cols) c where c.is_pkey then
            v_error := 'Error 401: Unauthorized';
        end if;

        role_visible := '{}';
        if v_error is null then
            if is_rls_enabled and action <> 'DELETE' then
                if (select 1 from pg_prepared_statements where name = 'walrus_rls_stmt' limit 1) > 0 then
                    deallocate walrus_rls_stmt;
                end if;
                execute realtime.build_prepared_statement_sql('walrus_rls_stmt', entity_, new_cols);
            end if;
            for v_sub, v_claims in
                select s.subscription_id, s.claims
                from unnest(subs) s
                where s.entity = entity_
                    and s.claims_role = v_role
                    and (realtime.is_visible_through_filters(new_cols, s.filters)
                        or (action = 'DELETE' and realtime.is_visible_through_filters(old_cols, s.filters)))
            loop
                if not is_rls_enabled or action = 'DELETE' then
                    role_visible := role_visible || v_sub;
                else
                    -- The role without its quotes, or set_config refuses it.
                    perform set_config('role', trim(both '"' from v_role::text), true),
                        set_config('request.jwt.claims', v_claims::text, true);
                    execute 'execute walrus_rls_stmt' into v_allowed;
                    -- Back to the connection's role before the loop fetches
                    -- its next rows: the subscriber's role may lack the
                    -- rights the fetch needs.
                    perform set_config('role', null, true);
                    if v_allowed then
                        role_visible := role_visible || v_sub;
                    end if;
                end if;
            end loop;
            perform set_config('role', null, true);
        end if;

        -- One row per distinct set of selected columns of this role.
        for g in
            select selected_columns
            from (select distinct s.selected_columns from unnest(subs) s where s.claims_role = v_role) d
            order by coalesce(array_to_string(selected_columns, ','), '')
        loop
            v_cols := g.selected_columns;
            if v_error is not null then
                return next (
                    jsonb_build_object('schema', wal ->> 'schema', 'table', wal ->> 'table', 'type', action),
                    is_rls_enabled,
                    (select array_agg(s.subscription_id) from unnest(subs) s
                        where s.claims_role = v_role and s.selected_columns is not distinct from v_cols),
                    array[v_error]
                )::realtime.wal_rls;
                continue;
            end if;
            output := jsonb_build_object(
                'schema', wal ->> 'schema',
                'table', wal ->> 'table',
                'type', action,
                'commit_timestamp', to_char(
                    (wal ->> 'timestamp')::timestamptz at time zone 'utc',
                    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
                ),
                'columns', (
                    select jsonb_agg(jsonb_build_object('name', a.attname, 'type', t.typname) order by a.attnum)
                    from pg_attribute a
                    join pg_type t on t.oid = a.atttypid
                    left join (
                        select unnest(conkey) as attnum from pg_constraint
                        where conrelid = entity_ and contype = 'p'
                    ) pk on pk.attnum = a.attnum
                    where a.attrelid = entity_
                        and a.attnum > 0
                        and pg_catalog.has_column_privilege(v_role, entity_, a.attname, 'SELECT')
                        and (v_cols is null or a.attname = any(v_cols) or pk.attnum is not null)
                )
            )
            || case when action in ('INSERT', 'UPDATE') then
                jsonb_build_object('record', (
                    -- Unchanged TOAST values are missing from the new
                    -- tuple: take them from the old one.
                    select jsonb_object_agg(
                        coalesce((c).name, (o).name),
                        case when (c).name is null then (o).value else (c).value end
                    )
                    from unnest(new_cols) c
                    full outer join unnest(old_cols) o on (c).name = (o).name
                    where coalesce((c).is_selectable, (o).is_selectable)
                        and (v_cols is null
                            or coalesce((c).name, (o).name) = any(v_cols)
                            or coalesce((c).is_pkey, (o).is_pkey))
                        and (not too_big or octet_length((c).value::text) <= 64)
                ))
                else '{}'::jsonb
            end
            || case when action in ('UPDATE', 'DELETE') then
                jsonb_build_object('old_record', (
                    select jsonb_object_agg((c).name, (c).value)
                    from unnest(old_cols) c
                    where (c).is_selectable
                        and (v_cols is null or (c).name = any(v_cols) or (c).is_pkey)
                        and (not too_big or octet_length((c).value::text) <= 64)
                        -- RLS cannot be checked on a deleted row: keys only.
                        and (action <> 'DELETE' or not is_rls_enabled or (c).is_pkey)
                ))
                else '{}'::jsonb
            end;
            return next (
                output,
                is_rls_enabled,
                coalesce((
                    select array_agg(s.subscription_id) from unnest(subs) s
                    where s.claims_role = v_role
                        and s.selected_columns is not distinct from v_cols
                        and s.subscription_id = any(role_visible)
                ), '{}'::uuid[]),
                case when too_big then array['Error 413: Payload Too Large'] else '{}' end
            )::realtime.wal_rls;
        end loop;
    end loop;
    perform set_config('role', null, true);
end;
$fn$;
