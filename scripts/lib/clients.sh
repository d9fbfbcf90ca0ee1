# shellcheck shell=bash
# Runs the real-client conformance suites against running servers
# (see servers.sh). Call after start_servers; uses run_step from steps.sh.
#
# CLIENT_SUITES (space-separated) selects suites; default all of:
#   realtime-js      realtime-js on the `main`, `limits`, ... instances
#   realtime-js-pg   realtime-js postgres_changes on the `pg` instance (dev-db)
#   phoenix          phoenix.js
#   python           Python `realtime`

_rt_suite_selected() {
  [[ " ${CLIENT_SUITES:-realtime-js realtime-js-pg phoenix python} " == *" $1 "* ]]
}

run_client_suites() {
  local logdir=$1
  if _rt_suite_selected realtime-js; then
    run_step "client: realtime-js" "$logdir/client-realtime-js.log" \
      timeout 900 node tests/clients/js/run.mjs realtime-js
  fi
  if _rt_suite_selected realtime-js-pg; then
    run_step "client: realtime-js pg" "$logdir/client-realtime-js-pg.log" \
      timeout 600 node tests/clients/js/run.mjs realtime-js-pg
  fi
  if _rt_suite_selected phoenix; then
    run_step "client: phoenix.js" "$logdir/client-phoenix.log" \
      timeout 300 node tests/clients/js/run.mjs phoenix
  fi
  if _rt_suite_selected python; then
    run_step "client: python realtime" "$logdir/client-python.log" \
      timeout 600 target/pyenv/bin/python -m pytest -c tests/clients/python/pytest.ini tests/clients/python -v
  fi
}
