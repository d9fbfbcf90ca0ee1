#!/usr/bin/env python3
"""Turns criterion's output into perf/bench/ results (stdlib only).

Reads every `<criterion home>/**/new/{benchmark,estimates}.json` written at
or after --since (so only this run's benches count), plus the side files the
benches write into `<criterion home>/realtime-bench/` (environment, and
notes such as allocations per operation), and writes:

- <out>.json: {"env", "settings", "benches": {id: {mean_ns, mean_ci_ns,
  median_ns, median_ci_ns, throughput, per_second, ns_per_element, notes}}}
- <out>.md: the environment, then one table per bench group.

Usage: report.py --criterion DIR --since EPOCH_SECONDS --out PATH_NO_EXT
       [--settings TEXT] [--note TEXT]
"""

import argparse
import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def collect(criterion_home, since):
    """This run's benches, in the order criterion ran them."""
    found = []
    pattern = os.path.join(criterion_home, "**", "new", "estimates.json")
    for est_path in glob.glob(pattern, recursive=True):
        mtime = os.path.getmtime(est_path)
        if mtime < since:
            continue
        meta_path = os.path.join(os.path.dirname(est_path), "benchmark.json")
        if not os.path.exists(meta_path):
            continue
        found.append((mtime, load(meta_path), load(est_path)))
    found.sort(key=lambda t: t[0])
    return [(meta, est) for _, meta, est in found]


def side_files(criterion_home, prefix, since):
    """Contents of this run's realtime-bench/<prefix>-<bench>.json, by bench."""
    merged = {}
    for path in sorted(glob.glob(os.path.join(criterion_home, "realtime-bench", prefix + "-*.json"))):
        if os.path.getmtime(path) < since:
            continue
        bench = os.path.basename(path)[len(prefix) + 1 : -len(".json")]
        merged[bench] = load(path)
    return merged


def entry(meta, est, notes):
    mean, median = est["mean"], est["median"]
    e = {
        "mean_ns": mean["point_estimate"],
        "mean_ci_ns": [mean["confidence_interval"]["lower_bound"], mean["confidence_interval"]["upper_bound"]],
        "median_ns": median["point_estimate"],
        "median_ci_ns": [
            median["confidence_interval"]["lower_bound"],
            median["confidence_interval"]["upper_bound"],
        ],
        "std_dev_ns": est["std_dev"]["point_estimate"],
    }
    # The slope of time against iterations (linear sampling): what
    # criterion's console prints as the typical time; absent for flat sampling.
    slope = est.get("slope")
    if slope:
        e["slope_ns"] = slope["point_estimate"]
        e["slope_ci_ns"] = [slope["confidence_interval"]["lower_bound"], slope["confidence_interval"]["upper_bound"]]
    tp = meta.get("throughput") or {}
    # criterion 0.8 spells these Bytes / BytesDecimal / Elements / Bits.
    for kind, amount in tp.items():
        unit = "elements" if kind == "Elements" else "bytes" if kind.startswith("Bytes") else kind.lower()
        e["throughput"] = {unit: amount}
        e["per_second"] = amount / (e["mean_ns"] * 1e-9)
        if unit == "elements" and amount:
            e["ns_per_element"] = e["mean_ns"] / amount
    if notes:
        e["notes"] = notes
    return e


# A 1-minute load average above this many runnable tasks per CPU marks a
# run as contended.
BUSY_LOAD_PER_CPU = 0.75


def busy_load(loadavg, nproc):
    try:
        return float(loadavg.split()[0]) > BUSY_LOAD_PER_CPU * int(nproc)
    except (ValueError, IndexError, TypeError):
        return False


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(e):
    tp = e.get("throughput")
    if not tp:
        return ""
    unit, _ = next(iter(tp.items()))
    per_s = e["per_second"]
    if unit == "bytes":
        for name, scale in (("GiB/s", 2**30), ("MiB/s", 2**20), ("KiB/s", 2**10)):
            if per_s >= scale:
                return f"{per_s / scale:.3g} {name}"
        return f"{per_s:.3g} B/s"
    text = f"{per_s / 1e6:.3g} M/s"
    if "ns_per_element" in e and tp[unit] > 1:
        text += f" ({e['ns_per_element']:.3g} ns each)"
    return text


