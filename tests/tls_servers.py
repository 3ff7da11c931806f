"""Real TLS servers on 127.0.0.1 for scanner tests: Python's ssl (OpenSSL 3) and tlslite-ng, the
independent stack that still speaks SSL 3.0, RC4 and 3DES. Each runs in a thread with blocking
sockets, so the server's alerts reach the wire exactly as its TLS stack writes them, and counts the
connections it accepted (the scanner's own count is checked against it).

An optional SMTP front (greeting, EHLO with STARTTLS, 220) puts the TLS stack behind STARTTLS.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from certgen import Issued, issue
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.probes.tls.wire import (
    ClientHello,
    ContentType,
    Extension,
    ExtensionType,
    Handshake,
    HandshakeBuffer,
    HandshakeType,
    Record,
    ServerHello,
    TlsVersion,
)
from conformance.target import Endpoint, Service

IO_TIMEOUT = 10.0


@dataclass
class Served:
    endpoint: Endpoint
    accepted: int = 0
    errors: list[BaseException] = field(default_factory=list)
    hung_up: list[bool] = field(default_factory=list)  # linger servers: did the client end each connection?


def _wait_for_hang_up(tls: ssl.SSLSocket) -> bool:
    """Read raw bytes (a close_notify is never answered) until the client closes; False if it never does."""
    raw = socket.socket(fileno=tls.detach())
    raw.settimeout(IO_TIMEOUT)  # the descriptor is non-blocking from the old socket's timeout mode
    try:
        while raw.recv(1 << 16):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # a reset is a hang-up too
    finally:
        raw.close()
    return True


def rsa_leaf() -> Issued:
    return issue("localhost", dns=("localhost",), key=rsa.generate_private_key(65537, 2048))


def _smtp_front(conn: socket.socket, busy: bool = False) -> bool:
    """A minimal RFC 3207 dialogue up to '220 ready to start TLS'; False if the client went away.
    ``busy``: answer 421 and hang up instead, as a rate-limiting MX does."""
    if busy:
        conn.sendall(b"421 4.7.0 localhost too many connections, try later\r\n")
        return False
    stream = conn.makefile("rb")
    conn.sendall(b"220 localhost ESMTP test\r\n")
    while True:
        line = stream.readline(1024)
        if not line:
            return False
        verb = line.strip().upper()
        if verb.startswith(b"EHLO"):
            conn.sendall(b"250-localhost\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            conn.sendall(b"220 2.0.0 ready to start TLS\r\n")
            return True
        else:
            conn.sendall(b"502 5.5.1 not here\r\n")


def _imap_front(conn: socket.socket) -> bool:
    """RFC 9051 6.2.1 up to the tagged OK for STARTTLS, capabilities in the greeting."""
    stream = conn.makefile("rb")
    conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] test ready\r\n")
    while True:
        line = stream.readline(1024)
        if not line:
            return False
        tag, _, command = line.strip().partition(b" ")
        if command.upper() == b"STARTTLS":
            conn.sendall(tag + b" OK begin TLS negotiation now\r\n")
            return True
        if command.upper() == b"CAPABILITY":
            conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK done\r\n")
        else:
            conn.sendall(tag + b" BAD not here\r\n")


@contextlib.contextmanager
def _thread_server(handshake: Callable[[socket.socket], None], *, smtp: bool, imap: bool = False,
                   busy: Callable[[int], bool] = lambda n: False, address: str = "127.0.0.1",
                   port: int = 0) -> Iterator[Served]:
    listener = socket.create_server((address, port))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    service = Service.SUBMISSION if smtp else Service.IMAP if imap else Service.SUBMISSIONS
    served = Served(Endpoint(service, "node1", "localhost", port, address))
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def one(conn: socket.socket, number: int) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                if smtp and not _smtp_front(conn, busy=busy(number)):
                    return
                if imap and not _imap_front(conn):
                    return
                handshake(conn)
            except (OSError, EOFError):
                pass  # the scanner hangs up after the ServerHello: expected
            except Exception as exc:  # noqa: BLE001 - tlslite raises its own types for refusals
                if type(exc).__module__.startswith("tlslite"):
                    return
                served.errors.append(exc)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            served.accepted += 1
            worker = threading.Thread(target=one, args=(conn, served.accepted), daemon=True)
            worker.start()
            workers.append(worker)

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield served
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()
        for worker in workers:
            worker.join(IO_TIMEOUT)
    if served.errors:
        raise served.errors[0]


def padded_leaf(kib: int) -> Issued:
    """A certificate of about ``kib`` KiB (a long SAN list, as on shared hosting fronts)."""
    names = tuple(f"host{i:05d}.padding.example.test" for i in range(kib * 1024 // 34))
    return issue("localhost", dns=("localhost", *names), key=rsa.generate_private_key(65537, 2048))


def _answers_tls13_only(conn: socket.socket) -> bool:
    """Peek at the ClientHello: does it offer TLS 1.3 (supported_versions)? An older hello is never answered."""
    head = conn.recv(Record.HEADER, socket.MSG_PEEK)
    body = conn.recv(Record.HEADER + int.from_bytes(head[3:5], "big"), socket.MSG_PEEK | socket.MSG_WAITALL)
    offered = HandshakeBuffer().feed(body[Record.HEADER:])
    hello = ClientHello.parse(offered[0].body) if offered else None
    return hello is not None and any(e.type == ExtensionType.SUPPORTED_VERSIONS for e in hello.extensions)


@contextlib.contextmanager
def openssl_server(configure: Callable[[ssl.SSLContext], None], *, smtp: bool = False,
                   imap: bool = False, leaf: Issued | None = None, mute_below_tls13: bool = False,
                   linger: bool = False, address: str = "127.0.0.1", port: int = 0) -> Iterator[Served]:
    """Python's ssl (OpenSSL) as the server, configured by ``configure(ctx)``. ``mute_below_tls13``: a
    hello without TLS 1.3 is never answered (its connection stays open until the client gives up).
    ``linger``: after the handshake, never send close_notify and never close, as some GnuTLS-based MTAs:
    only the client can end the connection (``Served.hung_up`` records that it did). ``address``/``port``:
    where to listen (another loopback address on the same port is a second address of one host)."""
    served_ref: list[Served] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = (leaf or rsa_leaf()).write(Path(tmp), "leaf")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        configure(ctx)

    def handshake(conn: socket.socket) -> None:
        if mute_below_tls13 and not _answers_tls13_only(conn):
            conn.recv(1 << 16)  # reads the hello and waits: the client's timeout ends it
            conn.recv(1)
            return
        with ctx.wrap_socket(conn, server_side=True) as tls:
            if linger:
                served_ref[0].hung_up.append(_wait_for_hang_up(tls))
                return
            tls.recv(1)

    with _thread_server(handshake, smtp=smtp, imap=imap, address=address, port=port) as served:
        served_ref.append(served)
        yield served


@contextlib.contextmanager
def tlslite_server(*, min_version: tuple[int, int] = (3, 0), max_version: tuple[int, int] = (3, 3),
                   cipher_names: tuple[str, ...] = ("aes128gcm", "aes128", "3des", "rc4"),
                   key_exchange_names: tuple[str, ...] = ("rsa", "dhe_rsa", "ecdhe_rsa"),
                   smtp: bool = False, imap: bool = False, busy: Callable[[int], bool] = lambda n: False,
                   connection: type | None = None, groups: tuple[str, ...] | None = None) -> Iterator[Served]:
    """tlslite-ng as the server: an independent TLS stack with SSL 3.0, RC4 and 3DES.
    ``busy(n)``: the n-th connection meets a 421 greeting instead (needs ``smtp``). ``groups``: its
    (EC)DHE groups in preference order, by tlslite-ng's names ("x25519mlkem768" needs kyber-py)."""
    from tlslite.api import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = rsa_leaf().write(Path(tmp), "leaf")
        chain = X509CertChain()
        chain.parsePemList(cert_path.read_text())
        key = parsePEMKey(key_path.read_text(), private=True)
    settings = HandshakeSettings()
    settings.minVersion, settings.maxVersion = min_version, max_version
    settings.cipherNames = list(cipher_names)
    settings.keyExchangeNames = list(key_exchange_names)
    if groups is not None:
        settings.eccCurves = list(groups)
        settings.keyShares = [g for g in settings.keyShares if g in groups]  # a client's setting, but validated

    def handshake(conn: socket.socket) -> None:
        (connection or TLSConnection)(conn).handshakeServer(certChain=chain, privateKey=key, settings=settings)

    with _thread_server(handshake, smtp=smtp, imap=imap, busy=busy) as served:
        yield served


