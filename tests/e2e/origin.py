#!/usr/bin/env python3
"""Small origin servers for the e2e tests, run inside the "internet" namespace.

Each listens on ADDRESS:PORT for the address families given, and behaves by port:
  9000 echo: sends back what it reads; half-closes after the client does
  9001 half-close observer: reads to EOF, answers "got N", then 3 more lines, then closes
  9002 reset: sends 1 MiB, then resets the connection (SO_LINGER 0)
  9003 server-first half-close: sends "hello", shuts down its write side, reads what the client
       still sends until its EOF, logs "9003 received N" and closes
  80   HTTP/1.1 origin that reads every request body whole before it answers (Content-Length,
       chunked, Expect: 100-continue), keeps connections alive, logs "80 HOST METHOD PATH N"
       per request, and answers an upgrade request (Connection: upgrade + Upgrade) with
       101 Switching Protocols, then echoes raw bytes; "/no-upgrade" declines with a 200.
  443  (198.18.0.11, fd00:198::11) the same HTTP/1.1 origin over TLS, with the certificate
       ORIGIN_TLS names (rogue.github.com gets ORIGIN_ROGUE's: a CA nobody trusts); it answers
       each request with JSON of what it received: method, path, headers, body, peer
Port 80 and 443 requests are also appended to LOG.requests as one JSON line each (port, peer,
method, path, lower-cased headers, body) so tests can see exactly what reached the origin.
Every accepted connection is appended to LOG as "port peer" lines so tests can tell whether
the origin ever saw a connection.
"""
import hashlib, json, os, socket, ssl, struct, sys, threading

log_path = sys.argv[1]
addresses = sys.argv[2:]
log_lock = threading.Lock()


def log(port, peer):
    with log_lock, open(log_path, "a") as f:
        f.write(f"{port} {peer}\n")


def read_all(conn):
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            return total
        total += len(data)


def read_line(f):
    line = f.readline(65537)
    if not line.endswith(b"\n"):
        raise OSError("short line")
    return line


def log_request(record):
    with log_lock, open(log_path + ".requests", "a") as f:
        f.write(json.dumps(record) + "\n")


def http_origin(conn, port=80):
    """One keep-alive HTTP/1.1 connection; the body is read whole before any answer."""
    peer = conn.getpeername()
    f = conn.makefile("rb")
    while True:
        request = f.readline(65537)
        if not request:
            return
        method, path, _ = request.decode("latin1").split(" ", 2)
        headers = {}
        while True:
            line = read_line(f).decode("latin1").rstrip("\r\n")
            if not line:
                break
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(read_line(f).split(b";")[0], 16)
                body += f.read(size)
                read_line(f)
                if size == 0:
                    break
        else:
            body = f.read(int(headers.get("content-length", "0")))
        host = headers.get("host", "-")
        log(port, f"{host} {method} {path} {len(body)}")
        record = {"port": port, "peer": f"{peer[0]}:{peer[1]}", "method": method, "path": path,
                  "headers": headers, "body": body.decode("utf-8", "replace")}
        log_request(record)
        upgrade = "upgrade" in headers.get("connection", "").lower() and "upgrade" in headers
        if upgrade and path != "/no-upgrade":
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                         + headers["upgrade"].encode() + b"\r\n\r\n")
            while True:  # the new protocol: raw echo
                data = f.read1(65536)
                if not data:
                    return
                conn.sendall(data)
        answer = f"{method} {path} host {host} got {len(body)} {hashlib.sha256(body).hexdigest()[:16]}\n"
        if port == 443:
            answer = json.dumps(record) + "\n"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\n\r\n{answer}".encode())


def handle(conn, port):
    try:
        if port == 80:
            http_origin(conn)
        elif port == 443:
            conn = TLS.wrap_socket(conn, server_side=True)
            http_origin(conn, 443)
        elif port == 9000:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    break
                conn.sendall(data)
        elif port == 9001:
            n = read_all(conn)
            conn.sendall(f"got {n}\n".encode())
            for i in range(3):
                conn.sendall(f"after-fin {i}\n".encode())
        elif port == 9002:
            conn.sendall(b"x" * (1 << 20))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif port == 9003:
            conn.sendall(b"hello\n")
            conn.shutdown(socket.SHUT_WR)
            log(port, f"received {read_all(conn)}")
    except OSError:
        pass
    finally:
        conn.close()


def serve(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(256)
    while True:
        conn, peer = s.accept()
        log(port, peer[0])
        threading.Thread(target=handle, args=(conn, port), daemon=True).start()


for address in addresses:
    for port in (9000, 9001, 9002, 9003):
        threading.Thread(target=serve, args=(address, port), daemon=True).start()
TLS = None
if os.environ.get("ORIGIN_TLS"):
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS.load_cert_chain(*os.environ["ORIGIN_TLS"].split(":"))
    ROGUE = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ROGUE.load_cert_chain(*os.environ["ORIGIN_ROGUE"].split(":"))

    def by_name(sock, name, _context):
        if name == "rogue.github.com":
            sock.context = ROGUE
    TLS.sni_callback = by_name
for address in ("198.18.0.11", "fd00:198::11"):
    if address in addresses:
        threading.Thread(target=serve, args=(address, 80), daemon=True).start()
        if TLS:
            threading.Thread(target=serve, args=(address, 443), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
