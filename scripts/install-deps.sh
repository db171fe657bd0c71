#!/usr/bin/env bash
# Installs every Debian 12 package egressd needs to build, test, demo and benchmark.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential g++ cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
  libasio-dev libssl-dev openssl node-llhttp libc-ares-dev libyaml-cpp-dev
  prometheus-cpp-dev doctest-dev libpsl-dev publicsuffix libldns-dev libsystemd-dev libnftables-dev libnftnl-dev libmnl-dev libnetfilter-conntrack-dev libnetfilter-log-dev libbpf-dev libbenchmark-dev nlohmann-json3-dev
  iproute2 iptables nftables nginx-light libnginx-mod-stream squid-openssl dnsmasq-base bind9-dnsutils curl wrk haproxy python3 python3-yaml python3-requests procps psmisc
  prometheus systemd util-linux
)
# kubectl (for `kubectl kustomize`, offline, in the deploy tests): Debian's kubernetes-client,
# unless a kubectl is installed already.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update
  # No package may start its service (nginx, squid, dnsmasq...): tests start their own
  # instances inside namespaces. policy-rc.d is Debian's switch for that during installs.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's nginx and squid services would grab ports on the host; tests and benchmarks start
# their own instances inside namespaces.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
  systemctl disable --now squid >/dev/null 2>&1 || true
fi
