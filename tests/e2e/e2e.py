#!/usr/bin/env python3
"""End-to-end tests: egressd under real TPROXY in network namespaces this script creates,
against real origins (nginx with test-time certificates, origin.py), with real clients (curl,
openssl s_client, Python sockets). Everything created is removed on exit, even on failure.

Usage: e2e.py BUILD_DIR [-k SUBSTRING]
"""
import atexit, contextlib, json, os, re, shutil, signal, subprocess, sys, tempfile, time, traceback, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/release"))
ONLY = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else ""
P = "ege"  # namespace prefix
WORK = tempfile.mkdtemp(prefix="egressd-e2e-")
EGRESSD = os.path.join(BUILD, "egressd")
EGRESSCTL = os.path.join(BUILD, "egressctl")
FIREWALL_ARGS = f"--iface {P}h1 --iface {P}h2 --port 15001 --dns 198.18.0.53"
RUN = os.path.join(WORK, "run")  # egressd's own files: it runs as nobody with CAP_NET_ADMIN only
CONFIG = os.path.join(WORK, "egressd.yaml")
ACCESS_LOG = os.path.join(RUN, "access.log")
EGRESSD_ERR = os.path.join(WORK, "egressd.err")
ORIGIN_LOG = os.path.join(WORK, "origin.log")
NGINX_LOG = os.path.join(WORK, "nginx-access.log")
ALL_REASONS = ("allowed_domain allowed_address default_allow audit_allow denied_domain denied_address default_deny "
               "guarded_destination unknown_source no_sni malformed_tls hello_too_large not_tls not_http "
               "malformed_host peek_timeout dns_mismatch dns_failure connect_failed connection_limit revoked "
               "upstream_untrusted missing_secret").split()
NAMES = ["api.github.com", "gist.github.com", "pypi.org", "evil.example", "www.example.org", "big.example.org",
         "secret.github.com", "nosecret.github.com"]
processes = []


def sh(cmd, check=True, timeout=60, **kw):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {cmd}\n{r.stdout}\n{r.stderr}")
    return r


def ns(name, cmd, **kw):
    return sh(f"ip netns exec {P}{name} {cmd}", **kw)


def client(sandbox, *args, timeout=30):
    r = ns(sandbox, "python3 " + os.path.join(HERE, "client.py") + " " + " ".join(str(a) for a in args),
           check=False, timeout=timeout)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"client.py {args}: {r.stdout} {r.stderr}")


def curl(sandbox, args, timeout=20):
    return ns(sandbox, f"curl -sS --max-time 10 {args}", check=False, timeout=timeout)


def start(cmd, name):
    out = open(os.path.join(WORK, name + ".out"), "w")
    p = subprocess.Popen(cmd, shell=True, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append(p)
    return p


def cleanup():
    for p in processes:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sh(f"bash {HERE}/topology.sh down {P}", check=False)
    if os.path.exists(f"/etc/netns/{P}sbx1/hosts"):
        os.unlink(f"/etc/netns/{P}sbx1/hosts")
        try:
            os.rmdir(f"/etc/netns/{P}sbx1")
        except OSError:
            pass
    if os.path.exists(NETNS_RESOLV):
        os.unlink(NETNS_RESOLV)
        try:
            os.rmdir(os.path.dirname(NETNS_RESOLV))
        except OSError:
            pass
    if os.environ.get("KEEP_E2E_WORK"):
        print("work dir kept:", WORK)
    else:
        shutil.rmtree(WORK, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
signal.signal(signal.SIGINT, lambda *_: sys.exit(1))


TEST_STARTED = [0.0]  # wall-clock start of the running test: older records are not its own


def access_records():
    with open(ACCESS_LOG) as f:  # a last line still being written is not a record yet
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]


def record_time(record):
    return time.mktime(time.strptime(record["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + \
        float("0" + record["ts"][19:-1])


def last_record(**match):
    """The newest access-log record of the running test with these fields. The log is
    flushed every 200 ms, so this polls (5 s deadline) instead of sleeping."""
    deadline = time.time() + 5
    while True:
        for record in reversed(access_records()):
            if record_time(record) < TEST_STARTED[0] - 0.05:
                break
            if all(record.get(k) == v for k, v in match.items()):
                return record
        if time.time() > deadline:
            raise AssertionError(f"no access log record with {match} since the test started")
        time.sleep(0.05)


def records_of_this_test(**match):
    return [r for r in access_records() if record_time(r) >= TEST_STARTED[0] - 0.05
            and all(r.get(k) == v for k, v in match.items())]


def metrics():
    r = ns("host", "curl -s --max-time 5 http://127.0.0.1:9464/metrics")
    return r.stdout


def metric_value(text, name, labels):
    """The sample of `name` with exactly these labels (an unlabelled metric: labels {})."""
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if found == {k: str(v) for k, v in labels.items()}:
            return float(value)
    return 0.0


BASE_CONFIG = f"""
listen: {{ tproxy: ["0.0.0.0:15001", "[::]:15001"], control: {RUN}/control.sock, metrics: 127.0.0.1:9464 }}
workers: 2
state_dir: {RUN}/state
timeouts: {{ peek_ms: 1500, connect_ms: 2000 }}
dns: {{ servers: ["198.18.0.53"], verify: VERIFY, timeout_ms: 400 }}
dns_filter: {{ listen: ["0.0.0.0:15053", "[::]:15053"], budget: {{ new_names_per_minute: 30 }} }}
gateways:   # dedicated egress: addresses the test puts on the proxy host, a mark it routes
  gw-addr: {{ source: ["198.18.5.1", "fd00:198:5::1"] }}
  gw-v4only: {{ source: ["198.18.5.1"] }}
  gw-mark: {{ mark: 0x20 }}
limits: {{ max_peek_bytes: 16384, max_connections_per_sandbox: 40 }}
drain_s: 10
intercept: {{ upstream_ca: {WORK}/cert.pem }}   # the origins' test certificate is the only trust anchor
access_log: {ACCESS_LOG}
guard: {{ deny: ["10.200.0.0/16", "fd00:200::/40"] }}   # the built-in floor (loopback, metadata...) holds without listing it
sandboxes:
  - id: one
    sources: ["10.200.1.2", "fd00:200:1::2"]
    egress:
      default: deny
      allow: ["*.github.com", "pypi.org", "198.18.0.11:9000-9003", "[fd00:198::11]:9000-9003"]
      deny: ["gist.github.com", "198.18.0.12"]
  - id: two
    sources: ["10.200.2.2", "fd00:200:2::2"]
    egress:
      default: deny
      allow: ["evil.example", ".example.org", "*:9003", "198.18.0.11:9000"]
"""


def write_config(extra_allow_one=None, on_update="revoke", verify="dial"):
    text = BASE_CONFIG.replace("VERIFY", verify) + f"on_update: {on_update}\n"
    if extra_allow_one:
        text = text.replace('"pypi.org", ', '"pypi.org", "%s", ' % extra_allow_one)
    with open(CONFIG, "w") as f:
        f.write(text)


BIG_BODY = os.path.join(WORK, "big-body.json")


def setup():
    os.chmod(WORK, 0o755)
    os.makedirs(RUN)
    os.chown(RUN, 65534, 65534)
    with open(BIG_BODY, "w") as f:
        f.write('{"sources":[], "pad":"' + "x" * (1 << 20) + '"}')
    sh(f"bash {HERE}/topology.sh up {P}")
    firewall(FIREWALL_ARGS)
    # Origin certificate for every test name, made now.
    sans = ",".join("DNS:" + n for n in NAMES)
    sh(f"openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=egressd-test -addext subjectAltName={sans} "
       f"-keyout {WORK}/key.pem -out {WORK}/cert.pem")
    sh(f"openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=rogue -addext subjectAltName=DNS:rogue.github.com "
       f"-keyout {WORK}/rogue-key.pem -out {WORK}/rogue-cert.pem")
    sh(f"head -c {256 << 20} /dev/urandom > {WORK}/big.bin")
    with open(f"{WORK}/nginx.conf", "w") as f:
        f.write(f"""
user root; daemon off; worker_processes 1; pid {WORK}/nginx.pid; error_log {WORK}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {NGINX_LOG} combined;
  log_format hosts '$host $server_port';
  server {{
    listen 198.18.0.10:443 ssl; listen [fd00:198::10]:443 ssl;
    listen 198.18.0.10:80; listen [fd00:198::10]:80;
    ssl_certificate {WORK}/cert.pem; ssl_certificate_key {WORK}/key.pem;
    access_log {NGINX_LOG} hosts;
    location = /big.bin {{ root {WORK}; }}
    location / {{ default_type text/plain; return 200 "origin $host\\n"; }}
  }}
  server {{
    listen 198.18.0.12:443 ssl; listen 198.18.0.12:80;
    ssl_certificate {WORK}/cert.pem; ssl_certificate_key {WORK}/key.pem;
    access_log {WORK}/attacker.log hosts;
    location / {{ default_type text/plain; return 200 "attacker $host\\n"; }}
  }}
}}
""")
    start(f"ip netns exec {P}net nginx -c {WORK}/nginx.conf -p {WORK}", "nginx")
    start(f"ORIGIN_TLS={WORK}/cert.pem:{WORK}/key.pem ORIGIN_ROGUE={WORK}/rogue-cert.pem:{WORK}/rogue-key.pem "
          f"ip netns exec {P}net python3 {HERE}/origin.py {ORIGIN_LOG} 198.18.0.10 198.18.0.11 198.18.0.12 fd00:198::11",
          "origin")
    start_dnsmasq()
    os.makedirs(os.path.dirname(NETNS_RESOLV), exist_ok=True)
    with open(NETNS_RESOLV, "w") as f:
        f.write("search corp.example\nnameserver 198.18.0.53\noptions ndots:5\n")
    # A service only the proxy host itself should reach: what a DNS answer of 0.0.0.0 or :: dials.
    start(f"ip netns exec {P}host python3 -c \"import http.server as h, socket, threading\n"
          "class S(h.ThreadingHTTPServer): address_family = socket.AF_INET6\n"
          "class H(h.BaseHTTPRequestHandler):\n"
          "  def do_GET(self): self.send_response(200); self.end_headers(); self.wfile.write(b'proxy host loopback')\n"
          "threading.Thread(target=h.ThreadingHTTPServer(('127.0.0.1', 80), H).serve_forever, daemon=True).start()\n"
          "S(('::1', 80), H).serve_forever()\"", "loopback")
    write_config()
    start_egressd()
    wait_for(lambda: "ready" in open(os.path.join(WORK, "origin.out")).read(), "origin.py")
    wait_for(lambda: ns("host", "curl -s http://127.0.0.1/", check=False).stdout == "proxy host loopback",
             "the proxy host's loopback service")
    wait_for(lambda: ns("net", "curl -s -o /dev/null -w %{http_code} http://198.18.0.10/", check=False).stdout == "200",
             "nginx")


egressd_process = None
dnsmasq_process = None
DNS_RECORDS = {
    "api.github.com": ["198.18.0.10", "fd00:198::10"], "gist.github.com": ["198.18.0.10"],
    "pypi.org": ["198.18.0.10", "fd00:198::10"], "evil.example": ["198.18.0.10", "fd00:198::10"],
    "www.example.org": ["198.18.0.10"], "big.example.org": ["198.18.0.10"], "example.org": ["198.18.0.10"],
    "guarded.example.org": ["10.200.2.2"], "elsewhere.github.com": ["198.18.0.11"], "v6only.example.org": ["fd00:198::10"],
    "body.github.com": ["198.18.0.11"], "ws.github.com": ["198.18.0.11"], "attacker.github.com": ["198.18.0.12"],
    "db.corp.example": ["198.18.0.11"], "inside.internal.example": ["198.18.0.11"], "remembered.github.com": ["198.18.0.10"],
    "looked-up.github.com": ["198.18.0.10"], "metadata.example.org": ["169.254.169.254"],
    "secret.github.com": ["198.18.0.11", "fd00:198::11"], "nosecret.github.com": ["198.18.0.11"],
    "rogue.github.com": ["198.18.0.11"], "wrongname.github.com": ["198.18.0.11"], "bypass.github.com": ["198.18.0.11"],
    "other.github.com": ["198.18.0.11"],
}
DNSMASQ_LOG = os.path.join(WORK, "dnsmasq-queries.log")
# The proxy host's resolver configuration as `ip netns exec` shows it to egressd: a search list
# that would turn "db" into "db.corp.example" if names were not looked up as absolute names.
NETNS_RESOLV = f"/etc/netns/{P}host/resolv.conf"


def start_dnsmasq():
    global dnsmasq_process
    args = " ".join(f"--host-record={name},{','.join(addresses)}" for name, addresses in DNS_RECORDS.items())
    args += " --address=/zero.example.org/# --log-queries --log-facility=" + DNSMASQ_LOG  # 0.0.0.0 and ::
    # For the DNS filter: CNAME chains (to an allowed and to a not allowed name) and an HTTPS
    # record with alpn=h2 and an ech SvcParam (RFC 9460 wire form).
    args += (" --host-record=edge.cdn-provider.example,198.18.0.10 --cname=alias.github.com,api.github.com"
             " --cname=cdn.github.com,edge.cdn-provider.example"
             " --dns-rr=ech.github.com,65,0001000001000302683200050004deadbeef")
    dnsmasq_process = subprocess.Popen(
        f"exec ip netns exec {P}net dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=198.18.0.53 "
        f"--bind-interfaces --local-ttl=60 --pid-file= --user=root {args}",
        shell=True, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "dnsmasq.err"), "a"),
        start_new_session=True)
    processes.append(dnsmasq_process)
    wait_for(lambda: dns_answers("api.github.com") == ["198.18.0.10"], "dnsmasq to answer")


def dns_answers(name, server="198.18.0.53"):
    """The A records `server` gives for `name`, asked from the internet namespace."""
    r = ns("net", f"python3 {HERE}/client.py dnsq {name} {server}", check=False, timeout=10)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1]).get("a", [])
    except (IndexError, json.JSONDecodeError):
        return []


def start_egressd(nofile=None, env="", args=""):
    global egressd_process
    unprivileged = ("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin,+net_bind_service "
                    "--ambient-caps=-all,+net_admin,+net_bind_service --bounding-set=-all,+net_admin,+net_bind_service")
    limit = f"prlimit --nofile={nofile}:{nofile} " if nofile else ""
    egressd_process = subprocess.Popen(f"{env}exec ip netns exec {P}host {limit}{unprivileged} {EGRESSD} --config {CONFIG} {args}", shell=True,
                                       stdout=open(os.path.join(WORK, "egressd.out"), "a"),
                                       stderr=open(EGRESSD_ERR, "a"), start_new_session=True)
    processes.append(egressd_process)
    wait_for(lambda: "egressd_build_info" in metrics(), "egressd metrics")


