-- Schema and types of the tenant database's realtime objects.
create schema if not exists realtime;
alter schema realtime owner to supabase_admin;

-- A change's kind as reported to subscribers.
create type realtime.action as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'ERROR');

-- Filter operators of a Postgres Changes subscription.
create type realtime.equality_op as enum (
    'eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in',
    'like', 'ilike', 'is', 'match', 'imatch', 'isdistinct'
);

-- One `column=op.value` filter; `negate` for the `not.` prefix.
create type realtime.user_defined_filter as (
    column_name text,
    op realtime.equality_op,
    value text,
    negate boolean
);

-- One column of a decoded WAL change.
create type realtime.wal_column as (
    name text,
    type_name text,
    type_oid oid,
    value jsonb,
    is_pkey boolean,
    is_selectable boolean
);

-- One output row of apply_rls: the change as delivered, and to whom.
create type realtime.wal_rls as (
    wal jsonb,
    is_rls_enabled boolean,
    subscription_ids uuid[],
    errors text[]
);
