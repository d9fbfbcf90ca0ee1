#!/usr/bin/env python3
"""Side-by-side summary of a scripts/compare run.

Usage: compare-report.py DIR MODE TARGET...

Reads DIR/<target>-broadcast.json and DIR/<target>-connect.json (written by
realtime-loadgen) and writes DIR/compare.json and DIR/compare.md:

- per target, every broadcast rate step (deliveries/s, server CPU-s per
  million deliveries, p50/p99/p999);
- "peak": the step with the most deliveries/s (the capacity this ladder
  found; flagged when the server was behind the offer there), and its CPU-s
  per million there;
- the same figures at the highest rate every target kept up with (delivered
  at least 90 % of the offer, counted by arrival in the step), so the CPU
  cost is also compared at equal load;
- server RSS per idle connection from the connect run;
- ratios of realtime's CPU-s per million to the best peer's.
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
    out, mode, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
    result = {"mode": mode, "targets": {}, "machine": None}
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

    # The highest rate at which every target kept up: equal-load comparison.
    common = None
    rate_sets = []
    for e in result["targets"].values():
        rate_sets.append({s["rate"] for s in e["steps"] if s["kept_up"]})
    if rate_sets and all(rate_sets):
        shared = set.intersection(*rate_sets)
        common = max(shared) if shared else None
    result["common_rate"] = common
    for e in result["targets"].values():
        e["at_common"] = next((s for s in e["steps"] if s["rate"] == common), None)

    def ratio(key):
        ours = result["targets"].get("realtime", {}).get(key)
        peers = [
            e.get(key)
            for t, e in result["targets"].items()
            if t != "realtime" and e.get(key) and e[key].get("cpu_s_per_million")
        ]
        if not ours or not ours.get("cpu_s_per_million") or not peers:
            return None
        best = min(p["cpu_s_per_million"] for p in peers)
        return {"ours": ours["cpu_s_per_million"], "best_peer": best,
                "ratio": ours["cpu_s_per_million"] / best}

    result["cpu_ratio_at_peak"] = ratio("peak")
    result["cpu_ratio_at_common_rate"] = ratio("at_common")
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


def markdown(r):
    subs = next((e.get("subscribers") for e in r["targets"].values() if e.get("subscribers")), "?")
    cr = r["common_rate"]
    lines = [
        f"## Side by side ({r['mode']} mode)",
        "",
        f"Machine: {r['machine_note']}. Each server pinned to core 0 "
        "(`taskset -c 0`, realtime with `SHARDS=1`), the loadgen on core 1. "
        f"Broadcast: 1 publisher, {subs} subscribers on one topic, 100-byte payloads. "
        "CPU is the server process's utime+stime from /proc.",
        "",
        "| server | peak deliveries/s (msg/s) | CPU-s per M deliveries at peak | "
        f"CPU-s per M at {fmt(cr, 0)} msg/s | p50 / p99 / p999 ms at {fmt(cr, 0)} msg/s | "
        "RSS per idle connection |",
        "|---|---|---|---|---|---|",
    ]
    for t, e in r["targets"].items():
        p, c, i = e["peak"], e["at_common"], e["idle"] or {}
        peak = "-"
        if p:
            behind = "" if p["kept_up"] else ", behind"
            peak = f"{kdel(p['deliveries_per_sec'])} ({p['rate']:.0f}{behind})"
        lat = (
            f"{fmt(c['p50_ms'], 1)} / {fmt(c['p99_ms'], 1)} / {fmt(c['p999_ms'], 1)}" if c else "-"
        )
        rss = i.get("rss_per_conn_bytes")
        rss_s = "-" if rss is None else f"{rss / 1024:.1f} KiB ({i.get('connections')} conns)"
        lines.append(
            f"| {t} | {peak} | {fmt(p and p['cpu_s_per_million'])} | "
            f"{fmt(c and c['cpu_s_per_million'])} | {lat} | {rss_s} |"
        )
    lines.append("")
    for key, label in [("cpu_ratio_at_peak", "at each one's peak"),
                       ("cpu_ratio_at_common_rate", f"at {fmt(cr, 0)} msg/s")]:
        x = r.get(key)
        if x:
            lines.append(
                f"- Server CPU-s per million deliveries {label}: realtime {x['ours']:.2f} vs "
                f"best peer {x['best_peer']:.2f} = {x['ratio']:.2f}x (target <= 0.33x)."
            )
    lines += [
        "- \"server / core 0 busy\" (every step below): the server's share of core 0 and"
        " how busy core 0 was in all (loopback softirq, and other processes on a shared"
        " machine); a large gap means the figures of that step are disturbed.",
        "- Peak = the step with the most deliveries/s; \"behind\" = delivered under 90 % of"
        " the offer there (saturated: the figure is its capacity). Where no step was behind,"
        " the ladder ended first and the peak is a lower bound.",
        "",
        "### Every step",
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