def wait_for(predicate, what, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate():
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


BARRIERS = [0]


def log_hosts(path):
    try:
        return [line.split(" ")[0] for line in open(path)]
    except FileNotFoundError:
        return []


def saw(host, path, server):
    """Whether nginx logged a request for `host` in `path`. A barrier request sent straight to
    that server afterwards (one nginx worker logs in order) shows the log is complete first."""
    BARRIERS[0] += 1
    barrier = f"barrier-{BARRIERS[0]}.test"
    ns("net", f"curl -s -o /dev/null -H 'Host: {barrier}' http://{server}/", check=False)
    wait_for(lambda: barrier in log_hosts(path), f"nginx to log {barrier}")
    return host in log_hosts(path)


def nginx_saw(host):
    return saw(host, NGINX_LOG, "198.18.0.10")


def origin_lines():
    try:
        return open(ORIGIN_LOG).read().splitlines()
    except FileNotFoundError:
        return []


def https(sandbox, name, ip="198.18.0.10", extra=""):
    target = f"[{ip}]" if ":" in ip else ip
    return curl(sandbox, f"-k --resolve {name}:443:{target} https://{name}/ {extra}")


def http(sandbox, name, ip="198.18.0.10", extra=""):
    target = f"[{ip}]" if ":" in ip else ip
    return curl(sandbox, f"-i --resolve {name}:80:{target} http://{name}/ {extra}")


# ---------------------------------------------------------------- tests
tests = []


def test(fn):
    tests.append(fn)
    return fn


def firewall(args):
    return sh(f"ip netns exec {P}host bash {ROOT}/deploy/firewall.sh up {args}")


@contextlib.contextmanager
def scratch_namespace():
    """A namespace of its own for firewall.sh runs that must not touch the test topology."""
    fw = f"{P}fw"
    sh(f"ip netns add {fw}")
    try:
        sh(f"ip netns exec {fw} ip link set lo up")
        yield lambda cmd, **kw: sh(f"ip netns exec {fw} {cmd}", **kw)
    finally:
        sh(f"ip netns del {fw}", check=False)


@test
def firewall_script_is_idempotent_and_down_removes_only_its_own():
    with scratch_namespace() as inside:
        # The host's own ruleset and routing, which egressd's script must leave as they are.
        inside("nft add table inet host_filter")
        inside("nft add chain inet host_filter input '{ type filter hook input priority 0; policy accept; }'")
        inside("nft add rule inet host_filter input tcp dport 22 accept")
        inside("ip link add fwv0 type veth peer name fwv1")
        inside("ip link set fwv0 up")
        inside("ip route add 192.0.2.0/24 dev fwv0 table 15002")
        host_before = inside("nft list table inet host_filter").stdout
        script = f"bash {ROOT}/deploy/firewall.sh"
        args = "--iface veth-x --iface sbx+ --source 10.200.9.0/24 --source fd00:200:9::/64 --dns 198.18.0.53 --port 15001"
        for _ in range(2):
            inside(f"{script} up {args}")
        rules = json.loads(inside("nft -j list ruleset").stdout)["nftables"]
        tables = [r["table"]["name"] for r in rules if "table" in r]
        assert sorted(tables) == ["egressd", "host_filter"], tables
        text = inside("nft list table inet egressd").stdout
        assert text.count("tproxy to :15001") == 1 and 'iifname "sbx*"' in text and 'iifname "veth-x"' in text, text
        assert "10.200.9.0/24" in text and "fd00:200:9::/64" in text and "198.18.0.53" in text, text
        for family in ("-4", "-6"):
            assert inside(f"ip {family} rule").stdout.count("fwmark 0x1000/0x1000 lookup 15001") == 1
            assert inside(f"ip {family} route show table 15001").stdout.startswith("local default dev lo")
        # A table that holds someone else's routes is refused; so is --source alone, an IPv4-only
        # source list while a sandbox interface has IPv6, and a bad prefix. None changes anything.
        refused = {
            "--iface veth-x --table 15002": "holds routes egressd did not add",
            "--source 10.200.9.0/24": "--allow-source-only",
            "--iface fwv0 --source 10.200.9.0/24": "IPv6 is enabled on sandbox interface fwv0",
            "--iface veth-x --source 10.200.9.0/99 --source fd00::/64": "Prefix length 99",
            "--iface veth-x --ipv6 maybe": "--ipv6 maybe",
            "--iface veth-x --port 70000": "not a port",
            "--bogus 1": "unknown argument --bogus",
        }
        for bad, message in refused.items():
            r = inside(f"{script} up {bad}", check=False)
            assert r.returncode == 2 and message in r.stderr, (bad, r.stderr)
            assert inside("nft list table inet egressd").stdout == text, bad
        assert inside(f"{script} up --iface fwv0 --source 10.200.9.0/24 --ipv6 drop", check=False).returncode == 0
        assert "meta nfproto ipv6 counter packets 0 bytes 0 drop" in inside("nft list table inet egressd").stdout
        for _ in range(2):
            inside(f"{script} down {args}")
        assert "egressd" not in inside("nft list ruleset").stdout
        assert inside("nft list table inet host_filter").stdout == host_before
        assert "15001" not in inside("ip rule").stdout + inside("ip -6 rule").stdout
        assert inside("ip route show table 15002").stdout.startswith("192.0.2.0/24 dev fwv0")


SNIFF_LOG = os.path.join(WORK, "sniff.log")


def sniffed_lines():
    try:
        return open(SNIFF_LOG).read().splitlines()
    except FileNotFoundError:
        return []


def start_sniffer():
    if not any(p.args.endswith(SNIFF_LOG) for p in processes if isinstance(p.args, str)):
        start(f"ip netns exec {P}net python3 {HERE}/packets.py sniff eth0 {SNIFF_LOG}", "sniffer")
        wait_for(lambda: "ready" in open(os.path.join(WORK, "sniffer.out")).read(), "the packet sniffer")


def send_packets(sandbox, tag, src4, src6, *kinds, marker_from=None, marker_in=None):
    """What of `packets.py send` arrived in the internet namespace: {"v4-udp", "v6-p253", ...}
    for tagged packets, "v4-tcp from SRC" for TCP segments (a SYN has no payload to tag)."""
    offset = len(sniffed_lines())
    out = json.loads(ns(sandbox, f"python3 {HERE}/packets.py send {tag} {src4} {src6} {marker_from or src4} {' '.join(kinds)}",
                        timeout=20).stdout)
    assert not out["errors"], out
    if marker_in:  # where the marker goes instead (a DNS listener on the proxy host)
        wait_for(lambda: f"EGTAG:{tag}-marker" in open(marker_in).read(), f"marker {tag} in {marker_in}")
    else:
        wait_for(lambda: any(line.endswith(f" {tag}-marker") for line in sniffed_lines()[offset:]), f"marker {tag}")
    arrived = set()
    for line in sniffed_lines()[offset:]:
        family, proto, src, _dst, _port, found = line.split(" ")
        if found.startswith(f"{tag}-") and not found.endswith("-marker"):
            arrived.add(f"{family}-{found.split('-', 1)[1]}" + (f" from {src}" if src not in (src4, src6) else ""))
        elif proto == "6" and src in (src4, src6):
            arrived.add(f"{family}-tcp from {src}")
    return arrived


@contextlib.contextmanager
def third_sandbox():
    """sbx3 (10.200.3.2, fd00:200:3::2) on the proxy host's interface h3, which the firewall
    does not cover until a test says so."""
    sh(f"ip netns add {P}sbx3")
    try:
        sh(f"ip link add {P}s3 type veth peer name {P}h3")
        sh(f"ip link set {P}s3 netns {P}sbx3 && ip link set {P}h3 netns {P}host")
        ns("sbx3", "ip link set lo up")
        ns("sbx3", f"ip link set {P}s3 name eth0")
        ns("sbx3", "ip addr add 10.200.3.2/24 dev eth0")
        ns("sbx3", "ip addr add fd00:200:3::2/64 dev eth0 nodad")
        ns("sbx3", "ip link set eth0 up")
        ns("sbx3", "ip route add default via 10.200.3.1")
        ns("sbx3", "ip -6 route add default via fd00:200:3::1")
        ns("host", f"ip addr add 10.200.3.1/24 dev {P}h3")
        ns("host", f"ip addr add fd00:200:3::1/64 dev {P}h3 nodad")
        ns("host", f"ip link set {P}h3 up")
        yield
    finally:
        sh(f"ip netns del {P}sbx3", check=False)
        firewall(FIREWALL_ARGS)


ALL_KINDS = {f"{f}-{k}" for f in ("v4", "v6") for k in ("udp", "quic", "udp53", "icmp", "icmperr", "sctp", "gre", "p253", "tcp")}


@test
def firewall_passes_only_tcp_to_egressd_and_dns_to_the_resolver():
    start_sniffer()
    with third_sandbox():
        # Uncovered, h3 forwards everything: the sniffer sees what a bypass looks like.
        arrived = send_packets("sbx3", "open", "10.200.3.2", "fd00:200:3::2")
        expected = {k for k in ALL_KINDS if k != "v4-tcp" and k != "v6-tcp"} | {"v4-tcp from 10.200.3.2", "v6-tcp from fd00:200:3::2"}
        assert arrived == expected, arrived ^ expected
        ns("sbx3", "ip addr add 10.200.3.77/24 dev eth0")
        ns("sbx3", "ip addr add fd00:200:3::77/64 dev eth0 nodad")
        firewall(FIREWALL_ARGS + f" --iface {P}h3")
        # Neighbour discovery must work under the firewall: forget what was learnt.
        ns("sbx3", "ip -6 neigh flush dev eth0")
        ns("host", f"ip -6 neigh flush dev {P}h3")
        arrived = send_packets("sbx3", "closed", "10.200.3.2", "fd00:200:3::2")
        arrived |= send_packets("sbx1", "closed1", "10.200.1.2", "fd00:200:1::2")
        assert arrived == set(), arrived
        # TCP went to egressd (sbx3 is no sandbox of the policy: unknown_source), both families.
        wait_for(lambda: {r["src"].rsplit(":", 1)[0] for r in records_of_this_test(reason="unknown_source")}
                 >= {"10.200.3.2", "[fd00:200:3::2]"}, "egressd to see sbx3's TCP, v4 and v6")
        # Interface only: an address the sandbox added itself still ends at egressd (TCP) or the
        # resolver (DNS): nothing else.
        arrived = send_packets("sbx3", "added", "10.200.3.77", "fd00:200:3::77", "dns", "udp", "tcp", "p253")
        assert arrived == {"v4-dns"}, arrived
        wait_for(lambda: {r["src"].rsplit(":", 1)[0] for r in records_of_this_test(reason="unknown_source")}
                 >= {"10.200.3.77", "[fd00:200:3::77]"}, "egressd to see the added address's TCP")
        # Interface and source: packets from the added address are dropped before anything.
        sources = " ".join(f"--source {s}" for s in ("10.200.1.0/24", "10.200.2.2", "10.200.3.2", "fd00:200:1::/64",
                                                       "fd00:200:2::2", "fd00:200:3::2"))
        firewall(FIREWALL_ARGS + f" --iface {P}h3 {sources}")
        TEST_STARTED[0] = time.time()
        arrived = send_packets("sbx3", "spoofed", "10.200.3.77", "fd00:200:3::77", "dns", "udp", "tcp", "p253",
                               marker_from="10.200.3.2")
        assert arrived == set(), arrived
        assert send_packets("sbx3", "legit", "10.200.3.2", "fd00:200:3::2", "dns") == {"v4-dns"}
        r = client("sbx3", "raw", "198.18.0.11", 9000, "70696e67")  # a TCP record proves egressd's log is current
        assert was_reset(r), r
        wait_for(lambda: any(r["src"].startswith("10.200.3.2:") for r in records_of_this_test()), "sbx3's legit TCP")
        assert not [r for r in records_of_this_test() if "3::77" in r["src"] or "3.77" in r["src"]]




@test
def firewall_dns_port_takes_every_dns_packet_and_ipv6_drop_drops_ipv6():
    start_sniffer()
    listener = start(f"ip netns exec {P}host python3 {HERE}/packets.py dnslisten 15054", "dns-listener")
    out_path = os.path.join(WORK, "dns-listener.out")
    try:
        wait_for(lambda: "ready" in open(out_path).read(), "the transparent DNS listener")
        firewall(FIREWALL_ARGS + " --dns-port 15054")
        # To the resolver and to any other address, UDP and TCP, v4 and v6: all at the listener.
        assert send_packets("sbx1", "dnsport", "10.200.1.2", "fd00:200:1::2", "dns", "udp53", "udp",
                            marker_in=out_path) == set()
        r = client("sbx1", "raw", "198.18.0.11", 53, "00")
        r6 = client("sbx1", "raw", "fd00:198::11", 53, "00")
        wait_for(lambda: {"udp 10.200.1.2 EGTAG:dnsport-dns", "udp 10.200.1.2 EGTAG:dnsport-udp53",
                          "udp fd00:200:1::2 EGTAG:dnsport-udp53", "udp 10.200.1.2 EGTAG:dnsport-marker",
                          "tcp 10.200.1.2 198.18.0.11", "tcp fd00:200:1::2 fd00:198::11"}
                 <= set(open(out_path).read().splitlines()), "every DNS packet at egressd's DNS port")
        assert not [line for line in open(out_path).read().splitlines() if line.endswith(" EGTAG:dnsport-udp")]
        assert "error" not in r and "error" not in r6, (r, r6)  # accepted by the listener
        # --ipv6 drop: the sandbox's IPv6 reaches nothing, not even egressd; IPv4 is unchanged.
        sources = "--source 10.200.1.0/24 --source 10.200.2.0/24"
        firewall(FIREWALL_ARGS + f" {sources} --ipv6 drop")
        assert send_packets("sbx1", "v6drop", "10.200.1.2", "fd00:200:1::2", "tcp", "p253") == set()
        assert "error" in client("sbx1", "echo", "fd00:198::11", 9000)
        assert client("sbx1", "echo", "198.18.0.11", 9000)["data"] == "ping"
        assert not [r for r in records_of_this_test() if r["src"].startswith("[fd00:200:1::2]")]
    finally:
        firewall(FIREWALL_ARGS)
        os.killpg(listener.pid, signal.SIGKILL)


@test
def firewall_fails_closed_when_its_table_is_flushed():
    """`nft flush ruleset` (what Debian's nftables.service runs) takes table inet egressd away;
    the routing guard then refuses to forward sandbox traffic instead of letting it out."""
    start_sniffer()
    try:
        # Without the guard a flush is a bypass: the sniffer sees the sandbox's own packets.
        firewall(FIREWALL_ARGS + " --route-guard off")
        ns("host", "nft flush ruleset")
        assert send_packets("sbx1", "unguarded", "10.200.1.2", "fd00:200:1::2", "tcp", "p253") == {
            "v4-tcp from 10.200.1.2", "v6-tcp from fd00:200:1::2", "v4-p253", "v6-p253"}
        firewall(FIREWALL_ARGS)
        ns("host", "nft flush ruleset")
        assert ns("host", "nft list ruleset").stdout.strip() == ""
        out = client("sbx1", "echo", "198.18.0.11", 9000)  # first: before ICMP rate limits kick in
        assert "error" in out, out
        arrived = send_packets("sbx1", "guarded", "10.200.1.2", "fd00:200:1::2", "dns", *sorted({k[3:] for k in ALL_KINDS}))
        assert arrived == {"v4-dns"}, arrived
    finally:
        firewall(FIREWALL_ARGS)
    assert client("sbx1", "echo", "198.18.0.11", 9000)["data"] == "ping"


@test
def firewall_up_twice_under_load_lets_no_connection_bypass():
    start_sniffer()
    offset = len(sniffed_lines())
    origin_before = len(open(ORIGIN_LOG).read().splitlines())
    loop = subprocess.Popen(f"ip netns exec {P}sbx1 python3 {HERE}/client.py connloop 198.18.0.11 fd00:198::11 9000 4",
                            shell=True, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: open(ORIGIN_LOG).read().splitlines()[origin_before:].count("9000 198.18.0.1") >= 20,
                 "the connection loop to run")
        up_started = time.time()
        for _ in range(2):
            firewall(FIREWALL_ARGS)
        up_ended = time.time()
        out = json.loads(loop.communicate(timeout=30)[0])
    finally:
        loop.kill()
    assert out["first"] < up_started and out["last"] > up_ended, (out, up_started, up_ended)
    assert out["failures"] == 0 and out["ok"] > 100, out
    peers = open(ORIGIN_LOG).read().splitlines()[origin_before:]
    assert set(peers) <= {"9000 198.18.0.1", "9000 fd00:198::1"}, set(peers)
    assert not [line for line in sniffed_lines()[offset:] if line.split(" ")[1] == "6"]


@test
def firewall_tests_leave_no_connection_open_at_egressd():
    """Every connection the firewall tests made has ended (a lingering one would hold a drain)."""
    def live():
        return api("GET", "/v1/connections")[1]["connections"]  # host-wide: unknown sources too
    try:
        wait_for(lambda: not live(), "the firewall tests' connections to end", seconds=5)
    except RuntimeError:
        raise AssertionError(live())


@test
def allowed_sni_reaches_origin():
    r = https("sbx1", "api.github.com")
    assert r.stdout == "origin api.github.com\n", r
    rec = last_record(name="api.github.com", proto="tls")
    assert rec["verdict"] == "allow" and rec["reason"] == "allowed_domain" and rec["rule"] == "*.github.com", rec
    assert rec["sandbox"] == "one" and rec["bytes_up"] > 0 and rec["bytes_down"] > 0, rec


@test
def denied_sni_gets_alert_and_origin_never_sees_it():
    r = ns("sbx1", "sh -c 'echo | openssl s_client -connect 198.18.0.10:443 -servername gist.github.com 2>&1'",
           check=False, timeout=20)
    assert "alert access denied" in r.stdout, r.stdout
    r = https("sbx1", "evil.example")
    assert r.returncode == 35, r
    assert not nginx_saw("gist.github.com") and not nginx_saw("evil.example")
    assert last_record(name="gist.github.com")["reason"] == "denied_domain"
    assert last_record(name="evil.example", sandbox="one")["reason"] == "default_deny"


@test
def allowed_and_denied_host():
    r = http("sbx1", "pypi.org")
    assert "200 OK" in r.stdout and "origin pypi.org" in r.stdout, r
    r = http("sbx1", "evil.example")
    assert "403 Forbidden" in r.stdout and "X-Egress-Denied: default_deny" in r.stdout, r.stdout
    assert "access to evil.example is denied" in r.stdout.split("\n\n", 1)[1], r.stdout
    r = http("sbx1", "gist.github.com")
    assert "X-Egress-Denied: denied_domain" in r.stdout, r.stdout
    assert not nginx_saw("evil.example") and not nginx_saw("gist.github.com")


@test
def keepalive_host_switch_is_refused():
    out = client("sbx1", "keepalive", "198.18.0.10", 80, "pypi.org", "api.github.com", "evil.example", "pypi.org")
    assert "statuses" in out, out
    st = out["statuses"]
    assert st[0] == "HTTP/1.1 200 OK | origin pypi.org", st
    assert st[1] == "HTTP/1.1 200 OK | origin api.github.com", st
    assert st[2].startswith("HTTP/1.1 403 Forbidden"), st
    assert len(st) == 4 and st[3] == "closed", st
    assert not nginx_saw("evil.example")


@test
def hello_split_one_byte_per_segment_and_across_records():
    for piece, record in ((1, 0), (0, 1), (0, 50), (7, 30)):
        out = client("sbx1", "tls", "198.18.0.10", 443, "api.github.com", piece, record)
        assert out["answer"] == "server_hello", (piece, record, out)
        out = client("sbx1", "tls", "198.18.0.10", 443, "evil.example", piece, record)
        assert out["answer"] == "alert:49", (piece, record, out)


@test
def no_sni_non_tls_and_oversized_hellos_are_refused():
    assert client("sbx1", "tls", "198.18.0.10", 443, "-", 0, 0)["answer"] == "alert:49"
    assert last_record(reason="no_sni")["port"] == 443
    out = client("sbx1", "raw", "198.18.0.10", 443, b"GET / HTTP/1.1\r\nHost: pypi.org\r\n\r\n".hex())
    assert out["data"].startswith("\x15\x03\x01\x00\x02\x02\x31"), out
    assert last_record(reason="not_tls")["port"] == 443
    big = bytes([22, 3, 1, 0x40, 0]) + bytes([1, 0, 0x50, 0]) + b"\0" * 16380
    out = client("sbx1", "raw", "198.18.0.10", 443, big.hex())
    assert out["data"].startswith("\x15"), out
    assert last_record(reason="hello_too_large")["port"] == 443
    out = client("sbx1", "raw", "198.18.0.10", 80, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".hex())
    assert "X-Egress-Denied: not_http" in out["data"], out


@test
def peek_timeout():
    out = client("sbx1", "silent", "198.18.0.10", 443)
    assert out["data"].startswith("15030100020231") and 1.2 < out["seconds"] < 4, out
    assert last_record(reason="peek_timeout")["port"] == 443


def was_reset(out):
    """The client saw a RST: while reading, or already on its first send (the RST can overtake
    the client's write: ECONNRESET, or EPIPE once the error was reported)."""
    return out.get("end") == "reset" or out.get("error") in ("ConnectionResetError", "BrokenPipeError")


@test
def unknown_source():
    out = client("sbx1", "raw", "198.18.0.11", 9000, "70696e67", "10.200.1.3")
    assert was_reset(out), out
    r = curl("sbx1", "-i --interface 10.200.1.3 --resolve pypi.org:80:198.18.0.10 http://pypi.org/")
    assert "X-Egress-Denied: unknown_source" in r.stdout, r.stdout
    assert last_record(reason="unknown_source")["sandbox"] is None
    # Host-wide denials (no sandbox=) list unknown sources with their address.
    host_wide = json.loads(ctl("--json", "denials").stdout)["denials"]
    assert any(d["sandbox"] is None and d["src"].startswith("10.200.1.3:") and d["reason"] == "unknown_source"
               for d in host_wide), host_wide


@test
def two_sandboxes_two_policies():
    assert https("sbx2", "evil.example").stdout == "origin evil.example\n"
    assert https("sbx2", "www.example.org").stdout == "origin www.example.org\n"
    assert https("sbx2", "api.github.com").returncode == 35
    assert https("sbx1", "www.example.org").returncode == 35
    assert last_record(name="evil.example", sandbox="two")["rule"] == "evil.example"


@test
def cidr_fast_path_allow_and_deny():
    assert client("sbx1", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}
    before = len(origin_lines())
    out = client("sbx1", "echo", "198.18.0.12", 9000)
    assert was_reset(out), out
    assert len(origin_lines()) == before, "a denied fast-path connection reached the origin"
    rec = last_record(dst="198.18.0.12", port=9000)
    assert rec["reason"] == "denied_address" and rec["rule"] == "198.18.0.12" and rec["proto"] == "tcp", rec


@test
def port_only_rules():
    out = client("sbx2", "serverfirst", "198.18.0.10", 9003)
    assert out["data"] == "hello\n", out
    assert last_record(sandbox="two", port=9003)["rule"] == "*:9003"
    out = client("sbx2", "echo", "198.18.0.10", 9000)
    assert was_reset(out), out


@test
def half_close_both_directions_with_data_after_fin():
    out = client("sbx1", "halfclose", "198.18.0.11", 9001)
    assert out["data"] == "got 100000\nafter-fin 0\nafter-fin 1\nafter-fin 2\n" and out["end"] == "eof", out
    out = client("sbx1", "serverfirst", "198.18.0.11", 9003)
    assert out["data"] == "hello\n" and out["end"] == "eof" and out["end_after_send"] == "eof", out
    wait_for(lambda: "9003 received 50000" in origin_lines(), "the origin to log what it received")
    # No connection is left half-open on the proxy host (once egressd logged both as finished).
    last_record(port=9003, sandbox="one")
    r = ns("host", "ss -tan state close-wait state fin-wait-2")
    assert len(r.stdout.strip().splitlines()) <= 1, r.stdout


@test
def upstream_reset_is_carried_to_the_client():
    out = client("sbx1", "reset", "198.18.0.11", 9002)
    assert was_reset(out), out


@test
def transfer_256_mib_is_byte_identical():
    expected = sh(f"sha256sum {WORK}/big.bin").stdout.split()[0]
    r = ns("sbx1", f"sh -c 'curl -sk --max-time 120 --resolve api.github.com:443:198.18.0.10 "
                   f"https://api.github.com/big.bin | sha256sum'", timeout=150)
    assert r.stdout.split()[0] == expected, r
    rec = last_record(name="api.github.com", reason="allowed_domain")
    assert rec["bytes_down"] > 256 << 20, rec


@test
def ipv6_tls_http_and_fast_path():
    assert https("sbx1", "api.github.com", "fd00:198::10").stdout == "origin api.github.com\n"
    assert https("sbx1", "evil.example", "fd00:198::10").returncode == 35
    r = http("sbx1", "pypi.org", "fd00:198::10")
    assert "origin pypi.org" in r.stdout, r
    assert "X-Egress-Denied" in http("sbx1", "evil.example", "fd00:198::10").stdout
    assert client("sbx1", "echo", "fd00:198::11", 9000) == {"data": "ping", "end": "eof"}
    rec = last_record(dst="fd00:198::11")
    assert rec["sandbox"] == "one" and rec["src"].startswith("[fd00:200:1::2]:"), rec


@test
def guard_destination():
    out = client("sbx1", "echo", "10.200.2.2", 9000)
    assert was_reset(out), out
    rec = last_record(dst="10.200.2.2")
    assert rec["reason"] == "guarded_destination" and rec["rule"] == "10.200.0.0/16", rec


@test
def connection_limit():
    out = client("sbx2", "hold", "198.18.0.11", 9000, 45, 0.5, timeout=60)
    assert out["ok"] == 40 and out["failed"] == 5, out
    assert last_record(reason="connection_limit")["sandbox"] == "two"
    wait_for(lambda: not connections_of("two"), "the held connections to close")
    assert client("sbx2", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}


@test
def sighup_reload_good_and_bad():
    assert https("sbx1", "evil.example").returncode == 35
    write_config(extra_allow_one="evil.example")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: https("sbx1", "evil.example").stdout == "origin evil.example\n", "reload to take effect")
    with open(CONFIG, "a") as f:
        f.write("bogus_key: 1\n")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in open(EGRESSD_ERR).read(), "reload refusal")
    assert "unknown key \"bogus_key\"" in open(EGRESSD_ERR).read()
    assert https("sbx1", "evil.example").stdout == "origin evil.example\n"  # old config kept
    # The on-call signal stays 0 while the bad file stays, whatever else happens.
    assert metric_value(metrics(), "egressd_config_last_reload_successful", {}) == 0
    assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
    assert metric_value(metrics(), "egressd_config_last_reload_successful", {}) == 0
    write_config()
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: https("sbx1", "evil.example").returncode == 35, "reload back")
    assert metric_value(metrics(), "egressd_config_last_reload_successful", {}) == 1