def fmt_notes(notes):
    if not notes:
        return ""
    parts = []
    for k, v in notes.items():
        if isinstance(v, float):
            v = f"{v:.3g}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def markdown(doc, note):
    env = doc["env"]
    lines = ["# realtime-bench results", ""]
    if note:
        lines += [note, ""]
    busy = [b for b, load in env.get("loadavg_by_target", {}).items() if busy_load(load, env.get("nproc"))]
    if busy:
        lines += [
            f"**Busy machine:** the 1-minute load average was above {BUSY_LOAD_PER_CPU:g} per CPU when "
            f"{', '.join(busy)} started; their times are likely inflated by other work.",
            "",
        ]
    lines += ["| environment | |", "|---|---|"]
    for k in ("date", "git_commit", "git_dirty", "cpu_model", "nproc", "kernel", "rustc", "allocator", "profile"):
        if k in env:
            lines.append(f"| {k} | {env[k]} |")
    for bench, load in env.get("loadavg_by_target", {}).items():
        lines.append(f"| loadavg at start of `{bench}` | {load} |")
    lines.append(f"| criterion settings | {doc['settings']} |")
    lines.append("")
    lines.append(
        "Times are criterion's mean with its 95% confidence interval, the median, and the "
        "slope of time over iterations (what criterion's console shows as the typical time). "
        "Throughput is per second of the mean; for element throughputs (deliveries, "
        "operations) the time per element follows. Notes come from the bench itself: "
        "`allocs_per_op` is counted on one untimed operation, `allocs_per_unit` divides it "
        "by the elements (deliveries) of that operation."
    )
    groups = {}
    for bench_id, e in doc["benches"].items():
        group = "/".join(bench_id.split("/")[:2]) if bench_id.count("/") >= 2 else bench_id.split("/")[0]
        groups.setdefault(group, []).append((bench_id, e))
    for group, rows in groups.items():
        lines += ["", f"## {group}", "", "| bench | mean | 95% CI | median | slope | throughput | notes |", "|---|---|---|---|---|---|---|"]
        for bench_id, e in rows:
            name = bench_id[len(group) + 1 :] or bench_id
            lo, hi = e["mean_ci_ns"]
            lines.append(
                f"| {name} | {fmt_time(e['mean_ns'])} | {fmt_time(lo)} – {fmt_time(hi)} | "
                f"{fmt_time(e['median_ns'])} | {fmt_time(e['slope_ns']) if 'slope_ns' in e else ''} | "
                f"{fmt_rate(e)} | {fmt_notes(e.get('notes'))} |"
            )
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", required=True, help="criterion home (target/criterion)")
    ap.add_argument("--since", type=float, required=True, help="only results written after this epoch time")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--settings", default="", help="criterion flags used, recorded as is")
    ap.add_argument("--note", default="", help="a paragraph put under the markdown title")
    args = ap.parse_args()

    runs = collect(args.criterion, args.since)
    if not runs:
        sys.exit(f"report.py: no criterion results newer than the run start under {args.criterion}")
    envs = side_files(args.criterion, "env", args.since)
    notes = {}
    for per_bench in side_files(args.criterion, "notes", args.since).values():
        notes.update(per_bench)
    # Every bench binary records the same machine; keep the first of this run.
    env = {}
    for bench, e in sorted(envs.items()):
        if not env or e.get("date", "") < env.get("date", ""):
            env = dict(e)
    env["bench_targets"] = sorted(envs)
    # Each target records the load when it started: a shared VM's
    # neighbours show up here, so keep them all.
    env["loadavg_by_target"] = {bench: e.get("loadavg", "") for bench, e in sorted(envs.items())}

    benches = {}
    for meta, est in runs:
        bench_id = meta.get("full_id") or meta["title"]
        benches[bench_id] = entry(meta, est, notes.get(bench_id))
    doc = {"env": env, "settings": args.settings, "benches": benches}

    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(args.out + ".md", "w") as f:
        f.write(markdown(doc, args.note))
    print(f"report.py: {len(benches)} benches -> {args.out}.json, {args.out}.md")


if __name__ == "__main__":
    main()
