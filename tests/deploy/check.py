#!/usr/bin/env python3
"""Offline checks of the deploy kit: systemd units (systemd-analyze verify), Prometheus config
and rules (promtool), Kubernetes manifests (parsed, structure), Grafana dashboard (valid JSON,
every expression names egressd metrics). With --metrics FILE (a live /metrics scrape), every
metric the dashboard and the alerts use must be one egressd really exports.

Usage: check.py BUILD_DIR [--metrics FILE]
(The .deb check needs `cpack -G DEB` run in BUILD_DIR first, as scripts/test.sh does; it is
left out with --metrics, which the e2e tests use against whichever build they run.)
"""
import json, os, re, shutil, subprocess, sys, tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "deploy")
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else os.path.join(ROOT, "build/release"))
failures = []


def check(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def metric_names(expr):
    names = set(re.findall(r"\b(egressd_[a-z_]+)", expr))
    # A histogram's series (_bucket, _sum, _count) belong to the histogram's name.
    return {re.sub(r"_seconds_(bucket|sum|count)$", "_seconds", n) for n in names}


def systemd_units():
    work = tempfile.mkdtemp()
    try:
        for unit in ("egressd.service", "egressd-firewall.service"):
            text = open(os.path.join(DEPLOY, "systemd", unit)).read()
            # Point at this build instead of /usr: verify checks that the binaries exist.
            text = text.replace("/usr/sbin/egressd", os.path.join(BUILD, "egressd"))
            text = text.replace("/usr/bin/egressctl", os.path.join(BUILD, "egressctl"))
            text = text.replace("/usr/libexec/egressd/firewall.sh", os.path.join(DEPLOY, "firewall.sh"))
            open(os.path.join(work, unit), "w").write(text)
        r = subprocess.run(["systemd-analyze", "verify"] + [os.path.join(work, u) for u in ("egressd.service", "egressd-firewall.service")],
                           capture_output=True, text=True)
        problems = [line for line in (r.stdout + r.stderr).splitlines() if line.strip() and "egressd" in line]
        check("systemd-analyze verify", r.returncode == 0 and not problems, r.stdout + r.stderr)
        unit = open(os.path.join(DEPLOY, "systemd", "egressd.service")).read()
        for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=egressd", "RuntimeDirectory=egressd",
                       "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE", "User=egressd", "Restart=on-failure", "LimitNOFILE=",
                       "Type=notify", "NotifyAccess=main", "--supervise\n", "KillMode=process",
                       "RestartKillSignal=SIGUSR2", "RuntimeDirectoryPreserve=restart", "ExecReload=/usr/sbin/egressd --check-config /etc/egressd/egressd.yaml",
                       "LogsDirectory=egressd", "LogRateLimitIntervalSec=0", "SystemCallFilter=@system-service", "UMask=0077",
                       "ProtectProc=invisible", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n"):
            check(f"egressd.service has {option.strip()}", option in unit)
        check("egressd.service: the config check runs before the SIGHUP",
              unit.index("ExecReload=/usr/sbin/egressd --check-config") < unit.index("ExecReload=/bin/kill -HUP"))
        check("egressd.service: no readiness polling (sd_notify says when)", "ExecStartPost" not in unit)
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", os.path.join(work, "egressd.service")],
                           capture_output=True, text=True)
        score = re.search(r"Overall exposure level for egressd.service: ([\d.]+)", r.stdout)
        check("systemd-analyze security: exposure <= 2.0 (README quotes it)", bool(score) and float(score.group(1)) <= 2.0,
              r.stdout[-400:] + r.stderr)
        if score:
            print(f"      systemd-analyze security score: {score.group(1)}")
        check("egressd.service Requires= the firewall unit", "Requires=egressd-firewall.service" in unit)
        fw_unit = open(os.path.join(DEPLOY, "systemd", "egressd-firewall.service")).read()
        for option in ("Before=egressd.service", "ExecReload=/usr/libexec/egressd/firewall.sh up", "After=nftables.service",
                       "ReloadPropagatedFrom=nftables.service", "ExecStartPre=/usr/libexec/egressd/firewall.sh check"):
            check(f"egressd-firewall.service has {option}", option in fw_unit)
    finally:
        shutil.rmtree(work)


