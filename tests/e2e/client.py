#!/usr/bin/env python3
"""Crafted-bytes clients for the e2e tests, run inside a sandbox namespace. Prints one JSON
object. Every socket has a timeout, so nothing here can hang a test run."""
import json, socket, ssl, struct, sys, time


def family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def connect(ip, port, timeout=5.0, source=None):
    s = socket.socket(family(ip), socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source:
        s.bind((source, 0))
    s.connect((ip, port))
    return s


def read_until_end(s, limit=1 << 30):
    data, end = b"", "eof"
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        end = "timeout"
    return data, end


def client_hello(name):
    """The ClientHello Python's ssl module (OpenSSL) sends for `name`, as TLS records."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name if name else None)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def reframe(records, size):
    """Re-splits the handshake bytes of `records` into TLS records of at most `size` bytes."""
    body, i = b"", 0
    while i + 5 <= len(records):
        n = int.from_bytes(records[i + 3:i + 5], "big")
        body += records[i + 5:i + 5 + n]
        i += 5 + n
    out = b""
    for j in range(0, len(body), size):
        piece = body[j:j + size]
        out += bytes([22, 3, 1]) + len(piece).to_bytes(2, "big") + piece
    return out


def read_response(s, buf):
    """One HTTP response from s (buf: bytes already read); returns (status | body, rest) or
    (None, b"") when the connection ended first."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    status = head.split(b"\r\n")[0].decode()
    return status + " | " + rest[:length].decode("latin1").strip(), rest[length:]


def describe_tls_answer(data, end):
    if data[:1] == b"\x16":
        return "server_hello"
    if data[:1] == b"\x15" and len(data) >= 7:
        return "alert:%d" % data[6]
    return "nothing:" + end


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    out = {}
    if cmd == "tls":  # tls IP PORT NAME PIECE RECORD
        ip, port, name, piece, record = args[0], int(args[1]), args[2], int(args[3]), int(args[4])
        hello = client_hello(name if name != "-" else "")
        if record:
            hello = reframe(hello, record)
        s = connect(ip, port)
        piece = piece or len(hello)
        for i in range(0, len(hello), piece):
            s.sendall(hello[i:i + piece])
            if piece < len(hello):
                time.sleep(0.002)
        data, end = read_until_end(s, limit=5)
        out = {"answer": describe_tls_answer(data, end), "hello_bytes": len(hello), "segments": -(-len(hello) // piece)}
    elif cmd == "raw":  # raw IP PORT HEX [SOURCE]
        s = connect(args[0], int(args[1]), source=args[3] if len(args) > 3 else None)
        if args[2]:
            s.sendall(bytes.fromhex(args[2]))
        data, end = read_until_end(s, limit=1 << 16)
        out = {"data": data.decode("latin1"), "end": end}
    elif cmd == "silent":  # silent IP PORT
        s = connect(args[0], int(args[1]), timeout=10)
        start = time.time()
        data, end = read_until_end(s)
        out = {"data": data.hex(), "end": end, "seconds": round(time.time() - start, 2)}
    elif cmd == "keepalive":  # keepalive IP PORT HOST...: one request at a time
        s = connect(args[0], int(args[1]))
        statuses = []
        for host in args[2:]:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, _ = read_response(s, b"")
            if status is None:
                statuses.append("closed")
                break
            statuses.append(status)
        out = {"statuses": statuses}
    elif cmd == "pipeline":  # pipeline IP PORT HEX: all requests in one write, every answer
        s = connect(args[0], int(args[1]))
        s.sendall(bytes.fromhex(args[2]))
        statuses, buf = [], b""
        try:
            while len(statuses) < 20:
                status, buf = read_response(s, buf)
                if status is None:
                    statuses.append("closed")
                    break
                if not status.startswith("HTTP/1.1 100 "):
                    statuses.append(status)
        except ConnectionResetError:
            statuses.append("reset")
        except socket.timeout:
            statuses.append("timeout")
        out = {"statuses": statuses}
    elif cmd == "upgrade":  # upgrade IP PORT HOST: 101, then raw bytes that look like a request
        s = connect(args[0], int(args[1]))
        s.sendall(f"GET /ws HTTP/1.1\r\nHost: {args[2]}\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n".encode())
        status, rest = read_response(s, b"")
        raw = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        s.sendall(raw)
        data = rest
        while len(data) < len(raw):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        out = {"status": status, "echo": data.decode("latin1")}
    elif cmd == "silentmany":  # silentmany IP PORT COUNT SECONDS: COUNT connections, no bytes
        socks = []
        for _ in range(int(args[2])):
            socks.append(connect(args[0], int(args[1])))
        time.sleep(float(args[3]))
        out = {"opened": len(socks)}
    elif cmd == "dnsq":  # dnsq NAME SERVER: the A records of one UDP query (test-side bytes)
        name, server = args[0], args[1]
        query = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
        query += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
        query += struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1)
        s.sendto(query, (server, 53))
        reply = s.recv(4096)
        # Answers are "c0 0c | type 1 | class 1 | ttl | length 4 | address" after the question.
        out = {"a": [socket.inet_ntoa(reply[i + 12:i + 16]) for i in range(len(query), len(reply) - 15)
                     if reply[i:i + 6] == b"\xc0\x0c\x00\x01\x00\x01"]}
    elif cmd == "echo":  # echo IP PORT
        s = connect(args[0], int(args[1]))
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        data, end = read_until_end(s)
        out = {"data": data.decode(), "end": end}
    elif cmd == "connloop":  # connloop IP4 IP6 PORT SECONDS: echo connections, v4 and v6 in turn
        ok, failed, first, end_at = 0, [], time.time(), time.time() + float(args[3])
        while time.time() < end_at and ok + len(failed) < 100000:
            ip = args[(ok + len(failed)) % 2]
            try:
                s = connect(ip, int(args[2]), timeout=3)
                s.sendall(b"ping")
                s.shutdown(socket.SHUT_WR)
                data, end = read_until_end(s)
                s.close()
                if data == b"ping":
                    ok += 1
                else:
                    failed.append(f"{ip}: {data!r} {end}")
            except OSError as e:
                failed.append(f"{ip}: {e}")
        out = {"ok": ok, "failed": failed[:10], "failures": len(failed), "first": first, "last": time.time()}
    elif cmd == "halfclose":  # halfclose IP PORT: data, FIN, then the server talks after our FIN
        s = connect(args[0], int(args[1]))
        s.sendall(b"a" * 100000)
        s.shutdown(socket.SHUT_WR)
        data, end = read_until_end(s)
        out = {"data": data.decode(), "end": end}
    elif cmd == "serverfirst":  # serverfirst IP PORT: the server's FIN first, then we still send
        s = connect(args[0], int(args[1]))
        data, end = read_until_end(s)
        s.sendall(b"b" * 50000)
        s.shutdown(socket.SHUT_WR)
        rest, end2 = read_until_end(s)
        out = {"data": data.decode(), "end": end, "end_after_send": end2}
    elif cmd == "reset":  # reset IP PORT: the origin resets mid-transfer
        s = connect(args[0], int(args[1]))
        data, end = read_until_end(s)
        out = {"bytes": len(data), "end": end}
    elif cmd == "hold":  # hold IP PORT COUNT SECONDS: COUNT relayed idle connections
        ok, failed, socks = 0, 0, []
        for _ in range(int(args[2])):
            try:
                s = connect(args[0], int(args[1]), timeout=3)
                s.sendall(b"x")
                if s.recv(1) == b"x":
                    ok += 1
                    socks.append(s)
                else:
                    failed += 1
            except OSError:
                failed += 1
        time.sleep(float(args[3]))
        out = {"ok": ok, "failed": failed}
    print(json.dumps(out))


try:
    main()
except OSError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
