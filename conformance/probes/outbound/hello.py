"""What the sender offered in its ClientHello, read from the first bytes after STARTTLS with the project's
own TLS wire parser (the TLS stack of the MX host would only say what was *negotiated*)."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.probes.tls.suites import CipherSuite, Grade, suite
from conformance.probes.tls.wire import (
    ClientHello,
    ContentType,
    DecodeError,
    ExtensionType,
    HandshakeBuffer,
    HandshakeType,
    Reader,
    Record,
    TlsVersion,
    describe,
)

SIGNALLING = frozenset({0x00FF, 0x5600})   # RFC 5746 and RFC 7507 SCSVs: no suite at all


def _grease(code: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ...): deliberately unknown, never negotiated."""
    return code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF


@dataclass(frozen=True)
class OfferedHello:
    versions: tuple[int, ...]
    suites: tuple[int, ...]
    sni: str | None

    @classmethod
    def parse(cls, data: bytes) -> OfferedHello:
        """The first ClientHello in ``data`` (records as sent). Raises DecodeError on anything else."""
        buffer, offset = HandshakeBuffer(), 0
        while offset + Record.HEADER <= len(data):
            content_type, _, length = Record.parse_header(data[offset:offset + Record.HEADER])
            payload = data[offset + Record.HEADER:offset + Record.HEADER + length]
            offset += Record.HEADER + length
            if content_type != ContentType.HANDSHAKE:
                raise DecodeError(f"the client sent a {describe(ContentType, content_type)} record first")
            for message in buffer.feed(payload):
                if message.msg_type != HandshakeType.CLIENT_HELLO:
                    raise DecodeError("the first handshake message is not a ClientHello")
                return cls.of(ClientHello.parse(message.body))
        raise DecodeError(f"no complete ClientHello in the {len(data)} bytes the client sent")

    @classmethod
    def of(cls, hello: ClientHello) -> OfferedHello:
        extensions = {e.type: e.data for e in hello.extensions}
        listed = extensions.get(ExtensionType.SUPPORTED_VERSIONS)
        versions = (Reader(listed, "supported_versions").uints(1, 2) if listed is not None
                    else tuple(v for v in TlsVersion if TlsVersion.SSL3 <= v <= hello.version))
        sni = _server_name(extensions.get(ExtensionType.SERVER_NAME))
        return cls(tuple(v for v in versions if not _grease(v)), hello.cipher_suites, sni)

    @property
    def legacy_versions(self) -> tuple[str, ...]:
        return tuple(str(TlsVersion(v)) for v in self.versions if v in set(TlsVersion) and v < TlsVersion.TLS1_2)

    @property
    def broken_suites(self) -> tuple[CipherSuite, ...]:
        offered = (suite(c) for c in self.suites if c not in SIGNALLING and not _grease(c))
        return tuple(s for s in offered if s.registered and s.grade is Grade.INSECURE)


def _server_name(data: bytes | None) -> str | None:
    """The host_name entry of a server_name extension (RFC 6066 §3)."""
    if not data:
        return None
    names = Reader(data, "server_name").vector(2, "server_name_list")
    while names.remaining():
        kind = names.uint(1, "name_type")
        value = names.vector(2, "host_name").take_all()
        if kind == 0:
            return value.decode("ascii", "replace")
    return None