HELLO_THEN_ABORT_SUITES = (0x1301, 0xC02F, 0x002F, 0x000A)  # AES-GCM (1.3, ECDHE), static RSA CBC, 3DES


def _server_hello_for(hello: ClientHello, suites: tuple[int, ...]) -> ServerHello | None:
    """The ServerHello a server holding ``suites`` would send: its first suite offered, at the best version
    offered (TLS 1.3 with a key share of the client's first group); None if nothing is in common."""
    offered = {e.type: e.data for e in hello.extensions}
    usable = [s for s in suites if s in set(hello.cipher_suites)]
    versions = offered.get(ExtensionType.SUPPORTED_VERSIONS, b"")[1:]
    if TlsVersion.TLS1_3 in (int.from_bytes(versions[i:i + 2], "big") for i in range(0, len(versions), 2)):
        share = offered[ExtensionType.KEY_SHARE]
        group, length = share[2:4], int.from_bytes(share[4:6], "big")
        tls13 = [s for s in usable if s >> 8 == 0x13]
        return ServerHello(0x0303, os.urandom(32), hello.session_id, tls13[0], 0, (
            Extension(ExtensionType.SUPPORTED_VERSIONS, b"\x03\x04"),
            Extension(ExtensionType.KEY_SHARE, group + length.to_bytes(2, "big") + os.urandom(length)),
        )) if tls13 else None
    legacy = [s for s in usable if s >> 8 != 0x13]
    return ServerHello(min(hello.version, 0x0303), os.urandom(32), b"", legacy[0], 0,
                       (Extension(ExtensionType.RENEGOTIATION_INFO, b"\x00"),)) if legacy else None