def ctl(*args, check=True):
    r = sh(f"{EGRESSCTL} --socket {RUN}/control.sock " + " ".join(f"'{a}'" for a in args), check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"egressctl {args}: {r.stdout} {r.stderr}")
    return r


def api(method, path, body=None, headers=""):
    data = f"-d '{json.dumps(body)}'" if body is not None else ""
    r = sh(f"curl -s --unix-socket {RUN}/control.sock -X {method} {headers} -w '\\n%{{http_code}}' {data} http://egressd{path}")
    text, _, code = r.stdout.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


@test
def egressctl_scripts_well_timeout_exit_codes_batch_version_completion():
    # A control socket that accepts and never answers: --timeout ends it, exit 1, clear message.
    stuck = os.path.join(WORK, "stuck.sock")
    server = start(f"python3 -c \"import socket, time; s = socket.socket(socket.AF_UNIX); s.bind('{stuck}'); "
                   "s.listen(8); c = s.accept(); time.sleep(60)\"", "stuck")
    wait_for(lambda: os.path.exists(stuck), "the stuck socket")
    started = time.time()
    r = sh(f"{EGRESSCTL} --socket {stuck} --timeout 1 health", check=False)
    assert r.returncode == 1 and "no answer" in r.stderr and time.time() - started < 3, (r.returncode, r.stderr)
    os.killpg(server.pid, signal.SIGKILL)
    assert ctl("--version").stdout.startswith("egressctl ")
    assert sh(f"{EGRESSD} --version").stdout.startswith("egressd ")
    assert sh(f"{EGRESSCTL} --timeout 0 health", check=False).returncode == 2
    # check: the verdict is the exit code; a failure is not a deny.
    assert ctl("check", "one", "--host", "api.github.com", "--port", "443").returncode == 0
    assert ctl("check", "one", "--host", "evil.example", "--port", "443", check=False).returncode == 1
    assert ctl("--json", "check", "one", "--host", "evil.example", "--port", "443", check=False).returncode == 1
    r = ctl("check", "nobody", "--host", "a.example", "--port", "443", check=False)
    assert r.returncode == 3 and "unknown sandbox" in r.stderr, (r.returncode, r.stderr)
    lines = ['{"sandbox":"one","host":"api.github.com","port":443}', '{"sandbox":"one","host":"evil.example","port":443}',
             '', '{"sandbox":"one","host":"pypi.org","qtype":"A"}']
    batch = os.path.join(WORK, "batch.jsonl")
    open(batch, "w").write("\n".join(lines) + "\n")
    r = sh(f"{EGRESSCTL} --socket {RUN}/control.sock check --batch < {batch}", check=False)
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1 and [a["verdict"] for a in answers] == ["allow", "deny", "allow"], (r.returncode, r.stdout)
    open(batch, "a").write('{"sandbox":"nobody","host":"a.example","port":1}\nnot json\n')
    r = sh(f"{EGRESSCTL} --socket {RUN}/control.sock check --batch < {batch}", check=False)
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 3 and len(answers) == 5 and answers[3]["line"] == 5 and answers[4]["line"] == 6, r.stdout
    # Bash completion: commands, options, and the daemon's sandbox ids.
    def complete(*words):
        script = (f"source {ROOT}/deploy/completion/egressctl.bash; egressctl() {{ {EGRESSCTL} \"$@\"; }}; "
                  f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; _egressctl; echo \"${{COMPREPLY[*]}}\"")
        return sh(f"bash -c '{script}'").stdout.split()
    assert complete("egressctl", "ch") == ["check"]
    assert "--batch" in complete("egressctl", "check", "--")
    assert {"one", "two"} <= set(complete("egressctl", "--socket", f"{RUN}/control.sock", "get", "\"\""))


@test
def control_policy_change_applies_to_the_next_connection():
    assert https("sbx2", "pypi.org").returncode == 35
    ctl("set", "two", "--source", "10.200.2.2", "--source", "fd00:200:2::2", "--allow", "evil.example",
        "--allow", ".example.org", "--allow", "*:9003", "--allow", "198.18.0.11:9000", "--allow", "pypi.org")
    assert https("sbx2", "pypi.org").stdout == "origin pypi.org\n"
    out = json.loads(ctl("--json", "get", "two").stdout)
    assert "pypi.org" in out["egress"]["allow"] and out["generation"] >= 1, out
    assert "pypi.org" in ctl("get", "two").stdout
    assert "allow (allowed_domain, rule pypi.org)" in ctl("check", "two", "--host", "pypi.org", "--port", "443").stdout
    assert "two" in ctl("list").stdout and "status ok" in ctl("health").stdout
    denials = json.loads(ctl("--json", "denials", "two").stdout)["denials"]
    assert any(d["name"] == "pypi.org" and d["reason"] == "default_deny" for d in denials), denials


@test
def control_bad_body_changes_nothing():
    before = json.loads(ctl("--json", "get", "two").stdout)
    code, body = api("PUT", "/v1/sandboxes/two", {"sources": ["10.200.2.2"], "egress": {"allow": ["ok.example", "*.com"]}})
    assert code == 400 and body["field"] == "egress.allow[1]", body
    r = ctl("set", "two", "--allow", "bad_name.example", check=False)
    assert r.returncode != 0 and "egress.allow[0]" in r.stderr, r
    assert json.loads(ctl("--json", "get", "two").stdout) == before
    assert https("sbx2", "pypi.org").stdout == "origin pypi.org\n"
    code, body = api("PUT", "/v1/sandboxes/two", None, headers="-H 'Content-Type: application/json' --data-binary @" + BIG_BODY)
    assert code == 413, (code, body)


def slow_download(name="api.github.com"):
    return subprocess.Popen(
        f"ip netns exec {P}sbx1 curl -sk --limit-rate 2M --max-time 30 --resolve {name}:443:198.18.0.10 "
        f"https://{name}/big.bin -o /dev/null -w '%{{exitcode}} %{{size_download}}'",
        shell=True, stdout=subprocess.PIPE, text=True, start_new_session=True)


ONE = ["--source", "10.200.1.2", "--source", "fd00:200:1::2", "--allow", "pypi.org",
       "--allow", "198.18.0.11:9000-9003", "--allow", "[fd00:198::11]:9000-9003", "--deny", "198.18.0.12"]


def downloading():
    return any(c["name"] == "api.github.com" and c["phase"] == "relay" for c in connections_of("one"))


@test
def control_revoke_cuts_a_live_download_and_keep_spares_it():
    ctl("set", "one", *ONE, "--allow", "*.github.com")
    download = slow_download()
    wait_for(downloading, "the download to be relayed")
    ctl("set", "one", *ONE)  # *.github.com removed
    out = download.communicate(timeout=30)[0].split()
    assert out[0] != "0" and int(out[1]) < 100 << 20, out  # cut, not completed
    rec = last_record(name="api.github.com", reason="revoked")
    assert rec["verdict"] == "deny" and rec["bytes_down"] > 0, rec
    reloads = open(EGRESSD_ERR).read().count("reloaded")
    write_config(on_update="keep")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads, "reload with on_update: keep")
    ctl("set", "one", *ONE, "--allow", "*.github.com")
    download = slow_download()
    wait_for(downloading, "the download to be relayed")
    ctl("set", "one", *ONE)
    # Not cut: still relayed and still running for a second after the change (an observation
    # window, not a synchronisation: a revoke would have reset it within milliseconds).
    deadline = time.time() + 1.0
    while time.time() < deadline:
        assert download.poll() is None and downloading(), "the download was cut with on_update: keep"
        time.sleep(0.1)
    os.killpg(download.pid, signal.SIGKILL)
    download.wait()
    write_config()
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads + 1, "reload back to revoke")
    ctl("set", "one", *ONE, "--allow", "*.github.com", "--deny", "gist.github.com")


@test
def control_100_replacements_while_traffic_flows():
    loop = subprocess.Popen(
        f"ip netns exec {P}sbx1 sh -c 'fail=0; for i in $(seq 150); do "
        f"curl -sk --max-time 5 --resolve api.github.com:443:198.18.0.10 https://api.github.com/ | grep -q origin || fail=$((fail+1)); "
        f"done; echo $fail'", shell=True, stdout=subprocess.PIPE, text=True)
    for i in range(100):
        ctl("set", "one", *ONE, "--allow", "*.github.com", "--allow", f"v{i}.example")
    failures = int(loop.communicate(timeout=120)[0].strip())
    assert failures == 0, failures
    assert f"v99.example" in ctl("get", "one").stdout


@test
def compatible_endpoints_drive_real_traffic():
    # E2B: domains allowed, ALL_TRAFFIC denied (v4 and v6).
    code, _ = api("PUT", "/sandboxes/two/network", {"allowOut": ["evil.example"], "denyOut": ["0.0.0.0/0"]})
    assert code == 204
    assert https("sbx2", "evil.example").stdout == "origin evil.example\n"
    assert https("sbx2", "pypi.org").returncode == 35
    assert client("sbx2", "echo", "fd00:198::11", 9000).get("end") != "eof"  # ::/0 denied too
    code, body = api("PUT", "/sandboxes/two/network", {"denyOut": ["pypi.org"]})
    assert code == 400 and body["code"] == 400, body
    # Brimble: restricted to one name, then deny_all, then open.
    code, body = api("PUT", "/sandboxes/two/egress", {"mode": "restricted", "allow": ["pypi.org"]})
    assert code == 200 and body["data"]["egress"]["mode"] == "restricted", body
    assert https("sbx2", "pypi.org").stdout == "origin pypi.org\n"
    assert https("sbx2", "evil.example").returncode == 35
    api("PUT", "/sandboxes/two/egress", {"mode": "deny_all"})
    assert https("sbx2", "pypi.org").returncode == 35
    # sandbox0: block-all with *.example.org (which covers example.org itself).
    code, body = api("PUT", "/api/v1/sandboxes/two/network",
                     {"mode": "block-all", "egress": {"allowed_domains": ["*.example.org"], "allowed_cidrs": ["198.18.0.11/32"]}})
    assert code == 200 and body["egress"]["allowed_domains"] == ["*.example.org"], body
    assert https("sbx2", "www.example.org").stdout == "origin www.example.org\n"
    assert client("sbx2", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}
    assert https("sbx2", "evil.example").returncode == 35
    # Blaxel: forbiddenDomains only: everything but those.
    code, body = api("PUT", "/v0/sandboxes/two", {"metadata": {"name": "two"}, "spec": {"network": {"forbiddenDomains": ["evil.example"]}}})
    assert code == 200 and body["metadata"]["name"] == "two", body
    assert https("sbx2", "pypi.org").stdout == "origin pypi.org\n"
    assert https("sbx2", "evil.example").returncode == 35
    code, body = api("PUT", "/v0/sandboxes/nobody", {"metadata": {"name": "nobody"}})
    assert code == 404 and body["error"] == "Not Found", body
    api("PUT", "/v1/sandboxes/two", {"sources": ["10.200.2.2", "fd00:200:2::2"],
                                      "egress": {"default": "deny", "allow": ["evil.example", ".example.org", "*:9003", "198.18.0.11:9000"]}})


def attacker_saw(host):
    return saw(host, os.path.join(WORK, "attacker.log"), "198.18.0.12")


@test
def dns_verify_dial_sends_spoofed_sni_and_host_to_the_real_origin():
    # The sandbox aims an allowed name at an address of its own choosing (198.18.0.12).
    assert https("sbx1", "api.github.com", "198.18.0.12").stdout == "origin api.github.com\n"
    rec = last_record(name="api.github.com", dst="198.18.0.12")
    assert rec["reason"] == "allowed_domain" and rec["dialed"] == "198.18.0.10", rec
    assert "origin pypi.org" in http("sbx1", "pypi.org", "198.18.0.12").stdout
    assert last_record(name="pypi.org", dst="198.18.0.12", port=80)["dialed"] in ("198.18.0.10", "fd00:198::10")
    assert not attacker_saw("api.github.com") and not attacker_saw("pypi.org")
    # An IPv6-only name reached over IPv4 is dialled over IPv6.
    assert https("sbx2", "v6only.example.org").stdout == "origin v6only.example.org\n"
    assert last_record(name="v6only.example.org")["dialed"] == "fd00:198::10"
    assert https("sbx2", "v6only.example.org", "fd00:198::10").stdout == "origin v6only.example.org\n"
    # A keep-alive request for another allowed name that lives elsewhere is refused.
    out = client("sbx1", "keepalive", "198.18.0.10", 80, "pypi.org", "elsewhere.github.com")
    assert out["statuses"][0].startswith("HTTP/1.1 200"), out
    assert out["statuses"][1].startswith("HTTP/1.1 403 Forbidden"), out
    assert last_record(name="elsewhere.github.com")["reason"] == "dns_mismatch"


@test
def dns_answers_in_the_guard_are_never_dialled():
    r = https("sbx2", "guarded.example.org")
    assert r.returncode == 35, r
    assert last_record(name="guarded.example.org")["reason"] == "guarded_destination"


@test
def dns_verify_strict_refuses_mismatches():
    reloads = open(EGRESSD_ERR).read().count("reloaded")
    write_config(verify="strict")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads, "reload with verify: strict")
    try:
        assert https("sbx1", "api.github.com", "198.18.0.12").returncode == 35
        rec = last_record(name="api.github.com", dst="198.18.0.12")
        assert rec["reason"] == "dns_mismatch", rec
        r = http("sbx1", "pypi.org", "198.18.0.12")
        assert "X-Egress-Denied: dns_mismatch" in r.stdout, r.stdout
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        assert not attacker_saw("api.github.com") and not attacker_saw("pypi.org")
    finally:
        write_config()
        egressd_process.send_signal(signal.SIGHUP)
        wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads + 1, "reload back to dial")


@test
def dns_server_down_means_dns_failure_quickly():
    os.killpg(dnsmasq_process.pid, signal.SIGKILL)
    dnsmasq_process.wait()
    try:
        started = time.time()
        r = https("sbx2", "big.example.org")  # never asked before: not cached
        assert r.returncode == 35, r
        assert time.time() - started < 3, time.time() - started
        assert last_record(name="big.example.org")["reason"] == "dns_failure"
    finally:
        start_dnsmasq()


# ---------------------------------------------------------------- the DNS filter


@contextlib.contextmanager
def dns_filter_firewall():
    """The firewall sending every sandbox packet to port 53 to egressd's DNS filter."""
    firewall(FIREWALL_ARGS + " --dns-port 15053")
    try:
        yield
    finally:
        firewall(FIREWALL_ARGS)


def dig(sandbox, args, timeout=20):
    """dig from a sandbox: (status, answer lines). +tries=1: one query, no retry."""
    r = ns(sandbox, f"dig +tries=1 +time=3 {args}", check=False, timeout=timeout)
    status = re.search(r"status: (\w+)", r.stdout)
    answers = [line for line in r.stdout.splitlines() if line and not line.startswith(";")]
    return (status.group(1) if status else "NOANSWER:" + r.stdout[-200:]), answers


def dnsmasq_saw(name):
    try:
        return f" {name} from " in open(DNSMASQ_LOG).read()
    except FileNotFoundError:
        return False


def addresses(answer_lines):
    return sorted(line.split()[-1] for line in answer_lines if line.split()[3] in ("A", "AAAA"))


