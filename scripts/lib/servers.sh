# shellcheck shell=bash
# Start/stop the server instances described in tests/clients/servers.conf.
#
#   source scripts/lib/servers.sh
#   start_servers target/release/realtime target/test-logs   # exports RT_<NAME>_PORT
#   stop_servers                                             # also run from an EXIT trap
#
# Each instance gets BIND_ADDR=127.0.0.1, PORT (the configured one or the next
# free port above it) and the env listed on its line; stdout+stderr go to
# <logdir>/server-<name>.log. Waits for GET /healthcheck on every instance.

RT_SERVER_PIDS=()

_rt_port_free() {
  # Free if nothing accepts a TCP connection on it.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_rt_raise_limits() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # glommio locks memory for its rings; as root this always works.
  ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -Hl)" 2>/dev/null || true
}

_rt_healthy() {
  local port=$1
  if command -v curl >/dev/null 2>&1; then
    [[ "$(curl -s -m 1 "http://127.0.0.1:${port}/healthcheck" 2>/dev/null)" == "ok" ]]
  else
    exec 4<>"/dev/tcp/127.0.0.1/${port}" 2>/dev/null || return 1
    printf 'GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&4
    local reply
    reply=$(timeout 1 cat <&4 2>/dev/null || true)
    exec 4>&- 2>/dev/null || true
    [[ "$reply" == *$'\r\n\r\nok'* ]]
  fi
}

start_servers() {
  local bin=$1 logdir=$2
  local conf=${RT_SERVERS_CONF:-tests/clients/servers.conf}
  [[ -x "$bin" ]] || { echo "start_servers: $bin is not an executable" >&2; return 1; }
  mkdir -p "$logdir"
  _rt_raise_limits
  local name port rest used=" "
  while read -r name port rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    local upper
    upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
    local override_var="RT_${upper}_PORT"
    [[ -n "${!override_var:-}" ]] && port=${!override_var}
    while ! _rt_port_free "$port" || [[ "$used" == *" $port "* ]]; do port=$((port + 1)); done
    used+="$port "
    export "RT_${upper}_PORT=$port"
    # shellcheck disable=SC2086  # $rest is a list of ENV=VALUE words by design
    env BIND_ADDR=127.0.0.1 PORT="$port" RUST_LOG="${RUST_LOG:-info}" $rest "$bin" >"$logdir/server-$name.log" 2>&1 &
    RT_SERVER_PIDS+=("$!")
    echo "started $name (pid $!) on 127.0.0.1:$port, log $logdir/server-$name.log"
  done <"$conf"

  local deadline=$((SECONDS + 30)) unhealthy
  while :; do
    unhealthy=""
    while read -r name port rest; do
      [[ -z "$name" || "$name" == \#* ]] && continue
      local upper var
      upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
      var="RT_${upper}_PORT"
      _rt_healthy "${!var}" || unhealthy+=" $name(:${!var})"
    done <"$conf"
    [[ -z "$unhealthy" ]] && break
    for pid in "${RT_SERVER_PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "a server exited during startup (pid $pid); logs:" >&2
        tail -n 20 "$logdir"/server-*.log >&2
        return 1
      fi
    done
    if ((SECONDS > deadline)); then
      echo "servers not healthy after 30 s:${unhealthy}; logs:" >&2
      tail -n 20 "$logdir"/server-*.log >&2
      return 1
    fi
    sleep 0.2
  done
  echo "all servers healthy"
}

stop_servers() {
  local pid
  for pid in "${RT_SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${RT_SERVER_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  RT_SERVER_PIDS=()
}
