#!/usr/bin/env bash
# Installs or removes egressd's redirection on a sandbox host: one native nftables table,
# `table inet egressd`, loaded in one `nft -f` transaction, plus one policy-routing rule and one
# route per family. Nothing else of the host's ruleset or routing is touched.
#
#   firewall.sh up|down|check --iface IF... [--source CIDR...] [--dns IP...] [--dns-port N]
#                       [--port 15001] [--ipv6 redirect|drop] [--allow-source-only]
#                       [--mark 0x1000] [--table 15001] [--rule-priority 90] [--route-guard on|off]
#                       [--fast-path] [--fast-mark 0x40000000] [--fast-log-group 15001]
#
# What a packet from a sandbox (arriving on an --iface, or with a --source address) gets:
#   TCP, IPv4 and IPv6        TPROXY'd to egressd's listener on --port
#   DNS (port 53)             with --dns-port: TPROXY'd (UDP and TCP) to egressd's DNS filter on
#                             that port, whatever resolver it names; else UDP to the --dns
#                             resolvers only (TCP 53 goes to egressd like all TCP)
#   ICMP errors               delivered to this host (where every sandbox flow ends: egressd's
#                             sockets, for path MTU), never forwarded
#   IPv6 neighbour discovery  passed when addressed to this host (link-local, hop limit 255)
# No conntrack: the table is stateless, so it costs no connection tracking (except with
# --fast-path, below).
#   everything else           dropped: other UDP (QUIC included, so clients fall back to TLS
#                             over TCP where egressd sees the SNI), ICMP echo, SCTP, GRE, ...
# With both --iface and --source, a packet from a listed interface whose source address is
# outside the listed prefixes is dropped (anti-spoofing): a sandbox that adds itself an address
# gets nothing through.
#
# --source alone cannot stop a sandbox that adds itself an address outside the prefixes: such
# packets are not recognised as sandbox traffic and are routed like the host's own. It is
# refused unless --allow-source-only says the operator knows; prefer --iface.
#
# Both families, always: a configuration whose --source prefixes are all IPv4 is refused while
# IPv6 is enabled on a sandbox interface, unless --ipv6 drop says to drop sandbox IPv6.
#
# Defaults chosen not to collide with Istio (mark 0x539, table 133), Cilium (marks 0x0F00,
# tables 200-202, 2004, 2005), Calico (marks 0xffff0000, tables 1-250), kube-proxy (marks 0xC000),
# the CNI portmap plugin (0x2000), the AWS VPC CNI (0x80) or Tailscale (0xC0000, table 52):
# mark bit 0x1000, routing table 15001, rule priority 90. The mark is OR-ed into the packet's
# mark (other bits are kept). `up` refuses a routing table that holds routes it did not add;
# `down` deletes only its own rule and route, never flushes a table.
#
# A routing guard backs the table up (see guard_rules below): if the table is flushed away, the
# kernel refuses to forward sandbox traffic rather than send it out unfiltered. Its cost: a
# sandbox's replies to connections from *other hosts* are not forwarded either (connections
# into sandboxes from a proxy on this host are unaffected); --route-guard off removes it.
#
# --fast-path (egressd's fast_path: kernel, DESIGN.md "Kernel fast path"): every sandbox TCP
# SYN first goes through chain fast_path, which egressd fills with each sandbox's address
# rules (sets fp_*, chains fp_sb_*): a refused SYN is answered with a TCP reset, an allowed
# one's connection gets ct mark --fast-mark and is forwarded by the kernel (never TPROXY'd;
# the routing guard lets packets with that mark through), and anything else (inspected ports,
# audit mode, gateways) goes on to TPROXY. While fast_path is empty (egressd not running, or
# this table just replaced) every SYN goes to TPROXY as without --fast-path. It needs IP
# forwarding on, uses conntrack, and turns on nf_conntrack_acct and nf_conntrack_timestamp (for
# egressd's access log). Refused SYNs are copied to NFLOG group --fast-log-group (at most
# 2000/s), from which egressd writes their access-log lines and counts. The mark bit must be this table's alone: a flow carrying it bypasses
# TPROXY. Default 0x40000000: outside the bits the CNIs above use by default.
#
# `check` validates the arguments and the ruleset (nft -c) and changes nothing.
#
# Re-running `up` replaces the table in one transaction: no moment without filtering. Stopping
# egressd leaves the redirection in place; TPROXY to a port with no listener drops, so the host
# fails closed. `down` removes it.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}
fail() { echo "firewall.sh: $*" >&2; exit 2; }