def _read_client_hello(conn: socket.socket) -> ClientHello | None:
    stream, handshake = conn.makefile("rb"), HandshakeBuffer()
    while True:
        header = stream.read(Record.HEADER)
        if len(header) < Record.HEADER or header[0] != ContentType.HANDSHAKE:
            return None  # gone, or an SSL 2.0 hello
        messages = handshake.feed(stream.read(int.from_bytes(header[3:5], "big")))
        if messages:
            return ClientHello.parse(messages[0].body)


@contextlib.contextmanager
def hello_then_abort_server(alert: int = 80, suites: tuple[int, ...] = HELLO_THEN_ABORT_SUITES) -> Iterator[Served]:
    """A server that answers a ClientHello offering one of ``suites`` with a ServerHello and then aborts
    with ``alert`` (handshake_failure if nothing is in common): it answers, and no handshake ever
    completes, as a broken TLS stack behind a working front. Crafted bytes: no stack does this for real."""

    def handshake(conn: socket.socket) -> None:
        hello = _read_client_hello(conn)
        if hello is None:
            return
        answer = _server_hello_for(hello, suites)
        version = answer.selected_version if answer and answer.selected_version < TlsVersion.TLS1_3 else 0x0303
        if answer is not None:
            conn.sendall(Record(ContentType.HANDSHAKE, version,
                                Handshake(HandshakeType.SERVER_HELLO, answer.to_bytes()).to_bytes()).to_bytes())
        conn.sendall(Record(ContentType.ALERT, version, bytes([2, alert if answer else 40])).to_bytes())
        conn.recv(1)  # the client's own alert, or its close

    with _thread_server(handshake, smtp=False) as served:
        yield served


