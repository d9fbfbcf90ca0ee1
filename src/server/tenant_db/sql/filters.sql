-- Helpers of Postgres Changes (the Elixir server's poller): value casts,
-- filter checks, wal2json quoting and the subscription filter trigger.

-- A role name as regrole (for the generated `claims_role` column).
create function realtime.to_regrole(role_name text) returns regrole
    language sql immutable
    as $fn$ select role_name::regrole $fn$;

-- A WAL value's text as JSON of its column type; bytea keeps its text
-- form (casting it would encode it twice).
create function realtime."cast"(val text, type_ regtype) returns jsonb
    language plpgsql immutable
    as $fn$
declare
    out_json jsonb;
begin
    if type_::text = 'bytea' then
        return to_jsonb(val);
    end if;
    execute format('select to_jsonb(%L::' || type_::text || ')', val) into out_json;
    return out_json;
end
$fn$;

-- The four-argument form, kept for old callers: the comparison operators
-- and `in` only.
create function realtime.check_equality_op(
    op realtime.equality_op, type_ regtype, val_1 text, val_2 text
) returns boolean
    language plpgsql immutable
    as $fn$
declare
    sym text := coalesce(
        '{"eq": "=", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "in": "= any"}'::jsonb
            ->> op::text,
        'UNKNOWN OP'
    );
    rhs_type text := case when op = 'in' then type_::text || '[]' else type_::text end;
    outcome boolean;
begin
    execute format(
        'select %L::' || type_::text || ' ' || sym || ' ( %L::' || rhs_type || ')',
        val_1, val_2
    ) into outcome;
    return outcome;
end;
$fn$;

-- Whether `val_1 <op> val_2` holds with both sides of type `type_`;
-- `negate` turns it around (`is` and `isdistinct` take their NOT forms).
create function realtime.check_equality_op(
    op realtime.equality_op, type_ regtype, val_1 text, val_2 text, negate boolean
) returns boolean
    language plpgsql stable
    as $fn$
declare
    sym text;
    outcome boolean;
begin
    if op = 'isdistinct' then
        execute format(
            'select %L::%s %s %L::%s',
            val_1, type_::text,
            case when negate then 'IS NOT DISTINCT FROM' else 'IS DISTINCT FROM' end,
            val_2, type_::text
        ) into outcome;
        return outcome;
    end if;
    if op = 'is' then
        -- The right side is a keyword, never a literal.
        if val_2 not in ('null', 'true', 'false', 'unknown') then
            raise exception 'invalid value for is filter: must be null, true, false, or unknown';
        end if;
        execute format(
            'select %L::%s %s %s',
            val_1, type_::text,
            case when negate then 'IS NOT' else 'IS' end,
            upper(val_2)
        ) into outcome;
        return outcome;
    end if;
    sym := case op
        when 'eq' then '='
        when 'neq' then '!='
        when 'lt' then '<'
        when 'lte' then '<='
        when 'gt' then '>'
        when 'gte' then '>='
        when 'in' then '= any'
        when 'like' then 'LIKE'
        when 'ilike' then 'ILIKE'
        when 'match' then '~'
        when 'imatch' then '~*'
    end;
    if sym is null then
        raise exception 'unsupported equality operator: %', op::text;
    end if;
    execute format(
        'select %L::%s %s (%L::%s)',
        val_1, type_::text, sym, val_2,
        case when op = 'in' then type_::text || '[]' else type_::text end
    ) into outcome;
    return case when negate then not outcome else outcome end;
end;
$fn$;

-- True when every filter names a column of the change and holds for it
-- (no filters: always true; a filter on an absent column: false).
create function realtime.is_visible_through_filters(
    columns realtime.wal_column[], filters realtime.user_defined_filter[]
) returns boolean
    language sql stable
    as $fn$
    select
        filters is null
        or array_length(filters, 1) is null
        or coalesce(
            count(col.name) = count(1)
            and sum(
                realtime.check_equality_op(
                    op := f.op,
                    type_ := coalesce(col.type_oid::regtype, col.type_name::regtype),
                    val_1 := col.value #>> '{}',
                    val_2 := f.value,
                    negate := coalesce(f.negate, false)
                )::int
            ) filter (where col.name is not null) = count(col.name),
            false
        )
    from unnest(filters) f
    left join unnest(columns) col on f.column_name = col.name;
$fn$;

-- The PREPARE statement that asks whether the row with the change's
-- primary key is visible (run under the subscriber's role).
create function realtime.build_prepared_statement_sql(
    prepared_statement_name text, entity regclass, columns realtime.wal_column[]
) returns text
    language sql
    as $fn$
    select 'prepare ' || prepared_statement_name
        || ' as select exists(select 1 from ' || entity
        || ' where ' || string_agg(quote_ident(k.name) || '=' || quote_nullable(k.value #>> '{}'), ' and ')
        || ')'
    from unnest(columns) k
    where k.is_pkey
    group by entity
$fn$;

-- wal2json's escaping of a name in `add-tables`: a backslash before each
-- backslash, comma, dot and whitespace character.
create function realtime.wal2json_escape_identifier(name text) returns text
    language sql immutable strict
    as $fn$ select regexp_replace(name, '([\\,.[:space:]])', '\\\1', 'g') $fn$;

-- `schema.table` of a relation as wal2json's `add-tables` wants it.
create function realtime.quote_wal2json(entity regclass) returns text
    language sql immutable strict
    as $fn$
    select realtime.wal2json_escape_identifier(n.nspname::text)
        || '.' || realtime.wal2json_escape_identifier(c.relname::text)
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where c.oid = entity
$fn$;
