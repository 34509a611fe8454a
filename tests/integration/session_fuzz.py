"""A stateful fuzzer of whole client sessions against a running pgplex (issue 11, item 9).

Each session is drawn from a seeded random stream: in clear, after an SSLRequest over TLS,
or direct TLS; a valid StartupMessage or a mutated one; then a run of protocol messages,
valid and not: queries, extended-protocol messages in and out of order, COPY data outside
COPY, unknown types, truncated messages, absurd lengths, bodies of random bytes, a
Terminate, or a close in the middle of anything. Responses are read as they come and
dropped. Sessions run from a few threads at once.

What must hold afterwards, and what test_session_fuzz.py checks: pgplex is alive, a normal
client is served, every worker is back to its idle baseline (nothing lent, held or pinned),
pgplex exits 0 on SIGTERM (the fixture's check), and the server never saw a message no
client sent: a relay between pgplex and PostgreSQL (wiretap.py) records what reached the
server, and every Query text, Parse statement, COPY message and FunctionCall there must be
one a session sent whole, or one of pgplex's own statements. Under ASan (make asan) the same run
checks memory. A failing seed replays: PGPLEX_FUZZ_SEED=N.
"""

import os
import random
import socket
import ssl
import struct
import threading
import time

from conftest import PASSWORDS, PROTOCOL_3_0, message

SSL_REQUEST = struct.pack("!II", 8, 80877103)
QUERIES = [b"SELECT 1", b"SELECT pg_sleep(0.01)", b"BEGIN", b"COMMIT", b"ROLLBACK",
           b"SET work_mem = '8MB'", b"SELECT repeat('x', 100000)", b"COPY (SELECT 1) TO STDOUT",
           b"CREATE TEMP TABLE t (x int)", b"PREPARE p AS SELECT 1", b"EXECUTE p",
           b"LISTEN c", b"SELECT 1; SELECT 2", b"SELECT 1/0", b"DISCARD ALL", b""]
TYPES = b"QPBDEHSCXFdcfp"


def startup(rng):
    params = {"user": "payam", "database": "payam_db"}
    roll = rng.random()
    if roll < 0.1:
        params["options"] = rng.choice(["-c=", "-c work_mem=1MB", "--", "-c " + "x" * 300])
    elif roll < 0.15:
        params["database"] = "x" * rng.choice([64, 100, 5000])
    elif roll < 0.2:
        params["application_name"] = "".join(chr(rng.randrange(1, 0x2ff)) for _ in range(20))
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode("utf-8", "replace") + b"\0"
    body += b"\0"
    packet = struct.pack("!I", len(body) + 4) + body
    if rng.random() < 0.1:  # mutate a byte, or cut it short
        at = rng.randrange(len(packet))
        packet = packet[:at] + bytes([rng.randrange(256)]) + packet[at + 1:]
    if rng.random() < 0.05:
        packet = packet[:rng.randrange(len(packet))]
    return packet


def cstring(rng, choices):
    return rng.choice(choices) + b"\0"


def one_message(rng):
    kind = rng.random()
    if kind < 0.3:
        return message(b"Q", cstring(rng, QUERIES))
    if kind < 0.55:  # an extended-protocol message, in whatever order they come
        name = rng.choice([b"", b"s1", b"s2"])
        t = rng.choice("PBEDCSH")
        if t == "P":
            return message(b"P", name + b"\0" + cstring(rng, QUERIES) + b"\0\0")
        if t == "B":
            return message(b"B", b"\0" + name + b"\0" + b"\0\0\0\0\0\0")
        if t == "E":
            return message(b"E", b"\0" + struct.pack("!I", rng.choice([0, 1, 5])))
        if t == "D":
            return message(b"D", rng.choice([b"S", b"P", b"X"]) + name + b"\0")
        if t == "C":
            return message(b"C", rng.choice([b"S", b"P"]) + name + b"\0")
        return message(t.encode(), b"")
    if kind < 0.65:
        return message(rng.choice([b"d", b"c", b"f"]), os.urandom(rng.randrange(0, 64)))
    if kind < 0.75:  # any type, random body
        return message(bytes([rng.choice(TYPES + bytes([rng.randrange(256)]))]),
                       os.urandom(rng.randrange(0, 200)))
    if kind < 0.8:  # a length that lies
        return bytes([rng.choice(TYPES)]) + struct.pack(
            "!I", rng.choice([0, 1, 3, 0x7fffffff, 0xffffffff, 1 << 30])) + b"abc"
    if kind < 0.85:  # a message cut in the middle (the session ends after it)
        whole = message(b"Q", cstring(rng, QUERIES))
        return whole[:rng.randrange(1, len(whole))]
    if kind < 0.9:
        return message(b"p", os.urandom(rng.randrange(0, 40)))  # a password out of place
    if kind < 0.95:
        return message(b"X", b"")
    return message(b"S", b"")


