-- The Elixir poller's read: the slot's changes (wal2json format 2, only
-- the actions and tables the publication has) through apply_rls. Always at
-- least one row: with nothing for subscribers, a row of nulls carrying
-- how many changes the slot gave.
create function realtime.list_changes(
    publication name, slot_name name, max_changes integer, max_record_bytes integer
) returns table(wal jsonb, is_rls_enabled boolean, subscription_ids uuid[], errors text[], slot_changes_count bigint)
    language sql
    set log_min_messages to 'fatal'
    as $fn$
    with pub as (
        select
            concat_ws(',',
                case when bool_or(pubinsert) then 'insert' end,
                case when bool_or(pubupdate) then 'update' end,
                case when bool_or(pubdelete) then 'delete' end
            ) as actions,
            coalesce(
                string_agg(realtime.quote_wal2json(format('%I.%I', schemaname, tablename)::regclass), ',')
                    filter (where pt.tablename is not null),
                ''
            ) as tables
        from pg_publication p
        left join pg_publication_tables pt on pt.pubname = p.pubname
        where p.pubname = publication
        group by p.pubname
        limit 1
    ),
    -- Materialized: the slot is read exactly once.
    changes as materialized (
        select ch.*, pub.tables
        from pub, pg_logical_slot_get_changes(
            slot_name, null, max_changes,
            'include-pk', 'true',
            'include-transaction', 'false',
            'include-timestamp', 'true',
            'include-type-oids', 'true',
            'format-version', '2',
            'actions', pub.actions,
            'add-tables', pub.tables
        ) ch
    ),
    counted as (
        select count(*)::bigint as n from changes where changes.tables <> ''
    ),
    visible as (
        select v.wal, v.is_rls_enabled, v.subscription_ids, v.errors
        from changes, realtime.apply_rls(
            wal := changes.data::jsonb, max_record_bytes := max_record_bytes
        ) v(wal, is_rls_enabled, subscription_ids, errors)
        where changes.tables <> '' and v.subscription_ids[1] is not null
    )
    select v.wal, v.is_rls_enabled, v.subscription_ids, v.errors, k.n from visible v, counted k
    union all
    select null, null, null, null, k.n from counted k where not exists (select 1 from visible)
$fn$;
