"""TLS wire format for a prober: records, ClientHello, ServerHello, Alert, ServerKeyExchange.

Hand-written rather than tlslite-ng's messages: a prober must put any code point on the wire (every
IANA suite, SSL 3.0/SSLv2 hellos, signalling values) and survive any reply, and the handful of
messages it needs is smaller than adapting a full stack; tlslite-ng stays the independent legacy
*server* our tests scan.

Every message is symmetric (``parse(bytes)`` / ``to_bytes()``); every read goes through ``Reader``,
which checks lengths and raises ``DecodeError`` (a ``ProtocolViolation``); code points we do not know
are rendered ``unknown(0x2a)``, never a crash.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from enum import IntEnum

from conformance.probes.wire.outcome import ProtocolViolation


class DecodeError(ProtocolViolation):
    """The server sent bytes that are not a well-formed TLS message."""


class TlsVersion(IntEnum):
    SSL2 = 0x0002
    SSL3 = 0x0300
    TLS1_0 = 0x0301
    TLS1_1 = 0x0302
    TLS1_2 = 0x0303
    TLS1_3 = 0x0304

    def __str__(self) -> str:
        return _VERSION_LABELS[self]


_VERSION_LABELS = {
    TlsVersion.SSL2: "SSL 2.0", TlsVersion.SSL3: "SSL 3.0", TlsVersion.TLS1_0: "TLS 1.0",
    TlsVersion.TLS1_1: "TLS 1.1", TlsVersion.TLS1_2: "TLS 1.2", TlsVersion.TLS1_3: "TLS 1.3",
}


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


class HandshakeType(IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class ExtensionType(IntEnum):
    SERVER_NAME = 0
    TRUNCATED_HMAC = 4
    STATUS_REQUEST = 5
    HEARTBEAT = 15
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    EXTENDED_MASTER_SECRET = 23
    PADDING = 21
    ENCRYPT_THEN_MAC = 22
    SUPPORTED_VERSIONS = 43
    EARLY_DATA = 42
    KEY_SHARE = 51
    RENEGOTIATION_INFO = 0xFF01


class AlertDescription(IntEnum):
    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    DECRYPTION_FAILED = 21
    RECORD_OVERFLOW = 22
    DECOMPRESSION_FAILURE = 30
    HANDSHAKE_FAILURE = 40
    NO_CERTIFICATE = 41
    ILLEGAL_PARAMETER = 47
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    UNRECOGNIZED_NAME = 112
    NO_APPLICATION_PROTOCOL = 120


class NamedGroup(IntEnum):
    SECT163K1 = 1
    SECT163R2 = 3
    SECT233K1 = 6
    SECT233R1 = 7
    SECT283K1 = 9
    SECT283R1 = 10
    SECT409K1 = 11
    SECT409R1 = 12
    SECT571K1 = 13
    SECT571R1 = 14
    SECP160K1 = 15
    SECP160R1 = 16
    SECP160R2 = 17
    SECP192K1 = 18
    SECP192R1 = 19
    SECP224K1 = 20
    SECP224R1 = 21
    SECP256K1 = 22
    SECP256R1 = 23
    SECP384R1 = 24
    SECP521R1 = 25
    BRAINPOOLP256R1 = 26
    BRAINPOOLP384R1 = 27
    BRAINPOOLP512R1 = 28
    X25519 = 29
    X448 = 30
    BRAINPOOLP256R1TLS13 = 31
    BRAINPOOLP384R1TLS13 = 32
    BRAINPOOLP512R1TLS13 = 33
    FFDHE2048 = 256
    FFDHE3072 = 257
    FFDHE4096 = 258
    FFDHE6144 = 259
    FFDHE8192 = 260
    SECP256R1MLKEM768 = 0x11EB
    X25519MLKEM768 = 0x11EC

    def __str__(self) -> str:
        return self.name.lower()


def describe(kind: type[IntEnum], code: int) -> str:
    """A code point's name, or ``unknown(0x2a)`` for one the enum does not know."""
    try:
        member = kind(code)
    except ValueError:
        return f"unknown(0x{code:02x})"
    return str(member) if isinstance(member, (TlsVersion, NamedGroup)) else member.name.lower()


TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
TLS_FALLBACK_SCSV = 0x5600
COMPRESSION_NULL = 0
COMPRESSION_DEFLATE = 1
# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
MAX_RECORD = 2**14 + 2048  # RFC 5246 6.2.3: the largest ciphertext a peer may send


