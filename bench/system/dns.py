#!/usr/bin/env python3
"""DNS filter benchmark: cached answers per second and latency through egressd's DNS filter
against the same queries sent straight to the resolver (dnsmasq, routed by the proxy host), in
the same run, on the e2e topology (namespaces prefix egn, removed at exit). One egressd worker;
dnsmasq answers every name from its own records, and egressd from its shared cache after the
first query of each name. Prints a markdown table of medians over RUNS runs.

Usage: dns.py BUILD_DIR [--runs 3] [--seconds 3] [--conc 1,32]
Needs root. Sends packets only inside the namespaces it creates (10.200.0.0/16, 198.18.0.0/15).
"""
import argparse, atexit, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
P = "egn"
parser = argparse.ArgumentParser()
parser.add_argument("build", nargs="?", default=os.path.join(ROOT, "build/release"))
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--seconds", type=float, default=3.0)
parser.add_argument("--conc", default="1,32")
args = parser.parse_args()
BUILD = os.path.abspath(args.build)
WORK = tempfile.mkdtemp(prefix="egressd-dnsbench-")
NAMES = [f"n{i}.bench.example" for i in range(100)]
procs = []


def sh(cmd, check=True, timeout=120):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stdout} {r.stderr}")
    return r


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    sh(f"bash {ROOT}/tests/e2e/topology.sh down {P}", check=False)
    shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)


def start(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "err"), "a"))
    procs.append(p)
    return p


def firewall(dns_port):
    extra = " --dns-port 15053" if dns_port else ""
    sh(f"ip netns exec {P}host bash {ROOT}/deploy/firewall.sh up --iface {P}h1 --iface {P}h2 --port 15001 "
       f"--dns 198.18.0.53{extra}")


def bench(conc):
    r = sh(f"ip netns exec {P}sbx1 {BUILD}/dnsbench 198.18.0.53 53 {conc} {args.seconds} " + " ".join(NAMES),
           timeout=args.seconds + 30)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    sh(f"bash {ROOT}/tests/e2e/topology.sh up {P}")
    records = " ".join(f"--host-record={n},198.18.0.10" for n in NAMES)
    start(f"exec ip netns exec {P}net dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=198.18.0.53 "
          f"--bind-interfaces --local-ttl=300 --pid-file= --user=root {records}")
    config = os.path.join(WORK, "egressd.yaml")
    with open(config, "w") as f:
        f.write(f"""
listen: {{ tproxy: ["0.0.0.0:15001"], control: {WORK}/control.sock, metrics: null }}
workers: 1
state_dir: {WORK}/state
dns: {{ servers: ["198.18.0.53"] }}
dns_filter: {{ listen: ["0.0.0.0:15053"], budget: {{ queries_per_second: 1000000, burst: 1000000 }} }}
access_log: {WORK}/access.log
sandboxes:
  - id: bench
    sources: ["10.200.1.2"]
    egress: {{ default: deny, allow: ["*.bench.example"] }}
""")
    egressd = start(f"exec ip netns exec {P}host {BUILD}/egressd --config {config}")
    deadline = time.time() + 10
    while not sh(f"ip netns exec {P}host ss -lun 'sport = :15053'", check=False).stdout.count("15053"):
        if time.time() > deadline or egressd.poll() is not None:
            raise RuntimeError("egressd did not start: " + open(os.path.join(WORK, "err")).read()[-500:])
        time.sleep(0.1)
    results = {}
    for run in range(args.runs):
        for path in ("direct", "egressd"):
            firewall(dns_port=path == "egressd")
            for conc in [int(c) for c in args.conc.split(",")]:
                results.setdefault((path, conc), []).append(bench(conc))
    print(f"DNS, cached answers, 100 names, one egressd worker; median of {args.runs} runs of {args.seconds:g} s\n")
    print("| concurrency | path | answers/s | p50 µs | p99 µs | timeouts |")
    print("|---|---|---|---|---|---|")
    for conc in [int(c) for c in args.conc.split(",")]:
        row = {}
        for path in ("direct", "egressd"):
            rs = results[(path, conc)]
            row[path] = {k: statistics.median(r[k] for r in rs) for k in ("qps", "p50_us", "p99_us", "timeouts")}
            m = row[path]
            print(f"| {conc} | {path} | {m['qps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['timeouts']:.0f} |")
        d, e = row["direct"], row["egressd"]
        print(f"| {conc} | egressd / direct | {e['qps'] / d['qps']:.2f}x | +{e['p50_us'] - d['p50_us']:.0f} | "
              f"+{e['p99_us'] - d['p99_us']:.0f} | |")
    lines = sum(1 for _ in open(os.path.join(WORK, "access.log")))
    print(f"\n(egressd wrote {lines} access-log lines: one per query it answered)")


main()
