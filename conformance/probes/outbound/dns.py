"""The lab's authoritative DNS: the suite's zone over UDP and TCP, nothing else (REFUSED outside it).

asyncio, so it shares the event loop of the lab's MX hosts; dnspython builds every answer. With the DO
bit it adds RRSIGs, and for NODATA or NXDOMAIN the SOA and the NSEC proof, so a validating resolver in
front of it (Unbound with the lab's trust anchor, or the gateway's own validator) can prove absence.
Answers that do not fit UDP are truncated (TC) and the client retries over TCP (RFC 7766).
"""

from __future__ import annotations

import asyncio
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone

READ_TIMEOUT = 5.0


class LabDns:
    """Serve ``zone`` on (address, port) until ``close()``."""

    def __init__(self, zone: dns.zone.Zone) -> None:
        self.zone = zone
        origin = zone.origin
        assert origin is not None
        self.origin = origin
        self.queries: list[tuple[str, str]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, address: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, address, port)
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(address, port))

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), READ_TIMEOUT))
            wire = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
            reply = self.answer(wire, udp=False)
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # a client that went away mid-query: nothing to answer
        finally:
            writer.close()

    def answer(self, wire: bytes, *, udp: bool = True) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not a DNS query: dropped, as a real server would
        response = dns.message.make_response(query)
        dnssec = bool(query.ednsflags & dns.flags.DO)
        for question in query.question:
            self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
            if not question.name.is_subdomain(self.origin):
                response.set_rcode(dns.rcode.REFUSED)   # only its own zone: never a resolver for others
                continue
            response.flags |= dns.flags.AA
            self._fill(response, question.name, question.rdtype, dnssec)
        limit = max(512, query.payload if query.edns >= 0 else 512) if udp else 65535
        out = response.to_wire(max_size=65535)
        if len(out) > limit:
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            out = response.to_wire(max_size=limit)
        return out

    def _fill(self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType,
              dnssec: bool) -> None:
        node = self.zone.get_node(name)
        found = node.get_rdataset(self.zone.rdclass, rdtype) if node is not None else None
        if found is not None:
            response.answer.append(self._rrset(name, found))
            if dnssec:
                self._add_sig(response.answer, name, rdtype)
            return
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = self.zone.get_rdataset(self.origin, dns.rdatatype.SOA)
        assert soa is not None
        response.authority.append(self._rrset(self.origin, soa))
        if dnssec:
            self._add_sig(response.authority, self.origin, dns.rdatatype.SOA)
            for owner in {self._nsec_owner(name), self.origin}:
                nsec = self.zone.get_rdataset(owner, dns.rdatatype.NSEC)
                if nsec is not None:
                    response.authority.append(self._rrset(owner, nsec))
                    self._add_sig(response.authority, owner, dns.rdatatype.NSEC)

    def _nsec_owner(self, name: dns.name.Name) -> dns.name.Name:
        """The name itself (NODATA) or the NSEC owner just before it in canonical order (NXDOMAIN)."""
        if self.zone.get_node(name) is not None:
            return name
        owners = sorted(n for n in self.zone.nodes if isinstance(n, dns.name.Name))
        before = [n for n in owners if n < name]
        return before[-1] if before else self.origin

    def _rrset(self, name: dns.name.Name, rdataset: object) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(name, self.zone.rdclass, rdataset.rdtype, rdataset.covers)  # type: ignore[attr-defined]
        rrset.update(rdataset)  # type: ignore[arg-type]
        return rrset

    def _add_sig(self, section: list[dns.rrset.RRset], name: dns.name.Name, covered: dns.rdatatype.RdataType) -> None:
        sigs = self.zone.get_rdataset(name, dns.rdatatype.RRSIG, covered)
        if sigs is not None:
            section.append(self._rrset(name, sigs))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: LabDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
