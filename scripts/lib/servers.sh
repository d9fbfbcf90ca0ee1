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
#
# Values may name environment variables as ${NAME} (braces required), which
# are substituted when the instance starts (e.g. DB_PORT=${DEV_DB_PORT}). An
# instance that names an unset variable is not started (a warning says which
# variable); the suite that needs it then fails for want of RT_<NAME>_PORT.
#
# RT_SERVERS_ENV (space-separated ENV=VALUE words) is given to every
# instance after its own line, e.g. RT_SERVERS_ENV="SHARDS=4" to run the
# suites against four shards.

RT_SERVER_PIDS=()
# Instances started by start_servers, for the health wait.
RT_SERVER_NAMES=()

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

# Prints WORD with every ${NAME} replaced by that variable's value. Returns 1
# (printing the variable's name) if one is unset, 2 on a malformed reference.
_rt_expand() {
  local s=$1 out="" name
  while [[ $s == *'${'* ]]; do
    out+=${s%%'${'*}
    s=${s#*'${'}
    name=${s%%\}*}
    if [[ $s != *\}* || ! $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      echo "malformed \${...} in '$1'"
      return 2
    fi
    if [[ -z ${!name+set} ]]; then
      echo "$name"
      return 1
    fi
    out+=${!name}
    s=${s#*\}}
  done
  printf '%s' "$out$s"
}

start_servers() {
  local bin=$1 logdir=$2
  local conf=${RT_SERVERS_CONF:-tests/clients/servers.conf}
  [[ -x "$bin" ]] || { echo "start_servers: $bin is not an executable" >&2; return 1; }
  mkdir -p "$logdir"
  _rt_raise_limits
  local name port rest used=" "
  RT_SERVER_NAMES=()
  while read -r name port rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    local envs=() words=() word value rc missing=""
    # ENV=VALUE words split on whitespace, never glob-expanded.
    read -ra words <<<"$rest ${RT_SERVERS_ENV:-}"
    for word in "${words[@]}"; do
      rc=0
      value=$(_rt_expand "$word") || rc=$?
      if [[ $rc == 1 ]]; then
        missing+=" $value"
      elif [[ $rc != 0 ]]; then
        echo "servers.conf: $name: $value" >&2
        return 1
      fi
      envs+=("${value//%20/ }")
    done
    if [[ -n $missing ]]; then
      echo "not starting $name: servers.conf names unset variable(s)${missing}" >&2
      continue
    fi
    local upper
    upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
    local override_var="RT_${upper}_PORT"
    [[ -n "${!override_var:-}" ]] && port=${!override_var}
    while ! _rt_port_free "$port" || [[ "$used" == *" $port "* ]]; do port=$((port + 1)); done
    used+="$port "
    export "RT_${upper}_PORT=$port"
    env BIND_ADDR=127.0.0.1 PORT="$port" RUST_LOG="${RUST_LOG:-info}" "${envs[@]}" "$bin" >"$logdir/server-$name.log" 2>&1 &
    RT_SERVER_PIDS+=("$!")
    RT_SERVER_NAMES+=("$name")
    echo "started $name (pid $!) on 127.0.0.1:$port, log $logdir/server-$name.log"
  done <"$conf"

  local deadline=$((SECONDS + 30)) unhealthy
  while :; do
    unhealthy=""
    for name in "${RT_SERVER_NAMES[@]}"; do
      local upper var
      upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
      var="RT_${upper}_PORT"
      _rt_healthy "${!var}" || unhealthy+=" $name(:${!var})"
    done
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
