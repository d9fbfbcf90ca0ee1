-- Postgres Changes subscriptions of the Elixir server's poller.
create table realtime.subscription (
    id bigint generated always as identity,
    subscription_id uuid not null,
    entity regclass not null,
    filters realtime.user_defined_filter[] not null default '{}',
    claims jsonb not null,
    claims_role regrole not null generated always as (realtime.to_regrole(claims ->> 'role')) stored,
    created_at timestamp not null default timezone('utc', now()),
    action_filter text default '*'
        constraint subscription_action_filter_check
        check (action_filter in ('*', 'INSERT', 'UPDATE', 'DELETE')),
    selected_columns text[],
    constraint pk_subscription primary key (id)
);
create index ix_realtime_subscription_entity on realtime.subscription using btree (entity);
-- Named as PostgreSQL truncated the name the Elixir migration gave it.
create unique index subscription_subscription_id_entity_filters_action_filter_selec
    on realtime.subscription
    (subscription_id, entity, filters, action_filter, coalesce(selected_columns, '{}'));
create trigger tr_check_filters
    before insert or update on realtime.subscription
    for each row execute function realtime.subscription_check_filters();

-- Broadcast messages (private-channel authorization, Broadcast from
-- Database, replay), one partition per UTC day (see partitions.rs).
create table realtime.messages (
    topic text not null,
    extension text not null,
    payload jsonb,
    event text,
    private boolean default false,
    updated_at timestamp not null default now(),
    inserted_at timestamp not null default now(),
    id uuid not null default gen_random_uuid(),
    binary_payload bytea,
    constraint messages_pkey primary key (id, inserted_at)
) partition by range (inserted_at);
alter table realtime.messages
    add constraint messages_payload_exclusive
    check (payload is null or binary_payload is null) not valid;
-- Replay's lookup: private broadcasts of a topic, newest first.
create index messages_inserted_at_topic_index
    on realtime.messages (inserted_at desc, topic)
    where extension = 'broadcast' and private is true;
alter table realtime.messages enable row level security;

-- The bookkeeping table, created by the runner, as the dump leaves it.
alter table realtime.schema_migrations alter column inserted_at set default now();
