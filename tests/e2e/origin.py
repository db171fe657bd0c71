#!/usr/bin/env python3
"""Small origin servers for the e2e tests, run inside the "internet" namespace.

Each listens on ADDRESS:PORT for the address families given, and behaves by port:
  9000 echo: sends back what it reads; half-closes after the client does
  9001 half-close observer: reads to EOF, answers "got N", then 3 more lines, then closes
  9002 reset: sends 1 MiB, then resets the connection (SO_LINGER 0)
  9003 server-first half-close: sends "hello", shuts down its write side, reads what the client
       still sends until its EOF, logs "9003 received N" and closes
Every accepted connection is appended to LOG as "port peer" lines so tests can tell whether
the origin ever saw a connection.
"""
import socket, struct, sys, threading

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


def handle(conn, port):
    try:
        if port == 9000:
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
print("ready", flush=True)
threading.Event().wait()
