#!/usr/bin/env python3
"""Side-by-side summary of a scripts/compare run.

Usage: compare-report.py DIR MODE NICE TARGET...

Reads DIR/<target>-broadcast.json and DIR/<target>-connect.json (written by
realtime-loadgen) and writes DIR/compare.json and DIR/compare.md:

- per target, every broadcast rate step (deliveries/s, server CPU-s per
  million deliveries, p50/p99/p999, the server's and core 0's busy share);
- "kept up" = delivered at least 90 % of the offer in the step (counted by
  arrival); per target, the highest rate kept up and its figures;
- figures at the lowest rate every target was offered (below saturation for
  most), and a rate-by-server matrix of CPU-s per million and p99;
- realtime's CPU-s per million divided by the best peer's that kept up, at
  every rate where both did;
- server RSS per idle connection from the connect run.
"""

import json
import os
import platform
import sys

KEEP_UP = 0.90


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def steps_of(b):
    subs = (b.get("params") or {}).get("subscribers") or 0
    rows = []
    for s in b.get("steps") or []:
        offered = s["rate"] * subs
        lat = s.get("latency") or {}
        rows.append(
            {
                "rate": s["rate"],
                "offered_deliveries_per_sec": offered,
                "deliveries_per_sec": s["deliveries_per_sec"],
                "kept_up": offered > 0 and s["deliveries_per_sec"] >= KEEP_UP * offered,
                "cpu_s_per_million": s.get("cpu_s_per_million_deliveries"),
                "p50_ms": lat.get("p50_ms"),
                "p99_ms": lat.get("p99_ms"),
                "p999_ms": lat.get("p999_ms"),
                "loadgen_utilization": s.get("loadgen_utilization"),
                # Share of core 0 the server used, and how busy core 0 was in
                # all (softirq and other processes too): a gap means the
                # server shared its core with someone else's work.
                "server_core_share": per_sec(s.get("cpu_s_per_million_deliveries"), s),
                "core0_busy": per_sec(s.get("cores_cpu_s_per_million_deliveries"), s),
            }
        )
    return rows


def per_sec(per_million, step):
    if per_million is None:
        return None
    return per_million * step["deliveries_per_sec"] / 1e6


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def kdel(v):
    return "-" if v is None else f"{v / 1000:.0f}k"


def main():
    out, mode, nice, targets = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    result = {"mode": mode, "nice": nice, "targets": {}, "machine": None}
    for t in targets:
        b = load(os.path.join(out, f"{t}-broadcast.json"))
        c = load(os.path.join(out, f"{t}-connect.json"))
        entry = {"steps": [], "peak": None, "idle": None}
        if b:
            result["machine"] = result["machine"] or b.get("machine")
            entry["subscribers"] = (b.get("params") or {}).get("subscribers")
            entry["steps"] = steps_of(b)
            entry["errors"] = b.get("errors")
            entry["error_reasons"] = b.get("error_reasons")
            steps = entry["steps"]
            entry["peak"] = max(steps, key=lambda s: s["deliveries_per_sec"]) if steps else None
        if c:
            srv = c.get("server") or {}
            entry["idle"] = {
                "connections": c.get("connections"),
                "rss_per_conn_bytes": srv.get("rss_per_conn_bytes"),
                "rss_before_bytes": srv.get("rss_before_bytes"),
                "rss_loaded_bytes": srv.get("rss_loaded_bytes"),
            }
        result["targets"][t] = entry

    # Equal-load comparison: every rate any target was offered.
    rates = sorted({s["rate"] for e in result["targets"].values() for s in e["steps"]})
    for e in result["targets"].values():
        e["by_rate"] = {s["rate"]: s for s in e["steps"]}
        kept = [s for s in e["steps"] if s["kept_up"]]
        e["best_kept"] = max(kept, key=lambda s: s["rate"]) if kept else None
    result["rates"] = rates
    # The lowest rate everyone was offered (unsaturated for most), and the
    # ratio of realtime's CPU-s per million to the best peer's at every rate
    # where realtime and at least one peer kept up.
    offered = [set(e["by_rate"]) for e in result["targets"].values()]
    low = min(set.intersection(*offered)) if offered and set.intersection(*offered) else None
    result["low_rate"] = low
    ours = result["targets"].get("realtime")
    ratios = []
    for rate in rates:
        o = ours and ours["by_rate"].get(rate)
        peers = [
            (t, e["by_rate"][rate])
            for t, e in result["targets"].items()
            if t != "realtime" and rate in e["by_rate"] and e["by_rate"][rate]["kept_up"]
        ]
        peers = [(t, x) for t, x in peers if x["cpu_s_per_million"]]
        if not o or not o["kept_up"] or not o["cpu_s_per_million"] or not peers:
            continue
        bt, bx = min(peers, key=lambda p: p[1]["cpu_s_per_million"])
        ratios.append({"rate": rate, "ours": o["cpu_s_per_million"], "best_peer": bt,
                       "best_peer_cpu": bx["cpu_s_per_million"],
                       "ratio": o["cpu_s_per_million"] / bx["cpu_s_per_million"]})
    result["cpu_ratios"] = ratios
    m = result["machine"] or {}
    result["machine_note"] = (
        f"{m.get('nproc', os.cpu_count())} CPUs, {m.get('cpu_model', '?')}, kernel "
        f"{m.get('kernel', platform.release())}; a VM shared with other sessions' builds"
    )

    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(markdown(result))


