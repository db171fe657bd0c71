#!/usr/bin/env bash
# Installs or removes egressd's TPROXY redirection on a sandbox host (iptables/ip6tables
# mangle TPROXY + policy routing), idempotently.
#
#   deploy/firewall.sh up   --iface veth-sbx1 [--iface ...] [--source 10.200.0.0/16 ...]
#                           [--port 15001] [--dns 198.18.0.53 ...] [--mark 0x1] [--table 100]
#   deploy/firewall.sh down [same flags]
#
# Every TCP connection arriving from a sandbox interface (or source prefix) is handed to the
# IP_TRANSPARENT listener on --port, v4 and v6. Sandbox UDP is dropped except DNS to the
# --dns resolvers: QUIC (UDP 443) is dropped on purpose, so clients fall back to TCP/TLS where
# egressd sees the SNI. ICMP is left alone.
set -euo pipefail

action=${1:-}
shift || true
ifaces=() sources=() resolvers=()
port=15001 mark=0x1 table=100
while (($#)); do
  case "$1" in
    --iface) ifaces+=("$2"); shift 2 ;;
    --source) sources+=("$2"); shift 2 ;;
    --dns) resolvers+=("$2"); shift 2 ;;
    --port) port=$2; shift 2 ;;
    --mark) mark=$2; shift 2 ;;
    --table) table=$2; shift 2 ;;
    *) echo "firewall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$action" == up || "$action" == down ]] || { echo "usage: firewall.sh up|down --iface IF|--source CIDR ..." >&2; exit 2; }
((${#ifaces[@]} + ${#sources[@]})) || { echo "firewall.sh: give at least one --iface or --source" >&2; exit 2; }

chain=EGRESSD_TPROXY
udp_chain=EGRESSD_UDP

is_v6() { [[ "$1" == *:* ]]; }

# Matches for each sandbox: "-i IF" per interface, "-s PREFIX" per prefix of the family.
matches_for() {
  local family=$1
  for i in "${ifaces[@]}"; do echo "-i $i"; done
  for s in "${sources[@]}"; do
    if [[ $family == 6 ]] && is_v6 "$s"; then echo "-s $s"; fi
    if [[ $family == 4 ]] && ! is_v6 "$s"; then echo "-s $s"; fi
  done
}

down_family() {
  local ipt=$1 family=$2
  # Every jump first, then the chains: a chain still referenced cannot be deleted.
  for table_chain in "mangle PREROUTING $chain" "filter FORWARD $udp_chain" "filter INPUT $udp_chain"; do
    read -r tbl parent target <<<"$table_chain"
    # grep reads all of its input (no -q): with pipefail, a writer cut off by SIGPIPE would make
    # the test fail while a rule is still there.
    while $ipt -t "$tbl" -S "$parent" 2>/dev/null | grep -c -- "-j $target\$" >/dev/null; do
      rule=$($ipt -t "$tbl" -S "$parent" | grep -- "-j $target\$" | head -1 | sed "s/^-A /-D /")
      eval "$ipt -t $tbl $rule"
    done
  done
  for table_target in "mangle $chain" "filter $udp_chain"; do
    read -r tbl target <<<"$table_target"
    if $ipt -t "$tbl" -S "$target" >/dev/null 2>&1; then
      $ipt -t "$tbl" -F "$target"
      $ipt -t "$tbl" -X "$target"
    fi
  done
  while ip -"$family" rule show | grep -c "fwmark $mark/$mark lookup $table" >/dev/null; do
    ip -"$family" rule del fwmark "$mark/$mark" lookup "$table"
  done
  ip -"$family" route flush table "$table" 2>/dev/null || true
}

up_family() {
  local ipt=$1 family=$2 any
  [[ $family == 4 ]] && any=0.0.0.0/0 || any=::/0
  down_family "$ipt" "$family"
  $ipt -t mangle -N "$chain"
  $ipt -t mangle -A "$chain" -p tcp -j TPROXY --on-port "$port" --tproxy-mark "$mark/$mark"
  $ipt -t filter -N "$udp_chain"
  for r in "${resolvers[@]}"; do
    if { [[ $family == 6 ]] && is_v6 "$r"; } || { [[ $family == 4 ]] && ! is_v6 "$r"; }; then
      $ipt -t filter -A "$udp_chain" -p udp -d "$r" --dport 53 -j RETURN
    fi
  done
  $ipt -t filter -A "$udp_chain" -p udp -j DROP
  while read -r match; do
    [[ -n "$match" ]] || continue
    # shellcheck disable=SC2086
    $ipt -t mangle -A PREROUTING $match -p tcp -j "$chain"
    # shellcheck disable=SC2086
    $ipt -t filter -I FORWARD 1 $match -p udp -j "$udp_chain"
    # shellcheck disable=SC2086
    $ipt -t filter -I INPUT 1 $match -p udp -j "$udp_chain"
  done < <(matches_for "$family")
  ip -"$family" rule add fwmark "$mark/$mark" lookup "$table"
  ip -"$family" route add local "$any" dev lo table "$table"
}

if [[ $action == up ]]; then
  up_family iptables 4
  up_family ip6tables 6
  echo "egressd TPROXY up: port $port, mark $mark, table $table, ${ifaces[*]:-} ${sources[*]:-}"
else
  down_family iptables 4
  down_family ip6tables 6
  echo "egressd TPROXY down"
fi
