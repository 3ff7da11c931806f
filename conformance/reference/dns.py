"""A tiny loopback DNS responder for the reference gateway: the demo domain's zone, signed or not.

Built on dnspython's message support (parse the query, ``make_response``, add RRsets), so the DNS
probes of the suite are exercised end to end over real UDP and TCP. Answers only the names it holds
(NXDOMAIN otherwise; NOERROR with no answer for a known name and another type), follows CNAMEs inside
its data, adds RRSIGs when the query sets the DO bit, and sets TC when an answer does not fit the
client's UDP size, so clients retry over TCP (RFC 7766). Server threads with socket timeouts so
``stop()`` returns promptly; listens on 127.0.0.1 only, port 0 (the same port for UDP and TCP).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

TTL = 60
MAX_ALIASES = 8  # a CNAME chain longer than this is answered as it stands (loops end here)


class DnsResponder:
    """``DnsResponder.for_domain("example.test", {"mx1.example.test": "127.0.0.1", ...})``; use as a
    context manager or ``start()``/``stop()``; ``address`` is "127.0.0.1:port" (a target's resolver)."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]] | None = None) -> None:
        # (name, type) -> rdata texts, e.g. ("example.test", "MX") -> ["10 mx1.example.test."]
        self.queries: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self.servfail: set[str] = set()   # names answered SERVFAIL (a broken upstream, for probe tests)
        self.strip_signatures = False     # answer DO queries without RRSIGs (a resolver that drops them)
        self._rrsets: dict[tuple[str, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        self._sigs: dict[tuple[str, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        self._names: set[str] = set()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.load_records(records or {})

    @classmethod
    def for_domain(cls, domain: str, hosts: Mapping[str, str], *, first_preference: int = 10) -> DnsResponder:
        """MX records for ``domain`` (preferences 10, 20, ... in the given order) and an A record per host."""
        return cls(domain_records(domain, hosts, first_preference=first_preference))

    def load_records(self, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        """Serve exactly these records (unsigned) from now on."""
        self._load(dns.rrset.from_text_list(_canonical(name), TTL, dns.rdataclass.IN, rtype.upper(), list(texts))
                   for (name, rtype), texts in records.items() if texts)

    def load_zone(self, *zones: dns.zone.Zone) -> None:
        """Serve every RRset of these (possibly signed) zones from now on; RRSIGs go out with DO queries only."""
        rrsets = []
        for zone in zones:
            origin = zone.origin
            assert origin is not None, "a zone built from text always has an origin"
            for name, rdataset in zone.iterate_rdatasets():
                # rdata in a relativized zone hold relative names: written out absolute, they go on the wire
                texts = [rd.to_text(origin=origin, relativize=False) for rd in rdataset]
                rrsets.append(dns.rrset.from_text_list(name.derelativize(origin), rdataset.ttl, rdataset.rdclass,
                                                       rdataset.rdtype, texts))
        self._load(rrsets)

    def _load(self, rrsets: Iterable[dns.rrset.RRset]) -> None:
        plain: dict[tuple[str, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        sigs: dict[tuple[str, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        for rrset in rrsets:
            key = (rrset.name.to_text().lower(), rrset.covers if rrset.rdtype == dns.rdatatype.RRSIG else rrset.rdtype)
            (sigs if rrset.rdtype == dns.rdatatype.RRSIG else plain)[key] = rrset
        # swapped whole, so the serving thread never sees half a zone
        self._rrsets, self._sigs, self._names = plain, sigs, {name for name, _ in plain}

    @property
    def records(self) -> dict[tuple[str, str], list[str]]:
        """What is served, as (name, type) -> rdata texts (signatures left out)."""
        return {(name, dns.rdatatype.to_text(rdtype)): [r.to_text() for r in rrset]
                for (name, rdtype), rrset in self._rrsets.items()}

    @property
    def port(self) -> int:
        if not self._sockets:
            raise RuntimeError("DNS responder not started")
        return int(self._sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        udp, tcp = _bind_pair()
        for sock in (udp, tcp):
            sock.settimeout(0.2)  # how often the loops look at the stop flag
        self._sockets = [udp, tcp]
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._serve_udp, args=(udp,), name="reference-dns", daemon=True),
                         threading.Thread(target=self._serve_tcp, args=(tcp,), name="reference-dns-tcp",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def check_errors(self) -> None:
        """Re-raise the first error raised while answering (a responder bug, not a client's bad packet)."""
        if self.errors:
            raise self.errors[0]

    def _reply(self, data: bytes, udp: bool) -> bytes | None:
        try:
            dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None  # not a DNS query: drop it, as a real server would
        try:
            return self.answer(data, udp=udp)
        except Exception as exc:  # noqa: BLE001 - kept for check_errors(), the thread must go on
            self.errors.append(exc)
            return None

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._reply(data, udp=True)
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    continue

    def _serve_tcp(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    (length,) = struct.unpack("!H", _read_exactly(conn, 2))
                    reply = self._reply(_read_exactly(conn, length), udp=False)
                    if reply is not None:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    continue

    def answer(self, wire: bytes, *, udp: bool = True) -> bytes:
        """The response to one query packet, as wire bytes (truncated with TC if it does not fit UDP)."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        dnssec = bool(query.ednsflags & dns.flags.DO) and not self.strip_signatures
        if dnssec:
            response.ednsflags |= dns.flags.DO  # RFC 3225 §3: a server that understands DO echoes it
        for question in query.question:
            name = question.name.to_text().lower()
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                continue
            self._add_answer(response, name, question.rdtype, dnssec)
        limit = max(512, query.payload if query.edns >= 0 else 512) if udp else 65535
        wire_out = response.to_wire(max_size=65535)
        if len(wire_out) > limit:
            response.answer.clear()
            response.flags |= dns.flags.TC
            wire_out = response.to_wire(max_size=limit)
        return wire_out

    def _add_answer(self, response: dns.message.Message, name: str, rdtype: dns.rdatatype.RdataType,
                    dnssec: bool) -> None:
        for _ in range(MAX_ALIASES):
            found = self._rrsets.get((name, rdtype))
            alias = self._rrsets.get((name, dns.rdatatype.CNAME)) if rdtype != dns.rdatatype.CNAME else None
            chosen = found or alias
            if chosen is None:
                if name not in self._names:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            response.answer.append(chosen)
            signature = self._sigs.get((name, chosen.rdtype))
            if dnssec and signature is not None:
                response.answer.append(signature)
            if found is not None or alias is None:
                return
            name = alias[0].target.to_text().lower()


def domain_records(domain: str, hosts: Mapping[str, str], *,
                   first_preference: int = 10) -> dict[tuple[str, str], list[str]]:
    """MX records for ``domain`` (preferences 10, 20, ... in the given order) and an A record per host."""
    records: dict[tuple[str, str], list[str]] = {
        (domain, "MX"): [f"{first_preference + 10 * i} {_canonical(h)}" for i, h in enumerate(hosts)]}
    for host, address in hosts.items():
        records[(host, "A")] = [address]
    return records


def _bind_pair(attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port (a resolver falls back to TCP on the same port)."""
    for _ in range(attempts):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:  # the TCP side of that port is taken: try another port
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise OSError(f"no free port for both UDP and TCP on 127.0.0.1 after {attempts} tries")


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed mid-message")
        data += chunk
    return data


def _canonical(name: str) -> str:
    return name.rstrip(".").lower() + "."
