# shellcheck shell=bash
# The private Postgres (scripts/dev-db) of a test run, as a named step.
#
#   start_dev_db LOGDIR   starts the cluster, or reuses a running one, as the
#                         step "postgres (scripts/dev-db)"; exports DEV_DB_URL
#                         (read by the Rust Postgres tests), DEV_DB_HOST,
#                         DEV_DB_PORT and DEV_DB_PASSWORD (substituted into
#                         tests/clients/servers.conf), and DEV_CONTROL_DB, a
#                         fresh empty database for the `tenants` instance's
#                         control database. Returns 1 if it failed.
#   stop_dev_db           stops the cluster if start_dev_db started it; one
#                         that was already running (a developer's) is left
#                         alone. Safe to call twice, and from an EXIT trap.

DEV_DB_STARTED_HERE=0

start_dev_db() {
  local logdir=$1 url
  if ! scripts/dev-db status >/dev/null 2>&1; then DEV_DB_STARTED_HERE=1; fi
  run_step "postgres (scripts/dev-db)" "$logdir/dev-db.log" scripts/dev-db start
  [[ $STEP_LAST_RC == 0 ]] || return 1
  url=$(scripts/dev-db url) || return 1
  # postgres://USER:PASSWORD@HOST:PORT/DB
  if [[ ! $url =~ ^postgres://[^:]+:([^@]*)@([^:/]+):([0-9]+)/ ]]; then
    echo "start_dev_db: unexpected URL from scripts/dev-db: $url" >&2
    return 1
  fi
  # A developer's long-lived cluster keeps the client suite's slot between
  # runs, retaining WAL (other work's too) until the lag cap trips on the
  # next run; each run starts from a fresh slot instead. The same for the
  # messages streams' slots (Broadcast from Database) earlier runs left.
  scripts/dev-db sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE (slot_name LIKE 'supabase_realtime_replication_slot%_clients_pg%'
           OR slot_name LIKE 'realtime_messages_slot%') AND NOT active" >/dev/null 2>&1 || true
  export DEV_DB_URL=$url
  export DEV_DB_PASSWORD=${BASH_REMATCH[1]} DEV_DB_HOST=${BASH_REMATCH[2]} DEV_DB_PORT=${BASH_REMATCH[3]}
  # The `tenants` server instance keeps its tenants in a control database of
  # its own (servers.conf), created empty on every run: tenants left by an
  # earlier run would make the admin API's creates conflict, and no other
  # instance may share its `_realtime` schema.
  if scripts/dev-db sql "DROP DATABASE IF EXISTS rt_ctl_clients WITH (FORCE)" >/dev/null 2>&1 &&
    scripts/dev-db sql "CREATE DATABASE rt_ctl_clients" >/dev/null 2>&1; then
    export DEV_CONTROL_DB=rt_ctl_clients
  else
    echo "start_dev_db: could not create the control database rt_ctl_clients" >&2
  fi
  echo "dev db: $DEV_DB_HOST:$DEV_DB_PORT"
}

stop_dev_db() {
  if [[ $DEV_DB_STARTED_HERE == 1 ]]; then
    DEV_DB_STARTED_HERE=0
    scripts/dev-db stop || true
  fi
}