def firewall_defaults():
    """The shipped firewall arguments cover both families and DNS, and firewall.sh accepts them."""
    default = open(os.path.join(DEPLOY, "systemd", "egressd-firewall.default")).read()
    shipped = {"egressd-firewall.default": re.search(r'^EGRESSD_FIREWALL_ARGS="([^"]*)"', default, re.M).group(1)}
    configmap = yaml.safe_load(open(os.path.join(DEPLOY, "kubernetes", "base", "configmap.yaml")))
    shipped["ConfigMap firewall-args"] = configmap["data"]["firewall-args"]
    for where, args in shipped.items():
        words = args.split()
        values = lambda flag: [words[i + 1] for i, w in enumerate(words) if w == flag and i + 1 < len(words)]
        check(f"{where}: --iface given", bool(values("--iface")), args)
        check(f"{where}: IPv4 and IPv6 sources", any(":" not in s for s in values("--source"))
              and any(":" in s for s in values("--source")), args)
        check(f"{where}: a resolver (--dns)", bool(values("--dns")), args)
        check(f"{where}: no shell glob (sbx+, not sbx*)", "*" not in args, args)
        if os.geteuid() == 0 and shutil.which("nft"):
            r = subprocess.run(["bash", os.path.join(DEPLOY, "firewall.sh"), "check"] + words, capture_output=True, text=True)
            check(f"{where}: firewall.sh check accepts it", r.returncode == 0, r.stdout + r.stderr)


def prometheus():
    if not shutil.which("promtool"):
        check("promtool installed", False, "install the prometheus package")
        return
    r = subprocess.run(["promtool", "check", "rules", os.path.join(DEPLOY, "prometheus", "egressd-alerts.yml")], capture_output=True, text=True)
    check("promtool check rules", r.returncode == 0, r.stdout + r.stderr)
    r = subprocess.run(["promtool", "check", "config", "--syntax-only", os.path.join(DEPLOY, "prometheus", "prometheus.yml")], capture_output=True, text=True)
    check("promtool check config", r.returncode == 0, r.stdout + r.stderr)
    r = subprocess.run(["promtool", "test", "rules", "egressd-alerts-test.yml"], cwd=os.path.join(DEPLOY, "prometheus"),
                       capture_output=True, text=True)
    check("promtool test rules (every alert fires on its input, not before its for:)", r.returncode == 0, r.stdout + r.stderr)
    rules = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "egressd-alerts.yml")))
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for r in alerts}
    for wanted in ("EgressdDown", "EgressdAbsent", "EgressdConfigReloadFailed", "EgressdFdNearLimit", "EgressdFdExhausted",
                   "EgressdDenialSpike", "EgressdGuardedDestinationSpike", "EgressdUnknownSourceSpike", "EgressdAcceptErrors",
                   "EgressdDnsFailures", "EgressdConnectionLimitHits", "EgressdPolicyUpdateFailures"):
        check(f"alert {wanted}", wanted in names)
    tests = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "egressd-alerts-test.yml")))
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    runbooks = open(os.path.join(ROOT, "docs", "runbooks.md")).read()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower()) for line in runbooks.splitlines() if line.startswith("## ")}
    for alert in alerts:
        name = alert["alert"]
        check(f"{name}: severity critical or warning", alert["labels"].get("severity") in ("critical", "warning"), alert["labels"])
        notes = alert.get("annotations", {})
        check(f"{name}: summary and description", bool(notes.get("summary")) and bool(notes.get("description")))
        url = notes.get("runbook_url", "")
        check(f"{name}: runbook_url names its section in docs/runbooks.md",
              url.endswith("docs/runbooks.md#" + name.lower()) and name.lower() in anchors, url)
        check(f"{name}: a promtool test makes it fire", name in tested)


K8S = os.path.join(DEPLOY, "kubernetes")


def kustomize(directory):
    """The manifests kubectl kustomize renders (offline), or None when it fails."""
    r = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, directory)], capture_output=True, text=True)
    check(f"kubectl kustomize {directory}", r.returncode == 0, r.stderr)
    return list(yaml.safe_load_all(r.stdout)) if r.returncode == 0 else None


