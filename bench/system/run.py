#!/usr/bin/env python3
"""System benchmark: egressd against the direct path (kernel forwarding, no proxy), HAProxy,
nginx stream (ssl_preread) and Squid (peek and splice), in one run, on the e2e topology
(sandbox / proxy host / origin namespaces, same TPROXY rules for every proxy, one proxy thread
each). Prints a markdown table of medians over RUNS interleaved rounds: each round measures every
proxy in turn (started fresh), so drift on the machine spreads over all of them alike.

Usage: run.py BUILD_DIR [--runs 5] [--bulk-mib 1024] [--idle 10000] [--out FILE]
              [--peers haproxy,nginx,squid] [--before OTHER_EGRESSD] [--only bulk,rate,...]
              [--no-kernel]
"egressd kernel" is egressd with fast_path: kernel behind firewall.sh up --fast-path: its
fast-path connections are forwarded by the kernel (DESIGN.md "Kernel fast path"); its column
is compared with the direct path.
--before measures a second egressd binary (an older build) as one more column, for before/after
figures from the same run; --only limits the workloads (the scale table needs `scale`).
Needs root. Touches only the namespaces it creates (prefix egb) and removes them at exit.
"""
import argparse, atexit, json, os, resource, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import end_all, sh  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
P = "egb"
ORIGIN = "198.18.0.10"
parser = argparse.ArgumentParser()
parser.add_argument("build", nargs="?", default=os.path.join(ROOT, "build/release"))
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--bulk-mib", type=int, default=1024)
parser.add_argument("--idle", type=int, default=10000)
parser.add_argument("--seconds", type=float, default=3.0)
parser.add_argument("--out")
parser.add_argument("--peers", default="haproxy,nginx,squid", help="comma-separated: haproxy, nginx, squid")
parser.add_argument("--before", help="another egressd binary, measured as the column 'before'")
parser.add_argument("--no-kernel", action="store_true", help="leave out the fast_path: kernel column")
WORKLOADS = ("bulk", "rate", "denied", "idle", "scale")
parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
args = parser.parse_args()
PROXIES = (["direct", "egressd"] + ([] if args.no_kernel else ["kernel"]) + (["before"] if args.before else [])
           + [n for n in args.peers.split(",") if n])
ONLY = set(args.only.split(","))
if ONLY - set(WORKLOADS):
    parser.error(f"--only: unknown workload(s) {', '.join(sorted(ONLY - set(WORKLOADS)))}")
