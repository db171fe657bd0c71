#!/usr/bin/env python3
"""Scale of the kernel fast-path table (proxy/kernel, DESIGN.md "Kernel fast path"): for
10, 1,000 and 10,000 sandboxes x 100 rules (run.py's scale shape), the compile, the whole-table
nft transaction, one sandbox's change, and the loader's peak RSS, medians of RUNS runs, each in
a fresh network namespace it makes (prefix egk) and removes. Prints a markdown table.

Usage: kernel_sets.py BUILD_DIR [--runs 3] [--sizes 10,1000,10000]
Needs root. Sends no packet.
"""
import argparse, atexit, json, os, statistics, subprocess

parser = argparse.ArgumentParser()
parser.add_argument("build")
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--sizes", default="10,1000,10000")
args = parser.parse_args()
TOOL = os.path.join(os.path.abspath(args.build), "kernel_sets")
NETNS = "egkbench"


def cleanup():
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


atexit.register(cleanup)
rows = {}
for size in [int(n) for n in args.sizes.split(",")]:
    runs = []
    for _ in range(args.runs):
        cleanup()
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        out = subprocess.run(["ip", "netns", "exec", NETNS, TOOL, "--generate", str(size), "--table", "egressd_fast",
                              "--check", "1000", "--iface", "eth9"], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise SystemExit(f"kernel_sets --generate {size}: {out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows[size] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
sizes = list(rows)
print("| 100 rules per sandbox | " + " | ".join(f"{s:,} sandboxes" for s in sizes) + " |")
print("|---|" + "---|" * len(sizes))
for title, key, fmt in [("allow elements (rules or set elements)", "allow_elements", "{:.0f}"),
                        ("compile (ms)", "compile_ms", "{:.1f}"),
                        ("whole-table transaction, first load (ms)", "first_load_ms", "{:.0f}"),
                        ("whole-table transaction, replacing it (ms)", "replace_ms", "{:.0f}"),
                        ("the same replacement as one netlink batch, as egressd sends it (ms)", "replace_netlink_ms", "{:.0f}"),
                        ("a policy change: compile again, unchanged sandboxes reused (ms)", "recompile_ms", "{:.1f}"),
                        ("a policy change: plan what to change (ms)", "plan_ms", "{:.2f}"),
                        ("one sandbox's change, nft text in-process (ms)", "one_sandbox_ms", "{:.1f}"),
                        ("one sandbox's change, netlink batch as egressd sends it (ms)", "one_sandbox_netlink_ms", "{:.1f}"),
                        ("loader peak RSS (MiB)", "max_rss_kib", "{:.0f}"),
                        ("sampled points against decide(): mismatches", "mismatches", "{:.0f}")]:
    scale = 1024 if key == "max_rss_kib" else 1
    print(f"| {title} | " + " | ".join(fmt.format(rows[s][key] / scale) for s in sizes) + " |")
