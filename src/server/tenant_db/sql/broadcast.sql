-- Broadcast: the topic a policy sees, and sending from the database.

-- The topic being authorized (set per transaction by the server and by
-- send()); null when unset or empty.
create function realtime.topic() returns text
    language sql stable
    as $fn$ select nullif(current_setting('realtime.topic', true), '')::text $fn$;

-- Queues a broadcast: one row in realtime.messages, which the server
-- streams to the topic's subscribers. The payload gets an `id` if it has
-- none. Never fails its caller: an error becomes a warning.
create function realtime.send(payload jsonb, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $fn$
declare
    msg_id uuid;
begin
    begin
        msg_id := gen_random_uuid();
        if not payload ? 'id' then
            payload := jsonb_set(payload, '{id}', to_jsonb(msg_id));
        end if;
        -- Policies on realtime.messages read the topic from here.
        execute format('set local realtime.topic to %L', topic);
        insert into realtime.messages (id, payload, event, topic, private, extension)
        values (msg_id, payload, event, topic, private, 'broadcast');
    exception when others then
        raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
    end;
end;
$fn$;

-- send() for a binary payload, stored as is.
create function realtime.send_binary(payload bytea, event text, topic text, private boolean default true)
    returns void
    language plpgsql
    as $fn$
begin
    perform set_config('realtime.topic', topic, true);
    insert into realtime.messages (binary_payload, event, topic, private, extension)
    values (payload, event, topic, private, 'broadcast');
exception when others then
    raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
end;
$fn$;

-- For row triggers: sends the change (record, old_record, operation,
-- table, schema) as a private broadcast on `topic_name`.
create function realtime.broadcast_changes(
    topic_name text, event_name text, operation text, table_name text, table_schema text,
    new record, old record, level text default 'ROW'
) returns void
    language plpgsql
    as $fn$
begin
    if level = 'STATEMENT' then
        raise exception 'function can only be triggered for each row, not for each statement';
    end if;
    if operation is null or operation not in ('INSERT', 'UPDATE', 'DELETE') then
        raise exception 'Unexpected operation type: %', operation;
    end if;
    perform realtime.send(
        jsonb_build_object(
            'old_record', old, 'record', new, 'operation', operation,
            'table', table_name, 'schema', table_schema
        ),
        event_name,
        topic_name
    );
exception when others then
    raise exception 'Failed to process the row: %', sqlerrm;
end;
$fn$;