class Reader:
    """Length-checked cursor over bytes; every over-read is a DecodeError naming what was read."""

    def __init__(self, data: bytes, what: str = "message") -> None:
        self._data = bytes(data)
        self._pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int, field_name: str = "field") -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise DecodeError(f"{self.what}: {field_name} needs {n} bytes, {self.remaining()} left")
        chunk = self._data[self._pos:self._pos + n]
        self._pos += n
        return chunk

    def take_all(self) -> bytes:
        return self.take(self.remaining())

    def uint(self, size: int, field_name: str = "field") -> int:
        return int.from_bytes(self.take(size, field_name), "big")

    def vector(self, length_size: int, field_name: str = "vector") -> Reader:
        """A length-prefixed sub-structure, read by its own Reader."""
        length = self.uint(length_size, f"{field_name} length")
        return Reader(self.take(length, field_name), f"{self.what}.{field_name}")

    def uints(self, length_size: int, item_size: int, field_name: str = "list") -> tuple[int, ...]:
        inner = self.vector(length_size, field_name)
        if inner.remaining() % item_size:
            raise DecodeError(f"{self.what}: {field_name} length is not a multiple of {item_size}")
        return tuple(inner.uint(item_size) for _ in range(inner.remaining() // item_size))

    def expect_end(self) -> None:
        if self.remaining():
            raise DecodeError(f"{self.what}: {self.remaining()} trailing bytes")


def _vec(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def _uints(length_size: int, item_size: int, values: tuple[int, ...]) -> bytes:
    return _vec(length_size, b"".join(v.to_bytes(item_size, "big") for v in values))


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    payload: bytes

    HEADER = 5

    @classmethod
    def parse_header(cls, header: bytes) -> tuple[int, int, int]:
        """(content type, version, payload length) of a record header; rejects non-TLS bytes early."""
        reader = Reader(header, "record header")
        content_type, version, length = reader.uint(1), reader.uint(2), reader.uint(2)
        if content_type not in {t.value for t in ContentType} or version >> 8 not in (0x02, 0x03):
            raise DecodeError(f"not a TLS record: header {header.hex()}")
        if length > MAX_RECORD:
            raise DecodeError(f"record of {length} bytes exceeds the TLS maximum {MAX_RECORD}")
        return content_type, version, length

    @classmethod
    def parse(cls, data: bytes) -> Record:
        content_type, version, length = cls.parse_header(data[: cls.HEADER])
        reader = Reader(data[cls.HEADER:], "record")
        record = cls(content_type, version, reader.take(length, "payload"))
        reader.expect_end()
        return record

    def to_bytes(self) -> bytes:
        return bytes([self.content_type]) + self.version.to_bytes(2, "big") + _vec(2, self.payload)


@dataclass(frozen=True)
class Extension:
    type: int
    data: bytes = b""

    @property
    def label(self) -> str:
        return describe(ExtensionType, self.type)


def _parse_extensions(reader: Reader) -> tuple[Extension, ...]:
    if not reader.remaining():  # RFC 5246 7.4.1.2: the extensions block may be absent entirely
        return ()
    block = reader.vector(2, "extensions")
    found = []
    while block.remaining():
        ext_type = block.uint(2, "extension type")
        found.append(Extension(ext_type, block.vector(2, f"extension {ext_type}").take_all()))
    return tuple(found)


def _extensions_bytes(extensions: tuple[Extension, ...], *, omit_empty: bool) -> bytes:
    if not extensions and omit_empty:
        return b""
    return _vec(2, b"".join(e.type.to_bytes(2, "big") + _vec(2, e.data) for e in extensions))


@dataclass(frozen=True)
class Handshake:
    msg_type: int
    body: bytes

    def to_bytes(self) -> bytes:
        return bytes([self.msg_type]) + _vec(3, self.body)


@dataclass(frozen=True)
class ClientHello:
    version: int
    cipher_suites: tuple[int, ...]
    extensions: tuple[Extension, ...] = ()
    compression_methods: tuple[int, ...] = (COMPRESSION_NULL,)
    random: bytes = field(default_factory=lambda: os.urandom(32))
    session_id: bytes = b""

    @classmethod
    def parse(cls, body: bytes) -> ClientHello:
        reader = Reader(body, "ClientHello")
        version, random = reader.uint(2, "version"), reader.take(32, "random")
        session_id = reader.vector(1, "session_id").take_all()
        suites = reader.uints(2, 2, "cipher_suites")
        compression = reader.uints(1, 1, "compression_methods")
        extensions = _parse_extensions(reader)
        reader.expect_end()
        return cls(version, suites, extensions, compression, random, session_id)

    def to_bytes(self) -> bytes:
        return (self.version.to_bytes(2, "big") + self.random + _vec(1, self.session_id)
                + _uints(2, 2, self.cipher_suites) + _uints(1, 1, self.compression_methods)
                + _extensions_bytes(self.extensions, omit_empty=True))

    def record(self) -> bytes:
        # Record version: SSL 3.0 for an SSL 3.0 hello, else TLS 1.0 (RFC 8446 5.1: what stacks expect).
        record_version = min(self.version, TlsVersion.TLS1_0)
        return Record(ContentType.HANDSHAKE, record_version,
                      Handshake(HandshakeType.CLIENT_HELLO, self.to_bytes()).to_bytes()).to_bytes()


@dataclass(frozen=True)
class ServerHello:
    version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...] = ()

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        reader = Reader(body, "ServerHello")
        version, random = reader.uint(2, "version"), reader.take(32, "random")
        session_id = reader.vector(1, "session_id").take_all()
        suite, compression = reader.uint(2, "cipher_suite"), reader.uint(1, "compression_method")
        extensions = _parse_extensions(reader)
        reader.expect_end()
        return cls(version, random, session_id, suite, compression, extensions)

    def to_bytes(self) -> bytes:
        return (self.version.to_bytes(2, "big") + self.random + _vec(1, self.session_id)
                + self.cipher_suite.to_bytes(2, "big") + bytes([self.compression_method])
                + _extensions_bytes(self.extensions, omit_empty=True))

    def extension(self, ext_type: int) -> bytes | None:
        return next((e.data for e in self.extensions if e.type == ext_type), None)

    @property
    def is_retry_request(self) -> bool:
        return self.random == HRR_RANDOM

    @property
    def selected_version(self) -> int:
        """The negotiated version: supported_versions (RFC 8446 4.2.1) wins over the legacy field."""
        data = self.extension(ExtensionType.SUPPORTED_VERSIONS)
        if data is None:
            return self.version
        reader = Reader(data, "supported_versions")
        version = reader.uint(2, "selected_version")
        reader.expect_end()
        return version

    @property
    def key_share_group(self) -> int | None:
        """The group of the server's key share, or the group a HelloRetryRequest asks for."""
        data = self.extension(ExtensionType.KEY_SHARE)
        if data is None:
            return None
        return Reader(data, "key_share").uint(2, "group")

    @property
    def secure_renegotiation(self) -> bool:
        return self.extension(ExtensionType.RENEGOTIATION_INFO) is not None

    @property
    def extended_master_secret(self) -> bool:
        return self.extension(ExtensionType.EXTENDED_MASTER_SECRET) is not None

    @property
    def encrypt_then_mac(self) -> bool:
        return self.extension(ExtensionType.ENCRYPT_THEN_MAC) is not None

    @property
    def truncated_hmac(self) -> bool:
        return self.extension(ExtensionType.TRUNCATED_HMAC) is not None

    @property
    def ocsp_stapling(self) -> bool:
        """RFC 6066 8: an empty status_request in the ServerHello promises a stapled OCSP response."""
        return self.extension(ExtensionType.STATUS_REQUEST) is not None


@dataclass(frozen=True)
class Alert:
    level: int
    description: int

    @classmethod
    def parse(cls, payload: bytes) -> Alert:
        reader = Reader(payload, "Alert")
        alert = cls(reader.uint(1, "level"), reader.uint(1, "description"))
        reader.expect_end()
        return alert

    def to_bytes(self) -> bytes:
        return bytes([self.level, self.description])

    def __str__(self) -> str:
        level = {1: "warning", 2: "fatal"}.get(self.level, f"unknown(0x{self.level:02x})")
        return f"{level} alert {describe(AlertDescription, self.description)}"


@dataclass(frozen=True)
class DheParams:
    """The finite-field group a DHE ServerKeyExchange carries (RFC 5246 7.4.3)."""

    prime: bytes
    generator: bytes
    public: bytes

    @property
    def bits(self) -> int:
        return int.from_bytes(self.prime, "big").bit_length()

    @classmethod
    def parse(cls, body: bytes) -> DheParams:
        reader = Reader(body, "ServerKeyExchange(DHE)")
        return cls(reader.vector(2, "dh_p").take_all(), reader.vector(2, "dh_g").take_all(),
                   reader.vector(2, "dh_Ys").take_all())  # the signature follows; not needed

    def to_bytes(self) -> bytes:
        return _vec(2, self.prime) + _vec(2, self.generator) + _vec(2, self.public)


@dataclass(frozen=True)
class EcdheParams:
    """The named curve an ECDHE ServerKeyExchange carries (RFC 8422 5.4)."""

    group: int
    public: bytes

    NAMED_CURVE = 3

    @classmethod
    def parse(cls, body: bytes) -> EcdheParams:
        reader = Reader(body, "ServerKeyExchange(ECDHE)")
        curve_type = reader.uint(1, "curve_type")
        if curve_type != cls.NAMED_CURVE:
            raise DecodeError(f"ServerKeyExchange: explicit curve parameters (type {curve_type})")
        return cls(reader.uint(2, "named_curve"), reader.vector(1, "point").take_all())

    def to_bytes(self) -> bytes:
        return bytes([self.NAMED_CURVE]) + self.group.to_bytes(2, "big") + _vec(1, self.public)


class HandshakeBuffer:
    """Reassembles handshake messages across records (RFC 5246 6.2.1 lets them span and share)."""

    # Certificate chains of 100+ KiB occur (long SAN lists, cross-signed paths); 512 KiB still bounds a hostile one
    MAX_MESSAGE = 2**19

    def __init__(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, payload: bytes) -> list[Handshake]:
        self._pending += payload
        messages = []
        while len(self._pending) >= 4:
            length = int.from_bytes(self._pending[1:4], "big")
            if length > self.MAX_MESSAGE:
                raise DecodeError(f"handshake message of {length} bytes exceeds {self.MAX_MESSAGE}")
            if len(self._pending) < 4 + length:
                break
            messages.append(Handshake(self._pending[0], self._pending[4:4 + length]))
            self._pending = self._pending[4 + length:]
        return messages


# --- ClientHello builders ------------------------------------------------------------------------

SIGNATURE_ALGORITHMS = (
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0809, 0x080A, 0x080B,
    0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602, 0x0203, 0x0201, 0x0202,
)
ALL_GROUPS: tuple[int, ...] = tuple(NamedGroup)
# Shares we can make with `cryptography`; a server wanting another group answers HelloRetryRequest.
KEY_SHARE_GROUPS = (NamedGroup.X25519, NamedGroup.SECP256R1)
SSL2_CIPHER_SPECS = (0x010080, 0x020080, 0x030080, 0x040080, 0x050080, 0x060040, 0x0700C0)


def _key_share_entry(group: int) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

    if group == NamedGroup.X25519MLKEM768:  # the ML-KEM-768 encapsulation key first, then X25519
        public = (mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()
                  + x25519.X25519PrivateKey.generate().public_key().public_bytes(
                      serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    elif group == NamedGroup.X25519:
        public = x25519.X25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif group == NamedGroup.SECP256R1:
        public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        raise ValueError(f"no key share generator for group {describe(NamedGroup, group)}")
    return group.to_bytes(2, "big") + _vec(2, public)


def _server_name(host: str | None) -> tuple[Extension, ...]:
    # RFC 6066 3: literal IP addresses are not permitted in server_name.
    if not host or host.replace(".", "").isdigit() or ":" in host:
        return ()
    name = host.rstrip(".").encode("idna")
    entry = b"\x00" + _vec(2, name)
    return (Extension(ExtensionType.SERVER_NAME, _vec(2, entry)),)


def _padded(hello: ClientHello) -> ClientHello:
    """RFC 7685 padding: some deployed stacks hang on hellos of 256-511 bytes (the "F5 bug"), which
    would turn a scan result into a timeout; pad such a hello to 512 bytes."""
    length = len(Handshake(HandshakeType.CLIENT_HELLO, hello.to_bytes()).to_bytes())
    if not hello.extensions or not 256 <= length < 512:
        return hello
    padding = Extension(ExtensionType.PADDING, bytes(max(0, 512 - length - 4)))
    return dataclasses.replace(hello, extensions=hello.extensions + (padding,))


# status_type ocsp(1), no responder IDs, no request extensions (RFC 6066 8)
OCSP_STATUS_REQUEST = b"\x01\x00\x00\x00\x00"


def legacy_hello(version: int, suites: tuple[int, ...], *, host: str | None = None,
                 groups: tuple[int, ...] = ALL_GROUPS, fallback: bool = False,
                 extra: tuple[Extension, ...] = ()) -> ClientHello:
    """An SSL 3.0 - TLS 1.2 ClientHello. It always offers DEFLATE (the ServerHello then tells whether
    the server compresses, at no extra connection) and the renegotiation SCSV (RFC 5746 3.3: the
    server's renegotiation_info answer is the secure-renegotiation finding), and from TLS 1.0 on asks
    for a stapled OCSP response (the ServerHello's answer is the stapling finding), the extended master
    secret, encrypt-then-MAC and truncated HMAC (the ServerHello's echo of each is its finding)."""
    signalling = (TLS_EMPTY_RENEGOTIATION_INFO_SCSV,) + ((TLS_FALLBACK_SCSV,) if fallback else ())
    extensions: tuple[Extension, ...] = ()
    if version >= TlsVersion.TLS1_0:
        extensions = _server_name(host) + (
            Extension(ExtensionType.SUPPORTED_GROUPS, _uints(2, 2, groups)),
            Extension(ExtensionType.EC_POINT_FORMATS, _uints(1, 1, (0,))),
            Extension(ExtensionType.STATUS_REQUEST, OCSP_STATUS_REQUEST),
            Extension(ExtensionType.EXTENDED_MASTER_SECRET, b""),
            Extension(ExtensionType.ENCRYPT_THEN_MAC, b""),
            Extension(ExtensionType.TRUNCATED_HMAC, b""),
        )
        if version >= TlsVersion.TLS1_2:
            extensions += (Extension(ExtensionType.SIGNATURE_ALGORITHMS, _uints(2, 2, SIGNATURE_ALGORITHMS)),)
        extensions += extra
    return _padded(ClientHello(version, tuple(suites) + signalling, extensions,
                               (COMPRESSION_DEFLATE, COMPRESSION_NULL)))


def obsolete_in_tls13(group: int) -> bool:
    """RFC 8446 4.2.7: the obsolete_RESERVED groups MUST NOT be offered in TLS 1.3 (tlslite-ng refuses such a
    hello with illegal_parameter, so a TLS 1.3 scan offering them missed TLS 1.3 there)."""
    return 0x0001 <= group <= 0x0016 or 0x001A <= group <= 0x001C or 0xFF01 <= group <= 0xFF02


def tls13_hello(suites: tuple[int, ...], *, host: str | None = None, groups: tuple[int, ...] = ALL_GROUPS,
                shares: tuple[int, ...] = KEY_SHARE_GROUPS) -> ClientHello:
    """A TLS 1.3-only ClientHello (RFC 8446 4.1.2): shares for the groups we can make that are offered;
    an empty share list is legal and makes the server name its choice in a HelloRetryRequest. Groups
    obsolete in TLS 1.3 are left out, and the shared groups lead supported_groups in the shares' order
    (RFC 8446 4.2.8: shares "MUST appear in the same order"; tlslite-ng enforces both)."""
    shares = tuple(g for g in shares if g in groups)
    groups = shares + tuple(g for g in groups if g not in shares and not obsolete_in_tls13(g))
    entries = b"".join(_key_share_entry(g) for g in shares if g in groups)
    extensions = _server_name(host) + (
        Extension(ExtensionType.SUPPORTED_VERSIONS, _uints(1, 2, (TlsVersion.TLS1_3,))),
        Extension(ExtensionType.SUPPORTED_GROUPS, _uints(2, 2, groups)),
        Extension(ExtensionType.SIGNATURE_ALGORITHMS, _uints(2, 2, SIGNATURE_ALGORITHMS)),
        Extension(ExtensionType.KEY_SHARE, _vec(2, entries)),
    )
    return _padded(ClientHello(TlsVersion.TLS1_2, tuple(suites), extensions, (COMPRESSION_NULL,),
                               session_id=os.urandom(32)))  # RFC 8446 D.4: middlebox compatibility


def ssl2_hello(specs: tuple[int, ...] = SSL2_CIPHER_SPECS) -> bytes:
    """An SSL 2.0 CLIENT-HELLO (two-byte header form); only its answer's type matters to us."""
    challenge = os.urandom(16)
    body = (bytes([1]) + TlsVersion.SSL2.to_bytes(2, "big") + (3 * len(specs)).to_bytes(2, "big")
            + (0).to_bytes(2, "big") + len(challenge).to_bytes(2, "big")
            + b"".join(s.to_bytes(3, "big") for s in specs) + challenge)
    return (0x8000 | len(body)).to_bytes(2, "big") + body
