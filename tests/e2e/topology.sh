#!/usr/bin/env bash
# The test network of DESIGN.md, as network namespaces joined by veth pairs:
#   ${P}sbx1 10.200.1.2 fd00:200:1::2   (+10.200.1.3, a source no sandbox owns)
#   ${P}sbx2 10.200.2.2 fd00:200:2::2
#   ${P}host 10.200.1.1 10.200.2.1 198.18.0.1 fd00:198::1: the proxy host (forwarding, TPROXY)
#   ${P}net  198.18.0.10-.12 .53, fd00:198::10-11: the "internet" (origins, DNS)
# Usage: topology.sh up|down PREFIX. Touches nothing outside the namespaces it creates.
set -euo pipefail
action=$1
P=${2:-eg}

ns() { ip netns exec "$P$1" "${@:2}"; }

down() {
  for n in sbx1 sbx2 sbx3 fw host net; do  # sbx3, fw: made by tests
    if ip netns list | grep -cw "$P$n" >/dev/null; then  # -c: reads it all (pipefail)
      ip netns pids "$P$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$P$n"
    fi
  done
}

up() {
  down
  for n in sbx1 sbx2 host net; do
    ip netns add "$P$n"
    ns "$n" ip link set lo up
    ns "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  ns host sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.tcp_early_demux=0
  ns host sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  for i in 1 2; do
    ip link add "${P}s$i" type veth peer name "${P}h$i"
    ip link set "${P}s$i" netns "${P}sbx$i"
    ip link set "${P}h$i" netns "${P}host"
    ns "sbx$i" ip link set "${P}s$i" name eth0
    ns "sbx$i" ip addr add "10.200.$i.2/24" dev eth0
    ns "sbx$i" ip addr add "fd00:200:$i::2/64" dev eth0 nodad
    ns "sbx$i" ip link set eth0 up
    ns "sbx$i" ip route add default via "10.200.$i.1"
    ns "sbx$i" ip -6 route add default via "fd00:200:$i::1"
    ns host ip addr add "10.200.$i.1/24" dev "${P}h$i"
    ns host ip addr add "fd00:200:$i::1/64" dev "${P}h$i" nodad
    ns host ip link set "${P}h$i" up
  done
  ns sbx1 ip addr add 10.200.1.3/24 dev eth0
  ip link add "${P}hn" type veth peer name "${P}nh"
  ip link set "${P}hn" netns "${P}host"
  ip link set "${P}nh" netns "${P}net"
  ns host ip addr add 198.18.0.1/24 dev "${P}hn"
  ns host ip addr add fd00:198::1/64 dev "${P}hn" nodad
  ns host ip link set "${P}hn" up
  ns net ip link set "${P}nh" name eth0
  for a in 10 11 12 53; do ns net ip addr add "198.18.0.$a/24" dev eth0; done
  for a in 10 11; do ns net ip addr add "fd00:198::$a/64" dev eth0 nodad; done
  ns net ip link set eth0 up
  ns net ip route add 10.200.0.0/16 via 198.18.0.1
  ns net ip -6 route add fd00:200::/40 via fd00:198::1  # the sandboxes: fd00:200:1::/64, fd00:200:2::/64...
}

case "$action" in
  up) up ;;
  down) down ;;
  *) echo "usage: topology.sh up|down PREFIX" >&2; exit 2 ;;
esac