action=${1:-}
shift || true
ifaces=() sources=() resolvers=()
port=15001 dns_port="" mark=0x1000 table=15001 priority=90 ipv6=redirect source_only=no route_guard=on
fast_path=no fast_mark=0x40000000 fast_log_group=15001
while (($#)); do
  (($# >= 2)) || [[ "$1" == --allow-source-only || "$1" == --fast-path || "$1" == -h || "$1" == --help ]] || fail "$1 needs a value"
  case "$1" in
    --iface) ifaces+=("$2"); shift 2 ;;
    --source) sources+=("$2"); shift 2 ;;
    --dns) resolvers+=("$2"); shift 2 ;;
    --dns-port) dns_port=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --mark) mark=$2; shift 2 ;;
    --table) table=$2; shift 2 ;;
    --rule-priority) priority=$2; shift 2 ;;
    --ipv6) ipv6=$2; shift 2 ;;
    --allow-source-only) source_only=yes; shift ;;
    --route-guard) route_guard=$2; shift 2 ;;
    --fast-path) fast_path=yes; shift ;;
    --fast-mark) fast_mark=$2; shift 2 ;;
    --fast-log-group) fast_log_group=$2; shift 2 ;;
    -h|--help) usage ;;
    *) fail "unknown argument $1 (--help lists them)" ;;
  esac
done
[[ "$action" == up || "$action" == down || "$action" == check ]] || usage

# ---------------------------------------------------------------- validation (changes nothing)
is_v6() { [[ "$1" == *:* ]]; }
is_port() { [[ "$1" =~ ^[0-9]{1,5}$ ]] && (($1 >= 1 && $1 <= 65535)); }
is_port "$port" || fail "--port $port is not a port"
[[ -z "$dns_port" ]] || is_port "$dns_port" || fail "--dns-port $dns_port is not a port"
[[ "$mark" =~ ^0x[0-9a-fA-F]{1,8}$ ]] && ((mark != 0)) || fail "--mark $mark: give one non-zero hex value (0x1000)"
[[ "$fast_mark" =~ ^0x[0-9a-fA-F]{1,8}$ ]] && ((fast_mark != 0 && (fast_mark & (fast_mark - 1)) == 0 && (fast_mark & mark) == 0)) ||
  fail "--fast-mark $fast_mark: give one hex bit (0x40000000) that --mark does not use"
[[ "$fast_log_group" =~ ^[0-9]{1,5}$ ]] && ((fast_log_group <= 65535)) || fail "--fast-log-group $fast_log_group: 0..65535"
[[ "$table" =~ ^[0-9]{1,9}$ ]] && ((table >= 1 && table != 253 && table != 254 && table != 255)) ||
  fail "--table $table: give a number, not 0 or one of the kernel's tables (253 default, 254 main, 255 local)"
[[ "$priority" =~ ^[0-9]{1,5}$ ]] && ((priority >= 1 && priority <= 32762)) || fail "--rule-priority $priority: 1..32762 (egressd uses it and the 3 after it)"
[[ "$ipv6" == redirect || "$ipv6" == drop ]] || fail "--ipv6 $ipv6: redirect or drop"
[[ "$route_guard" == on || "$route_guard" == off ]] || fail "--route-guard $route_guard: on or off"
for i in "${ifaces[@]}"; do
  # iptables spelled a prefix match "sbx+"; nftables spells it "sbx*". Both are accepted.
  [[ "$i" =~ ^[A-Za-z0-9_.@-]{1,15}[+*]?$ ]] || fail "--iface $i is not an interface name (or a prefix ending in *)"
