# shellcheck shell=bash
# Named steps with a closing summary table.
#
#   run_step NAME LOGFILE CMD...   runs CMD (output to the terminal and LOGFILE),
#                                  records pass/FAIL, duration and the last
#                                  `N passed`-style line of its output
#   skip_step NAME REASON
#   print_summary                  prints the table and a closing `total: N passed, N failed`
#                                  line; returns 1 if any step failed

STEP_LINES=()
STEP_FAILED=0
STEP_LAST_RC=0
TOTAL_PASSED=0
TOTAL_FAILED=0

run_step() {
  local name=$1 log=$2
  shift 2
  echo
  echo "=== ${name}: $*"
  mkdir -p "$(dirname "$log")"
  local t0=$SECONDS rc
  if "$@" 2>&1 | tee "$log"; then rc=0; else rc=${PIPESTATUS[0]}; fi
  local counts
  counts=$(grep -E '([0-9]+ passed|[0-9]+ failed|tests run:|Summary \[)' "$log" | tail -n 1 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[[:space:]=]*//' -e 's/[[:space:]=]*$//' || true)
  STEP_LAST_RC=$rc
  local np nf
  np=$(grep -oE '[0-9]+ passed' <<<"$counts" | head -n 1 | cut -d' ' -f1 || true)
  nf=$(grep -oE '[0-9]+ failed' <<<"$counts" | head -n 1 | cut -d' ' -f1 || true)
  np=${np:-0}
  nf=${nf:-0}
  # A failing step that reports no failed tests (fmt, clippy, build, a crash) counts as one.
  if [[ $rc != 0 && $nf == 0 ]]; then nf=1; fi
  TOTAL_PASSED=$((TOTAL_PASSED + np))
  TOTAL_FAILED=$((TOTAL_FAILED + nf))
  local verdict=pass
  if [[ $rc != 0 ]]; then
    verdict="FAIL (exit $rc)"
    STEP_FAILED=1
  fi
  STEP_LINES+=("$(printf '%-34s %-14s %5ss  %s' "$name" "$verdict" "$((SECONDS - t0))" "$counts")")
  return 0
}

skip_step() {
  TOTAL_FAILED=$((TOTAL_FAILED + 1))
  STEP_LINES+=("$(printf '%-34s %-14s %5s   %s' "$1" "skipped" "-" "$2")")
  STEP_FAILED=1
}

print_summary() {
  echo
  echo "=== summary"
  local l
  for l in "${STEP_LINES[@]}"; do echo "  $l"; done
  if [[ $STEP_FAILED == 0 ]]; then
    echo "all steps passed"
  else
    echo "SOME STEPS FAILED"
  fi
  # Closing line: tests passed/failed over all steps (a failed step without
  # test counts, or a skipped one, counts as one failure).
  echo "total: ${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed"
  [[ $STEP_FAILED == 0 ]]
}
