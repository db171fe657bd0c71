#!/usr/bin/env python3
"""Packets of every kind, for the firewall tests.

  packets.py sniff IFACE LOG
      Run in the "internet" namespace: records every IPv4/IPv6 packet arriving on IFACE whose
      source is a sandbox address (10.200.0.0/16, fd00:200::/40), whatever its protocol, as one
      line "FAMILY PROTO SRC DST DPORT TAG" (TAG: the EGTAG:... word in the payload, or -).
      Prints "ready" once the socket is bound.

  packets.py dnslisten PORT
      Run on the proxy host: what egressd's DNS filter would receive through --dns-port.

  packets.py send TAG SRC4 SRC6 MARKER_SRC [KIND...]
      Run in a sandbox namespace: sends, from SRC4 to 198.18.0.11 and from SRC6 to fd00:198::11,
      one packet of each KIND (default: all but dns), each carrying EGTAG:TAG-KIND, then one
      marker, "EGTAG:TAG-marker", UDP from MARKER_SRC to the resolver 198.18.0.53:53. Every packet
      leaves through the same link in this order, so once the marker has arrived everything sent
      before it has arrived or was dropped. Prints one JSON object.

KINDs: udp (port 9999), quic (UDP 443), udp53 (UDP 53 to a non-resolver), icmp (echo), icmperr
(destination unreachable, port unreachable: an error whose payload can carry anything), sctp
(protocol 132), gre (47), p253 (protocol 253), tcp (a SYN to port 9000), tcpack (a TCP segment
with ACK|PSH and data to port 9000 that no SYN opened: the kernel fast path's test), dns (UDP to the
resolver; IPv4 only, the test network has no IPv6 resolver).
Every socket has a timeout and every loop is bounded.
"""
import ipaddress, json, select, socket, struct, sys

SANDBOX_NETS = [ipaddress.ip_network("10.200.0.0/16"), ipaddress.ip_network("fd00:200::/40")]
DST4, DST6, RESOLVER = "198.18.0.11", "fd00:198::11", "198.18.0.53"
KINDS = ["udp", "quic", "udp53", "icmp", "icmperr", "sctp", "gre", "p253", "tcp"]
ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4


def tag_of(payload):
    at = payload.find(b"EGTAG:")
    if at < 0:
        return "-"
    word = payload[at + 6:at + 70].split()[0] if payload[at + 6:at + 70].split() else b""
    return word.decode("latin1", "replace")