def schema(docs, where):
    """Structural checks of what a cluster would be given (no API server here): every object
    is named and typed, every container is complete, every reference resolves."""
    for d in docs:
        check(f"{where}: {d.get('kind')} has apiVersion, kind, metadata.name",
              all(k in d for k in ("apiVersion", "kind")) and bool(d.get("metadata", {}).get("name")))
    for ds in (d for d in docs if d["kind"] == "DaemonSet"):
        name = ds["metadata"]["name"]
        spec = ds["spec"]["template"]["spec"]
        check(f"{where}: {name} selector matches its labels",
              ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items())
        check(f"{where}: {name} automountServiceAccountToken false", spec.get("automountServiceAccountToken") is False)
        check(f"{where}: {name} seccomp RuntimeDefault", spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault")
        check(f"{where}: {name} tolerates every taint", {"operator": "Exists"} in spec.get("tolerations", []))
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{name}/{c['name']}"
            check(f"{where}: {cname} has an image", bool(c.get("image")))
            check(f"{where}: {cname} cannot escalate", c.get("securityContext", {}).get("allowPrivilegeEscalation") is False)
            check(f"{where}: {cname} drops every capability", "ALL" in c.get("securityContext", {}).get("capabilities", {}).get("drop", []))
            check(f"{where}: {cname} has a memory limit", bool(c.get("resources", {}).get("limits", {}).get("memory")))
            check(f"{where}: {cname} mounts only declared volumes", {m["name"] for m in c.get("volumeMounts", [])} <= volumes)
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c and "httpGet" in c[probe]:
                    check(f"{where}: {cname} {probe} names a declared port", c[probe]["httpGet"]["port"] in ports)


def kubernetes():
    check("kubectl installed (kubernetes-client)", shutil.which("kubectl") is not None)
    if not shutil.which("kubectl"):
        return
    base = kustomize("base")
    overlay = kustomize("overlays/example")
    uninstall = kustomize("uninstall")
    if base is None or overlay is None or uninstall is None:
        return
    for docs, where in ((base, "base"), (overlay, "overlay"), (uninstall, "uninstall")):
        schema(docs, where)
    kinds = {d["kind"]: d for d in base}
    check("base: Namespace, ConfigMap, DaemonSet, PodMonitor, PrometheusRule",
          {"Namespace", "ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule"} <= kinds.keys())
    check("base: everything in namespace egressd",
          all(d["metadata"].get("namespace") == "egressd" for d in base if d["kind"] != "Namespace"))
    ds = kinds["DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "egressd")
    check("DaemonSet hostNetwork", spec.get("hostNetwork") is True)
    check("DaemonSet dnsPolicy Default (the node's resolver)", spec.get("dnsPolicy") == "Default")
    check("egressd has NET_ADMIN and NET_BIND_SERVICE only",
          container["securityContext"]["capabilities"] == {"add": ["NET_ADMIN", "NET_BIND_SERVICE"], "drop": ["ALL"]})
    probes = {p: container.get(p, {}).get("httpGet", {}).get("path") for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    check("probes: startup and readiness on /readyz, liveness on /healthz",
          probes == {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}, probes)
    check("grace period covers drain_s", spec.get("terminationGracePeriodSeconds", 0) > 300)
    reload = next((c for c in spec["containers"] if c["name"] == "reload"), None)
    check("a reload sidecar validates, then SIGHUPs", reload is not None and spec.get("shareProcessNamespace") is True
          and "--check-config" in reload["command"][-1] and "kill -HUP" in reload["command"][-1])
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    check("Prometheus annotations", annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == "9464")
    volumes = {v["name"]: v for v in spec["volumes"]}
    check("state and control on hostPath", "hostPath" in volumes["state"] and "hostPath" in volumes["control"])
    monitor = kinds["PodMonitor"]
    check("PodMonitor selects the DaemonSet's pods on its metrics port",
          monitor["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
          and monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics")
    alerts = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "egressd-alerts.yml")))
    check("PrometheusRule holds exactly the alerts of egressd-alerts.yml", kinds["PrometheusRule"]["spec"]["groups"] == alerts["groups"])
    for docs, where in ((base, "base"), (overlay, "overlay")):
        config_text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["egressd.yaml"]
        path = tempfile.mktemp(suffix=".yaml")
        open(path, "w").write(config_text)
        r = subprocess.run([os.path.join(BUILD, "egressd"), "--check-config", path], capture_output=True, text=True)
        os.unlink(path)
        check(f"{where}: ConfigMap config passes egressd --check-config", r.returncode == 0, r.stderr)
    images = {c["image"] for d in overlay if d["kind"] == "DaemonSet" for c in
              d["spec"]["template"]["spec"]["containers"] + d["spec"]["template"]["spec"]["initContainers"]}
    check("overlay: its image everywhere", images == {"registry.example/egressd:0.1.0"}, images)
    down = next(d for d in uninstall if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["initContainers"][0]
    check("uninstall runs firewall.sh down on every node", down["command"][-1] == "down"
          and {"operator": "Exists"} in next(d for d in uninstall if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["tolerations"])


def grafana(live_metrics):
    dashboard = json.load(open(os.path.join(DEPLOY, "grafana", "egressd-dashboard.json")))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    check("dashboard has panels with expressions", len(exprs) >= 8)
    undescribed = [p["title"] for p in dashboard["panels"] if not p.get("description")]
    check("every dashboard panel has a description", not undescribed, undescribed)
    check("dashboard has an up panel", any(t["expr"].startswith("up{") for p in dashboard["panels"] for t in p.get("targets", [])))
    check("dashboard has per-node top-k panels", sum("topk(" in e for e in exprs) >= 2)
    check("dashboard thresholds on saturation and latency panels",
          sum(bool(p.get("fieldConfig", {}).get("defaults", {}).get("thresholds")) for p in dashboard["panels"]) >= 3)
    used = set()
    for e in exprs:
        used |= metric_names(e)
    rules = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "egressd-alerts.yml")))
    for g in rules["groups"]:
        for rule in g["rules"]:
            used |= metric_names(rule["expr"])
    for wanted in ("egressd_connections_total", "egressd_bytes_total", "egressd_connections_active",
                   "egressd_decision_duration_seconds", "egressd_dns_queries_total", "egressd_policy_updates_total"):
        check(f"dashboard shows {wanted}", wanted in used)
    if live_metrics:
        exported = set(re.findall(r"^# TYPE (egressd_[a-z_]+) ", open(live_metrics).read(), re.M))
        missing = sorted(used - exported)
        check("every metric the dashboard and alerts use is exported by egressd", not missing, missing)


def debian_package():
    """The .deb cpack made: its files, its conffiles, and an install (twice, the second an
    upgrade over a changed configuration) into a scratch root whose postinst creates the user."""
    debs = sorted(f for f in os.listdir(BUILD) if f.startswith("egressd_") and f.endswith(".deb"))
    check("cpack -G DEB made a package", bool(debs), os.listdir(BUILD))
    if not debs:
        return
    deb = os.path.join(BUILD, debs[-1])
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for wanted in ("/usr/sbin/egressd", "/usr/bin/egressctl", "/etc/egressd/egressd.yaml", "/etc/default/egressd-firewall",
                   "/usr/lib/systemd/system/egressd.service", "/usr/lib/systemd/system/egressd-firewall.service",
                   "/usr/libexec/egressd/firewall.sh", "/usr/lib/sysusers.d/egressd.conf",
                   "/usr/share/bash-completion/completions/egressctl"):
        check(f".deb holds {wanted}", wanted in files)
    check(".deb installs nothing outside /etc and /usr", all(f.startswith(("/etc", "/usr")) or f == "/" for f in files if f),
          sorted(files))
    conffiles = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True).stdout
    check(".deb depends on nftables and its libraries", "nftables" in conffiles and "libssl3" in conffiles, conffiles)
    work = tempfile.mkdtemp()
    try:
        subprocess.run(["dpkg-deb", "-e", deb, os.path.join(work, "control")], check=True)
        listed = open(os.path.join(work, "control", "conffiles")).read().split()
        check(".deb conffiles: egressd.yaml and the firewall defaults",
              {"/etc/egressd/egressd.yaml", "/etc/default/egressd-firewall"} <= set(listed), listed)
        root = os.path.join(work, "root")
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"):
            os.makedirs(os.path.join(root, d))
        for f in ("var/lib/dpkg/status", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"):
            open(os.path.join(root, f), "w").close()
        install = ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "--log=/dev/null", "-i", deb]
        r = subprocess.run(install, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        check(".deb installs into a scratch root", r.returncode == 0, r.stdout + r.stderr)
        check(".deb postinst creates the egressd user (in that root only)",
              "egressd:" in open(os.path.join(root, "etc/passwd")).read() and
              "egressd:" not in open("/etc/passwd").read(), open(os.path.join(root, "etc/passwd")).read())
        config = os.path.join(root, "etc/egressd/egressd.yaml")
        with open(config, "a") as f:
            f.write("# the operator's change\n")
        r = subprocess.run(install, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        check(".deb reinstalled over a changed configuration", r.returncode == 0, r.stdout + r.stderr)
        check(".deb upgrade keeps the operator's egressd.yaml", open(config).read().endswith("# the operator's change\n"))
    finally:
        shutil.rmtree(work)


if "--write-prometheusrule" in sys.argv:
    alerts = yaml.safe_load(open(os.path.join(DEPLOY, "prometheus", "egressd-alerts.yml")))
    path = os.path.join(DEPLOY, "kubernetes", "base", "prometheusrule.yaml")
    header = "".join(line for line in open(path) if line.startswith("#"))
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "egressd", "labels": {"app": "egressd"}}, "spec": {"groups": alerts["groups"]}}
    open(path, "w").write(header + yaml.safe_dump(doc, sort_keys=False, width=200))
    sys.exit(0)
systemd_units()
firewall_defaults()
prometheus()
kubernetes()
if "--metrics" not in sys.argv:  # the e2e run (a live scrape, maybe the ASan build): no package there
    debian_package()
grafana(sys.argv[sys.argv.index("--metrics") + 1] if "--metrics" in sys.argv else None)
print(f"\n{'all deploy checks passed' if not failures else str(len(failures)) + ' deploy checks failed'}")
sys.exit(1 if failures else 0)
