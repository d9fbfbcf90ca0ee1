# shellcheck shell=bash
# Runs the real-client conformance suites against running servers
# (see servers.sh). Call after start_servers; uses run_step from steps.sh.

run_client_suites() {
  local logdir=$1
  run_step "client: realtime-js" "$logdir/client-realtime-js.log" \
    timeout 900 node tests/clients/js/run.mjs realtime-js
  run_step "client: phoenix.js" "$logdir/client-phoenix.log" \
    timeout 300 node tests/clients/js/run.mjs phoenix
  run_step "client: python realtime" "$logdir/client-python.log" \
    timeout 600 target/pyenv/bin/python -m pytest -c tests/clients/python/pytest.ini tests/clients/python -v
}