BUILD = os.path.abspath(args.build)
NETBENCH = os.path.join(BUILD, "netbench")
WORK = tempfile.mkdtemp(prefix="egressd-bench-")
# Every process started here inherits the descriptor limit: 10,000 idle relayed connections
# cost a proxy 20,000 descriptors. Raising the hard limit needs CAP_SYS_RESOURCE; where that is
# missing the idle test holds as many as the hard limit leaves room for, and says so.
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
except (ValueError, OSError):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
FD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
IDLE = min(args.idle, (FD_LIMIT - 200) // 2)
IDLE_CPU_SECONDS = 5  # idle CPU is read off /proc at 10 ms ticks: 2 ms/s resolution
if IDLE < args.idle:
    print(f"descriptor hard limit {FD_LIMIT}: holding {IDLE} idle connections, not {args.idle}", file=sys.stderr)
procs = []


def cleanup():
    end_all(procs, P)
    shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def start(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    procs.append(p)
    return p


def stop(p):
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def client(*a, timeout=600):
    r = sh(f"ip netns exec {P}sbx1 {NETBENCH} " + " ".join(str(x) for x in a), timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def cpu_times(pid):
    """(user, system) CPU seconds of pid, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def proc_stat(pid):
    """(rss_kib, cpu_seconds) of pid, all its threads."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, sum(cpu_times(pid))


def firewall(up, fast_path=False):
    sh(f"ip netns exec {P}host bash {ROOT}/deploy/firewall.sh {'up' if up else 'down'} --iface {P}h1 --iface {P}h2 --port 15001"
       + (" --fast-path" if fast_path else ""))


EGRESSD_CONFIG = f"""
listen: {{ tproxy: ["0.0.0.0:15001"], control: {WORK}/control.sock, metrics: null }}
workers: 1
state_dir: {WORK}/state
inspect: {{ tls: [443, 4443], http: [80] }}
dns: {{ verify: off }}
limits: {{ max_connections_per_sandbox: 100000 }}
access_log: {WORK}/access.log
sandboxes:
  - id: bench
    sources: ["10.200.1.2"]
    egress: {{ default: deny, allow: ["*.example", "198.18.0.10:9000-9002"], deny: ["denied.example"] }}
"""

HAPROXY_CONFIG = f"""
global
  ulimit-n {FD_LIMIT}
  nbthread 1
  log stderr format raw local0 emerg
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-auto
frontend tproxy
  bind 0.0.0.0:15001 transparent
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ dst_port 9000:9002 }} {{ dst 198.18.0.10 }}
  tcp-request content reject if {{ dst_port 9000:9002 }}
  tcp-request content reject if {{ req.ssl_sni -i denied.example }}
  tcp-request content accept if {{ req.ssl_hello_type 1 }} {{ req.ssl_sni -m end .example }}
  tcp-request content reject
  default_backend original
backend original
  server original 0.0.0.0:0
"""


# nginx stream + ssl_preread as a transparent SNI allow-list proxy. nginx 1.22 cannot mark its
# stream listener transparent, which TPROXY needs, so bench/system/transparent_listen.cpp (an
# LD_PRELOAD shim) sets IP_TRANSPARENT before listen(). Under TPROXY $server_addr:$server_port
# is the original destination. Refused connections are sent to a closed local port (nginx's
# stream module has no conditional reject), so they end as soon as that connect is refused.
NGINX_CONFIG = f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {FD_LIMIT};
error_log stderr emerg;
pid {WORK}/nginx.pid;
events {{ worker_connections {FD_LIMIT - 100}; }}
stream {{
  map "$server_addr:$server_port:$ssl_preread_server_name" $target {{
    "~^198\\.18\\.0\\.10:900[0-2]:" $server_addr:$server_port;
    "~^[^:]+:(443|4443):denied\\.example$" 127.0.0.1:9;
    "~^[^:]+:(443|4443):.+\\.example$" $server_addr:$server_port;
    default 127.0.0.1:9;
  }}
  server {{
    listen 15001 reuseport;
    ssl_preread on;
    preread_timeout 5s;
    proxy_connect_timeout 5s;
    proxy_timeout 60s;
    proxy_pass $target;
  }}
}}
"""


# Squid 5.7 (squid-openssl) peek-and-splice behind the same TPROXY rule: `https_port ... tproxy
# ssl-bump` peeks at the ClientHello (step 1) and splices or terminates by SNI; it never bumps,
# but ssl-bump still wants a certificate, so a throwaway self-signed one is made per run. Squid's
# tproxy mode dials the origin from the client's own address, so the replies need one more
# mangle rule (`-m socket --transparent` -> the TPROXY mark) to reach Squid's socket; and Squid
# resolves the SNI to check it against the intercepted address, so a dnsmasq on the test
# network (198.18.0.53) answers *.example. Squid inspects every port it is handed (it only
# knows TLS), so its "fast path" figures are TLS-peeked connections too.
SQUID_CONFIG = f"""
http_port 127.0.0.1:3128
https_port 15001 tproxy ssl-bump tls-cert={WORK}/squid/cert.pem tls-key={WORK}/squid/key.pem generate-host-certificates=off
acl step1 at_step SslBump1
acl denied ssl::server_name denied.example
acl allowed ssl::server_name .example
ssl_bump peek step1
ssl_bump terminate denied
ssl_bump splice allowed
ssl_bump terminate all
http_access allow all
cache deny all
access_log none
cache_log {WORK}/squid/cache.log
pid_filename {WORK}/squid/squid.pid
coredump_dir {WORK}/squid
workers 1
max_filedescriptors {FD_LIMIT}
dns_nameservers 198.18.0.53
pinger_enable off
shutdown_lifetime 0 seconds
"""
SQUID_RULE = "PREROUTING -p tcp -m socket --transparent -j MARK --set-mark 0x1"


def start_squid():
    squid = f"{WORK}/squid"
    os.makedirs(squid, exist_ok=True)
    os.chmod(WORK, 0o711)
    sh(f"openssl req -x509 -newkey rsa:2048 -nodes -keyout {squid}/key.pem -out {squid}/cert.pem -days 2 -subj /CN=bench-squid")
    open(f"{squid}/squid.conf", "w").write(SQUID_CONFIG)
    sh(f"chown -R proxy:proxy {squid}")
    sh(f"ip netns exec {P}host iptables -t mangle -I {SQUID_RULE}")
    start(f"exec ip netns exec {P}net dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=198.18.0.53 "
          f"--bind-interfaces --pid-file= --user=root --address=/example/198.18.0.10")
    return start(f"exec ip netns exec {P}host squid -N -f {squid}/squid.conf")


def wait_ready(seconds=10):
    """Until one relayed short connection succeeds."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if client("rate", ORIGIN, 9001, "bench.example", 1, 0.05)["connections"] > 0:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("the proxy did not become ready")


def scale_config(sandboxes):
    """egressd config with `sandboxes` sandboxes of 100 rules each; the first is the bench one."""
    lines = [EGRESSD_CONFIG.split("sandboxes:")[0] + "sandboxes:"]
    for i in range(sandboxes):
        source = "10.200.1.2" if i == 0 else f"10.{201 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        rules = [f'"svc{r}.team{i % 97}.corp.test"' if r % 3 else f'"*.svc{r}.team{i % 97}.corp.test"' for r in range(96)]
        rules += ['"*.example"', '"198.18.0.10:9000-9002"', f'"198.19.{i % 256}.0/24"', '"10.0.0.7:5432"']
        lines.append(f'  - {{ id: s{i}, sources: ["{source}"], egress: {{ default: deny, allow: [{", ".join(rules)}], deny: ["denied.example"] }} }}')
    return "\n".join(lines) + "\n"


def scale(sandboxes, kernel=False):
    """Start-up, RSS, the rate and one sandbox's policy update (egressctl set, API to answer:
    with fast_path: kernel the kernel's sets are changed before it answers) at `sandboxes`."""
    firewall(True, fast_path=kernel)
    open(f"{WORK}/scale.yaml", "w").write(scale_config(sandboxes) + ("fast_path: kernel\n" if kernel else ""))
    started = time.time()
    p = start(f"exec ip netns exec {P}host {BUILD}/egressd --config {WORK}/scale.yaml")
    wait_ready(300)
    if kernel:
        while "fp_by_source4" not in sh(f"ip netns exec {P}host nft list chain inet egressd fast_path").stdout:
            time.sleep(0.05)
    startup = time.time() - started
    rss = proc_stat(p.pid)[0]
    rates = [client("rate", ORIGIN, 4443, "short.example", 1, args.seconds)["per_second"] for _ in range(args.runs)]
    update_ms = []
    for i in range(10):
        rule = f"198.19.{200 + i}.0/24:{5000 + i}"
        t = time.time()
        sh(f"{BUILD}/egressctl --socket {WORK}/control.sock set s5 --source 10.201.0.5 --allow '*.example' "
           f"--allow 198.18.0.10:9000-9002 --allow {rule}")
        update_ms.append((time.time() - t) * 1000)
    stop(p)
    return {"startup_s": startup, "rss_mib": rss / 1024, "rate_c1": median(rates), "update_ms": median(update_ms)}


def run_proxy(name):
    if name == "direct":
        firewall(False)
        return None
    firewall(True, fast_path=name == "kernel")
    if name in ("egressd", "before", "kernel"):
        binary = os.path.abspath(args.before) if name == "before" else f"{BUILD}/egressd"
        open(f"{WORK}/egressd.yaml", "w").write(EGRESSD_CONFIG + ("fast_path: kernel\n" if name == "kernel" else ""))
        p = start(f"exec ip netns exec {P}host {binary} --config {WORK}/egressd.yaml")
        if name == "kernel":  # until egressd has filled the firewall's fast_path chain
            deadline = time.time() + 10
            while "fp_by_source4" not in sh(f"ip netns exec {P}host nft list chain inet egressd fast_path").stdout:
                if time.time() > deadline:
                    raise RuntimeError("egressd did not fill the kernel fast path")
                time.sleep(0.05)
    elif name == "squid":
        p = start_squid()
    elif name == "nginx":
        open(f"{WORK}/nginx.conf", "w").write(NGINX_CONFIG)
        shim = os.path.join(BUILD, "libtransparent_listen.so")
        p = start(f"exec ip netns exec {P}host env LD_PRELOAD={shim} nginx -e stderr -c {WORK}/nginx.conf")
    else:
        open(f"{WORK}/haproxy.cfg", "w").write(HAPROXY_CONFIG)
        p = start(f"exec ip netns exec {P}host haproxy -db -f {WORK}/haproxy.cfg")
    wait_ready()
    return p


def tcp_segments(netns):
    """(InSegs, OutSegs) of a namespace, from /proc/net/snmp."""
    lines = [l.split() for l in sh(f"ip netns exec {netns} cat /proc/net/snmp").stdout.splitlines() if l.startswith("Tcp:")]
    row = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
    return row["InSegs"], row["OutSegs"]


def md_row(cells):
    return "| " + " | ".join(cells) + " |"


def median(values):
    return statistics.median(values) if values else float("nan")


def measure(name, runs):
    """One round of every workload in ONLY against `name`, `runs` repetitions each."""
    p = run_proxy(name)
    pid = p.pid if p else None
    result = {}
    bulk = args.bulk_mib << 20
    for label, port in (("bulk_tls", 443), ("bulk_fast", 9000)) if "bulk" in ONLY else ():
        rates, cpu = [], []
        for _ in range(runs):
            before = proc_stat(pid)[1] if pid else 0
            out = client("bulk", ORIGIN, port, "bulk.example")
            assert out["bytes"] == bulk, out
            rates.append(out["bytes"] / out["seconds"] / 1e9)
            if pid:
                cpu.append((proc_stat(pid)[1] - before) / (out["bytes"] / (1 << 30)))
        result[label] = median(rates)
        if pid:
            result[label + "_cpu_s_per_gib"] = median(cpu)
    for label, conc, port in (("rate_c1", 1, 4443), ("rate_c32", 32, 4443), ("fast_c1", 1, 9001),
                              ("fast_c32", 32, 9001)) if "rate" in ONLY else ():
        segments_before = tcp_segments(f"{P}sbx1")
        rounds, cpu_us, user_us = [], [], []
        for _ in range(runs):
            before = cpu_times(pid) if pid else (0, 0)
            rounds.append(client("rate", ORIGIN, port, "short.example", conc, args.seconds))
            if pid:  # the proxy's own CPU per connection: does not move with the load generator
                after = cpu_times(pid)
                count = max(rounds[-1]["connections"], 1)
                cpu_us.append((sum(after) - sum(before)) * 1e6 / count)
                user_us.append((after[0] - before[0]) * 1e6 / count)
        result[label] = median([r["per_second"] for r in rounds])
        if pid:
            result[label + "_cpu_us"] = median(cpu_us)
            result[label + "_user_us"] = median(user_us)
        if label == "rate_c1":
            result["p50_us"] = median([r["p50_us"] for r in rounds])
            result["p99_us"] = median([r["p99_us"] for r in rounds])
            # What the sandbox's TCP stack sends and receives per relayed connection (the
            # readiness probe's few connections included: noise below 0.1%).
            segments = [a - b for a, b in zip(tcp_segments(f"{P}sbx1"), segments_before)]
            result["client_segments"] = sum(segments) / max(sum(r["connections"] for r in rounds), 1)
        time.sleep(1)
    if pid and "denied" in ONLY:
        denied = [client("rate", ORIGIN, 4443, "denied.example", 32, args.seconds) for _ in range(runs)]
        result["denied_per_s"] = median([(r["connections"] + r["failures"]) / args.seconds for r in denied])
        time.sleep(1)
    if pid and "idle" in ONLY:
        rss_before = proc_stat(pid)[0]
        holder = start(f"exec ip netns exec {P}sbx1 {NETBENCH} idle {ORIGIN} 9002 idle.example {IDLE} 60")
        line = holder.stdout.readline()
        opened = json.loads(line)["open"]
        time.sleep(1)
        rss_after = proc_stat(pid)[0]
        result["idle_open"] = opened
        result["idle_kib_per_conn"] = (rss_after - rss_before) / max(opened, 1)
        cpu_before = proc_stat(pid)[1]
        time.sleep(IDLE_CPU_SECONDS)
        result["idle_cpu_ms"] = (proc_stat(pid)[1] - cpu_before) * 1000 / IDLE_CPU_SECONDS
        stop(holder)
    if pid:
        stop(p)
        if name == "squid":
            sh(f"ip netns exec {P}host iptables -t mangle -D {SQUID_RULE}")
    return result


def main():
    sh(f"bash {ROOT}/tests/e2e/topology.sh up {P}")
    # The origin serves every connection from one epoll thread; its size is the bulk transfer.
    server = start(f"exec ip netns exec {P}net {NETBENCH} serve {ORIGIN} {args.bulk_mib << 20}")
    assert server.stdout.readline().strip() == "ready"
    rounds = {name: [] for name in PROXIES}
    for round_number in range(args.runs):
        for name in PROXIES:  # direct first: no TIME_WAIT on the proxy host yet
            print(f"round {round_number + 1}/{args.runs}: measuring {name} ...", file=sys.stderr, flush=True)
            rounds[name].append(measure(name, 1))
    # Each figure: the median over the rounds (idle_open: the fewest any round held).
    results = {}
    for name, measured in rounds.items():
        keys = {k for r in measured for k in r}
        results[name] = {k: (min if k == "idle_open" else median)([r[k] for r in measured if k in r]) for k in keys}
    d, e = results["direct"], results["egressd"]
    peers = [n for n in PROXIES if n not in ("direct", "egressd")]
    rows = [
        ("bulk 1 GiB, TLS port 443 (GB/s)", "bulk_tls", True),
        ("bulk 1 GiB, fast path (GB/s)", "bulk_fast", True),
        ("new TLS connections/s, concurrency 1", "rate_c1", True),
        ("new TLS connections/s, concurrency 32", "rate_c32", True),
        ("new fast-path connections/s, concurrency 1", "fast_c1", True),
        ("new fast-path connections/s, concurrency 32", "fast_c32", True),
        ("proxy CPU us per new fast-path connection, c=32", "fast_c32_cpu_us", False),
        ("proxy CPU us per new connection, c=1", "rate_c1_cpu_us", False),
        ("proxy CPU us per new connection, c=32", "rate_c32_cpu_us", False),
        ("  of it in user space, c=1", "rate_c1_user_us", False),
        ("  of it in user space, c=32", "rate_c32_user_us", False),
        ("connection time p50 (us), c=1", "p50_us", False),
        ("connection time p99 (us), c=1", "p99_us", False),
        ("TCP segments per connection at the sandbox, c=1", "client_segments", False),
        ("denied connections/s, c=32", "denied_per_s", False),
        ("CPU s per GiB, TLS bulk", "bulk_tls_cpu_s_per_gib", False),
        ("CPU s per GiB, fast path bulk", "bulk_fast_cpu_s_per_gib", False),
        (f"RSS per idle relayed connection (KiB), {IDLE} open", "idle_kib_per_conn", False),
        (f"CPU ms per second while {IDLE} relayed connections idle", "idle_cpu_ms", False),
    ]
    def fmt(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) and v < 100 else f"{v:.0f}")
    names = {"before": "egressd before", "haproxy": "HAProxy", "nginx": "nginx", "squid": "Squid", "kernel": "egressd kernel"}
    kernel = results.get("kernel")
    head = (["measure", "direct", "egressd"] + [names[n] for n in peers] + ["egressd / direct"]
            + (["egressd kernel / direct"] if kernel else []) + [f"egressd / {names[n]}" for n in peers if n != "kernel"])
    lines = [md_row(head), "|" + "---|" * len(head)]
    for title, key, vs_direct in rows:
        if all(results[n].get(key) is None for n in PROXIES):
            continue  # a workload left out with --only
        dv, ev = d.get(key), e.get(key)
        cells = [title, fmt(dv), fmt(ev)] + [fmt(results[n].get(key)) for n in peers]
        cells.append(f"{ev / dv:.2f}x" if vs_direct and dv else "-")
        if kernel:
            kv = kernel.get(key)
            cells.append(f"{kv / dv:.2f}x" if vs_direct and dv and kv is not None else "-")
        for n in peers:
            if n == "kernel":
                continue
            pv = results[n].get(key)
            cells.append(f"{ev / pv:.2f}x" if ev is not None and pv else "-")
        lines.append(md_row(cells))
    def proxies_row(title, value):  # one cell per proxy (none for direct, none in the ratio columns)
        return md_row([title, ""] + [value(results[n]) for n in ["egressd"] + peers] + [""] * (len(head) - 3 - len(peers)))
    extra = []
    if "rate" in ONLY:
        extra.append(proxies_row("added p50 per connection (us)", lambda r: fmt(r["p50_us"] - d["p50_us"])))
    if "idle" in ONLY:
        extra.append(proxies_row("idle connections held", lambda r: str(r["idle_open"])))
    if "scale" in ONLY:
        print("measuring the store at scale ...", file=sys.stderr, flush=True)
        small, large = scale(10), scale(10000)
        extra += ["", "| 100 rules per sandbox | 10 sandboxes | 10,000 sandboxes | ratio |", "|---|---|---|---|",
                  f"| startup until the first relayed connection (s) | {small['startup_s']:.2f} | {large['startup_s']:.2f} | |",
                  f"| egressd RSS after start (MiB) | {small['rss_mib']:.1f} | {large['rss_mib']:.1f} | |",
                  f"| new TLS connections/s, c=1 | {small['rate_c1']:.0f} | {large['rate_c1']:.0f} | {large['rate_c1'] / small['rate_c1']:.2f}x |",
                  f"| one sandbox's policy update, egressctl set (ms) | {small['update_ms']:.1f} | {large['update_ms']:.1f} | |"]
        if not args.no_kernel:
            k_small, k_large = scale(10, kernel=True), scale(10000, kernel=True)
            extra += [f"| fast_path: kernel: startup until the table is filled (s) | {k_small['startup_s']:.2f} | {k_large['startup_s']:.2f} | |",
                      f"| fast_path: kernel: egressd RSS after start (MiB) | {k_small['rss_mib']:.1f} | {k_large['rss_mib']:.1f} | |",
                      f"| fast_path: kernel: new TLS connections/s, c=1 | {k_small['rate_c1']:.0f} | {k_large['rate_c1']:.0f} | {k_large['rate_c1'] / k_small['rate_c1']:.2f}x |",
                      f"| fast_path: kernel: one sandbox's policy update, kernel included (ms) | {k_small['update_ms']:.1f} | {k_large['update_ms']:.1f} | |"]
    table = "\n".join(lines + extra)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    stop(server)


main()
