"""ROBOT (Return Of Bleichenbacher's Oracle Threat, CVE-2017-13099 and kin): does a server that decrypts an
RSA key exchange tell a well-formed PKCS#1 v1.5 block from a malformed one by its answer?

Each probe is one handshake offering only RSA key-exchange suites; after the server's first flight it gets
a ClientKeyExchange whose premaster block is well-formed or broken in one of the four ways the ROBOT paper
uses, encrypted with the key of the server's own certificate, then ChangeCipherSpec and a Finished that
cannot verify. A server without an oracle gives all five the same answer (its Finished check fails alike);
an oracle answers differently (an alert, a close, silence) for some. Payloads and decision follow the
ROBOT paper's detection script as sslyze's robot plugin does, without reusing their code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from conformance.probes.tls.hello import Refusal, read_record
from conformance.probes.tls.suites import LEGACY_SUITES
from conformance.probes.tls.vulns import CHANGE_CIPHER_SPEC, full_flight
from conformance.probes.tls.wire import (
    Alert,
    ClientHello,
    ContentType,
    DecodeError,
    Handshake,
    HandshakeType,
    Reader,
    Record,
    describe,
)

RSA_KEX_SUITES = tuple(s.code for s in LEGACY_SUITES if s.kex == "RSA")
_FILLER = b"\xab"  # non-zero PKCS#1 padding bytes: a zero would end the padding early
_SECRET = bytes(range(1, 47))  # the premaster's 46 random bytes, none zero (see NO_ZERO)
_FINISHED = bytes(80)  # an encrypted Finished of plausible size that no key makes verify


class Padding(Enum):
    """The five premaster blocks of the ROBOT paper; the value says what is wrong with each."""

    VALID = "a well-formed block"
    WRONG_FIRST_BYTES = "wrong first two bytes"
    MISPLACED_ZERO = "the 0x00 separator misplaced"
    NO_ZERO = "no 0x00 separator"
    WRONG_VERSION = "a wrong version in the premaster secret"


def premaster_block(padding: Padding, size: int, version: int) -> bytes:
    """The ``size``-byte plaintext block (RFC 8017 7.2.1 EME-PKCS1-v1_5, RFC 5246 7.4.7.1) for ``padding``."""
    filler = _FILLER * (size - 3 - 48)
    head, tail = {
        Padding.VALID: (b"\x00\x02", b"\x00" + version.to_bytes(2, "big") + _SECRET),
        Padding.WRONG_FIRST_BYTES: (b"\x41\x17", b"\x00" + version.to_bytes(2, "big") + _SECRET),
        Padding.MISPLACED_ZERO: (b"\x00\x02", b"\x11" + _SECRET + b"\x00\x11"),
        Padding.NO_ZERO: (b"\x00\x02", b"\x11\x11\x11" + _SECRET),
        Padding.WRONG_VERSION: (b"\x00\x02", b"\x00\x02\x02" + _SECRET),
    }[padding]
    return head + filler + tail


def encrypted_premaster(padding: Padding, key: RSAPublicKey, version: int) -> bytes:
    # Raw RSA by hand: cryptography only encrypts with correct padding, and four of the five blocks are not.
    numbers = key.public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    block = int.from_bytes(premaster_block(padding, size, version), "big")
    return pow(block, numbers.e, numbers.n).to_bytes(size, "big")


def server_key(certificate_body: bytes) -> RSAPublicKey:
    """The RSA key of the first certificate in a TLS 1.0-1.2 Certificate message (RFC 5246 7.4.2)."""
    chain = Reader(certificate_body, "Certificate").vector(3, "certificate_list")
    der = chain.vector(3, "ASN.1Cert").take_all()
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise DecodeError(f"the server's certificate does not parse ({exc})") from exc
    if not isinstance(key, RSAPublicKey):
        raise DecodeError(f"RSA key exchange chosen with a {type(key).__name__.removeprefix('_')} certificate")
    return key


@dataclass(frozen=True)
class RobotAnswer:
    """What the server did after the ClientKeyExchange, ChangeCipherSpec and Finished, in words."""

    text: str


async def robot_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: ClientHello,
                       padding: Padding, quiet: float) -> RobotAnswer | Refusal:
    """One ROBOT handshake; silence for ``quiet`` seconds is an answer too (some oracles time out)."""
    flight = await full_flight(reader, writer, hello)
    if isinstance(flight, Refusal):
        return flight
    certificate = flight.message(HandshakeType.CERTIFICATE)
    if certificate is None:
        raise DecodeError("RSA key exchange chosen without a Certificate message")
    secret = encrypted_premaster(padding, server_key(certificate.body), hello.version)
    key_exchange = Handshake(HandshakeType.CLIENT_KEY_EXCHANGE, len(secret).to_bytes(2, "big") + secret)
    version = flight.version
    writer.write(Record(ContentType.HANDSHAKE, version, key_exchange.to_bytes()).to_bytes()
                 + Record(ContentType.CHANGE_CIPHER_SPEC, version, CHANGE_CIPHER_SPEC).to_bytes()
                 + Record(ContentType.HANDSHAKE, version, _FINISHED).to_bytes())
    await writer.drain()
    try:
        record = await asyncio.wait_for(read_record(reader), quiet)
    except TimeoutError:
        return RobotAnswer(f"no answer within {quiet:g} s")
    if record is None:
        return RobotAnswer("closed the connection")
    content_type, payload = record
    if content_type == ContentType.ALERT and len(payload) >= 2:
        return RobotAnswer(str(Alert.parse(payload[:2])))
    return RobotAnswer(f"a {describe(ContentType, content_type)} record")


@dataclass(frozen=True)
class Robot:
    """``vulnerable`` is None when the answers settle nothing; ``reason`` says what the server did."""

    vulnerable: bool | None
    reason: str


def judge(rounds: list[dict[Padding, RobotAnswer]]) -> Robot:
    """No oracle if one round's five answers are alike; an oracle if they differ the same way twice."""
    first = rounds[0]
    if len(set(first.values())) == 1:
        return Robot(False, f"answered all five RSA premaster blocks (well-formed and malformed PKCS#1 v1.5) "
                            f"alike: {first[Padding.VALID].text}")
    told = "; ".join(f"{p.value}: {a.text}" for p, a in first.items())
    if any(later != first for later in rounds[1:]):
        return Robot(None, f"answered the RSA premaster blocks differently, but not the same way twice ({told})")
    return Robot(True, f"tells PKCS#1 v1.5 paddings apart in the RSA key exchange, the same way twice ({told})")