done
cidr4='^([0-9]{1,3}\.){3}[0-9]{1,3}(/[0-9]{1,2})?$'
cidr6='^[0-9a-fA-F:.]+(/[0-9]{1,3})?$'
for s in "${sources[@]}" "${resolvers[@]}"; do
  [[ "$s" =~ $cidr4 ]] || { is_v6 "$s" && [[ "$s" =~ $cidr6 ]]; } || fail "$s is not an IPv4 or IPv6 address or prefix"
done
for r in "${resolvers[@]}"; do [[ "$r" != */* ]] || fail "--dns $r: give resolver addresses, not prefixes"; done

# ---------------------------------------------------------------- policy routing (per family)
# TPROXY'd packets carry the mark; the rule sends them to a table whose only route delivers
# every address locally, so a connection to any address reaches egressd's listener.
rule_args() { echo "priority $priority fwmark $mark/$mark lookup $table"; }
has_rule() { ip -"$1" rule show priority "$priority" | grep -c "fwmark $mark/$mark lookup $table" >/dev/null; }
own_route() { [[ $1 == 4 ]] && echo "local 0.0.0.0/0 dev lo" || echo "local ::/0 dev lo"; }
foreign_routes() {  # routes in our table that are not the one up adds
  ip -"$1" route show table "$table" 2>/dev/null | grep -v -e '^local default dev lo' -e '^$' || true
}

routing_up() {
  local family=$1 foreign
  foreign=$(foreign_routes "$family")
  [[ -z "$foreign" ]] || fail "routing table $table (IPv$family) holds routes egressd did not add:
$foreign
pick another with --table"
  has_rule "$family" || ip -"$family" rule add $(rule_args)
  # shellcheck disable=SC2046
  ip -"$family" route replace $(own_route "$family") table "$table"
}

routing_down() {
  local family=$1
  guard_down "$family"
  while has_rule "$family"; do ip -"$family" rule del $(rule_args); done
  # shellcheck disable=SC2046
  ip -"$family" route del $(own_route "$family") table "$table" 2>/dev/null || true
}

# The routing guard: a second lock behind the table. Should `table inet egressd` disappear
# (`nft flush ruleset`, as Debian's nftables.service runs on start, stop and reload), sandbox
# traffic would be routed out unfiltered; these rules make the kernel refuse to forward it
# instead (ICMP prohibited), except DNS to the --dns resolvers. TPROXY'd packets match the
# rule before them and stay local; packets to this host's own addresses match the local table
# first. Rules (priority P = --rule-priority):
#   P+1  iif IF to RESOLVER goto P+3     from CIDR iif lo goto P+3     from CIDR to RESOLVER goto P+3
#        iif IF fwmark FAST goto P+3     from CIDR fwmark FAST goto P+3  (--fast-path: flows the
#                                         table forwards; only its fp_allow sets that mark)
#   P+2  iif IF prohibit                  from CIDR prohibit
#   P+3  nop (the goto target)
# An interface prefix (sbx*) cannot be named in a routing rule: with prefixes only, give
# --source for the guard to cover them.
guard_rules() {  # one rule per line, for family $1 ("priority N selectors action")
  local family=$1 r s i
  local exempt=() own=()
  for r in "${resolvers[@]}"; do
    if { [[ $family == 6 ]] && is_v6 "$r"; } || { [[ $family == 4 ]] && ! is_v6 "$r"; }; then exempt+=("$r"); fi
  done
  for s in "${sources[@]}"; do
    if { [[ $family == 6 ]] && is_v6 "$s"; } || { [[ $family == 4 ]] && ! is_v6 "$s"; }; then own+=("$s"); fi
  done
  for i in "${ifaces[@]}"; do
    [[ "$i" == *[+*] ]] && continue
    for r in "${exempt[@]}"; do echo "priority $((priority + 1)) iif $i to $r goto $((priority + 3))"; done
    [[ $fast_path == yes ]] && echo "priority $((priority + 1)) iif $i fwmark $fast_mark/$fast_mark goto $((priority + 3))"
    echo "priority $((priority + 2)) iif $i prohibit"
  done
  for s in "${own[@]}"; do
    echo "priority $((priority + 1)) from $s iif lo goto $((priority + 3))"
    for r in "${exempt[@]}"; do echo "priority $((priority + 1)) from $s to $r goto $((priority + 3))"; done
    [[ $fast_path == yes ]] && echo "priority $((priority + 1)) from $s fwmark $fast_mark/$fast_mark goto $((priority + 3))"
    echo "priority $((priority + 2)) from $s prohibit"
  done
}

guard_down() {  # every rule at P+1..P+3: those priorities are egressd's
  local family=$1 p line
  for p in $((priority + 1)) $((priority + 2)) $((priority + 3)); do
    for _ in $(seq 1000); do  # bounded: a rule that will not go is reported by ip below
      line=$(ip -"$family" rule show priority "$p" | sed -n 1p)  # sed reads it all (pipefail)
      [[ -n "$line" ]] || break
      line=${line#*:}
      # shellcheck disable=SC2086
      ip -"$family" rule del priority "$p" ${line//\[detached\]/}
    done
  done
}

guard_up() {
  local family=$1 rule
  guard_down "$family"
  ip -"$family" rule add priority $((priority + 3)) nop
  while read -r rule; do
    # shellcheck disable=SC2086
    [[ -n "$rule" ]] && ip -"$family" rule add $rule
  done < <(guard_rules "$family")
}

# ---------------------------------------------------------------- the ruleset
nft_ifname() { local i=$1; echo "\"${i%+}$([[ $i == *+ ]] && echo '*')\""; }
elements() {  # "{ a, b }" of the items of one family, or nothing
  local family=$1; shift
  local out=()
  for a in "$@"; do
    if [[ $family == 6 ]] && is_v6 "$a"; then out+=("$a"); fi
    if [[ $family == 4 ]] && ! is_v6 "$a"; then out+=("$a"); fi
  done
  ((${#out[@]})) && { local IFS=,; echo "elements = { ${out[*]} }"; } || true
}

ruleset() {
  local set_mark="meta mark set meta mark | $mark"
  cat <<EOF
# Written by deploy/firewall.sh up: replaced as a whole by every up, deleted by down.
table inet egressd {}
delete table inet egressd
table inet egressd {
  set sources4 { type ipv4_addr; flags interval; $(elements 4 "${sources[@]}") }
  set sources6 { type ipv6_addr; flags interval; $(elements 6 "${sources[@]}") }
  set resolvers4 { type ipv4_addr; $(elements 4 "${resolvers[@]}") }
  set resolvers6 { type ipv6_addr; $(elements 6 "${resolvers[@]}") }
EOF
  if [[ $fast_path == yes ]]; then
    cat <<EOF

  # --fast-path: egressd fills these and chain fast_path, and owns the chains fp_sb_*.
  set fp_mark { type mark; elements = { $fast_mark } }
  set fp_guard4 { type ipv4_addr; flags interval; }
  set fp_guard6 { type ipv6_addr; flags interval; }
  set fp_inspected { type inet_service; }
  map fp_by_source4 { type ipv4_addr : verdict; flags interval; }
  map fp_by_source6 { type ipv6_addr : verdict; flags interval; }
  # Refused SYNs: each logged for egressd's access log, up to 2000/s; those over the limit are
  # reset all the same and counted in fp_unlogged (egressd_kernel_unlogged_total).
  counter fp_unlogged { }
  chain fp_refuse { limit rate over 2000/second burst 2000 packets counter name "fp_unlogged" reject with tcp reset; log group $fast_log_group; reject with tcp reset; }
  # A sandbox at its limit of kernel-forwarded connections (limits.max_connections_per_sandbox).
  chain fp_limit { limit rate over 2000/second burst 2000 packets counter name "fp_unlogged" reject with tcp reset; log prefix "connection_limit" group $fast_log_group; reject with tcp reset; }
  ct timeout fp_close4 { protocol tcp; l3proto ip; policy = { time_wait: 1, close: 1 }; }
  ct timeout fp_close6 { protocol tcp; l3proto ip6; policy = { time_wait: 1, close: 1 }; }
  chain fp_allow { meta nfproto ipv4 ct timeout set "fp_close4"; meta nfproto ipv6 ct timeout set "fp_close6"; ct mark set ct mark | $fast_mark meta mark set meta mark | $fast_mark accept; }
  chain fast_path { }
EOF
  fi
  cat <<EOF

  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    # Neighbour discovery addressed to this host: without it no sandbox has IPv6 at all.
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } ip6 hoplimit 255 fib daddr type { local, multicast } accept
EOF
  for i in "${ifaces[@]}"; do echo "    iifname $(nft_ifname "$i") jump from_interface"; done
  if ((${#sources[@]})); then
    echo "    ip saddr @sources4 jump sandbox"
    echo "    ip6 saddr @sources6 jump sandbox"
  fi
  echo "  }"
  echo
  echo "  chain from_interface {"
  [[ $ipv6 == drop ]] && echo "    meta nfproto ipv6 counter drop comment \"--ipv6 drop\""
  if ((${#sources[@]})); then
    echo "    ip saddr != @sources4 counter drop comment \"source outside --source\""
    echo "    ip6 saddr != @sources6 counter drop comment \"source outside --source\""
  fi
  echo "    goto sandbox"
  echo "  }"
  cat <<EOF

  chain sandbox {
EOF
  [[ -n "$dns_port" ]] && echo "    meta l4proto { tcp, udp } th dport 53 tproxy to :$dns_port $set_mark accept comment \"DNS filter\""
  if [[ $fast_path == yes ]]; then
    echo "    meta l4proto tcp ct direction original ct mark & $fast_mark == $fast_mark ct status & expected == 0 meta mark set meta mark | $fast_mark accept comment \"kernel fast path: a flow fp_allow let through\""
    echo "    tcp flags & (syn | ack) == syn jump fast_path comment \"kernel fast path: egressd decides at SYN\""
  fi
  cat <<EOF
    meta l4proto tcp tproxy to :$port $set_mark accept
EOF
  if [[ -z "$dns_port" ]]; then
    echo "    udp dport 53 ip daddr @resolvers4 accept"
    echo "    udp dport 53 ip6 daddr @resolvers6 accept"
  fi
  cat <<EOF
    # ICMP errors go to this host (marked like TPROXY'd packets), never out: the sandbox's only
    # flows end at egressd's sockets, whose kernel error handling (path MTU) finds them there.
    icmp type { destination-unreachable, time-exceeded, parameter-problem } $set_mark accept comment "ICMP errors"
    icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } $set_mark accept comment "ICMP errors"
    counter drop comment "every other protocol"
  }
EOF
  if [[ $fast_path == yes ]]; then
    # A TCP segment forwarded towards a sandbox that opens no flow and belongs to none (its
    # conntrack entry was deleted: a revoked kernel flow, or one that expired) answers its
    # sender with a reset: a revoked flow's origin is told at its next packet, and nothing it
    # sends after the revocation reaches the sandbox. Only conntrack's loose pickup makes such
    # a segment "new"; a segment of a known flow never is.
    echo
    echo "  chain to_sandbox {"
    echo "    type filter hook forward priority filter; policy accept;"
    for i in "${ifaces[@]}"; do echo "    oifname $(nft_ifname "$i") jump orphan_segment"; done
    if ((${#sources[@]})); then
      echo "    ip daddr @sources4 jump orphan_segment"
      echo "    ip6 daddr @sources6 jump orphan_segment"
    fi
    echo "  }"
    echo "  chain orphan_segment {"
    echo "    meta l4proto tcp ct state new tcp flags & (syn | rst) == 0 counter reject with tcp reset comment \"revoked or expired kernel flow: reset its origin\""
    echo "  }"
  fi
  echo "}"
}

ipv6_enabled() {  # IPv6 is on for this interface (a prefix or a missing one: for new interfaces)
  local i=$1 f
  if [[ "$i" != *[+*] && -e /proc/sys/net/ipv6/conf/$i/disable_ipv6 ]]; then
    f=/proc/sys/net/ipv6/conf/$i/disable_ipv6
  else
    f=/proc/sys/net/ipv6/conf/default/disable_ipv6
  fi
  [[ -e "$f" && "$(cat "$f")" == 0 ]]
}

check_families() {
  local has6=no
  for s in "${sources[@]}"; do is_v6 "$s" && has6=yes; done
  if ((${#sources[@]})) && [[ $has6 == no && $ipv6 == redirect ]]; then
    if ((${#ifaces[@]})); then
      for i in "${ifaces[@]}"; do
        ipv6_enabled "$i" && fail "every --source is IPv4 but IPv6 is enabled on sandbox interface $i: its IPv6 would be
dropped as spoofed. Add the sandboxes' IPv6 prefixes (--source fd00:200::/40), or say --ipv6 drop."
      done
    elif [[ -e /proc/net/if_inet6 ]] && grep -v ' lo$' /proc/net/if_inet6 | grep -c . >/dev/null; then
      fail "every --source is IPv4 but this host has IPv6 on its interfaces: sandbox IPv6 would bypass egressd.
Add the sandboxes' IPv6 prefixes (--source fd00:200::/40), or give --iface and say --ipv6 drop."
    fi
  fi
  if [[ $ipv6 == drop ]] && ! ((${#ifaces[@]})); then
    fail "--ipv6 drop needs --iface: sandbox IPv6 is only recognisable by its interface"
  fi
}

if [[ $action == up || $action == check ]]; then
  ((${#ifaces[@]} + ${#sources[@]})) || fail "give at least one --iface (or --source)"
  if ! ((${#ifaces[@]})) && [[ $source_only != yes ]]; then
    fail "--source without --iface cannot stop a sandbox that adds itself an address outside the prefixes
(its packets are then routed like the host's own). Give the sandbox interfaces with --iface, or pass
--allow-source-only to accept that."
  fi
  check_families
  if [[ $fast_path == yes && $action == up ]]; then
    [[ "$(cat /proc/sys/net/ipv4/ip_forward)" == 1 ]] ||
      fail "--fast-path forwards allowed flows in the kernel: turn on net.ipv4.ip_forward (and net.ipv6.conf.all.forwarding)"
  fi
  command -v nft >/dev/null || fail "nft is missing (Debian: apt-get install nftables)"
  file=$(mktemp)
  trap 'rm -f "$file"' EXIT
  ruleset >"$file"
  nft -c -f "$file" || fail "nftables refused the ruleset above; nothing was changed"
  if [[ $action == check ]]; then
    echo "egressd firewall: the arguments and the ruleset are valid (nothing was changed)"
    exit 0
  fi
  # Routing first: the mark it routes is only set once the table below is loaded.
  routing_up 4
  routing_up 6
  nft -f "$file"
  if [[ $fast_path == yes ]]; then  # conntrack is loaded now: bytes and times for egressd's log
    sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_timestamp=1
  fi
  # The guard after the table: the table filters from here on, the guard is its backup.
  if [[ $route_guard == on ]]; then guard_up 4; guard_up 6; else guard_down 4; guard_down 6; fi
  echo "egressd firewall up: table inet egressd, TCP to :$port${dns_port:+, DNS to :$dns_port}, mark $mark, table $table$([[ $fast_path == yes ]] && echo ", kernel fast path (mark $fast_mark)"); ${ifaces[*]:-} ${sources[*]:-}"
else
  # The table first: from then on nothing is marked, so the routing can go.
  if nft list table inet egressd >/dev/null 2>&1; then nft delete table inet egressd; fi
  routing_down 4
  routing_down 6
  echo "egressd firewall down"
fi
