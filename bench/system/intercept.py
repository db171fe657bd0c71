#!/usr/bin/env python3
"""Interception benchmark (DESIGN.md "Request transforms"): HTTPS requests through egressd's
intercepted path (TLS terminated on both sides, every request edited) against the splice path
(the same egressd, a name without a transform) and the direct path (no proxy), in one run, on
the e2e topology (namespaces prefix egi, removed at exit). The origin is nginx over TLS with
keep-alive; the client is wrk (one thread), which does not verify certificates, so the same
client runs every path. Two shapes: keep-alive (requests/s over C connections) and one request
per connection (Connection: close: every request is a new TLS connection, twice for the
intercepted path). Rounds are interleaved; the table holds medians.

Usage: intercept.py BUILD_DIR [--runs 5] [--seconds 3] [--conc 32] [--profile perf.data]
Needs root. Sends packets only inside the namespaces it creates (10.200.0.0/16, 198.18.0.0/15).
"""
import argparse, atexit, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import end_all, sh  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
P = "egi"
ORIGIN = "198.18.0.10"
parser = argparse.ArgumentParser()
parser.add_argument("build", nargs="?", default=os.path.join(ROOT, "build/release"))
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--seconds", type=int, default=3)
parser.add_argument("--conc", type=int, default=32)
parser.add_argument("--profile", help="perf record egressd during the intercepted runs into this file")
args = parser.parse_args()
BUILD = os.path.abspath(args.build)
WORK = tempfile.mkdtemp(prefix="egressd-interceptbench-")
HOSTS = f"/etc/netns/{P}sbx1/hosts"
procs = []


def cleanup():
    end_all(procs, P)
    if os.path.exists(HOSTS):
        os.unlink(HOSTS)
        os.rmdir(os.path.dirname(HOSTS))
    shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def start(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/{len(procs)}.err", "w"),
                         start_new_session=True)
    procs.append(p)
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def firewall(up):
    sh(f"ip netns exec {P}host bash {ROOT}/deploy/firewall.sh {'up' if up else 'down'} --iface {P}h1 --iface {P}h2 --port 15001")


def wrk(name, close):
    header = "-H 'Connection: close'" if close else ""
    r = sh(f"ip netns exec {P}sbx1 wrk -t1 -c{args.conc} -d{args.seconds}s --latency {header} "
           f"-H 'Authorization: Bearer placeholder' https://{name}/", timeout=args.seconds + 30)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", r.stdout).group(1))
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", r.stdout).groups()
    p50_us = float(value) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if errors or "Socket errors" in r.stdout and "connect 0, read 0, write 0, timeout 0" not in r.stdout:
        raise RuntimeError(f"wrk to {name} had errors:\n{r.stdout}")
    requests = int(re.search(r"(\d+) requests in", r.stdout).group(1))
    return rate, p50_us, requests


def main():
    sh(f"bash {ROOT}/tests/e2e/topology.sh up {P}")
    names = ["spliced.example", "secret.example"]
    sans = ",".join("DNS:" + n for n in names)
    sh(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench "
       f"-addext subjectAltName={sans} -keyout {WORK}/key.pem -out {WORK}/cert.pem")
    with open(f"{WORK}/nginx.conf", "w") as f:
        f.write(f"""
user root; daemon off; worker_processes 1; pid {WORK}/nginx.pid; error_log {WORK}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 10000000;
  server {{
    listen {ORIGIN}:443 ssl; ssl_certificate {WORK}/cert.pem; ssl_certificate_key {WORK}/key.pem;
    location / {{ default_type text/plain; return 200 "ok $http_authorization\\n"; }}
  }}
}}
""")
    start(f"exec ip netns exec {P}net nginx -c {WORK}/nginx.conf -p {WORK}")
    os.makedirs(os.path.dirname(HOSTS), exist_ok=True)
    with open(HOSTS, "w") as f:
        f.write(f"127.0.0.1 localhost\n{ORIGIN} {' '.join(names)}\n")
    with open(f"{WORK}/egressd.yaml", "w") as f:
        f.write(f"""
listen: {{ tproxy: ["0.0.0.0:15001"], control: {WORK}/control.sock, metrics: null }}
workers: 1
state_dir: {WORK}/state
dns: {{ verify: off }}
intercept: {{ upstream_ca: {WORK}/cert.pem }}
limits: {{ max_connections_per_sandbox: 100000 }}
access_log: {WORK}/access.log
sandboxes:
  - id: bench
    sources: ["10.200.1.2"]
    egress: {{ default: deny, allow: ["*.example"] }}
    transforms:
      - hosts: ["secret.example"]
        headers: {{ Authorization: "Bearer {{{{SECRET:key}}}}" }}
    secrets: {{ key: "sk-bench" }}
""")
    egressd = start(f"exec ip netns exec {P}host {BUILD}/egressd --config {WORK}/egressd.yaml")
    deadline = time.time() + 10
    while not os.path.exists(f"{WORK}/control.sock"):
        if time.time() > deadline or egressd.poll() is not None:
            raise RuntimeError("egressd did not start: " + open(f"{WORK}/1.err").read())
        time.sleep(0.05)
    # The paths: (label, firewall up, name). Checked once before measuring.
    paths = [("direct", False, "spliced.example"), ("spliced", True, "spliced.example"),
             ("intercepted", True, "secret.example")]
    for label, up, name in paths:
        firewall(up)
        out = sh(f"ip netns exec {P}sbx1 curl -sk -H 'Authorization: Bearer placeholder' https://{name}/").stdout
        expected = "ok Bearer sk-bench\n" if label == "intercepted" else "ok Bearer placeholder\n"
        assert out == expected, (label, out)
    results = {(label, close): [] for label, _, _ in paths for close in (False, True)}
    for _ in range(args.runs):
        for close in (False, True):
            for label, up, name in paths:
                firewall(up)
                before = cpu_seconds(egressd.pid)
                perf = None
                if args.profile and label == "intercepted":
                    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-o", f"{args.profile}.{int(close)}",
                                             "-p", str(egressd.pid)], stderr=subprocess.DEVNULL)
                rate, p50, requests = wrk(name, close)
                if perf:
                    perf.send_signal(signal.SIGINT)
                    perf.wait()
                cpu_us = (cpu_seconds(egressd.pid) - before) * 1e6 / max(requests, 1)
                results[(label, close)].append((rate, p50, cpu_us))
    med = {key: [statistics.median(v[i] for v in values) for i in range(3)] for key, values in results.items()}
    lines = [f"| c={args.conc}, wrk -t1, {args.runs} interleaved rounds of {args.seconds} s | direct | spliced | intercepted "
             "| intercepted / spliced |", "|---|---|---|---|---|"]
    for close, shape in ((False, "keep-alive"), (True, "one request per connection")):
        d, s, i = med[("direct", close)], med[("spliced", close)], med[("intercepted", close)]
        lines.append(f"| requests/s, {shape} | {d[0]:.0f} | {s[0]:.0f} | {i[0]:.0f} | {i[0] / s[0]:.2f}x |")
        lines.append(f"| request p50 (us), {shape} | {d[1]:.0f} | {s[1]:.0f} | {i[1]:.0f} | +{i[1] - s[1]:.0f} us |")
        lines.append(f"| egressd CPU us per request, {shape} | - | {s[2]:.1f} | {i[2]:.1f} | {i[2] / max(s[2], 0.01):.1f}x |")
    print("\n".join(lines))


main()
