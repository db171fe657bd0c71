import socket, subprocess, os, sys, time
out = sys.argv[1]
def capture(cmd, name):
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1); port = s.getsockname()[1]
    p = subprocess.Popen(cmd.replace('{PORT}', str(port)), shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    c, _ = s.accept(); c.settimeout(1.5); data = b''
    try:
        while True:
            d = c.recv(65536)
            if not d: break
            data += d
    except socket.timeout: pass
    c.close(); s.close(); os.killpg(p.pid, 9); p.wait()
    open(os.path.join(out, 'client_hello', name), 'wb').write(data)
capture('openssl s_client -connect 127.0.0.1:{PORT} -servername api.github.com </dev/null', 'openssl_tls13')
capture('openssl s_client -connect 127.0.0.1:{PORT} -servername pypi.org -tls1_2 -alpn h2,http/1.1 </dev/null', 'openssl_tls12_alpn')
capture('curl -sk --max-time 3 --resolve files.pythonhosted.org:{PORT}:127.0.0.1 https://files.pythonhosted.org:{PORT}/', 'curl')
capture("python3 -c \"import socket,ssl; c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE; c.wrap_socket(socket.create_connection(('127.0.0.1',{PORT})),server_hostname='registry.npmjs.org')\"", 'python_ssl')
h = os.path.join(out, 'http_request')
seeds = {
 'get': b'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n',
 'pipelined': b'POST /a HTTP/1.1\r\nHost: one.example\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: two.example:8080\r\n\r\n',
 'chunked': b'POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: b.example\r\n\r\n',
 'absolute': b'GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n',
 'http10': b'GET / HTTP/1.0\r\n\r\n',
 'v6': b'GET / HTTP/1.1\r\nHost: [fd00::1]:80\r\n\r\n',
 'upgrade': b'GET / HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00',
 'h2c': b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
}
for k, v in seeds.items(): open(os.path.join(h, k), 'wb').write(v)
r = os.path.join(out, 'rule')
for i, v in enumerate(['*.github.com', 'pypi.org:443', '.example.com', '*:22', '198.18.0.0/24', '[2001:db8::/32]:443', '10.0.0.7:5432', '::/0', '*.co.uk', 'a.example.com:8000-8080']):
    open(os.path.join(r, 'r%d' % i), 'w').write(v)
g = os.path.join(out, 'http_gate')  # [seed] client bytes FF 00 FF origin bytes
os.makedirs(g, exist_ok=True)
split = b'\xff\x00\xff'
ok = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
gate_seeds = {
 'declined_upgrade': b'\x05GET / HTTP/1.1\r\nHost: ok.example\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n' + split + ok,
 'switched': b'\x07GET /ws HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n' + split + b'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
 'bodies': b'\x02POST /a HTTP/1.1\r\nHost: ok.example\r\nContent-Length: 4\r\n\r\nabcdPOST /c HTTP/1.1\r\nHost: ok.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n' + split + ok + ok,
 'continue': b'\x09PUT / HTTP/1.1\r\nHost: ok.example\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc' + split + b'HTTP/1.1 100 Continue\r\n\r\n' + ok,
 'head': b'\x03HEAD / HTTP/1.1\r\nHost: ok.example\r\n\r\nGET / HTTP/1.1\r\nHost: ok.example\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n' + split + b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n' + ok,
}
for k, v in gate_seeds.items(): open(os.path.join(g, k), 'wb').write(v)

# The control API targets: every JSON body the control API's unit tests send, as
# [method PUT][id "a"] body for each route family, and as HTTP requests for the reader.
import re
here = os.path.dirname(os.path.abspath(__file__))
unit = open(os.path.join(here, '..', 'unit', 'control', 'test_control_api.cpp')).read()
bodies = sorted({b for b in re.findall(r'R"\((\{.*?\})\)"', unit)})
for target in ('control_native', 'control_e2b', 'control_brimble', 'control_sandbox0', 'control_blaxel'):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for i, body in enumerate(bodies):
        open(os.path.join(d, f'unit_{i:02d}'), 'wb').write(b'\x00\x00' + body.encode())
r = os.path.join(out, 'control_request')
os.makedirs(r, exist_ok=True)
for i, body in enumerate(bodies):
    data = body.encode()
    request = (b'PUT /v1/sandboxes/a HTTP/1.1\r\nHost: egressd\r\nContent-Type: application/json\r\n'
               b'Content-Length: %d\r\n\r\n' % len(data) + data + b'GET /v1/sandboxes HTTP/1.1\r\n\r\n')
    open(os.path.join(r, f'unit_{i:02d}'), 'wb').write(bytes([i % 97]) + request)
open(os.path.join(r, 'chunked'), 'wb').write(
    b'\x05PUT /v1/sandboxes/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n')