def record(sent, stream):
    """Notes what the messages of a session's byte stream say, framed as a server frames
    them (the startup packet by its length word, then type and length): the text of each
    Query, the statement of each Parse, the body of COPY data and FunctionCalls. A message
    is whatever its declared length covers, so one cut short swallows the bytes after it."""
    stream = bytes(stream)
    if len(stream) < 4:
        return
    at = struct.unpack("!I", stream[:4])[0]
    while at + 5 <= len(stream):
        kind = stream[at:at + 1]
        size = struct.unpack("!I", stream[at + 1:at + 5])[0]
        if size < 4 or at + 1 + size > len(stream):
            return
        body = stream[at + 5:at + 1 + size]
        if kind == b"Q":
            sent.add((kind, body.split(b"\0", 1)[0]))
        elif kind == b"P" and body.count(b"\0") >= 2:
            sent.add((kind, body.split(b"\0", 2)[1]))
        elif kind in (b"d", b"c", b"f", b"F"):
            sent.add((kind, body))
        at += 1 + size


class Session:
    def __init__(self, port, rng, sent):
        self.rng = rng
        self.sent = sent
        self.stream = bytearray()  # every byte sent after the TLS handshake, if any
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        mode = rng.random()
        if mode < 0.25:
            self.sock.sendall(SSL_REQUEST)
            if self.sock.recv(1) == b"S":
                self.wrap(server_hostname=None)
        elif mode < 0.35:
            self.wrap(alpn=["postgresql"] if rng.random() < 0.8 else None)

    def wrap(self, server_hostname=None, alpn=None):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if alpn:
            context.set_alpn_protocols(alpn)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def drain(self, wait):
        self.sock.settimeout(wait)
        try:
            while self.sock.recv(65536):
                pass
        except (socket.timeout, ssl.SSLError, OSError):
            pass

    def send(self, data):
        self.stream += data
        self.sock.sendall(data)

    def run(self):
        try:
            self.talk()
        finally:
            record(self.sent, self.stream)

    def talk(self):
        rng = self.rng
        self.send(startup(rng))
        if rng.random() < 0.1:  # a password nobody asked for (pgplex runs auth_type trust)
            self.send(message(b"p", PASSWORDS["payam"].encode() + b"\0"))
        for _ in range(rng.randrange(0, 25)):
            self.send(one_message(rng))
            if rng.random() < 0.3:
                self.drain(0.01)
            if rng.random() < 0.03:
                return  # gone in the middle of anything
        self.drain(0.05)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run(port, seed, sessions, threads=4, seconds=60, sent=None):
    """Runs `sessions` sessions from `threads` threads, seeded; returns the failures of the
    harness itself (a session that could not even connect), with their seeds. `sent`, a set,
    gathers what the sessions' whole messages said (record)."""
    sent = set() if sent is None else sent
    problems = []
    deadline = time.monotonic() + seconds

    def worker(index):
        for number in range(index, sessions, threads):
            if time.monotonic() > deadline:
                return
            rng = random.Random(seed * 100003 + number)
            try:
                session = Session(port, rng, sent)
            except (ConnectionRefusedError, socket.timeout) as error:
                problems.append(f"session {number} (seed {seed}): cannot connect: {error!r}")
                continue
            except (ssl.SSLError, OSError):
                continue  # a handshake pgplex refused: fine
            try:
                session.run()
            except (ssl.SSLError, OSError):
                pass  # pgplex closed it: fine
            finally:
                session.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 60)
    return problems