def sniff(iface, log_path):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    print("ready", flush=True)
    while True:
        frame, address = s.recvfrom(65535)
        if address[2] == PACKET_OUTGOING or len(frame) < 14:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        packet = frame[14:]
        if ethertype == 0x0800 and len(packet) >= 20:
            header = (packet[0] & 0x0F) * 4
            proto, src, dst = packet[9], ipaddress.ip_address(packet[12:16]), ipaddress.ip_address(packet[16:20])
            family = "v4"
        elif ethertype == 0x86DD and len(packet) >= 40:
            header = 40
            proto, src, dst = packet[6], ipaddress.ip_address(packet[8:24]), ipaddress.ip_address(packet[24:40])
            family = "v6"
        else:
            continue
        if not any(src in net for net in SANDBOX_NETS):
            continue
        body = packet[header:]
        dport = struct.unpack("!H", body[2:4])[0] if proto in (6, 17, 132) and len(body) >= 4 else "-"
        with open(log_path, "a") as f:
            f.write(f"{family} {proto} {src} {dst} {dport} {tag_of(body)}\n")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def send_one(kind, source, dst, tag):
    v6 = ":" in dst
    family = socket.AF_INET6 if v6 else socket.AF_INET
    payload = f"EGTAG:{tag}-{kind} ".encode()
    if kind in ("udp", "quic", "udp53", "dns"):
        port = {"udp": 9999, "quic": 443, "udp53": 53, "dns": 53}[kind]
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.sendto(payload, (dst, port))
    elif kind == "tcpack":  # a mid-connection segment (ACK|PSH, data) that no SYN opened
        s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        s.bind((source, 0))
        segment = struct.pack("!HHIIBBHHH", 40123, 9000, 1000, 2000, 5 << 4, 0x18, 65535, 0, 0) + payload
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, 7, 16)  # IPV6_CHECKSUM: the kernel fills it at 16
        else:
            pseudo = socket.inet_aton(source) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(segment))
            segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
        s.sendto(segment, (dst, 0))
    elif kind == "tcp":
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.setblocking(False)
        try:
            s.connect((dst, 9000))
        except BlockingIOError:
            pass
        return s  # kept open until the end, so the SYN is not cut short by a close
    else:
        proto = {"icmp": 58 if v6 else 1, "icmperr": 58 if v6 else 1, "sctp": 132, "gre": 47, "p253": 253}[kind]
        s = socket.socket(family, socket.SOCK_RAW, proto)
        s.bind((source, 0))
        icmp_type = {("icmp", False): 8, ("icmp", True): 128, ("icmperr", False): 3, ("icmperr", True): 1}
        if kind.startswith("icmp"):  # echo request / port unreachable, code 3 / 4 (port)
            code = 0 if kind == "icmp" else (4 if v6 else 3)
            body = struct.pack("!BBHHH", icmp_type[kind, v6], code, 0, 0x4567, 1) + payload
            # IPv6 raw ICMP sockets checksum themselves; IPv4 ones send what they are given.
            payload = body if v6 else body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        s.sendto(payload, (dst, 0))
    s.close()
    return None


def send(tag, src4, src6, marker_src, kinds):
    sent, errors, open_sockets = [], {}, []
    for source, dst in ((src4, DST4), (src6, DST6)):
        for kind in kinds:
            if kind == "dns":
                if ":" in source:
                    continue
                dst_here = RESOLVER
            else:
                dst_here = dst
            try:
                s = send_one(kind, source, dst_here, tag)
                if s:
                    open_sockets.append(s)
                sent.append(f"{'v6' if ':' in dst_here else 'v4'}-{kind}")
            except OSError as e:
                errors[f"{source}-{kind}"] = str(e)
    marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    marker.bind((marker_src, 0))
    marker.sendto(f"EGTAG:{tag}-marker ".encode(), (RESOLVER, 53))
    marker.close()
    for s in open_sockets:
        s.close()
    print(json.dumps({"sent": sent, "errors": errors}))


def dnslisten(port):
    """What a DNS filter would get: IP_TRANSPARENT UDP and TCP sockets on PORT, v4 and v6;
    prints "udp PEER FIRST-WORD" per datagram and "tcp PEER ORIGINAL-DST" per connection."""
    IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR, IPV6_TRANSPARENT = 20, 74, 75
    socks = []
    for family, level, transparent, recv in ((socket.AF_INET, socket.SOL_IP, 19, IP_RECVORIGDSTADDR),
                                             (socket.AF_INET6, socket.IPPROTO_IPV6, IPV6_TRANSPARENT, IPV6_RECVORIGDSTADDR)):
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(family, kind)
            s.setsockopt(level, transparent, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_DGRAM:
                s.setsockopt(level, recv, 1)
            s.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
            if kind == socket.SOCK_STREAM:
                s.listen(16)
            socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            if s.type == socket.SOCK_STREAM:
                conn, peer = s.accept()
                print("tcp", peer[0], conn.getsockname()[0], flush=True)
                conn.close()
            else:
                data, _, _, peer = s.recvmsg(512, 512)
                print("udp", peer[0], data.decode("latin1").split()[0], flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "dnslisten":
        dnslisten(int(sys.argv[2]))
    elif sys.argv[1] == "sniff":
        sniff(sys.argv[2], sys.argv[3])
    else:
        send(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:] or KINDS)
