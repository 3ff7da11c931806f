"""A tiny loopback DNS responder for the reference gateway: MX and A records of the demo domain.

Built on dnspython's message support (parse the query, ``make_response``, add an RRset), so the MX
path of the suite (``probes.dns``) is exercised end to end over real UDP. Answers only the names it
holds (NXDOMAIN otherwise; NOERROR with no answer for a known name and another type). A server
thread with a socket timeout so ``stop()`` returns promptly; listens on 127.0.0.1 only, port 0.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
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

TTL = 60


class DnsResponder:
    """``DnsResponder.for_domain("example.test", {"mx1.example.test": "127.0.0.1", ...})``; use as a
    context manager or ``start()``/``stop()``; ``address`` is "127.0.0.1:port" (a target's resolver)."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        # (name, type) -> rdata texts, e.g. ("example.test", "MX") -> ["10 mx1.example.test."]
        self.records = {(_canonical(name), rtype.upper()): list(texts) for (name, rtype), texts in records.items()}
        self.queries: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def for_domain(cls, domain: str, hosts: Mapping[str, str], *, first_preference: int = 10) -> DnsResponder:
        """MX records for ``domain`` (preferences 10, 20, ... in the given order) and an A record per host."""
        records: dict[tuple[str, str], list[str]] = {
            (domain, "MX"): [f"{first_preference + 10 * i} {_canonical(h)}" for i, h in enumerate(hosts)]}
        for host, address in hosts.items():
            records[(host, "A")] = [address]
        return cls(records)

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("DNS responder not started")
        return int(self._socket.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)  # how often the loop looks at the stop flag
        self._socket = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="reference-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def check_errors(self) -> None:
        """Re-raise the first error raised while answering (a responder bug, not a client's bad packet)."""
        if self.errors:
            raise self.errors[0]

    def _serve(self) -> None:
        assert self._socket is not None
        sock = self._socket
        while not self._stopping.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self.answer(data)
            except dns.exception.DNSException:
                continue  # not a DNS query: drop it, as a real server would
            except Exception as exc:  # noqa: BLE001 - kept for check_errors(), the thread must go on
                self.errors.append(exc)
                continue
            try:
                sock.sendto(reply, peer)
            except OSError:
                continue

    def answer(self, wire: bytes) -> bytes:
        """The response to one query packet, as wire bytes."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = _canonical(question.name.to_text())
            rtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rtype))
            texts = self.records.get((name, rtype))
            if texts:
                response.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, rtype, texts))
            elif not any(known == name for known, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


def _canonical(name: str) -> str:
    return name.rstrip(".").lower() + "."
