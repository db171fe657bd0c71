#!/usr/bin/env python3
"""The sockmap relay prototype (bench/system/sockmap_relay.cpp) against its splice mode, in
interleaved rounds on the bench topology (namespaces prefixed egs, removed at exit): new
connections/s and the relay's own CPU per connection (/proc, all threads) at concurrency 1 and
32, the failed connections, and whether 256 MiB downloads arrive whole (bytes received, GB/s).
Issue 8/8 of wave 2 asked for this prototype: keep a kernel relay if it wins and survives the
half-close tests, drop it with the numbers if not (bench/RESULTS.md).

Usage: sockmap.py BUILD_DIR [--runs 3] [--seconds 2]. Needs root and a build with libbpf.
"""
import argparse, atexit, json, os, signal, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import end_all, sh  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
P = "egs"
ORIGIN = "198.18.0.10"
BULK = 256 << 20
parser = argparse.ArgumentParser()
parser.add_argument("build")
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--seconds", type=float, default=2.0)
args = parser.parse_args()
BUILD = os.path.abspath(args.build)
procs = []


def start(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, text=True, start_new_session=True)
    procs.append(p)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{cmd} did not start")
    return p


def cleanup():
    end_all(procs, P)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(*a):
    return json.loads(sh(f"ip netns exec {P}sbx1 {BUILD}/netbench " + " ".join(str(x) for x in a)).stdout)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
sh(f"bash {ROOT}/tests/e2e/topology.sh up {P}")
sh(f"ip netns exec {P}host bash {ROOT}/deploy/firewall.sh up --iface {P}h1 --iface {P}h2 --port 15001")
start(f"exec ip netns exec {P}net {BUILD}/netbench serve {ORIGIN} {BULK}")
results = {}
for round_number in range(args.runs):
    for mode in ("splice", "sockmap"):
        print(f"round {round_number + 1}/{args.runs}: {mode}", file=sys.stderr, flush=True)
        relay = start(f"exec ip netns exec {P}host {BUILD}/sockmap_relay {mode} {BUILD}/sockmap_relay.bpf.o 15001")
        for conc in (1, 32):
            before = cpu_seconds(relay.pid)
            r = client("rate", ORIGIN, 4443, "short.example", conc, args.seconds)
            used = cpu_seconds(relay.pid) - before
            results.setdefault((mode, f"rate_c{conc}"), []).append(r["per_second"])
            results.setdefault((mode, f"cpu_c{conc}"), []).append(used * 1e6 / max(r["connections"], 1))
            results.setdefault((mode, f"failed_c{conc}"), []).append(r["failures"])
            time.sleep(1)
        for _ in range(2):
            r = client("bulk", ORIGIN, 443, "bulk.example")
            results.setdefault((mode, "bulk_mib"), []).append(r["bytes"] / (1 << 20))
            results.setdefault((mode, "bulk_whole"), []).append(1 if r["bytes"] == BULK else 0)
            results.setdefault((mode, "bulk_gbs"), []).append(r["bytes"] / r["seconds"] / 1e9)
        os.killpg(relay.pid, signal.SIGKILL)
        relay.wait()
        time.sleep(1)
rows = [("new connections/s, c=1", "rate_c1"), ("new connections/s, c=32", "rate_c32"),
        ("relay CPU us per connection, c=1", "cpu_c1"), ("relay CPU us per connection, c=32", "cpu_c32"),
        ("failed connections per run, c=32 (max)", "failed_c32"),
        ("256 MiB downloads: MiB received (min)", "bulk_mib"),
        (f"256 MiB downloads that arrived whole (of {2 * args.runs})", "bulk_whole"),
        ("download GB/s (median, whole or not)", "bulk_gbs")]
print("| measure | splice | sockmap | sockmap / splice |\n|---|---|---|---|")
for title, key in rows:
    pick = (max if key.startswith("failed") else min if key == "bulk_mib" else sum if key == "bulk_whole"
            else statistics.median)
    s, k = pick(results[("splice", key)]), pick(results[("sockmap", key)])
    print(f"| {title} | {s:.1f} | {k:.1f} | {k / s:.2f}x |" if s else f"| {title} | {s:.1f} | {k:.1f} | - |")