@contextlib.contextmanager
def heartbleed_server() -> Iterator[Served]:
    """A server with the Heartbleed bug (CVE-2014-0160), in crafted bytes: the OpenSSL releases that had it
    (1.0.1-1.0.1f) are not installable here, OpenSSL 3 dropped heartbeats and tlslite-ng checks the length.
    A hello offering heartbeats gets ServerHello (echoing the extension) and ServerHelloDone; a heartbeat
    request then gets its claimed payload_length in "memory". Any other hello: ServerHello, internal_error."""

    def handshake(conn: socket.socket) -> None:
        hello = _read_client_hello(conn)
        answer = _server_hello_for(hello, HELLO_THEN_ABORT_SUITES) if hello else None
        if hello is None or answer is None:
            return
        version = min(answer.selected_version, 0x0303)
        heartbeat = any(e.type == ExtensionType.HEARTBEAT for e in hello.extensions)
        if heartbeat:
            answer = ServerHello(answer.version, answer.random, answer.session_id, answer.cipher_suite, 0,
                                 answer.extensions + (Extension(ExtensionType.HEARTBEAT, b"\x01"),))
        flight = Handshake(HandshakeType.SERVER_HELLO, answer.to_bytes()).to_bytes()
        if not heartbeat:
            conn.sendall(Record(ContentType.HANDSHAKE, version, flight).to_bytes()
                         + Record(ContentType.ALERT, version, bytes([2, 80])).to_bytes())
            return
        flight += Handshake(HandshakeType.SERVER_HELLO_DONE, b"").to_bytes()
        conn.sendall(Record(ContentType.HANDSHAKE, version, flight).to_bytes())
        header = conn.recv(Record.HEADER, socket.MSG_WAITALL)
        request = conn.recv(int.from_bytes(header[3:5], "big"), socket.MSG_WAITALL) if len(header) == 5 else b""
        if header[:1] == bytes([ContentType.HEARTBEAT]) and len(request) >= 3:
            claimed = int.from_bytes(request[1:3], "big")
            leak = b"\x02" + request[1:3] + b"MAIL FROM:<ceo@example.test> AUTH PLAIN ..."[:claimed].ljust(claimed, b"\0")
            conn.sendall(Record(ContentType.HEARTBEAT, version, leak + os.urandom(16)).to_bytes())

    with _thread_server(handshake, smtp=False) as served:
        yield served


@contextlib.contextmanager
def ccs_injection_server() -> Iterator[Served]:
    """A server with the CCS injection bug (CVE-2014-0224), in crafted bytes: the OpenSSL releases that had it
    (before 0.9.8za, 1.0.0m, 1.0.1h) are not installable here, and OpenSSL 3 and tlslite-ng refuse an early
    ChangeCipherSpec. Every hello gets ServerHello and ServerHelloDone (static RSA); a ChangeCipherSpec next
    is taken, and the record after it fails to decrypt under keys from an empty master secret (bad_record_mac)."""

    def handshake(conn: socket.socket) -> None:
        hello = _read_client_hello(conn)
        answer = _server_hello_for(hello, (0x002F,)) if hello else None
        if answer is None:
            return
        version = answer.selected_version
        flight = (Handshake(HandshakeType.SERVER_HELLO, answer.to_bytes()).to_bytes()
                  + Handshake(HandshakeType.SERVER_HELLO_DONE, b"").to_bytes())
        conn.sendall(Record(ContentType.HANDSHAKE, version, flight).to_bytes())
        header = conn.recv(Record.HEADER, socket.MSG_WAITALL)
        if header[:1] != bytes([ContentType.CHANGE_CIPHER_SPEC]):
            conn.sendall(Record(ContentType.ALERT, version, bytes([2, 80])).to_bytes())
            return
        conn.recv(int.from_bytes(header[3:5], "big"), socket.MSG_WAITALL)
        conn.recv(Record.HEADER, socket.MSG_WAITALL)  # the record now read under the injected keys
        conn.sendall(Record(ContentType.ALERT, version, bytes([2, 20])).to_bytes())

    with _thread_server(handshake, smtp=False) as served:
        yield served


@contextlib.contextmanager
def openssl_s_server(*options: str) -> Iterator[Served]:
    """``openssl s_server`` (OpenSSL's own server program, which speaks no mail protocol) on 127.0.0.1 with
    ``options``, as implicit TLS: for what Python's ssl cannot configure, such as ``-early_data``. Ready when
    it prints its ACCEPT line (flushed even into a pipe), which also names the port it took."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = rsa_leaf().write(Path(tmp), "leaf")
        server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert_path),
                                   "-key", str(key_path), *options], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert server.stdout is not None
        port: list[int] = []
        ready = threading.Event()

        def drain() -> None:  # read every line, so a full pipe never stalls the server
            for line in server.stdout:  # type: ignore[union-attr]
                if line.startswith(b"ACCEPT ") and not port:
                    port.append(int(line.rsplit(b":", 1)[1]))
                    ready.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            if not ready.wait(IO_TIMEOUT):
                raise RuntimeError(f"openssl s_server {' '.join(options)} printed no ACCEPT line within "
                                   f"{IO_TIMEOUT:g} s (exit status {server.poll()})")
            yield Served(Endpoint(Service.SUBMISSIONS, "node1", "localhost", port[0], "127.0.0.1"))
        finally:
            server.kill()
            server.wait(IO_TIMEOUT)
            reader.join(IO_TIMEOUT)
