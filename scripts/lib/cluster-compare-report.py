#!/usr/bin/env python3
"""Summary of a scripts/cluster-compare run: one node against three, per
round and rate, and the three-node / one-node ratios.

    cluster-compare-report.py OUT_DIR SUBSCRIBERS STEP_SECONDS HOP_SUBSCRIBERS > summary.md
"""

import json
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])
subs, step_s, hop_subs = sys.argv[2], sys.argv[3], sys.argv[4]


def steps(path):
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {s["rate"]: s for s in r.get("steps", [])}


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


rounds = sorted(
    {int(m.group(1)) for p in out.iterdir() if (m := re.match(r"(?:single|cluster)-(\d+)$", p.name))}
)
print("## One node against three (scripts/cluster-compare)\n")
print(
    f"Broadcast: 1 publisher, {subs} subscribers on one topic, 100-byte binary payloads, "
    f"open-loop steps of {step_s} s. `single`: one server (SHARDS=1, no NATS). `cluster`: "
    "three servers (SHARDS=1 each) on one nats-server, subscribers round-robin over them, "
    "the publisher on node 0 (two thirds of deliveries cross a node). Servers and "
    "nats-server pinned to core 0, loadgen to core 1. CPU-s/M: servers' utime+stime per "
    "million deliveries (summed over nodes); nats-server apart. CPU ratio 3/1: the "
    "cluster's CPU-s/M over the single node's at the same rate; cross/local: the cost of "
    "a cross-node delivery over a local one implied by it ((3R - 1) / 2, all extra cost "
    "charged to the crossing deliveries).\n"
)
load = (out / "load.txt").read_text().strip().replace("\n", " / ") if (out / "load.txt").exists() else "?"
print(f"Machine load (uptime before / after): {load}\n")


def table(name):
    print(
        "| round | msg/s | setup | delivered/s | server CPU-s/M | nats CPU-s/M | p50 ms | p99 ms | "
        "CPU ratio 3/1 | cross/local | p99 added ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i in rounds:
        one = steps(out / f"single-{i}" / f"{name}.json") or {}
        three = steps(out / f"cluster-{i}" / f"{name}.json") or {}
        for rate in sorted(set(one) | set(three)):
            a, b = one.get(rate), three.get(rate)
            for label, s in (("single", a), ("cluster", b)):
                if s is None:
                    continue
                d = s["deliveries_per_sec"] * s["duration_s"]
                nats = s.get("nats_cpu_s")
                nats_m = nats / (d / 1e6) if nats is not None and d > 0 else None
                ratio = added = implied = None
                if label == "cluster" and a is not None:
                    ca, cb = a.get("cpu_s_per_million_deliveries"), s.get("cpu_s_per_million_deliveries")
                    if ca and cb is not None:
                        ratio = cb / ca
                        # A third of the deliveries are local to node 0, two
                        # thirds cross: total = c/3 + 2x/3, so x/c = (3R - 1) / 2.
                        implied = (3 * ratio - 1) / 2
                    added = s["latency"]["p99_ms"] - a["latency"]["p99_ms"]
                print(
                    f"| {i} | {rate:.0f} | {label} | {s['deliveries_per_sec']:.0f} | "
                    f"{fmt(s.get('cpu_s_per_million_deliveries'))} | {fmt(nats_m)} | "
                    f"{s['latency']['p50_ms']:.2f} | {s['latency']['p99_ms']:.2f} | "
                    f"{fmt(ratio)} | {fmt(implied)} | {fmt(added, '+.2f')} |"
                )

print(f"### {subs} subscribers\n")
table("broadcast")
print(
    f"\n### Hop: {hop_subs} subscribers (a message's fan-out is short, so the latency "
    "difference is the cross-node hop)\n"
)
table("hop")

perf = out / "perf"
if perf.is_dir():
    print("\n## Profiles (perf record -g, 3 s at the highest rate, self time)\n")
    for f in sorted(perf.glob("*.txt")):
        print(f"### {f.stem}\n\n```")
        print(f.read_text().rstrip())
        print("```\n")