@test
def dns_filter_answers_allowed_names_and_refuses_denied_ones():
    nonce = str(int(time.time() * 1000))
    code, _ = api("PUT", "/v1/sandboxes/dnsonly",
                  {"sources": ["10.200.1.3"], "egress": {"default": "deny", "allow": ["*.github.com"]}})
    assert code == 200
    try:
        with dns_filter_firewall():
            # Allowed, to the resolver the sandbox names, to an address that runs no resolver
            # (198.18.0.11: only egressd can answer), over TCP and over IPv6.
            assert addresses(dig("sbx1", "@198.18.0.53 api.github.com A")[1]) == ["198.18.0.10"]
            status, lines = dig("sbx1", "@198.18.0.11 pypi.org AAAA")
            assert status == "NOERROR" and addresses(lines) == ["fd00:198::10"], (status, lines)
            assert addresses(dig("sbx1", "+tcp @198.18.0.11 api.github.com A")[1]) == ["198.18.0.10"]
            assert addresses(dig("sbx1", "@fd00:198::11 api.github.com AAAA")[1]) == ["fd00:198::10"]
            assert addresses(dig("sbx1", "+tcp @fd00:198::11 pypi.org A")[1]) == ["198.18.0.10"]
            rec = last_record(proto="dns", name="api.github.com", qtype="A")
            assert rec["reason"] == "allowed_domain" and rec["rule"] == "*.github.com", rec
            assert rec["answers"] == ["198.18.0.10"] and rec["sandbox"] == "one", rec
            # Denied: refused, and the name never reaches the upstream (a sandbox with no
            # address rule: no answer could carry anything it may reach).
            for qtype in ("A", "AAAA", "TXT", "HTTPS", "MX"):
                name = f"{qtype.lower()}-{nonce}.attacker.example"
                status, lines = dig("sbx1", f"-b 10.200.1.3 @198.18.0.53 {name} {qtype}")
                assert status == "REFUSED" and not lines, (qtype, status, lines)
                status, _ = dig("sbx1", f"+tcp -b 10.200.1.3 @198.18.0.11 {name} {qtype}")
                assert status == "REFUSED", status
                assert not dnsmasq_saw(name), name
            rec = last_record(proto="dns", sandbox="dnsonly", qtype="MX")
            assert rec["reason"] == "default_deny" and rec["verdict"] == "deny", rec
            denials = api("GET", "/v1/denials?sandbox=dnsonly")[1]["denials"]
            assert any(d.get("proto") == "dns" and d["name"] == f"mx-{nonce}.attacker.example" and
                       d["qtype"] == "MX" and d["reason"] == "default_deny" for d in denials), denials
            listed = ctl("denials", "dnsonly").stdout
            assert f"a-{nonce}.attacker.example" in listed, listed
            explained = ctl("check", "dnsonly", "--host", "x.attacker.example", "--qtype", "A", check=False)
            assert explained.stdout == "deny (default_deny, rule -), answer: answer_denied\n", explained.stdout
            assert explained.returncode == 1  # a deny is the exit code too
            # A name the policy denies explicitly, for a sandbox that has address rules: only
            # answers inside them could pass; gist.github.com's (198.18.0.10) does not.
            code, _ = api("PUT", "/v1/sandboxes/dnsonly",
                          {"sources": ["10.200.1.3"], "egress": {"default": "deny", "allow": ["*.github.com", "198.18.0.11"],
                                                                  "deny": ["gist.github.com"]}})
            assert code == 200
            status, _ = dig("sbx1", "-b 10.200.1.3 @198.18.0.53 gist.github.com A")
            assert status == "REFUSED", status
            assert last_record(proto="dns", name="gist.github.com")["reason"] == "denied_domain"
            # Not allowed by name, but its address is inside an allowed address rule.
            status, lines = dig("sbx1", "-b 10.200.1.3 @198.18.0.53 inside.internal.example A")
            assert status == "NOERROR" and addresses(lines) == ["198.18.0.11"], (status, lines)
            assert last_record(proto="dns", name="inside.internal.example")["reason"] == "filtered_answer"
            text = metrics()
            assert metric_value(text, "egressd_dns_requests_total",
                                {"verdict": "deny", "reason": "default_deny"}) >= 10
            assert metric_value(text, "egressd_dns_requests_total",
                                {"verdict": "allow", "reason": "allowed_domain"}) >= 5
            assert metric_value(text, "egressd_dns_request_duration_seconds_count", {}) >= 15
    finally:
        api("DELETE", "/v1/sandboxes/dnsonly")


@test
def dns_filter_cuts_chains_strips_ech_and_removes_guarded_answers():
    with dns_filter_firewall():
        # A CNAME to an allowed name is followed; to a name the policy does not allow, cut.
        status, lines = dig("sbx1", "@198.18.0.53 alias.github.com A")
        assert status == "NOERROR" and addresses(lines) == ["198.18.0.10"], (status, lines)
        assert any(line.split()[3:5] == ["CNAME", "api.github.com."] for line in lines), lines
        status, lines = dig("sbx1", "@198.18.0.53 cdn.github.com A")
        assert status == "REFUSED" and not lines, (status, lines)
        assert last_record(proto="dns", name="cdn.github.com")["reason"] == "filtered_answer"
        # The upstream really sends ech (positive control), the sandbox never sees it.
        direct = ns("net", "dig +tries=1 @198.18.0.53 ech.github.com HTTPS").stdout
        assert "ech=" in direct and "alpn=" in direct, direct
        status, lines = dig("sbx1", "@198.18.0.53 ech.github.com HTTPS")
        assert status == "NOERROR" and lines and all("ech=" not in line for line in lines), lines
        assert any('alpn="h2"' in line for line in lines), lines
        rec = last_record(proto="dns", name="ech.github.com")
        assert rec["ech"] is True and rec["reason"] == "allowed_domain", rec
        # Answers inside the guard are removed whatever the policy allows.
        for name in ("metadata.example.org", "guarded.example.org", "zero.example.org"):
            status, lines = dig("sbx2", f"@198.18.0.53 {name} A")
            assert status == "REFUSED" and not lines, (name, status, lines)
            assert last_record(proto="dns", name=name)["reason"] == "filtered_answer"
        status, lines = dig("sbx2", "@198.18.0.53 zero.example.org AAAA")
        assert status == "REFUSED" and not lines, (status, lines)


@test
def dns_filter_answers_count_for_dns_verification_without_another_lookup():
    def upstream_queries(name):
        return re.findall(rf"query\[(\w+)\] {re.escape(name)} from", open(DNSMASQ_LOG).read())
    with dns_filter_firewall():
        assert addresses(dig("sbx1", "@198.18.0.53 remembered.github.com A")[1]) == ["198.18.0.10"]
        assert upstream_queries("remembered.github.com") == ["A"]  # the filter's one query
        assert https("sbx1", "remembered.github.com").stdout == "origin remembered.github.com\n"
        rec = last_record(name="remembered.github.com", proto="tls")
        assert rec["reason"] == "allowed_domain" and "dialed" not in rec, rec
        assert upstream_queries("remembered.github.com") == ["A"], "dns.verify looked the name up again"
        # Positive control: a name the sandbox never asked egressd is looked up to verify it.
        assert https("sbx1", "looked-up.github.com").stdout == "origin looked-up.github.com\n"
        wait_for(lambda: upstream_queries("looked-up.github.com"), "destination verification's lookup")


@test
def dns_filter_budget_cuts_a_tunnel_through_an_allowed_wildcard():
    nonce = str(int(time.time() * 1000))
    with dns_filter_firewall():
        # Sandbox two allows .example.org: a tunnel encodes data in names below it. The budget
        # lets 30 new names of one registrable domain per minute through.
        script = ("import socket, struct, json\n"
                  "out = {}\n"
                  "for i in range(60):\n"
                  f"  name = 'c2VjcmV0{{}}-{nonce}.example.org'.format(i)\n"
                  "  q = struct.pack('>HHHHHH', i, 0x100, 1, 0, 0, 0) + b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)\n"
                  "  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
                  "  s.sendto(q, ('198.18.0.53', 53))\n"
                  "  try: a = s.recv(4096); out[name] = a[3] & 15\n"
                  "  except OSError: out[name] = -1\n"
                  "print(json.dumps(out))\n")
        r = ns("sbx2", f"python3 -c \"{script}\"", timeout=120)
        rcodes = json.loads(r.stdout.strip().splitlines()[-1])
        refused = [n for n, c in rcodes.items() if c == 5]
        passed = [n for n, c in rcodes.items() if c != 5]
        assert -1 not in rcodes.values(), rcodes
        assert len(passed) <= 30 and len(refused) >= 30, (len(passed), len(refused))
        assert not [n for n in refused if dnsmasq_saw(n)], "a name over budget reached the upstream"
        wait_for(lambda: records_of_this_test(proto="dns", reason="budget_exceeded"),
                 "the refusals over budget in the access log (flushed every 200 ms)")
        # Another domain still has its budget.
        assert addresses(dig("sbx2", "@198.18.0.53 evil.example A")[1]) == ["198.18.0.10"]


@test
def dns_filter_audit_mode_answers_with_would_deny_and_odd_bytes_never_stop_it():
    nonce = str(int(time.time() * 1000))
    code, _ = api("PUT", "/v1/sandboxes/dnsonly",
                  {"sources": ["10.200.1.3"], "mode": "audit",
                   "egress": {"default": "deny", "allow": ["pypi.org"]}})
    assert code == 200
    try:
        with dns_filter_firewall():
            status, lines = dig("sbx1", "-b 10.200.1.3 @198.18.0.53 api.github.com A")
            assert status == "NOERROR" and addresses(lines) == ["198.18.0.10"], (status, lines)
            rec = last_record(proto="dns", sandbox="dnsonly", name="api.github.com")
            assert rec["reason"] == "audit_allow" and rec["would_deny"] == "default_deny", rec
            # The guard holds in audit mode too.
            status, _ = dig("sbx1", "-b 10.200.1.3 @198.18.0.53 metadata.example.org A")
            assert status == "REFUSED", status
            # Garbage, a response, a truncated header, a compression loop, two questions, a
            # zone transfer, an oversized TCP length: FORMERR or nothing, then still serving.
            script = ("import socket, struct\n"
                      "def q(body, flags=0x100, qd=1): return struct.pack('>HHHHHH', 7, flags, qd, 0, 0, 0) + body\n"
                      "name = b'\\x03api\\x06github\\x03com\\x00'\n"
                      "cases = [b'\\xff' * 40, q(name + b'\\x00\\x01\\x00\\x01', flags=0x8100), b'\\x00\\x07\\x01',\n"
                      "  q(b'\\xc0\\x0c\\x00\\x01\\x00\\x01'), q(name + b'\\x00\\x01\\x00\\x01' + name + b'\\x00\\x01\\x00\\x01', qd=2),\n"
                      "  q(name + b'\\x00\\xfc\\x00\\x01'), q(b'\\x3f' + b'a' * 63 + b'\\x00\\x00\\x01\\x00\\x01')[:30]]\n"
                      "for c in cases:\n"
                      "  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.sendto(c, ('198.18.0.53', 53))\n"
                      "  try: a = s.recv(4096); print('rcode', a[3] & 15)\n"
                      "  except OSError: print('none')\n"
                      "t = socket.create_connection(('198.18.0.53', 53), timeout=3); t.sendall(b'\\xff\\xff' + b'x' * 100)\n"
                      "t.settimeout(3)\n"
                      "try: print('tcp', t.recv(10))\n"
                      "except ConnectionResetError: print('tcp reset')\n")
            r = ns("sbx1", f"python3 -c \"{script}\"", timeout=60)
            lines = r.stdout.split("\n")
            assert lines[:7] == ["none", "none", "none", "rcode 1", "rcode 1", "rcode 1", "rcode 1"], r.stdout
            assert "tcp b''" in r.stdout or "tcp reset" in r.stdout, r.stdout  # closed, no answer
            assert addresses(dig("sbx1", "@198.18.0.53 api.github.com A")[1]) == ["198.18.0.10"]
            assert records_of_this_test(proto="dns", reason="malformed_query")
    finally:
        api("DELETE", "/v1/sandboxes/dnsonly")


# ---------------------------------------------------------------- request transforms

SECRET = "sk-test-3f9a1c0d"  # what egressd puts on the wire; the sandbox never holds it
BODY_SECRET = "sk-live-77e2b4aa"
EGRESS_CA = os.path.join(WORK, "egressd-ca.pem")
SANDBOX_HOSTS = f"/etc/netns/{P}sbx1/hosts"  # what Python's resolver in sbx1 reads


def origin_requests(**match):
    try:
        lines = open(ORIGIN_LOG + ".requests").read().splitlines()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if all(r.get(k) == v if k != "host" else r["headers"].get("host", "").split(":")[0] == v
                                      for k, v in match.items())]


