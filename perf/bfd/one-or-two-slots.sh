#!/usr/bin/env bash
# Walsender CPU for one workload decoded by one slot carrying both
# publications (Postgres Changes + messages) vs two slots (one each),
# drained by pg_recvlogical (pgoutput). Usage: DB_URL=postgres://.../db N=20000
# perf/bfd/one-or-two-slots.sh. The database needs the tenant schema
# (realtime.messages, realtime.send) -- start the server on it once.
set -euo pipefail
DB_URL=${DB_URL:?} ; N=${N:-20000} ; ROUNDS=${ROUNDS:-2}
BIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
q() { psql "$DB_URL" -qAtc "$1"; }
hz=$(getconf CLK_TCK)
q "create table if not exists public.bfd_pc (id bigserial primary key, body text)"
q "drop publication if exists bfd_pc_pub; create publication bfd_pc_pub for table public.bfd_pc"
q "select 1 from pg_publication where pubname='supabase_realtime_messages_publication'" | grep -q 1 ||
  q "create publication supabase_realtime_messages_publication for table realtime.messages"
dbname=${DB_URL##*/}
cpu_of() { # sum of utime+stime (ticks) of the walsenders of the given slots
  local t=0
  for pid in $(q "select active_pid from pg_replication_slots where slot_name in ($1) and active_pid is not null"); do
    read -r -a f < <(sed 's/.*) //' /proc/$pid/stat)
    t=$((t + f[11] + f[12]))
  done
  echo $t
}
run() { # $1 label, then slot:publications pairs
  local label=$1; shift
  local names="" pids=()
  for sp in "$@"; do
    local slot=${sp%%:*} pubs=${sp#*:}
    q "select pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
    "$BIN/pg_recvlogical" -d "$DB_URL" -S "$slot" --start -o proto_version=1 -o "publication_names=$pubs" -f /dev/null -F 1 &
    pids+=($!); names="$names${names:+,}'$slot'"
  done
  until [ "$(q "select count(*) from pg_replication_slots where slot_name in ($names) and active")" = "$#" ]; do sleep 0.1; done
  local c0; c0=$(cpu_of "$names"); local t0; t0=$(date +%s.%N)
  for i in $(seq 1 $((N / 500))); do
    q "begin; insert into public.bfd_pc (body) select repeat('x', 100) from generate_series(1, 500);
       select count(realtime.send(jsonb_build_object('n', g, 'pad', repeat('y', 100)), 'e', 'room:m', false)) from generate_series(1, 500) g; commit" >/dev/null
  done
  local end; end=$(q "select pg_current_wal_lsn()")
  until [ "$(q "select bool_and(confirmed_flush_lsn >= '$end') from pg_replication_slots where slot_name in ($names)")" = t ]; do sleep 0.05; done
  local c1; c1=$(cpu_of "$names"); local t1; t1=$(date +%s.%N)
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  sleep 0.3
  q "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name in ($names)" >/dev/null
  printf '%s: %d rows pg changes + %d messages, walsender cpu %.2f s, wall %.2f s\n' \
    "$label" "$N" "$N" "$(echo "($c1 - $c0) / $hz" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
}
for r in $(seq 1 "$ROUNDS"); do
  run one-slot "bfd_one:bfd_pc_pub,supabase_realtime_messages_publication"
  run two-slots "bfd_two_pc:bfd_pc_pub" "bfd_two_msg:supabase_realtime_messages_publication"
done
