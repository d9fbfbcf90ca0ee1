# shellcheck shell=bash
# Runs the real-client conformance suites against running servers
# (see servers.sh). Call after start_servers; uses run_step from steps.sh.
#
# CLIENT_SUITES (space-separated) selects suites; default all of:
#   realtime-js      realtime-js on the `main`, `limits`, ... instances
#   realtime-js-pg   realtime-js postgres_changes on the `pg` instance (dev-db)
#   phoenix          phoenix.js
#   openapi          /api/openapi against real answers of every endpoint
#   inspector        the inspector page in headless Chromium (screenshot:
#                    LOGDIR/inspector.png)
#   python           Python `realtime`

_rt_suite_selected() {
  [[ " ${CLIENT_SUITES:-realtime-js realtime-js-pg phoenix openapi inspector python realtime-js-cluster} " == *" $1 "* ]]
}

# run_client_suites LOGDIR [LABEL]: LABEL (e.g. "4 shards") names the
# steps and their logs apart when the suites run more than once.
run_client_suites() {
  local logdir=$1 label=${2:-}
  local tag="" file=""
  if [[ -n $label ]]; then
    tag=" ($label)"
    file="-${label// /-}"
  fi
  if _rt_suite_selected realtime-js; then
    run_step "client: realtime-js$tag" "$logdir/client-realtime-js$file.log" \
      timeout 900 node tests/clients/js/run.mjs realtime-js
  fi
  if _rt_suite_selected realtime-js-pg; then
    run_step "client: realtime-js pg$tag" "$logdir/client-realtime-js-pg$file.log" \
      timeout 600 node tests/clients/js/run.mjs realtime-js-pg
  fi
  if _rt_suite_selected phoenix; then
    run_step "client: phoenix.js$tag" "$logdir/client-phoenix$file.log" \
      timeout 300 node tests/clients/js/run.mjs phoenix
  fi
  if _rt_suite_selected openapi; then
    run_step "client: openapi$tag" "$logdir/client-openapi$file.log" \
      timeout 300 node tests/clients/js/run.mjs openapi
  fi
  if _rt_suite_selected inspector; then
    if command -v chromium >/dev/null 2>&1 || [[ -n ${CHROMIUM:-} ]]; then
      run_step "client: inspector (chromium)$tag" "$logdir/client-inspector$file.log" \
        env TEST_LOG_DIR="$logdir" timeout 180 node tests/clients/js/run.mjs inspector
    else
      skip_step "client: inspector (chromium)$tag" "no chromium: scripts/install-deps could not install the Debian package (see $logdir/install-deps.log)"
    fi
  fi
  if _rt_suite_selected python; then
    run_step "client: python realtime$tag" "$logdir/client-python$file.log" \
      timeout 600 target/pyenv/bin/python -m pytest -c tests/clients/python/pytest.ini tests/clients/python -v
  fi
}
