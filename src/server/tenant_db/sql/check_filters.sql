-- Trigger on realtime.subscription: rejects filters and selected columns
-- the subscriber's role may not read or whose values do not fit the
-- column, and sorts both so that the unique index sees one spelling.
create function realtime.subscription_check_filters() returns trigger
    language plpgsql
    as $fn$
declare
    -- Columns of the table the role may select, in table order.
    readable text[] := coalesce(array_agg(a.attname order by a.attnum), '{}'::text[])
        from pg_catalog.pg_attribute a
        where a.attrelid = new.entity
            and a.attnum > 0
            and not a.attisdropped
            and pg_catalog.has_column_privilege(new.claims ->> 'role', a.attrelid, a.attnum, 'SELECT');
    f realtime.user_defined_filter;
    f_type regtype;
    in_list jsonb;
    sel text;
begin
    for f in select * from unnest(new.filters) loop
        if not f.column_name = any(readable) then
            raise exception 'invalid column for filter %', f.column_name;
        end if;
        f_type := (
            select atttypid::regtype from pg_catalog.pg_attribute
            where attrelid = new.entity and attname = f.column_name
        );
        if f_type is null then
            raise exception 'failed to lookup type for column %', f.column_name;
        end if;
        case
            when f.op = 'in' then
                in_list := realtime.cast(f.value, (f_type::text || '[]')::regtype);
                if coalesce(jsonb_array_length(in_list), 0) > 100 then
                    raise exception 'too many values for `in` filter. Maximum 100';
                end if;
            when f.op = 'is' then
                if f.value not in ('null', 'true', 'false', 'unknown') then
                    raise exception 'invalid value for is filter: must be null, true, false, or unknown';
                end if;
                -- IS TRUE / FALSE / UNKNOWN need a boolean; catch it now
                -- rather than when a change arrives.
                if f.value <> 'null' and f_type <> 'boolean'::regtype then
                    raise exception 'is % filter requires a boolean column, got %', f.value, f_type::text;
                end if;
            when f.op in ('like', 'ilike') then
                if not exists (
                    select 1 from pg_catalog.pg_operator where oprname = '~~' and oprleft = f_type
                ) then
                    raise exception 'operator % requires a text-compatible column type, got %', f.op::text, f_type::text;
                end if;
            when f.op in ('match', 'imatch') then
                if not exists (
                    select 1 from pg_catalog.pg_operator
                    where oprname = case when f.op = 'imatch' then '~*' else '~' end
                        and oprleft = f_type
                        and oprright = f_type
                        and oprresult = 'boolean'::regtype
                ) then
                    raise exception 'operator % requires a text-compatible column type, got %', f.op::text, f_type::text;
                end if;
                -- A bad pattern is refused here, not in the change stream.
                begin
                    perform '' ~ f.value;
                exception when others then
                    raise exception 'invalid regular expression for % filter: %', f.op::text, sqlerrm;
                end;
            else
                -- Comparisons: the value must cast to the column's type.
                perform realtime.cast(f.value, f_type);
        end case;
    end loop;
    if new.selected_columns is not null then
        for sel in select * from unnest(new.selected_columns) loop
            if not sel = any(readable) then
                raise exception 'invalid column for select %', sel;
            end if;
        end loop;
    end if;
    new.filters := coalesce(
        array_agg(x order by x.column_name, x.op, x.value, x.negate), '{}'
    ) from unnest(new.filters) x;
    new.selected_columns := (select array_agg(c order by c) from unnest(new.selected_columns) c);
    return new;
end;
$fn$;
