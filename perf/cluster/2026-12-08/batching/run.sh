#!/usr/bin/env bash
# Ad hoc: packets (net_dev_xmit) and io_uring submissions per delivery, single vs cluster, 200 msg/s, 3000 subs.
set -euo pipefail
cd /work/wt-clusterperf
export RUST_LOG=warn TENANT_MAX_EVENTS_PER_SECOND=100000000 TENANT_MAX_JOINS_PER_SECOND=1000000 TENANT_MAX_CONCURRENT_USERS=1000000 TENANT_MAX_CHANNELS_PER_CLIENT=1000
export CLUSTER_DIR=/tmp/realtime-cluster-batch-$(id -u)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
out=/tmp/clusterperf-batch; rm -rf $out; mkdir -p $out
ev=net:net_dev_xmit,io_uring:io_uring_submit_req,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev
lg() { taskset -c 1 target/release/realtime-loadgen broadcast --addr "$1" --server-pid "$2" --cores 1 --connect-rate 5000 --quiet --subscribers 3000 --payload-size 100 --proto binary --rate 200 --duration 8 --drain 1 --out $out/$3.json > $out/$3.md 2>&1 & }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env BIND_ADDR=127.0.0.1 PORT=$port SHARDS=1 taskset -c 0 target/release/realtime > $out/single.log 2>&1 &
sp=$!
until curl -fsS -m 1 http://127.0.0.1:$port/healthcheck 2>/dev/null | grep -q ok; do sleep 0.1; done
taskset -a -p -c 0 $sp >/dev/null
lg 127.0.0.1:$port $sp single; l=$!
sleep 4; perf stat -e $ev -p $sp -o $out/single.stat -- sleep 4; wait $l
kill $sp; wait $sp 2>/dev/null || true
taskset -c 0 scripts/cluster up 3 --shards 1 > $out/up.log
pids=$(awk '$2!="nats"{print $1}' $CLUSTER_DIR/pids | paste -sd,); addrs=$(awk '$2!="nats"{print "127.0.0.1:"$3}' $CLUSTER_DIR/pids | paste -sd,)
np=$(awk '$2=="nats"{print $1}' $CLUSTER_DIR/pids)
for p in $(tr , ' ' <<<$pids) $np; do taskset -a -p -c 0 $p >/dev/null; done
lg $addrs $pids cluster; l=$!
sleep 4; perf stat -e $ev -p $pids -o $out/cluster.stat -- sleep 4; wait $l
scripts/cluster down >/dev/null
