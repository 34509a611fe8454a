"""A recording TCP relay between pgplex and PostgreSQL, for tests that must know exactly
what reached the server: every byte pgplex sends a node is kept, per connection, and read
back as protocol messages (after the startup packet; a CancelRequest connection holds no
messages). Plain TCP only (server_tls_sslmode = "disable")."""

import select
import socket
import struct
import threading

from conftest import HOST, free_port_run

CANCEL_REQUEST_CODE = 80877102
# What a frontend may send once logged in (protocol-message-formats.html), and 'p' for the
# password or SASL messages of pgplex's own login.
FRONTEND_TYPES = set(b"QPBEDCSHXFdcfp")


class Wiretap:
    def __init__(self, target_port, first_port=40500):
        self.target_port = target_port
        self.listener = socket.create_server((HOST, free_port_run(first_port, 1)))
        self.port = self.listener.getsockname()[1]
        self.streams = []  # bytes pgplex sent, one bytearray per connection
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self):
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            stream = bytearray()
            with self.lock:
                self.streams.append(stream)
            threading.Thread(target=self.relay, args=(client, stream), daemon=True).start()

    def relay(self, client, stream):
        try:
            server = socket.create_connection((HOST, self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        pair = {client: server, server: client}
        try:
            while not self.stopping:
                ready, _, _ = select.select(list(pair), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        with self.lock:
                            stream.extend(data)
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def stop(self):
        self.stopping = True
        self.listener.close()
        self.thread.join(5)

    def messages(self):
        """Every (type, body) each connection carried, and framing problems found: a type
        no frontend sends, or a length below 4. A message cut short by the connection's end
        is not counted (the server never acts on it)."""
        with self.lock:
            streams = [bytes(stream) for stream in self.streams]
        found, problems = [], []
        for number, stream in enumerate(streams):
            if len(stream) < 8:
                continue
            length, code = struct.unpack("!II", stream[:8])
            if code == CANCEL_REQUEST_CODE:
                continue
            at = length
            while at + 5 <= len(stream):
                kind = stream[at]
                size = struct.unpack("!I", stream[at + 1:at + 5])[0]
                if kind not in FRONTEND_TYPES or size < 4:
                    problems.append(f"connection {number} at byte {at}: type {kind!r}, "
                                    f"length {size}: not a frontend message")
                    break
                if at + 1 + size > len(stream):
                    break
                found.append((chr(kind), stream[at + 5:at + 1 + size]))
                at += 1 + size
        return found, problems