def echoed(out):
    """The JSON answers of the TLS echo origin, one per request, from curl's output."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def sandbox_one_with(**extra):
    """Sandbox one with its policy plus `extra` (transforms, secrets...); restored after."""
    code, before = api("GET", "/v1/sandboxes/one")
    assert code == 200, before
    policy = {k: before[k] for k in ("sources", "egress", "mode")}
    try:
        if extra:
            code, body = api("PUT", "/v1/sandboxes/one", dict(policy, **extra))
            assert code == 200, body
        code, pem = 0, sh(f"curl -s --unix-socket {RUN}/control.sock http://egressd/v1/ca.pem").stdout
        assert pem.startswith("-----BEGIN CERTIFICATE-----"), pem
        with open(EGRESS_CA, "w") as f:
            f.write(pem)
        os.makedirs(os.path.dirname(SANDBOX_HOSTS), exist_ok=True)
        with open(SANDBOX_HOSTS, "w") as f:
            f.write("127.0.0.1 localhost\n198.18.0.11 secret.github.com nosecret.github.com rogue.github.com\n")
        yield policy
    finally:
        api("PUT", "/v1/sandboxes/one", dict(policy, secrets={}))
        if os.path.exists(SANDBOX_HOSTS):
            os.unlink(SANDBOX_HOSTS)


def issuer_seen(sandbox, name, ip):
    r = ns(sandbox, f"sh -c 'echo | timeout 5 openssl s_client -connect {ip}:443 -servername {name} 2>/dev/null'",
           check=False, timeout=15)
    found = re.search(r"issuer=(.*)", r.stdout)
    return found.group(1) if found else r.stdout[-300:]


@test
def transforms_put_the_secret_on_the_wire_and_nowhere_else():
    transforms = [{"hosts": ["secret.github.com"], "headers": {"Authorization": "Bearer {{SECRET:openai}}",
                                                               "X-Org": "org-{{SECRET:org}}-x"}}]
    with sandbox_one_with(transforms=transforms, secrets={"openai": SECRET, "org": "o1"}, bypass=["bypass.github.com"]):
        code, got = api("GET", "/v1/sandboxes/one")
        assert code == 200 and got["secret_names"] == ["openai", "org"] and got["transforms"] == transforms, got
        # curl trusts egressd's CA; two requests on one connection: both get the secret.
        out = curl("sbx1", f"--cacert {EGRESS_CA} -H 'Authorization: Bearer placeholder' "
                           "https://secret.github.com/first https://secret.github.com/second")
        answers = echoed(out.stdout)
        assert len(answers) == 2, out.stdout + out.stderr
        for answer in answers:
            assert answer["headers"]["authorization"] == "Bearer " + SECRET, answer
            assert answer["headers"]["x-org"] == "org-o1-x", answer
        assert answers[0]["peer"] == answers[1]["peer"], answers  # one upstream connection
        record = last_record(sandbox="one", name="secret.github.com", port=443)
        assert record["intercepted"] is True and record["reason"] == "allowed_domain", record
        # Python (requests and http.client/urllib's stack), resolving through /etc/hosts.
        py = ("import json, requests, ssl, http.client\n"
              f"r = requests.get('https://secret.github.com/requests', verify='{EGRESS_CA}', "
              "headers={'Authorization': 'Bearer nope'}, timeout=10)\n"
              "print(json.dumps(r.json()['headers']))\n"
              f"ctx = ssl.create_default_context(cafile='{EGRESS_CA}')\n"
              "c = http.client.HTTPSConnection('secret.github.com', context=ctx, timeout=10)\n"
              "c.request('GET', '/urllib'); print(json.dumps(json.loads(c.getresponse().read())['headers']))\n")
        r = ns("sbx1", f"python3 -c \"{py}\"", check=False)
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == 2 and all(h["authorization"] == "Bearer " + SECRET for h in lines), r.stdout + r.stderr
        # IPv6 too.
        out = curl("sbx1", f"--cacert {EGRESS_CA} --resolve secret.github.com:443:[fd00:198::11] https://secret.github.com/v6")
        assert echoed(out.stdout)[0]["headers"]["authorization"] == "Bearer " + SECRET, out.stdout + out.stderr
        # Another Host on the intercepted connection: allowed, but the secret is not for it.
        out = curl("sbx1", f"--cacert {EGRESS_CA} -H 'Host: other.github.com' -H 'Authorization: Bearer mine' "
                           "https://secret.github.com/elsewhere")
        assert echoed(out.stdout)[0]["headers"]["authorization"] == "Bearer mine", out.stdout + out.stderr
        # egressctl: the policy without values, the check says intercepted, secrets from stdin.
        shown = ctl("get", "one").stdout
        assert "transform:  secret.github.com sets Authorization, X-Org" in shown and "secrets:    openai, org" in shown, shown
        assert SECRET not in shown
        assert "intercepted" in ctl("check", "one", "--host", "secret.github.com", "--port", "443").stdout
        assert "intercepted" not in ctl("check", "one", "--host", "api.github.com", "--port", "443").stdout
        r = sh(f"echo '{{\"org\": \"o2\"}}' | {EGRESSCTL} --socket {RUN}/control.sock secrets one")
        assert "updated" in r.stdout and "o2" not in r.stdout, r.stdout
        assert ctl("ca").stdout == open(EGRESS_CA).read()
        out = curl("sbx1", f"--cacert {EGRESS_CA} https://secret.github.com/org")
        assert echoed(out.stdout)[0]["headers"]["x-org"] == "org-o2-x", out.stdout
        # Port 80: the same injection without TLS.
        out = curl("sbx1", "-H 'Authorization: Bearer placeholder' http://secret.github.com/plain")
        assert "host secret.github.com" in out.stdout, out.stdout + out.stderr
        assert origin_requests(port=80, path="/plain")[-1]["headers"]["authorization"] == "Bearer " + SECRET
        # Names without a transform, and bypassed names, are spliced: the sandbox sees the
        # origin's own certificate. The transform's name sees egressd's.
        assert "egressd-test" in issuer_seen("sbx1", "api.github.com", "198.18.0.10")
        assert "egressd-test" in issuer_seen("sbx1", "bypass.github.com", "198.18.0.11")
        assert "egressd interception CA" in issuer_seen("sbx1", "secret.github.com", "198.18.0.11")
        state = open(f"{RUN}/state/sandboxes/one.json").read()
        assert "sealed_secrets" in state and SECRET not in state
        assert oct(os.stat(f"{RUN}/state/ca/secrets.key").st_mode & 0o777) == "0o600"
        assert oct(os.stat(f"{RUN}/state/ca/ca.key").st_mode & 0o777) == "0o600"
        # Nowhere in clear: no answer, state file, log line or metric.
        wait_for(lambda: last_record(name="secret.github.com", port=443), "the access log")
        places = {"GET": json.dumps(api("GET", "/v1/sandboxes/one")[1]) + json.dumps(api("GET", "/v1/sandboxes")[1]),
                  "metrics": metrics(), "access log": open(ACCESS_LOG).read(), "egressd's log": open(EGRESSD_ERR).read(),
                  "denials": json.dumps(api("GET", "/v1/denials")[1])}
        places["state_dir"] = "".join(open(os.path.join(d, f), "rb").read().decode("latin1")
                                      for d, _, files in os.walk(f"{RUN}/state") for f in files)
        for where, text in places.items():
            assert SECRET not in text and BODY_SECRET not in text, where


@test
def intercepted_origins_are_verified_and_placeholders_need_their_secret():
    transforms = [{"hosts": ["rogue.github.com", "wrongname.github.com"], "headers": {"Authorization": "{{SECRET:a}}"}},
                  {"hosts": ["nosecret.github.com"], "headers": {"X-Key": "${e2b.secrets.never_set}"}}]
    with sandbox_one_with(transforms=transforms, secrets={"a": SECRET}):
        # A CA egressd does not trust, and a certificate that does not name the host: refused
        # with an alert before the sandbox's handshake is answered; no request reaches them.
        for name in ("rogue.github.com", "wrongname.github.com"):
            out = curl("sbx1", f"--cacert {EGRESS_CA} --resolve {name}:443:198.18.0.11 https://{name}/")
            assert out.returncode != 0 and "alert access denied" in out.stderr, (name, out.stderr)
            assert last_record(sandbox="one", name=name)["reason"] == "upstream_untrusted"
            assert not origin_requests(host=name)
        assert "intercepted origin rogue.github.com" in open(EGRESSD_ERR).read()
        # A placeholder whose secret is not set: 403 missing_secret, nothing sent.
        out = curl("sbx1", f"-i --cacert {EGRESS_CA} https://nosecret.github.com/")
        assert "403" in out.stdout.splitlines()[0] and "X-Egress-Denied: missing_secret" in out.stdout, out.stdout
        assert last_record(sandbox="one", name="nosecret.github.com", port=443)["reason"] == "missing_secret"
        out = curl("sbx1", "-i http://nosecret.github.com/")
        assert "X-Egress-Denied: missing_secret" in out.stdout, out.stdout
        assert not origin_requests(host="nosecret.github.com")
        # Set it: the next request goes, with it.
        code, _ = api("PUT", "/v1/sandboxes/one/secrets", {"never_set": "now-set"})
        assert code == 204
        out = curl("sbx1", f"--cacert {EGRESS_CA} https://nosecret.github.com/")
        assert echoed(out.stdout)[0]["headers"]["x-key"] == "now-set", out.stdout + out.stderr
        # Hostile API input changes nothing and never echoes a value.
        for bad in ({"transforms": [{"hosts": ["*.com"], "headers": {"A": "b"}}]},
                    {"transforms": [{"hosts": ["x.github.com"], "headers": {"Host": "b"}}]},
                    {"transforms": [{"hosts": ["x.github.com"], "headers": {"Bad Name": "b"}}]},
                    {"transforms": [{"hosts": ["x.github.com"], "headers": {"A": "{{SECRET:unclosed"}}]},
                    {"secrets": {"k": "line\nbreak" + SECRET}}):
            code, body = api("PUT", "/v1/sandboxes/one", dict(sources=["10.200.1.2", "fd00:200:1::2"], **bad))
            assert code == 400 and SECRET not in json.dumps(body), body
        assert api("PUT", "/v1/sandboxes/nobody/secrets", {"a": "b"})[0] == 404
        assert api("PUT", "/v1/sandboxes/one/secrets", {"bad name": "b"})[0] == 400


@test
def with_dns_verify_off_no_secret_goes_where_the_sandbox_points():
    transforms = [{"hosts": ["secret.github.com", "rogue.github.com"], "headers": {"Authorization": "Bearer {{SECRET:openai}}"}}]
    with sandbox_one_with(transforms=transforms, secrets={"openai": SECRET}):
        reloads = open(EGRESSD_ERR).read().count("reloaded")
        write_config(verify="off")
        egressd_process.send_signal(signal.SIGHUP)
        wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads, "reload with verify: off")
        try:
            # Port 80: the address is the sandbox's choice and nothing proves where it leads.
            r = http("sbx1", "secret.github.com", "198.18.0.10")
            assert "X-Egress-Denied: upstream_untrusted" in r.stdout, r.stdout
            assert not nginx_saw("secret.github.com")
            # TLS: the origin's certificate is the proof; a server that cannot show one for the
            # name gets nothing, wherever the sandbox points.
            out = curl("sbx1", f"--cacert {EGRESS_CA} --resolve rogue.github.com:443:198.18.0.11 https://rogue.github.com/")
            assert "alert access denied" in out.stderr, out.stderr
        finally:
            write_config()
            egressd_process.send_signal(signal.SIGHUP)
            wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads + 1, "reload back to dial")


@test
def compatible_transforms_e2b_rules_and_blaxel_routing_with_body_injection():
    with sandbox_one_with() as policy:
        assert api("PUT", "/v1/sandboxes/one/secrets", {"openai": SECRET})[0] == 204
        # E2B: rules keyed by host, ${e2b.secrets.NAME}; a rule grants no egress by itself.
        code, _ = api("PUT", "/sandboxes/one/network", {"allowOut": ["secret.github.com"], "denyOut": ["0.0.0.0/0"],
                      "rules": {"secret.github.com": [{"transform": {"headers": {"X-Api-Key": "${e2b.secrets.openai}"}}}],
                                "api.github.com": [{"transform": {"headers": {"X-Api-Key": "x"}}}]}})
        assert code == 204
        out = curl("sbx1", f"--cacert {EGRESS_CA} https://secret.github.com/e2b")
        assert echoed(out.stdout)[0]["headers"]["x-api-key"] == SECRET, out.stdout + out.stderr
        assert https("sbx1", "api.github.com").returncode == 35  # a rule is no allowOut
        # Blaxel: routing with body fields and the rule's own secrets; they never come back.
        routing = [{"destinations": ["secret.github.com"], "headers": {"Authorization": "Bearer {{SECRET:openai}}"},
                    "body": {"api_key": "{{SECRET:stripe-key}}"}, "secrets": {"stripe-key": BODY_SECRET}}]
        code, answer = api("PUT", "/v0/sandboxes/one", {"spec": {"network": {"allowedDomains": ["*.github.com"],
                           "proxy": {"routing": routing, "bypass": ["bypass.github.com"]}}}})
        assert code == 200 and BODY_SECRET not in json.dumps(answer), answer
        assert "secrets" not in answer["spec"]["network"]["proxy"]["routing"][0], answer
        got = api("GET", "/v1/sandboxes/one")[1]
        assert got["bypass"] == ["bypass.github.com"] and got["secret_names"] == ["openai", "stripe-key"], got
        # Content-Length and chunked JSON bodies, from curl and from Python requests.
        out = curl("sbx1", f"--cacert {EGRESS_CA} -H 'Content-Type: application/json' -d '{{\"model\":\"m1\",\"api_key\":\"fake\"}}' "
                           "https://secret.github.com/v1/charges")
        answer = echoed(out.stdout)[0]
        assert json.loads(answer["body"]) == {"model": "m1", "api_key": BODY_SECRET}, answer
        assert answer["headers"]["content-length"] == str(len(answer["body"])), answer
        assert answer["headers"]["authorization"] == "Bearer " + SECRET, answer
        out = curl("sbx1", f"--cacert {EGRESS_CA} -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' "
                           "-d '{\"n\":[1,2,3]}' https://secret.github.com/chunked")
        answer = echoed(out.stdout)[0]
        assert json.loads(answer["body"]) == {"n": [1, 2, 3], "api_key": BODY_SECRET}, answer
        assert "transfer-encoding" not in answer["headers"], answer
        py = ("import requests\n"
              f"s = requests.Session(); ca = '{EGRESS_CA}'\n"
              "for i in range(2): print(s.post('https://secret.github.com/py', json={'i': i}, verify=ca, timeout=10).text.strip())\n"
              "print(s.post('https://secret.github.com/text', data='plain text', verify=ca, timeout=10).text.strip())\n")
        r = ns("sbx1", f"python3 -c \"{py}\"", check=False)
        answers = echoed(r.stdout)
        assert [json.loads(a["body"]) for a in answers[:2]] == [{"i": 0, "api_key": BODY_SECRET},
                                                                {"i": 1, "api_key": BODY_SECRET}], r.stdout + r.stderr
        assert answers[0]["peer"] == answers[1]["peer"], answers  # keep-alive: one connection, both edited
        assert answers[2]["body"] == "plain text", answers  # not JSON: the body goes as it came
        assert "egressd-test" in issuer_seen("sbx1", "bypass.github.com", "198.18.0.11")


# ---------------------------------------------------------------- dedicated egress addresses


@contextlib.contextmanager
def gateway_network():
    """What an operator sets up for the gateways of BASE_CONFIG: gw-addr's addresses on the proxy
    host (routed back by the "internet"), and for gw-mark a second link whose table the mark
    selects (ip rule fwmark 0x20)."""
    steps = [("host", "ip addr add 198.18.5.1/32 dev lo", "ip addr del 198.18.5.1/32 dev lo"),
             ("host", "ip addr add fd00:198:5::1/128 dev lo", "ip addr del fd00:198:5::1/128 dev lo"),
             ("net", "ip route add 198.18.5.0/24 via 198.18.0.1", "ip route del 198.18.5.0/24"),
             ("net", "ip -6 route add fd00:198:5::/64 via fd00:198::1", "ip -6 route del fd00:198:5::/64")]
    done = []
    try:
        for where, up, down in steps:
            ns(where, up)
            done.append((where, down))
        sh(f"ip link add {P}hm type veth peer name {P}mh")
        done.append(("host", f"ip link del {P}hm"))
        sh(f"ip link set {P}hm netns {P}host && ip link set {P}mh netns {P}net")
        ns("host", f"ip addr add 198.18.6.1/24 dev {P}hm")
        ns("host", f"ip link set {P}hm up")
        ns("net", f"ip addr add 198.18.6.2/24 dev {P}mh")
        ns("net", f"ip link set {P}mh up")
        ns("host", f"ip route add 198.18.0.0/24 dev {P}hm src 198.18.6.1 table 120")
        ns("host", "ip rule add fwmark 0x20 lookup 120 priority 80")
        done.append(("host", "ip rule del fwmark 0x20 lookup 120 priority 80"))
        yield
    finally:
        for where, down in reversed(done):
            ns(where, down, check=False)


def origin_peer_of(port, before):
    """The peer address of the origin's first connection on `port` logged after line `before`."""
    found = []
    def seen():
        found[:] = [line.split()[1] for line in origin_lines()[before:] if line.startswith(f"{port} ")]
        return found
    wait_for(seen, f"the origin to log a connection on {port}")
    return found[0]


def through(sandbox, ip, port=9000):
    before = len(origin_lines())
    out = client(sandbox, "echo", ip, port)
    assert out.get("data") == "ping", out
    return origin_peer_of(port, before)


@test
def a_gateway_gives_a_sandbox_its_own_egress_address():
    original = api("GET", "/v1/sandboxes/one")[1]
    def put_one(gateway):
        spec = {"sources": original["sources"], "mode": original["mode"], "egress": dict(original["egress"])}
        if gateway:
            spec["egress"]["gateway"] = gateway
        return api("PUT", "/v1/sandboxes/one", spec)
    try:
        with gateway_network():
            # Without a gateway: the proxy host's own address, for both sandboxes.
            assert through("sbx1", "198.18.0.11") == "198.18.0.1"
            # gw-addr: the origin sees the gateway's address, v4 and v6; the other sandbox does not.
            assert put_one("gw-addr")[0] == 200
            assert through("sbx1", "198.18.0.11") == "198.18.5.1"
            assert through("sbx1", "fd00:198::11") == "fd00:198:5::1"
            assert through("sbx2", "198.18.0.11") == "198.18.0.1"
            rec = last_record(sandbox="one", dst="fd00:198::11", port=9000)
            assert rec["via"] == "gw-addr" and rec["reason"] == "allowed_address", rec
            assert "via" not in last_record(sandbox="two", dst="198.18.0.11", port=9000)
            # A name verified by DNS is dialled through the gateway too.
            before = len(origin_lines())
            r = http("sbx1", "body.github.com", "198.18.0.11")
            assert "200" in r.stdout.splitlines()[0], r.stdout
            assert origin_peer_of(80, before) == "198.18.5.1"
            assert last_record(name="body.github.com", proto="http")["via"] == "gw-addr"
            # Changed live: a mark routed by the host through the second link.
            assert put_one("gw-mark")[0] == 200
            assert through("sbx1", "198.18.0.11") == "198.18.6.1"
            # A gateway without an address of the destination's family: connect_failed, said
            # once in egressd's log, never the default address.
            assert put_one("gw-v4only")[0] == 200
            before = len(origin_lines())
            out = client("sbx1", "echo", "fd00:198::11", 9000)
            assert "error" in out or out.get("data") != "ping", out
            rec = last_record(sandbox="one", dst="fd00:198::11", port=9000, reason="connect_failed")
            assert rec["via"] == "gw-v4only", rec
            assert not [l for l in origin_lines()[before:] if l.startswith("9000 ")]
            wait_for(lambda: "gateway gw-v4only has no IPv6 source address" in open(EGRESSD_ERR).read(),
                     "egressd to say why")
            assert through("sbx1", "198.18.0.11") == "198.18.5.1"
            # Unknown gateway: 400 naming the field, nothing changes.
            code, body = put_one("no-such-gateway")
            assert code == 400 and body["field"] == "egress.gateway", (code, body)
            assert api("GET", "/v1/sandboxes/one")[1]["egress"]["gateway"] == "gw-v4only"
            assert "gateway:    gw-v4only" in ctl("get", "one").stdout
            text = metrics()
            assert metric_value(text, "egressd_gateway_connections_total", {"gateway": "gw-addr"}) >= 3
            assert metric_value(text, "egressd_gateway_connections_total", {"gateway": "gw-mark"}) >= 1
            # Blaxel's shape: spec.network.egress {mode: dedicated, gateway}, round trip.
            blaxel = {"metadata": {"name": "one"}, "spec": {"network": {
                "allowedDomains": ["body.github.com"], "egress": {"mode": "dedicated", "gateway": "gw-addr"}}}}
            code, body = api("PUT", "/v0/sandboxes/one", blaxel)
            assert code == 200 and body["spec"]["network"]["egress"] == {"mode": "dedicated", "gateway": "gw-addr"}, body
            assert api("GET", "/v1/sandboxes/one")[1]["egress"]["gateway"] == "gw-addr"
            before = len(origin_lines())
            assert "200" in http("sbx1", "body.github.com", "198.18.0.11").stdout.splitlines()[0]
            assert origin_peer_of(80, before) == "198.18.5.1"
            blaxel["spec"]["network"]["egress"] = {"mode": "dedicated", "gateway": "nope"}
            code, body = api("PUT", "/v0/sandboxes/one", blaxel)
            assert code == 400 and "nope" in body["message"], body
            blaxel["spec"]["network"]["egress"] = {"mode": "shared"}
            code, body = api("PUT", "/v0/sandboxes/one", blaxel)
            assert code == 200 and body["spec"]["network"]["egress"] == {"mode": "shared"}, body
            assert "gateway" not in api("GET", "/v1/sandboxes/one")[1]["egress"]
    finally:
        assert put_one(None)[0] == 200


# ---------------------------------------------------------------- bypasses a hostile sandbox tried


def loopback_requests():
    return open(os.path.join(WORK, "loopback.out")).read().count('"GET ')


@test
def guard_floor_holds_for_dns_answers_and_every_address_family():
    # zero.example.org answers 0.0.0.0 and ::, which connect() takes for the proxy host itself.
    # guard.deny lists only the sandbox ranges: the floor must hold anyway.
    assert ns("host", "curl -s http://127.0.0.1/").stdout == "proxy host loopback"  # it is there
    before = loopback_requests()
    for ip in ("198.18.0.10", "fd00:198::10"):
        r = http("sbx2", "zero.example.org", ip)
        assert "X-Egress-Denied: guarded_destination" in r.stdout, r.stdout
    r = https("sbx2", "zero.example.org")
    assert r.returncode == 35, r
    assert last_record(name="zero.example.org", proto="tls")["reason"] == "guarded_destination"
    assert loopback_requests() == before, "a DNS answer of 0.0.0.0/:: reached the proxy host"
    # The metadata service: by name, by address (fast path and HTTP), and its NAT64 spelling.
    assert "X-Egress-Denied: guarded_destination" in http("sbx2", "metadata.example.org").stdout
    out = client("sbx2", "echo", "169.254.169.254", 9003)
    assert was_reset(out), out
    assert last_record(dst="169.254.169.254", port=9003)["rule"] == "169.254.0.0/16"
    out = client("sbx2", "echo", "64:ff9b::a9fe:a9fe", 9003)
    assert was_reset(out), out
    rec = last_record(dst="64:ff9b::a9fe:a9fe")
    assert rec["reason"] == "guarded_destination" and rec["rule"] == "64:ff9b::a9fe:0/112", rec
    for ip in ("100.100.100.200", "168.63.129.16", "fd00:ec2::254"):  # cloud metadata addresses
        out = client("sbx2", "echo", ip, 9003)
        assert was_reset(out), (ip, out)
        assert last_record(dst=ip, port=9003)["reason"] == "guarded_destination", ip


@test
def names_are_resolved_as_absolute_names():
    # Host: db under a "*" rule: the proxy host's search list must never make it db.corp.example.
    put_two(allow=["*:80"])
    try:
        r = curl("sbx2", "-i -H 'Host: db' http://198.18.0.11/")
        assert "X-Egress-Denied: dns_failure" in r.stdout, r.stdout
        assert last_record(name="db", sandbox="two")["reason"] == "dns_failure"
        queries = open(DNSMASQ_LOG).read()
        assert "query[A] db from" in queries, queries[-2000:]
        assert "db.corp.example" not in queries, "a search domain completed the name"
        assert not any(line.startswith("80 db") for line in origin_lines())
    finally:
        put_two()


@test
def address_denies_hold_for_the_dialled_address():
    # Sandbox one: allow *.github.com, deny 198.18.0.12. attacker.github.com resolves there.
    r = https("sbx1", "attacker.github.com")
    assert r.returncode == 35, r
    rec = last_record(name="attacker.github.com", proto="tls")
    assert rec["reason"] == "denied_address" and rec["rule"] == "198.18.0.12", rec
    r = http("sbx1", "attacker.github.com")
    assert "X-Egress-Denied: denied_address" in r.stdout, r.stdout
    assert not attacker_saw("attacker.github.com")
    # `allow *:80` + `deny ADDRESS`: no name reaches the denied address, not even by aiming at it.
    put_two(allow=["*:80"], deny=["198.18.0.12"])
    try:
        r = http("sbx2", "attacker.github.com", "198.18.0.12")
        assert "X-Egress-Denied: denied_address" in r.stdout, r.stdout
        assert not attacker_saw("attacker.github.com")
        assert "origin pypi.org" in http("sbx2", "pypi.org").stdout  # other names still work
    finally:
        put_two()
    # E2B keeps its documented meaning: an allowed domain beats denyOut.
    code, _ = api("PUT", "/sandboxes/two/network", {"allowOut": ["attacker.github.com"], "denyOut": ["198.18.0.12"]})
    assert code == 204
    try:
        assert "attacker attacker.github.com" in https("sbx2", "attacker.github.com").stdout
        out = client("sbx2", "echo", "198.18.0.12", 9000)
        assert was_reset(out), out  # the address itself stays denied
    finally:
        put_two()


