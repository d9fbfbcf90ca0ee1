do $r$
declare
    policy_grants text := current_setting('supautils.policy_grants', true);
begin
    if exists (select 1 from pg_extension where extname = 'orioledb') then
        create unique index if not exists subscription_subscription_id_entity_filters_action_filter_selec
            on realtime.subscription
            (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'));
    end if;
    if policy_grants like '%realtime.messages%' and policy_grants like '%realtime.subscription%' then
        revoke supabase_realtime_admin from postgres;
        grant usage on schema realtime to postgres with grant option;
        revoke create on schema realtime from postgres;
    end if;
end
$r$;
revoke all on realtime.schema_migrations
    from postgres, dashboard_user, anon, authenticated, service_role, supabase_realtime_admin;