def cell(s):
    if s is None:
        return ""
    if not s["kept_up"]:
        return f"behind ({kdel(s['deliveries_per_sec'])}/s)"
    return f"{fmt(s['cpu_s_per_million'])} · {fmt(s['p99_ms'], 0)} ms"


def markdown(r):
    subs = next((e.get("subscribers") for e in r["targets"].values() if e.get("subscribers")), "?")
    low = r["low_rate"]
    names = list(r["targets"])
    lines = [
        f"## Side by side ({r['mode']} mode)",
        "",
        f"Machine: {r['machine_note']}. Each server pinned to core 0 "
        "(`taskset -c 0`, realtime with `SHARDS=1`), the loadgen on core 1. "
        f"Broadcast: 1 publisher, {subs} subscribers on one topic, 100-byte payloads, "
        "open-loop rates. CPU is the server process's utime+stime from /proc."
        + (f" Server and loadgen ran at nice {r['nice']}." if r["nice"] else ""),
        "",
        "| server | highest rate kept up: deliveries/s (msg/s) | CPU-s per M there | p99 there | "
        f"CPU-s per M at {fmt(low, 0)} msg/s | p50 / p99 / p999 ms at {fmt(low, 0)} msg/s | "
        "RSS per idle connection |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, e in r["targets"].items():
        b, c, i = e["best_kept"], e["by_rate"].get(low), e["idle"] or {}
        best = f"{kdel(b['deliveries_per_sec'])} ({b['rate']:.0f})" if b else "-"
        lat = (
            f"{fmt(c['p50_ms'], 1)} / {fmt(c['p99_ms'], 1)} / {fmt(c['p999_ms'], 1)}" if c else "-"
        )
        rss = i.get("rss_per_conn_bytes")
        rss_s = "-" if rss is None else f"{rss / 1024:.1f} KiB ({i.get('connections')} conns)"
        lines.append(
            f"| {t} | {best} | {fmt(b and b['cpu_s_per_million'])} | "
            f"{fmt(b and b['p99_ms'], 0)} ms | {fmt(c and c['cpu_s_per_million'])} | {lat} | "
            f"{rss_s} |"
        )
    lines += ["", "Server CPU-s per million deliveries, realtime / best peer that kept up, "
              "at equal offered rates:", ""]
    for x in r["cpu_ratios"]:
        lines.append(
            f"- {x['rate']:.0f} msg/s: {x['ours']:.2f} / {x['best_peer_cpu']:.2f} "
            f"({x['best_peer']}) = {x['ratio']:.2f}x"
        )
    lines += [
        "",
        "### Equal offered rates",
        "",
        "Each cell: server CPU-s per million deliveries · p99 latency; \"behind\" = delivered"
        " under 90 % of the offer in that step (arrival rate shown).",
        "",
        "| msg/s (deliveries/s offered) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for rate in r["rates"]:
        n = rate * (subs if isinstance(subs, int) else 0)
        row = [cell(r["targets"][t]["by_rate"].get(rate)) for t in names]
        lines.append(f"| {rate:.0f} ({kdel(n)}) | " + " | ".join(row) + " |")
    lines += [
        "",
        "### Every step",
        "",
        "\"server / core 0 busy\": the server's share of core 0 and how busy core 0 was in all"
        " (loopback softirq, other processes on a shared machine).",
        "",
        "| server | msg/s | offered deliveries/s | delivered/s | CPU-s/M | p50 ms | p99 ms |"
        " p999 ms | server / core 0 busy | loadgen util |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, e in r["targets"].items():
        for s in e["steps"]:
            mark = "" if s["kept_up"] else " (behind)"
            lines.append(
                f"| {t} | {s['rate']:.0f} | {kdel(s['offered_deliveries_per_sec'])} | "
                f"{kdel(s['deliveries_per_sec'])}{mark} | {fmt(s['cpu_s_per_million'])} | "
                f"{fmt(s['p50_ms'], 1)} | {fmt(s['p99_ms'], 1)} | {fmt(s['p999_ms'], 1)} | "
                f"{pct(s['server_core_share'])} / {pct(s['core0_busy'])} | "
                f"{pct(s['loadgen_utilization'])} |"
            )
        if e.get("error_reasons"):
            lines.append(f"| {t} | errors: {e['error_reasons']} | | | | | | | | |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