def pipeline(sandbox, ip, port, *requests):
    return client(sandbox, "pipeline", ip, port, b"".join(requests).hex())["statuses"]


def get(host, extra=b""):
    return b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + extra + b"\r\n"


@test
def upgrade_header_does_not_end_request_checking():
    for token in ("websocket", "h2c", "foo"):
        upgrade = b"Connection: Upgrade\r\nUpgrade: " + token.encode() + b"\r\n"
        # nginx ignores the upgrade (200): the request after it is judged like any other.
        st = pipeline("sbx1", "198.18.0.10", 80, get("pypi.org", upgrade), get("forbidden.example"))
        assert st[0] == "HTTP/1.1 200 OK | origin pypi.org", (token, st)
        assert st[1].startswith("HTTP/1.1 403 Forbidden"), (token, st)
        assert not nginx_saw("forbidden.example"), token
        # The origin declines explicitly (200 on /no-upgrade): parsing goes on after the answer.
        decline = b"GET /no-upgrade HTTP/1.1\r\nHost: ws.github.com\r\n" + upgrade + b"\r\n"
        st = pipeline("sbx1", "198.18.0.11", 80, decline, get("ws.github.com"), get("forbidden.example"))
        assert st[0].startswith("HTTP/1.1 200 OK | GET /no-upgrade host ws.github.com"), (token, st)
        assert st[1].startswith("HTTP/1.1 200 OK | GET / host ws.github.com"), (token, st)
        assert st[2].startswith("HTTP/1.1 403 Forbidden"), (token, st)
    assert not any(" forbidden.example " in line for line in origin_lines())
    # Only a real 101 turns the connection opaque: then request-looking bytes are the new protocol.
    out = client("sbx1", "upgrade", "198.18.0.11", 80, "ws.github.com")
    assert out["status"].startswith("HTTP/1.1 101"), out
    assert out["echo"] == "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", out


@test
def request_bodies_reach_an_origin_that_reads_them_first():
    base = "--resolve body.github.com:80:198.18.0.11"
    r = curl("sbx1", f"{base} -d hello http://body.github.com/post")
    assert r.returncode == 0 and r.stdout.startswith("POST /post host body.github.com got 5 "), r
    big = os.path.join(WORK, "body.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20))
    digest = __import__("hashlib").sha256(open(big, "rb").read()).hexdigest()[:16]
    for extra in ("", "-H 'Transfer-Encoding: chunked'", "-H 'Expect: 100-continue'"):
        r = curl("sbx1", f"{base} {extra} --data-binary @{big} http://body.github.com/big")
        assert r.returncode == 0 and r.stdout == f"POST /big host body.github.com got {3 << 20} {digest}\n", (extra, r)
    # The request after a body is decided like the first: allowed, then denied.
    post = b"POST /a HTTP/1.1\r\nHost: body.github.com\r\nContent-Length: 4\r\n\r\nabcd"
    chunked = b"POST /c HTTP/1.1\r\nHost: body.github.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    st = pipeline("sbx1", "198.18.0.11", 80, post, chunked, get("body.github.com"), get("forbidden.example"))
    assert st[0].startswith("HTTP/1.1 200 OK | POST /a host body.github.com got 4"), st
    assert st[1].startswith("HTTP/1.1 200 OK | POST /c host body.github.com got 3"), st
    assert st[2].startswith("HTTP/1.1 200 OK | GET / host body.github.com"), st
    assert st[3].startswith("HTTP/1.1 403 Forbidden"), st
    # A body that looks like a request is a body, not a request to judge.
    smuggled = get("forbidden.example")
    st = pipeline("sbx1", "198.18.0.11", 80, b"POST /s HTTP/1.1\r\nHost: body.github.com\r\nContent-Length: "
                  + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    assert st[0].startswith(f"HTTP/1.1 200 OK | POST /s host body.github.com got {len(smuggled)}"), st


def put_two(allow=None, deny=None, mode="enforce", default="deny"):
    code, body = api("PUT", "/v1/sandboxes/two", {
        "sources": ["10.200.2.2", "fd00:200:2::2"], "mode": mode,
        "egress": {"default": default, "allow": allow if allow is not None else
                   ["evil.example", ".example.org", "*:9003", "198.18.0.11:9000"], "deny": deny or []}})
    assert code == 200, body


@test
def audit_mode_lets_refusals_through_with_would_deny():
    put_two(allow=[], mode="audit")
    try:
        assert https("sbx2", "api.github.com").stdout == "origin api.github.com\n"
        rec = last_record(sandbox="two", name="api.github.com")
        assert rec["reason"] == "audit_allow" and rec["would_deny"] == "default_deny", rec
        # Protocol refusals too: plain HTTP on the TLS port reaches nginx, which says so.
        out = client("sbx2", "raw", "198.18.0.10", 443, get("pypi.org").hex())
        assert "400" in out["data"] and "plain HTTP" in out["data"], out
        rec = last_record(sandbox="two", port=443, would_deny="not_tls")
        assert rec["reason"] == "audit_allow" and rec["verdict"] == "allow", rec
        out = client("sbx2", "raw", "198.18.0.10", 80, b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n".hex())
        assert out["data"].startswith("HTTP/1.1 ") and "X-Egress-Denied" not in out["data"], out
        assert last_record(sandbox="two", port=80, would_deny="malformed_host")["reason"] == "audit_allow"
        st = pipeline("sbx2", "198.18.0.10", 80, get("pypi.org"), get("evil.example"))
        assert st[:2] == ["HTTP/1.1 200 OK | origin pypi.org", "HTTP/1.1 200 OK | origin evil.example"], st
        denials = json.loads(ctl("--json", "denials", "two").stdout)["denials"]
        assert any(d.get("would_deny") == "not_tls" and d["reason"] == "audit_allow" for d in denials), denials
        # The guard holds in audit mode.
        out = client("sbx2", "echo", "169.254.169.254", 9003)
        assert was_reset(out), out
    finally:
        put_two()


def connections_of(sandbox):
    code, body = api("GET", f"/v1/connections?sandbox={sandbox}")
    return body["connections"] if code == 200 else []


def stop_egressd():
    live = api("GET", "/v1/connections")[1].get("connections", [])  # what a drain waits for
    egressd_process.send_signal(signal.SIGTERM)
    try:
        assert egressd_process.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError(f"egressd did not stop in 20 s; live at SIGTERM: {live}; "
                             f"stderr: {open(EGRESSD_ERR).read()[-600:]}")


@test
def runs_as_nobody_with_only_cap_net_admin_and_net_bind_service():
    status = open(f"/proc/{egressd_process.pid}/status").read()
    assert re.search(r"^Uid:\s+65534\s", status, re.M), status
    # CAP_NET_ADMIN (IP_TRANSPARENT) and CAP_NET_BIND_SERVICE (DNS answers from port 53) only.
    assert re.search(r"^CapEff:\s+0000000000001400$", status, re.M), status
    assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"


@test
def access_log_reopens_on_sigusr1():
    os.rename(ACCESS_LOG, ACCESS_LOG + ".1")
    egressd_process.send_signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(ACCESS_LOG), "a new access log")
    assert https("sbx1", "pypi.org").stdout == "origin pypi.org\n"
    assert last_record(name="pypi.org", proto="tls")["reason"] == "allowed_domain"
    # One log again, in order, for the metrics comparison below.
    combined = open(ACCESS_LOG + ".1").read() + open(ACCESS_LOG).read()
    with open(ACCESS_LOG, "w") as log:
        log.write(combined)


@test
def dashboard_and_alerts_use_only_exported_metrics():
    path = os.path.join(WORK, "metrics.txt")
    open(path, "w").write(metrics())
    r = sh(f"python3 {ROOT}/tests/deploy/check.py {BUILD} --metrics {path}", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@test
def metrics_agree_with_the_access_log():
    def snapshot():  # the access log is flushed every 200 ms: wait until it holds every connection
        text, records = metrics(), access_records()
        def total(name):
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
        queries = [r for r in records if r["proto"] == "dns"]
        connections = [r for r in records if r["proto"] != "dns"]
        if total("egressd_connections_total") == len(connections) and total("egressd_dns_requests_total") == len(queries):
            return text, connections, queries
        return None
    wait_for(snapshot, "the access log to hold every counted connection and DNS query")
    text, records, queries = snapshot()
    counts = {}
    for rec in records:
        counts[rec["reason"]] = counts.get(rec["reason"], 0) + 1
    dns_counts = {}
    for rec in queries:
        dns_counts[(rec["verdict"], rec["reason"])] = dns_counts.get((rec["verdict"], rec["reason"]), 0) + 1
    for (verdict, reason), n in dns_counts.items():
        assert metric_value(text, "egressd_dns_requests_total", {"reason": reason, "verdict": verdict}) == n
    for reason in ("allowed_domain", "default_deny", "denied_domain", "filtered_answer", "budget_exceeded",
                   "malformed_query", "audit_allow"):
        assert any(r == reason for _, r in dns_counts), reason
    for reason, n in counts.items():
        verdict = "allow" if reason in ("allowed_domain", "allowed_address", "default_allow", "audit_allow") else "deny"
        got = metric_value(text, "egressd_connections_total", {"reason": reason, "verdict": verdict})
        assert got == n, (reason, got, n)
    for reason in ("unknown_source", "connection_limit", "peek_timeout", "no_sni", "guarded_destination",
                   "dns_mismatch", "dns_failure", "revoked"):
        assert counts.get(reason, 0) >= 1, reason
    assert metric_value(text, "egressd_bytes_total", {"direction": "down"}) > 256 << 20
    assert metric_value(text, "egressd_dns_queries_total", {"result": "ok"}) >= 3
    assert metric_value(text, "egressd_dns_queries_total", {"result": "timeout"}) >= 1
    assert metric_value(text, "egressd_dns_cache_total", {"result": "hit"}) >= 1
    assert metric_value(text, "egressd_dns_verifications_total", {"outcome": "redirected"}) >= 2
    assert metric_value(text, "egressd_sandboxes", {}) == 2, text
    for reason in ALL_REASONS:  # every reason is pre-registered, used or not
        assert f'reason="{reason}"' in text, reason


@test
def a_greedy_sandbox_cannot_starve_a_polite_one():
    # 200 descriptors: limits.max_connections = 200 * 0.9 / 2 = 90. Near the limit (3/4 = 67)
    # a sandbox above its fair share (90 / (sandboxes holding connections + 1)) is refused.
    stop_egressd()
    text = open(CONFIG).read().replace("max_connections_per_sandbox: 40",
                                       "max_connections_per_sandbox: 4096, max_peeking_per_sandbox: 8")
    open(CONFIG, "w").write(text.replace("peek_ms: 1500", "peek_ms: 6000"))
    start_egressd(nofile=200)
    greedy = None
    try:
        greedy = subprocess.Popen(f"ip netns exec {P}sbx2 python3 {HERE}/client.py hold 198.18.0.11 9000 150 60",
                                  shell=True, stdout=subprocess.PIPE, text=True, start_new_session=True)
        wait_for(lambda: len(records_of_this_test(sandbox="two", reason="connection_limit")) == 150 - 67,
                 "the greedy sandbox's 150 attempts", seconds=30)
        assert len(connections_of("two")) == 67
        assert client("sbx1", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        os.killpg(greedy.pid, signal.SIGKILL)
        greedy.wait()
        wait_for(lambda: not connections_of("two"), "the greedy connections to close")
        # Peeking connections are capped per sandbox: 20 silent TLS connections, 8 may wait.
        greedy = subprocess.Popen(f"ip netns exec {P}sbx2 python3 {HERE}/client.py silentmany 198.18.0.10 443 20 30",
                                  shell=True, stdout=subprocess.PIPE, text=True, start_new_session=True)
        wait_for(lambda: len(records_of_this_test(sandbox="two", reason="connection_limit", port=443)) == 12,
                 "12 of 20 silent connections refused")
        assert sum(1 for c in connections_of("two") if c["phase"] == "peek") == 8
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"  # others unaffected
    finally:
        if greedy:
            os.killpg(greedy.pid, signal.SIGKILL)
            greedy.wait()
        stop_egressd()
        write_config()
        start_egressd()


def sandboxes_listed():
    code, body = api("GET", "/v1/sandboxes")
    assert code == 200, body
    return body["sandboxes"]


@test
def sighup_reloads_racing_100_puts_lose_no_write():
    stop = []
    def hup_loop():
        while not stop:
            egressd_process.send_signal(signal.SIGHUP)
            time.sleep(0.001)  # a signal every millisecond: reloads run back to back
    import threading
    hupper = threading.Thread(target=hup_loop)
    reloads = open(EGRESSD_ERR).read().count("reloaded")
    hupper.start()
    try:
        for i in range(100):
            code, body = api("PUT", f"/v1/sandboxes/race-{i}", {"sources": [f"10.200.60.{i}"], "egress": {"allow": [f"v{i}.example"]}})
            assert code == 200, body
    finally:
        stop.append(True)
        hupper.join()
    assert open(EGRESSD_ERR).read().count("reloaded") > reloads + 10  # they did overlap
    ids = {sb["id"] for sb in sandboxes_listed()}
    missing = [i for i in range(100) if f"race-{i}" not in ids]
    assert not missing, f"PUTs lost by a concurrent reload: {missing}"
    for i in range(100):
        assert api("DELETE", f"/v1/sandboxes/race-{i}")[0] == 204


@test
def restart_reproduces_the_live_policy_set():
    # A file sandbox gives one of its sources to a new API sandbox that sorts before it.
    write_config()
    text = open(CONFIG).read().replace("sandboxes:\n", 'sandboxes:\n  - id: filebox\n'
                                       '    sources: ["10.200.3.9", "10.200.3.10"]\n    egress: { default: deny }\n', 1)
    open(CONFIG, "w").write(text)
    reloads = open(EGRESSD_ERR).read().count("reloaded")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads, "reload with filebox")
    assert api("PUT", "/v1/sandboxes/filebox", {"sources": ["10.200.3.10"], "egress": {"default": "deny"}})[0] == 200
    assert api("PUT", "/v1/sandboxes/0moved", {"sources": ["10.200.3.9"], "egress": {"allow": ["pypi.org"]}})[0] == 200
    def listed():  # file-only sandboxes have no state file: a start gives them new generations
        owned = {name[:-5] for name in os.listdir(f"{RUN}/state/sandboxes") if name.endswith(".json")}
        return [dict(sb, generation=sb["generation"] if sb["id"] in owned else None) for sb in sandboxes_listed()]
    before = listed()
    stop_egressd()
    start_egressd()
    after = listed()
    assert after == before, (before, after)
    assert {"0moved", "filebox"} <= {sb["id"] for sb in after}
    assert "skipped" not in open(EGRESSD_ERR).read().rsplit("stopped", 1)[-1]
    for sandbox in ("0moved", "filebox"):
        api("DELETE", f"/v1/sandboxes/{sandbox}")
    write_config()
    reloads = open(EGRESSD_ERR).read().count("reloaded")
    egressd_process.send_signal(signal.SIGHUP)
    wait_for(lambda: open(EGRESSD_ERR).read().count("reloaded") > reloads, "reload without filebox")
    assert "filebox" not in {sb["id"] for sb in sandboxes_listed()}


@test
def restart_keeps_api_policies():
    ctl("set", "one", *ONE, "--allow", "*.github.com", "--deny", "gist.github.com")  # API-owned
    before = json.loads(ctl("--json", "get", "one").stdout)
    egressd_process.send_signal(signal.SIGTERM)
    assert egressd_process.wait(timeout=15) == 0
    start_egressd()
    after = json.loads(ctl("--json", "get", "one").stdout)
    assert after == before, (before, after)
    assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
    # A new policy after the restart gets a higher generation than any before it.
    code, body = api("PUT", "/v1/sandboxes/one", {k: v for k, v in before.items() if k in ("sources", "egress", "mode")})
    assert code == 200 and body["generation"] > before["generation"], body


@test
def systemd_readiness_json_logs_process_metrics_and_access_log_fields():
    """Type=notify: READY=1 only once the listeners serve; RELOADING=1/READY=1 around a SIGHUP;
    STOPPING=1 at SIGTERM. --log-format json; process_* metrics; id/start/connect_ms."""
    import socket as pysocket
    path = os.path.join(RUN, "notify.sock")
    notify = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_DGRAM)
    notify.bind(path)
    os.chmod(path, 0o777)  # egressd runs as nobody
    notify.settimeout(15)
    try:
        stop_egressd()
        start_egressd(env=f"NOTIFY_SOCKET={path} ", args="--log-format json")
        message = notify.recv(4096).decode()
        assert "READY=1" in message and "STATUS=serving" in message, message
        # Ready means serving: the very next connection is relayed (no retry loop here).
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        for probe in ("healthz", "readyz"):  # Kubernetes' probes, on the metrics listener
            r = ns("host", f"curl -s -o /dev/null -w %{{http_code}} http://127.0.0.1:9464/{probe}")
            assert r.stdout == "200", (probe, r.stdout)
        egressd_process.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in notify.recv(4096).decode()
        assert "READY=1" in notify.recv(4096).decode()
        lines = [line for line in open(EGRESSD_ERR).read().splitlines() if line.startswith("{")]
        assert any(json.loads(line)["msg"].startswith("reloaded") for line in lines), lines[-3:]
        assert all({"ts", "level", "msg"} <= set(json.loads(line)) for line in lines)
        text = metrics()
        assert metric_value(text, "process_open_fds", {}) >= 5, "process_open_fds"
        assert metric_value(text, "process_max_fds", {}) >= 1000
        assert metric_value(text, "process_resident_memory_bytes", {}) > 1 << 20
        assert abs(metric_value(text, "process_start_time_seconds", {}) - time.time()) < 120
        assert metric_value(text, "process_cpu_seconds_total", {}) > 0
        for histogram in ("egressd_peek_duration_seconds", "egressd_connect_duration_seconds"):
            assert metric_value(text, histogram + "_count", {}) >= 1, histogram
        assert "egressd_dns_lookup_duration_seconds_count" in text
        record = last_record(sandbox="one", name="api.github.com")
        assert isinstance(record["id"], int) and record["id"] > 0 and record["start"] <= record["ts"], record
        assert 0 <= record["connect_ms"] < 2000, record
        egressd_process.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notify.recv(4096).decode()
        assert egressd_process.wait(timeout=20) == 0
    finally:
        notify.close()
        os.unlink(path)
        if egressd_process.poll() is not None:
            start_egressd()
        else:
            stop_egressd()
            start_egressd()


def background_python(namespace, code, ready):
    """`code` run by python3 in `namespace` (no shell in between), cleaned up with the test's
    processes; returns once it has printed the line `ready`."""
    process = subprocess.Popen(["ip", "netns", "exec", P + namespace, "python3", "-c", code],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    processes.append(process)
    assert process.stdout.readline().strip() == ready
    return process


def hold_connection(go, sandbox="sbx1", host="198.18.0.11"):
    """A long-lived relayed connection from `sandbox` to host:9000, opened now; it sends
    again and prints both echoes once the file `go` exists."""
    return background_python(sandbox, "import os, socket, time\n"
                             f"s = socket.create_connection(('{host}', 9000)); s.sendall(b'before'); a = s.recv(6)\n"
                             "print('open', flush=True)\n"
                             f"while not os.path.exists('{go}'): time.sleep(0.05)\n"
                             "s.sendall(b'after!'); b = s.recv(6); print(a.decode(), b.decode(), flush=True)",
                             "open")


def connection_loop(seconds):
    """New connections from sbx1 without a pause: TCP echo through the fast path and HTTPS
    through the TLS inspection. Every failure is counted, none retried. Prints "running"
    after the first round, then a JSON summary at the end."""
    return background_python(
        "sbx1", "import json, socket, ssl, time\n"
        f"ok = failed = 0; errors = []; end = time.time() + {seconds}\n"
        "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
        "while time.time() < end:\n"
        "  try:\n"
        "    s = socket.create_connection(('198.18.0.11', 9000), timeout=3); s.sendall(b'ping')\n"
        "    assert s.recv(4) == b'ping'; s.close()\n"
        "    t = ctx.wrap_socket(socket.create_connection(('198.18.0.10', 443), timeout=3), server_hostname='api.github.com')\n"
        "    t.sendall(b'GET / HTTP/1.1\\r\\nHost: api.github.com\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "    assert b'origin api.github.com' in t.recv(4096); t.close(); ok += 1\n"
        "  except Exception as e:\n"
        "    failed += 1; errors.append(repr(e))\n"
        "  if ok + failed == 1: print('running', flush=True)\n"
        "print(json.dumps({'ok': ok, 'failed': failed, 'errors': errors[:5]}))",
        "running")


def loop_result(loop):
    result = json.loads(loop.stdout.read())
    loop.wait()
    return result


@test
def takeover_refuses_no_connection_loses_no_write_and_lets_long_ones_finish():
    global egressd_process
    old = egressd_process
    go = os.path.join(WORK, "holder-go")
    # A long-lived relayed connection, opened before the upgrade, used again after it; new
    # connections for 5 s across the switch.
    holder = hold_connection(go)
    loop = connection_loop(5)
    # API writes across the switch: every acknowledged one must be in the new process.
    import threading
    acknowledged, other = [], []
    def writer():
        end = time.time() + 4
        i = 0
        while time.time() < end:
            code, body = api("PUT", f"/v1/sandboxes/tk-{i}", {"sources": [f"10.200.70.{i % 250}"] if i < 250 else [],
                                                               "egress": {"allow": [f"v{i}.example"]}})
            (acknowledged if code == 200 else other).append((i, code, body))
            i += 1
            if i >= 250:
                break
    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acknowledged) >= 20, "API writes before the takeover")
    unprivileged = ("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin,+net_bind_service "
                    "--ambient-caps=-all,+net_admin,+net_bind_service --bounding-set=-all,+net_admin,+net_bind_service")
    egressd_process = subprocess.Popen(f"exec ip netns exec {P}host {unprivileged} {EGRESSD} --config {CONFIG} --takeover",
                                       shell=True, stdout=open(os.path.join(WORK, "egressd.out"), "a"),
                                       stderr=open(EGRESSD_ERR, "a"), start_new_session=True)
    processes.append(egressd_process)
    wait_for(lambda: "took over from the running egressd" in open(EGRESSD_ERR).read(), "the takeover")
    thread.join()
    result = loop_result(loop)
    assert result["failed"] == 0 and result["ok"] > 10, result
    assert not other and len(acknowledged) >= 20, (other[:3], len(acknowledged))
    ids = {sb["id"] for sb in sandboxes_listed()}  # answered by the new process
    lost = [i for i, _, _ in acknowledged if f"tk-{i}" not in ids]
    assert not lost, f"acknowledged writes lost in the takeover: {lost}"
    # The old process drains: the long connection still works through it, then it exits 0.
    assert old.poll() is None, "the old egressd exited while a relayed connection was open"
    open(go, "w").close()
    assert holder.stdout.readline().split() == ["before", "after!"]
    holder.wait()
    assert old.wait(timeout=15) == 0
    assert "handed over to the new egressd" in open(EGRESSD_ERR).read()
    # The new one serves everything: metrics (bound after the old let go), the control socket.
    wait_for(lambda: "egressd_build_info" in metrics(), "the new egressd's metrics")
    assert abs(metric_value(metrics(), "process_start_time_seconds", {}) - time.time()) < 60
    assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
    for i, _, _ in acknowledged:
        api("DELETE", f"/v1/sandboxes/tk-{i}")
    # --takeover with nothing to take over (no egressd on that control socket): exit 1, said.
    lonely = os.path.join(WORK, "lonely.yaml")
    open(lonely, "w").write(open(CONFIG).read().replace(f"control: {RUN}/control.sock", f"control: {WORK}/none.sock"))
    r = sh(f"{EGRESSD} --config {lonely} --takeover", check=False, timeout=20)
    assert r.returncode == 1 and "cannot reach the running egressd" in r.stderr, r.stderr


def child_of(pid):
    return int(open(f"/proc/{pid}/task/{pid}/children").read().split()[0])


def gone(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


def log_count(text):
    return open(EGRESSD_ERR).read().count(text)


@test
def supervised_restart_is_a_takeover():
    """What `systemctl restart` does to the shipped unit (ExecStart ... --supervise,
    KillMode=process, RestartKillSignal=SIGUSR2): SIGUSR2 to the supervisor, which exits at
    once leaving its egressd serving; then a new --supervise start, whose egressd takes the
    sockets over while the old one drains. A killed supervisor drops nothing either; SIGTERM
    (systemctl stop) drains and stops both."""
    global egressd_process
    import socket as pysocket
    import struct
    path = os.path.join(RUN, "notify-supervised.sock")
    notify = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_DGRAM)
    notify.bind(path)
    os.chmod(path, 0o777)  # egressd runs as nobody
    notify.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_PASSCRED, 1)
    notify.settimeout(15)

    def notified():
        """(sender pid, text) of the next notification: systemd (NotifyAccess=main) only
        listens to the supervisor, so every one must come from it."""
        data, ancillary, _, _ = notify.recvmsg(4096, pysocket.CMSG_SPACE(12))
        pid = next(struct.unpack("iII", d)[0] for level, kind, d in ancillary if kind == pysocket.SCM_CREDENTIALS)
        return pid, data.decode()

    stop_egressd()
    children = []
    try:
        start_egressd(env=f"NOTIFY_SOCKET={path} ", args="--supervise")
        first = egressd_process
        children.append(child_of(first.pid))
        pid, message = notified()
        assert pid == first.pid and "READY=1" in message, (pid, first.pid, message)
        go = os.path.join(WORK, "supervised-go")
        holder = hold_connection(go)
        loop = connection_loop(6)
        took_over = log_count("took over from the running egressd")
        first.send_signal(signal.SIGUSR2)
        assert first.wait(timeout=5) == 0
        assert not gone(children[0]), "the supervised egressd stopped with its supervisor"
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"  # between stop and start
        start_egressd(env=f"NOTIFY_SOCKET={path} ", args="--supervise")
        wait_for(lambda: log_count("took over from the running egressd") > took_over, "the restart's takeover")
        children.append(child_of(egressd_process.pid))
        pid, message = notified()  # the new one is ready; the old one, draining, says nothing
        assert pid == egressd_process.pid and "READY=1" in message, (pid, egressd_process.pid, message)
        result = loop_result(loop)
        assert result["failed"] == 0 and result["ok"] > 10, result
        assert not gone(children[0]), "the old egressd exited while a relayed connection was open"
        open(go, "w").close()
        assert holder.stdout.readline().split() == ["before", "after!"]
        holder.wait()
        wait_for(lambda: gone(children[0]), "the old egressd to finish draining", seconds=15)
        egressd_process.send_signal(signal.SIGHUP)  # systemctl reload: passed on, answered through it
        reload_notifications = [notified() for _ in range(2)]
        assert [pid for pid, _ in reload_notifications] == [egressd_process.pid] * 2, reload_notifications
        assert reload_notifications[0][1] == "RELOADING=1", reload_notifications
        assert reload_notifications[1][1].startswith("READY=1\nSTATUS=serving "), reload_notifications
        notify.settimeout(0.5)
        try:
            extra = notified()
        except TimeoutError:
            extra = None
        assert extra is None, f"a notification systemd would not expect: {extra}"
        notify.settimeout(15)
        # The supervisor killed outright: its egressd hears it (PR_SET_PDEATHSIG) and serves on.
        left = log_count("the supervisor left for a restart")
        egressd_process.kill()
        egressd_process.wait()
        wait_for(lambda: log_count("the supervisor left for a restart") > left, "the orphaned egressd")
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        took_over = log_count("took over from the running egressd")
        start_egressd(args="--supervise")
        wait_for(lambda: log_count("took over from the running egressd") > took_over, "the takeover from the orphan")
        children.append(child_of(egressd_process.pid))
        wait_for(lambda: gone(children[1]), "the orphaned egressd to stop", seconds=15)
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        # systemctl stop: SIGTERM to the supervisor; it waits for its egressd's drain.
        egressd_process.send_signal(signal.SIGTERM)
        assert egressd_process.wait(timeout=20) == 0
        assert gone(children[2])
        # Fresh when nothing runs: --takeover-if-running starts; --supervise refuses --takeover.
        fresh = log_count("starting fresh")
        start_egressd(args="--supervise")
        assert log_count("starting fresh") == fresh + 1
        children.append(child_of(egressd_process.pid))
        r = sh(f"{EGRESSD} --config {CONFIG} --supervise --takeover", check=False, timeout=10)
        assert r.returncode == 2 and "drop --takeover" in r.stderr, r.stderr
    finally:
        for pid in children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if egressd_process.poll() is None:
            egressd_process.kill()
            egressd_process.wait()
        wait_for(lambda: all(gone(pid) for pid in children), "the supervised egressd processes to exit")
        notify.close()
        os.unlink(path)
        start_egressd()


