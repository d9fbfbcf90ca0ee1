#!/usr/bin/env python3
"""Side-by-side summary of a scripts/nats-clients run.

Usage: nats-clients-report.py DIR NICE LOADAVG  (markdown on stdout)

Reads DIR/<client>-<round>.json (realtime-loadgen nats-client) and prints,
per client, the median over rounds of: saturation messages/s and CPU-s per
million messages (client process, nats-server), the latency phase's client
CPU (with and without the publisher's schedule wake-ups, which are the
load generator's, not the client's), per-side CPU, p50/p99/p99.9, threads
and RSS; then async-nats / glommio ratios, then every round's own rows.
"""

import glob
import json
import os
import statistics
import sys

CLIENTS = ["glommio", "async-nats"]
PUB = {"glommio": ["shard-pub"], "async-nats": ["shard-pub", "tokio-pub"]}
SUB = {"glommio": ["shard-sub"], "async-nats": ["tokio-sub", "shard-sub"]}


def figures(r):
    sat, lat = (next(p for p in r["phases"] if p["phase"] == n) for n in ("saturation", "latency"))
    threads_lat = dict(lat["threads_per_million"])
    client = r["client"]
    pub = sum(threads_lat.get(t, 0) for t in PUB[client]) - lat["schedule_s_per_million"]
    sub = sum(threads_lat.get(t, 0) for t in SUB[client])
    return {
        "sat_msgs": sat["msgs_per_s"],
        "sat_cpu": sat["cpu_s_per_million"],
        "sat_nats": sat["nats_cpu_s_per_million"] or 0.0,
        "lat_cpu": lat["cpu_s_per_million"],
        "lat_cpu_net": lat["cpu_s_per_million"] - lat["schedule_s_per_million"],
        "lat_pub": pub,
        "lat_sub": sub,
        "lat_nats": lat["nats_cpu_s_per_million"] or 0.0,
        "p50": lat["latency"]["p50_ms"],
        "p99": lat["latency"]["p99_ms"],
        "p999": lat["latency"]["p999_ms"],
        "lag_p99": lat["lag"]["p99_ms"],
        "csw": lat["voluntary_per_msg"] + lat["involuntary_per_msg"],
        "threads": r.get("threads") or 0,
        "rss_mib": (r.get("rss_bytes") or 0) / 1048576,
        "lost": sum(p["sent"] - p["received"] for p in r["phases"]) + r["out_of_order"],
    }


ROWS = [
    ("saturation: messages/s", "sat_msgs", "{:,.0f}", True),
    ("saturation: client CPU-s / M msgs", "sat_cpu", "{:.2f}", False),
    ("saturation: nats-server CPU-s / M msgs", "sat_nats", "{:.2f}", False),
    ("latency phase: client CPU-s / M msgs (all)", "lat_cpu", "{:.1f}", False),
    ("latency phase: client CPU-s / M msgs (without the schedule's wake-ups)", "lat_cpu_net", "{:.1f}", False),
    ("latency phase: publishing side (shard-pub [+ tokio-pub] - schedule)", "lat_pub", "{:.1f}", False),
    ("latency phase: receiving side ([tokio-sub +] shard-sub)", "lat_sub", "{:.1f}", False),
    ("latency phase: nats-server CPU-s / M msgs", "lat_nats", "{:.1f}", False),
    ("latency phase: context switches / msg", "csw", "{:.2f}", False),
    ("publish -> receipt p50 ms", "p50", "{:.3f}", False),
    ("publish -> receipt p99 ms", "p99", "{:.3f}", False),
    ("publish -> receipt p99.9 ms", "p999", "{:.3f}", False),
    ("sender lag p99 ms (the schedule, both alike)", "lag_p99", "{:.3f}", False),
    ("threads", "threads", "{:.0f}", False),
    ("RSS MiB", "rss_mib", "{:.1f}", False),
    ("lost or reordered", "lost", "{:.0f}", False),
]


def main():
    out, nice, load = sys.argv[1], sys.argv[2], sys.argv[3]
    runs = {c: [] for c in CLIENTS}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if r.get("scenario") != "nats-client":
            continue
        rnd = os.path.basename(path).rsplit("-", 1)[1].split(".")[0]
        runs[r["client"]].append((rnd, figures(r), r))
    if not all(runs.values()):
        print("no complete pair of runs in " + out)
        return
    any_r = runs["glommio"][0][2]
    p, m = any_r["params"], any_r["machine"]
    print(f"# NATS client: glommio (NatsConn) vs async-nats (tokio thread + crossbeam)\n")
    print(
        f"{m['cpu_model']}, {m['nproc']} CPUs, kernel {m['kernel']}; nats-server on core 0, "
        f"the client process on core 1; nice {nice}; load average at the end {load}.\n"
        f"Payload {p['size']} B; saturation {p['messages']:,} messages, window {p['window']}, "
        f"batch {p['batch']}; latency phase {p['rate']:,.0f} msg/s for {p['duration']} s; "
        f"{len(runs['glommio'])} round(s), order alternating.\n"
    )
    med = {c: {k: statistics.median(f[k] for _, f, _ in runs[c]) for k in runs[c][0][1]} for c in CLIENTS}
    print("## Medians over rounds\n")
    print("| figure | glommio | async-nats | async-nats / glommio |")
    print("|---|---|---|---|")
    for label, key, fmt, _ in ROWS:
        g, a = med["glommio"][key], med["async-nats"][key]
        ratio = f"{a / g:.2f}x" if g else "-"
        print(f"| {label} | {fmt.format(g)} | {fmt.format(a)} | {ratio} |")
    print("\n## Every round\n")
    keys = ["sat_msgs", "sat_cpu", "sat_nats", "lat_cpu_net", "lat_pub", "lat_sub", "p50", "p99", "p999"]
    print("| round | client | sat msg/s | sat CPU s/M | sat nats s/M | lat CPU s/M (net) | pub side | sub side | p50 ms | p99 ms | p99.9 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    fmts = {k: fmt for _, k, fmt, _ in ROWS}
    rows = sorted((rnd, c, f) for c in CLIENTS for rnd, f, _ in runs[c])
    for rnd, c, f in rows:
        cells = " | ".join(fmts[k].format(f[k]) for k in keys)
        print(f"| {rnd} | {c} | {cells} |")
    print(
        "\nCPU is thread CPU time (user + system), so other work on the machine "
        "inflates wall-clock figures (messages/s, latency) more than CPU ones; "
        "compare within a run and prefer the ratios."
    )


main()