def metric_total(name):
    total = 0.0
    for line in metrics().splitlines():
        if not line.startswith("#") and (line.startswith(name + "{") or line.startswith(name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


@test
def kernel_table_refuses_at_syn_and_agrees_with_the_proxy():
    """The compiled table on its own (bench/system/kernel_sets --iface: a scratch table at
    priority -160, before the firewall's, which has no --fast-path here), checked point by
    point against decide() for this configuration, answers every refusal with a TCP reset at SYN
    (no accept at egressd: its connection counter does not move), v4 and v6, guard and unknown
    sources included; allowed fast-path and inspected connections go on to egressd as before."""
    table = "egressd_fast_e2e"
    tool = os.path.join(BUILD, "kernel_sets")
    r = ns("host", f"{tool} --config {CONFIG} --table {table} --iface {P}h1 --iface {P}h2 --check 3000 --keep")
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert loaded["mismatches"] == 0 and loaded["in_kernel"] >= 2 and loaded["allowed_points"] > 0, loaded
    try:
        refused = [(4, None, "198.18.0.12", 9000),          # one's deny rule
                   (4, None, "198.18.0.11", 9100),          # one's default
                   (4, None, "10.200.2.2", 9000),           # the guard (10.200.0.0/16)
                   (4, "10.200.1.3", "198.18.0.11", 9000),  # a source no sandbox owns
                   (6, None, "fd00:198::12", 9000),         # v6: one's default
                   (6, None, "fd00:200:2::2", 9000)]        # v6: the guard
        allowed = [(4, None, "198.18.0.11", 9000), (6, None, "fd00:198::11", 9000)]
        before = metric_total("egressd_connections_total")
        answers = probe("sbx1", refused + allowed)
        for target, (what, echo, seconds) in zip(refused, answers[:len(refused)]):
            assert what == "ConnectionRefusedError" and seconds < 1, (target, what, seconds)
        for target, (what, echo, seconds) in zip(allowed, answers[len(refused):]):
            assert (what, echo) == ("open", "ping"), (target, what)
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"  # inspected: egressd
        wait_for(lambda: metric_total("egressd_connections_total") >= before + len(allowed) + 1, "egressd's counts")
        # Only the allowed ones and the HTTPS request reached egressd; no refusal did.
        assert metric_total("egressd_connections_total") == before + len(allowed) + 1
    finally:
        ns("host", f"nft delete table inet {table}", check=False)


@test
def kernel_skeleton_declares_what_firewall_fast_path_declares():
    """nft_skeleton (the scratch tables of kernel_sets and the tests) and firewall.sh
    --fast-path write the same fast-path objects: every set and map (type, flags), chain
    (rules), counter and ct timeout egressd relies on, compared as nft lists them."""
    objects = [("set", "fp_mark"), ("set", "fp_guard4"), ("set", "fp_guard6"), ("set", "fp_inspected"),
               ("map", "fp_by_source4"), ("map", "fp_by_source6"), ("chain", "fp_refuse"), ("chain", "fp_limit"),
               ("chain", "fp_allow"), ("counter", "fp_unlogged"), ("ct timeout", "fp_close4"),
               ("ct timeout", "fp_close6")]

    def normal(value, keep_elements):
        if isinstance(value, dict):
            return {k: normal(v, keep_elements) for k, v in value.items()
                    if k not in ("handle", "table") and (keep_elements or k != "elem")}
        if isinstance(value, list):
            return [normal(v, keep_elements) for v in value]
        return value

    with scratch_namespace() as inside:
        for knob in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            inside(f"sysctl -qw {knob}=1")
        inside(f"bash {ROOT}/deploy/firewall.sh up --iface sbx+ --source 10.200.9.0/24 --source fd00:200:9::/64 "
               "--port 15001 --fast-path")
        inside(f"{os.path.join(BUILD, 'kernel_sets')} --config {CONFIG} --table twin --keep")
        for kind, name in objects:
            if kind == "ct timeout":  # nft 1.0.6 aborts on `nft -j list ct timeout`: its text, then
                lists = [inside(f"nft list {kind} inet {table} {name}").stdout.replace(f"inet {table} ", "inet T ")
                         for table in ("egressd", "twin")]
            else:
                lists = [normal(json.loads(inside(f"nft -j list {kind} inet {table} {name}").stdout)["nftables"][1:],
                                name == "fp_mark") for table in ("egressd", "twin")]
            assert lists[0] == lists[1], (kind, name, lists)
            assert lists[0], (kind, name)


@test
def kernel_table_of_10000_sandboxes_loads_and_decides_real_packets():
    """10,000 generated sandboxes x 100 rules (kernel_sets --generate: sandbox 0 is sbx1's
    10.200.1.2, allowed 198.18.0.10:9000-9002 and nothing else it could reach here) filled into
    a scratch table as egressd fills it (one netlink batch, before the firewall's table), every
    chain in the kernel, sampled points agreeing with decide(), and sbx1's real SYNs decided by
    it: refused ones reset at SYN without reaching egressd, the allowed one passed on."""
    table = "egressd_10k_e2e"
    tool = os.path.join(BUILD, "kernel_sets")
    release_tool = os.path.join(ROOT, "build/release/kernel_sets")
    if "ASAN_OPTIONS" in os.environ and os.path.exists(release_tool):
        # The ASan pass: its kernel_sets (5x slower here: 35 s) would check nothing the
        # 300-round comparison below does not already run under ASan; the load is the point.
        tool = release_tool
    try:
        r = ns("host", f"{tool} --generate 10000 --table {table} --netlink-only --iface {P}h1 --iface {P}h2 "
                       "--check 2000 --keep", check=False, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        loaded = json.loads(r.stdout.strip().splitlines()[-1])
        assert loaded["in_kernel"] == 10000 and loaded["mismatches"] == 0 and loaded["allowed_points"] > 0, loaded
        assert ns("host", f"nft list table inet {table}").stdout.count("chain fp_sb_") == 10000
        before = metric_total("egressd_connections_total")
        refused = [(4, None, "198.18.0.11", 9000), (4, None, "198.18.0.10", 9003), (4, None, "198.18.0.12", 22)]
        answers = probe("sbx1", refused + [(4, None, "198.18.0.10", 9000)])
        for target, (what, _, seconds) in zip(refused, answers):
            assert what == "ConnectionRefusedError" and seconds < 1, (target, what, seconds)
        # The allowed one went on to TPROXY: egressd decided it by its own policy ("one" does
        # not allow 198.18.0.10:9000), so it counts one connection; the refusals count none.
        wait_for(lambda: metric_total("egressd_connections_total") >= before + 1, "egressd's count")
        assert metric_total("egressd_connections_total") == before + 1
    finally:
        ns("host", f"nft delete table inet {table}", check=False)


@test
def kernel_table_changes_by_netlink_equal_nft_text():
    """egressd fills the kernel table and sends each policy change as netlink batches it builds
    itself (kernel/nft_netlink.cpp), not as nft text: a fill, 300 random changes (allow lists
    growing past a set and shrinking, sandboxes arriving, leaving, moving to the proxy, new
    sources, the last addresses of both families) and a whole refill over what they left,
    applied to one table through nft and to a twin through netlink, must list the same after
    every step."""
    table = "egressd_cmp_e2e"
    tool = os.path.join(BUILD, "kernel_sets")
    try:
        r = ns("host", f"{tool} --generate 150 --table {table} --compare 300", check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert result["compared"] == 302 and result["differences"] == 0, result
        assert result["netlink_changes"] > 200, result  # most changes took the netlink path
    finally:
        for name in (table, table + "_nl"):
            ns("host", f"nft delete table inet {name}", check=False)


PROBE = ("import json, socket, sys, time\n"
         "out = []\n"
         "for family, bind, host, port in json.loads(sys.argv[1]):\n"
         "  s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET); s.settimeout(3)\n"
         "  if bind: s.bind((bind, 0))\n"
         "  t = time.time()\n"
         "  try:\n"
         "    s.connect((host, port)); s.sendall(b'ping'); out.append(['open', s.recv(4).decode(), time.time() - t])\n"
         "  except OSError as e:\n"
         "    out.append([type(e).__name__, '', time.time() - t])\n"
         "  s.close()\n"
         "print(json.dumps(out))\n")


def probe(sandbox, targets):
    """Each (family, bind, host, port) connected in turn from `sandbox`: [what, echo, seconds]."""
    path = os.path.join(WORK, "probe.py")
    with open(path, "w") as f:
        f.write(PROBE)
    return json.loads(ns(sandbox, f"python3 {path} '{json.dumps(targets)}'").stdout)


FLOOD = ("import errno, socket, sys, time\n"
         "host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
         "sent, t = 0, time.time()\n"
         "for _ in range(n):\n"
         "  s = socket.socket(); s.setblocking(False)\n"
         "  sent += s.connect_ex((host, port)) == errno.EINPROGRESS  # the SYN is out\n"
         "  s.close()  # in SYN_SENT: gone without a packet, the reset finds no socket\n"
         "print(sent, time.time() - t)\n")


def start_ticker(host, port):
    """A one-connection origin on host:port in the test's internet: it sends a byte every 20 ms
    until sending fails, then prints the error's name (or "timeout": its sends stalled for 8 s,
    the peer silent). Returns once it listens."""
    return background_python("net", "import socket, time\n"
                             f"l = socket.create_server(('{host}', {port})); print('listening', flush=True)\n"
                             "c, _ = l.accept(); c.settimeout(8)\n"
                             "try:\n  for _ in range(3000): c.sendall(b't'); time.sleep(0.02)\n  print('sent all')\n"
                             "except socket.timeout: print('timeout')\n"
                             "except OSError as e: print(type(e).__name__)",
                             "listening")


def syn_flood(sandbox, host, port, count):
    """`count` SYNs from `sandbox` to host:port as fast as Python opens sockets, one each (the
    socket is closed at once: no retransmission). (SYNs sent, seconds)."""
    path = os.path.join(WORK, "flood.py")
    with open(path, "w") as f:
        f.write(FLOOD)
    sent, seconds = ns(sandbox, f"python3 {path} {host} {port} {count}").stdout.split()
    return int(sent), float(seconds)


def egressd_sockets_to(address, port):
    """egressd's TCP sockets in the proxy host to address:port (a proxied flow has one)."""
    return [line for line in ns("host", "ss -tnH").stdout.splitlines()
            if f"{address}:{port}" in line.split()[-1:] or f"[{address}]:{port}" in line.split()[-1:]]


@contextlib.contextmanager
def kernel_fast_path(on_update="revoke"):
    """firewall.sh --fast-path and egressd with fast_path: kernel, for the time of one test."""
    firewall(FIREWALL_ARGS + " --fast-path")
    write_config(on_update=on_update)
    with open(CONFIG, "a") as f:
        f.write("fast_path: kernel\n")
    stop_egressd()
    start_egressd()
    try:
        wait_for(lambda: "decided at SYN" in open(EGRESSD_ERR).read()[-4000:], "the kernel fast path to load")
        yield
    finally:
        if egressd_process.poll() is None:
            stop_egressd()
        write_config()
        firewall(FIREWALL_ARGS)
        start_egressd()
        ctl("set", "one", *ONE, "--allow", "*.github.com", "--deny", "gist.github.com")  # as the API left it


@test
def kernel_fast_path_forwards_refuses_at_syn_revokes_and_logs():
    """DESIGN.md "Kernel fast path": with firewall.sh --fast-path and fast_path: kernel, an
    allowed fast-path flow is forwarded by the kernel (the origin sees the sandbox's own
    address; egressd holds no socket for it and never counts an accept), a refused one gets a
    reset at SYN, v4 and v6, the guard and unknown sources too; inspected ports still reach
    egressd; a policy change cuts a live kernel flow; each finished flow gets its access-log
    line with bytes; a firewall reload is refilled; a stopped egressd lets nothing through."""
    with kernel_fast_path():
        before_connections = metric_total("egressd_connections_total")
        # Allowed: forwarded with the sandbox's own source address, v4 and v6.
        assert through("sbx1", "198.18.0.11") == "10.200.1.2"
        assert through("sbx1", "fd00:198::11") == "fd00:200:1::2"
        # A live one: egressd has no socket for it, yet lists it (phase "kernel", from
        # conntrack), under the same id each time and in its access-log line.
        go = os.path.join(WORK, "kernel-go")
        holder = hold_connection(go)
        assert not egressd_sockets_to("198.18.0.11", 9000), ns("host", "ss -tnH").stdout
        listed = [c for c in connections_of("one") if c["port"] == 9000]
        assert len(listed) == 1, listed
        live = listed[0]
        assert live["phase"] == "kernel" and live["kernel"] is True and live["proto"] == "tcp", live
        assert live["src"].startswith("10.200.1.2:") and live["dst"] == "198.18.0.11", live
        assert live["bytes_up"] > 0 and live["bytes_down"] > 0 and live["age_ms"] >= 0, live
        host_wide = [c for c in api("GET", "/v1/connections")[1]["connections"] if c.get("kernel")]
        assert [(c["id"], c["sandbox"]) for c in host_wide] == [(live["id"], "one")], host_wide
        assert not [c for c in connections_of("two") if c.get("kernel")]
        open(go, "w").close()
        assert holder.communicate(timeout=10)[0].split() == ["before", "after!"]
        rec = last_record(dst="198.18.0.11", port=9000, kernel=True, id=live["id"])  # its own line
        assert not [c for c in connections_of("one") if c["port"] == 9000]  # over: gone
        assert rec["sandbox"] == "one" and rec["src"] == "10.200.1.2" and rec["verdict"] == "allow", rec
        assert rec["reason"] == "allowed_address" and rec["rule"] == "198.18.0.11:9000-9003", rec
        # conntrack counts IP bytes: the 12 bytes each way plus headers, not more than a few KB.
        assert 12 < rec["bytes_up"] < 4096 and 12 < rec["bytes_down"] < 4096, rec
        assert rec["duration_ms"] >= 0 and rec["start"], rec
        assert last_record(dst="fd00:198::11", port=9000, kernel=True)["src"] == "fd00:200:1::2"
        # Refused at SYN, with no accept anywhere: one's deny rule, its default, the guard, a
        # source no sandbox owns, and the same in v6.
        origin_before = len(origin_lines())
        refused = [(4, None, "198.18.0.12", 9000), (4, None, "198.18.0.11", 9100), (4, None, "10.200.2.2", 9000),
                   (4, "10.200.1.3", "198.18.0.11", 9000), (6, None, "fd00:198::12", 9000),
                   (6, None, "fd00:200:2::2", 9000)]
        for target, (what, _, seconds) in zip(refused, probe("sbx1", refused)):
            assert what == "ConnectionRefusedError" and seconds < 1, (target, what, seconds)
        assert len(origin_lines()) == origin_before, "a refused connection reached the origin"
        # Each refusal still gets its access-log line (NFLOG from fp_refuse), decided again.
        for (family, bind, host, port), reason in zip(refused, ["denied_address", "default_deny", "guarded_destination",
                                                               "unknown_source", "default_deny", "guarded_destination"]):
            rec = last_record(dst=host, port=port, kernel=True, verdict="deny")
            assert rec["reason"] == reason and rec["src"] == (bind or ("10.200.1.2" if family == 4 else "fd00:200:1::2")), rec
        # Inspected ports still go through egressd.
        assert https("sbx1", "api.github.com").stdout == "origin api.github.com\n"
        wait_for(lambda: metric_total("egressd_connections_total") >= before_connections + 10, "the counts")
        # The HTTPS request, the three kernel flows counted when they finished and the six
        # refusals, and nothing else.
        assert metric_total("egressd_connections_total") == before_connections + 10, \
            (metric_total("egressd_connections_total"), before_connections)
        # A SYN flood to a denied address: every SYN is reset, and each refusal has its line or,
        # over fp_refuse's log limit (2000/s), is counted in egressd_kernel_unlogged_total:
        # lines + unlogged == SYNs sent, exactly.
        refusal = dict(dst="198.18.0.12", port=9000, kernel=True, verdict="deny")
        lines_before = len(records_of_this_test(**refusal))
        unlogged_before = metric_total('egressd_kernel_unlogged_total{what="refusal"}')
        origin_before = len(origin_lines())
        sent, seconds = syn_flood("sbx1", "198.18.0.12", 9000, 6000)
        assert sent == 6000, sent

        def unlogged():
            return metric_total('egressd_kernel_unlogged_total{what="refusal"}') - unlogged_before

        wait_for(lambda: len(records_of_this_test(**refusal)) - lines_before + unlogged() >= sent,
                 "every flooded SYN logged or counted", 20)
        lines = len(records_of_this_test(**refusal)) - lines_before
        assert lines + unlogged() == sent and lines >= 2000, (lines, unlogged(), sent, seconds)
        # Sent faster than the limit refills (6000 in under 2 s): some over it.
        assert seconds >= 2 or unlogged() > 0, (lines, unlogged(), seconds)
        assert metric_total('egressd_kernel_unlogged_total{what="flow_event_overrun"}') == 0
        assert len(origin_lines()) == origin_before, "a flooded SYN reached the origin"
        # limits.max_connections_per_sandbox (40 here) holds for kernel flows too (the chain's
        # connlimit, fp_limit): the 41st live one is reset at SYN, logged as connection_limit,
        # and another sandbox is unaffected; the 6000 refused SYNs above took no places.
        go = os.path.join(WORK, "kernel-limit-go")
        many = background_python("sbx1", "import json, os, socket, time\n"
                                 "socks, refused = [], 0\n"
                                 "for _ in range(45):\n"
                                 "  s = socket.socket(); s.settimeout(3)\n"
                                 "  try:\n"
                                 "    s.connect(('198.18.0.11', 9000)); s.sendall(b'x'); assert s.recv(1) == b'x'; socks.append(s)\n"
                                 "  except OSError: refused += 1\n"
                                 "print('ready'); print(json.dumps([len(socks), refused]), flush=True)\n"
                                 f"while not os.path.exists('{go}'): time.sleep(0.05)\n",
                                 "ready")
        assert json.loads(many.stdout.readline()) == [40, 5]
        rec = last_record(src="10.200.1.2", dst="198.18.0.11", port=9000, reason="connection_limit")
        assert rec["kernel"] is True and rec["verdict"] == "deny" and rec["sandbox"] == "one", rec
        assert len([c for c in connections_of("one") if c.get("kernel")]) == 40
        assert client("sbx2", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}
        open(go, "w").close()
        many.communicate(timeout=10)
        wait_for(lambda: not [c for c in connections_of("one") if c.get("kernel")], "the 40 to close")
        assert client("sbx1", "echo", "198.18.0.11", 9000) == {"data": "ping", "end": "eof"}  # room again
        # A policy change revokes live kernel flows (on_update: revoke), v4 and v6: their next
        # packet is reset.
        holder = hold_connection(go + "2")
        holder6 = hold_connection(go + "2", host="fd00:198::11")
        without_9000 = ["--source", "10.200.1.2", "--source", "fd00:200:1::2", "--allow", "pypi.org",
                        "--allow", "198.18.0.11:9001", "--allow", "*.github.com", "--deny", "gist.github.com"]
        ids = {c["dst"]: c["id"] for c in connections_of("one") if c.get("kernel")}
        assert set(ids) == {"198.18.0.11", "fd00:198::11"}, ids
        ctl("set", "one", *without_9000)
        assert not [c for c in connections_of("one") if c.get("kernel")]  # revoked: none left
        open(go + "2", "w").close()
        for h in (holder, holder6):
            out = h.communicate(timeout=10)[0]
            assert h.returncode != 0 and "after!" not in out, out  # reset, never echoed
        for dst in ids:
            rec = last_record(dst=dst, port=9000, reason="revoked")
            assert rec["kernel"] is True and rec["verdict"] == "deny" and rec["id"] == ids[dst], (rec, ids)
        # The revoked flow's origin is told too: an origin that keeps sending (a download) gets
        # a reset at its next segment (firewall.sh's orphan_segment), instead of its data still
        # reaching the sandbox until the sandbox itself sends and is reset.
        ticker = start_ticker("198.18.0.11", 9500)
        ctl("set", "one", *without_9000, "--allow", "198.18.0.11:9500")
        reader = background_python("sbx1", "import socket\n"
                                   "s = socket.create_connection(('198.18.0.11', 9500)); s.settimeout(3); s.recv(1)\n"
                                   "print('open', flush=True)\n"
                                   "try:\n  while s.recv(4096): pass\n  print('eof')\n"
                                   "except OSError as e: print(type(e).__name__)",
                                   "open")
        ctl("set", "one", *without_9000)
        told = ticker.communicate(timeout=15)[0].split()
        assert told and told[-1] in ("ConnectionResetError", "BrokenPipeError"), told
        reader.communicate(timeout=10)
        # ... and the next connection is refused at SYN, while 9001 now passes in the kernel.
        (what, _, _), = probe("sbx1", [(4, None, "198.18.0.11", 9000)])
        assert what == "ConnectionRefusedError", what
        assert client("sbx1", "halfclose", "198.18.0.11", 9001)["data"].startswith("got "), "9001"
        # A deleted sandbox: its live kernel flow is cut, its address is an unknown source now.
        holder = hold_connection(go + "3", "sbx2")
        assert api("DELETE", "/v1/sandboxes/two")[0] == 204
        open(go + "3", "w").close()
        out = holder.communicate(timeout=10)[0]
        assert holder.returncode != 0 and "after!" not in out, out
        (what, _, _), = probe("sbx2", [(4, None, "198.18.0.11", 9000)])
        assert what == "ConnectionRefusedError", what
        last_record(src="10.200.2.2", dst="198.18.0.11", kernel=True, reason="unknown_source")
        # What a hostile sandbox sends besides a SYN goes nowhere: a TCP segment no SYN opened
        # (to a destination and port the policy allows), UDP, QUIC, ICMP echo and errors, SCTP,
        # GRE, any protocol. Only the SYNs to the allowed 198.18.0.11:9000 are forwarded.
        ctl("set", "one", *ONE, "--allow", "*.github.com", "--deny", "gist.github.com")  # 9000 again
        start_sniffer()
        arrived = send_packets("sbx1", "kernel", "10.200.1.2", "fd00:200:1::2", "udp", "quic", "udp53", "icmp",
                               "icmperr", "sctp", "gre", "p253", "tcp", "tcpack")
        assert arrived == {"v4-tcp from 10.200.1.2", "v6-tcp from fd00:200:1::2"}, arrived
        # A firewall reload empties the table: the proxy decides meanwhile, egressd refills it.
        firewall(FIREWALL_ARGS + " --fast-path")
        wait_for(lambda: "fp_by_source4" in ns("host", "nft list chain inet egressd fast_path").stdout,
                 "egressd to fill the reloaded table")
        before = len(origin_lines())
        assert client("sbx1", "halfclose", "198.18.0.11", 9001)["data"].startswith("got ")
        assert origin_peer_of(9001, before) == "10.200.1.2"  # the kernel's again, not egressd's
        # A stopped egressd empties fast_path: nothing goes through any more.
        stop_egressd()
        assert "fp_by_source4" not in ns("host", "nft list chain inet egressd fast_path").stdout
        (what, _, _), = probe("sbx1", [(4, None, "198.18.0.11", 9000)])
        assert what != "open", what


@test
def kernel_fast_path_on_update_keep_keeps_flows_but_delete_closes_them():
    """on_update: keep on the kernel path: a policy change leaves a live kernel flow alone (it
    finishes, and its line says allowed although the policy now denies it), while deleting its
    sandbox closes it (DELETE closes a sandbox's connections whatever on_update says), with a
    revoked line that names the deleted sandbox."""
    with kernel_fast_path(on_update="keep"):
        go = os.path.join(WORK, "keep-go")
        holder = hold_connection(go)
        listed = [c for c in connections_of("one") if c.get("kernel")]
        assert len(listed) == 1, listed
        ctl("set", "one", "--source", "10.200.1.2", "--source", "fd00:200:1::2", "--allow", "198.18.0.11:9001")
        assert [c["id"] for c in connections_of("one") if c.get("kernel")] == [listed[0]["id"]]  # kept
        (what, _, _), = probe("sbx1", [(4, None, "198.18.0.11", 9000)])
        assert what == "ConnectionRefusedError", what  # a new one is refused at SYN
        open(go, "w").close()
        assert holder.communicate(timeout=10)[0].split() == ["before", "after!"]
        rec = last_record(kernel=True, id=listed[0]["id"])
        assert rec["verdict"] == "allow" and rec["reason"] == "allowed_address" and rec["bytes_up"] > 12, rec
        # Deleting the sandbox closes its kernel flow at once.
        holder = hold_connection(go + "2", "sbx2")
        assert api("DELETE", "/v1/sandboxes/two")[0] == 204
        assert not [c for c in api("GET", "/v1/connections")[1]["connections"] if c.get("kernel")]
        open(go + "2", "w").close()
        out = holder.communicate(timeout=10)[0]
        assert holder.returncode != 0 and "after!" not in out, out
        rec = last_record(src="10.200.2.2", kernel=True, reason="revoked")
        assert rec["sandbox"] == "two" and rec["verdict"] == "deny", rec


@test
def sealed_secrets_and_the_ca_survive_a_restart():
    transforms = [{"hosts": ["secret.github.com"], "headers": {"Authorization": "Bearer {{SECRET:openai}}"}}]
    with sandbox_one_with(transforms=transforms, secrets={"openai": SECRET}):
        ca_before = open(EGRESS_CA).read()
        stop_egressd()
        start_egressd()
        assert sh(f"curl -s --unix-socket {RUN}/control.sock http://egressd/v1/ca.pem").stdout == ca_before
        out = curl("sbx1", f"--cacert {EGRESS_CA} https://secret.github.com/after-restart")
        assert echoed(out.stdout)[0]["headers"]["authorization"] == "Bearer " + SECRET, out.stdout + out.stderr
        assert "does not open" not in open(EGRESSD_ERR).read()


@test
def sigterm_drains_live_connections():
    # A live relayed connection keeps working after SIGTERM; new ones are not accepted.
    holder = subprocess.Popen(
        f"ip netns exec {P}sbx1 python3 -c \"import socket,time; s=socket.create_connection(('198.18.0.11',9000));"
        f"s.sendall(b'1'); assert s.recv(1)==b'1'; time.sleep(1.5); s.sendall(b'2'); print(s.recv(1).decode())\"",
        shell=True, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: any(c["port"] == 9000 and c["phase"] == "relay" for c in connections_of("one")),
             "the held connection to be relayed")
    egressd_process.send_signal(signal.SIGTERM)
    wait_for(lambda: ":15001" not in ns("host", "ss -ltnH").stdout, "the listeners to close")
    out = client("sbx1", "echo", "198.18.0.11", 9000)
    assert "error" in out, out  # refused: nothing listens any more
    assert holder.communicate(timeout=10)[0].strip() == "2"
    assert egressd_process.wait(timeout=15) == 0
    assert "stopped" in open(EGRESSD_ERR).read()


def main():
    setup()
    failed = []
    selected = [t for t in tests if ONLY in t.__name__]
    started = time.time()
    for t in selected:
        t0 = time.time()
        TEST_STARTED[0] = t0
        try:
            t()
            print(f"ok    {t.__name__} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:
            failed.append(t.__name__)
            print(f"FAIL  {t.__name__} ({time.time() - t0:.1f}s)\n{traceback.format_exc()}", flush=True)
    print(f"\n{len(selected) - len(failed)}/{len(selected)} e2e tests passed in {time.time() - started:.0f}s")
    if failed:
        print("egressd stderr:\n" + open(EGRESSD_ERR).read()[-3000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
