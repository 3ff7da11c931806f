"""TLS wire format: symmetric parse/to_bytes, a length-checked reader, unknown code points named."""

from __future__ import annotations

import os

import pytest

from conformance.probes.tls.wire import (
    HRR_RANDOM,
    MAX_RECORD,
    Alert,
    AlertDescription,
    ClientHello,
    ContentType,
    DecodeError,
    DheParams,
    EcdheParams,
    Extension,
    ExtensionType,
    Handshake,
    HandshakeBuffer,
    HandshakeType,
    NamedGroup,
    Reader,
    Record,
    ServerHello,
    TlsVersion,
    describe,
    legacy_hello,
    ssl2_hello,
    tls13_hello,
)
from conformance.probes.wire.outcome import ProtocolViolation

pytestmark = pytest.mark.unit


def _server_hello(**overrides: object) -> ServerHello:
    fields: dict[str, object] = {"version": 0x0303, "random": os.urandom(32), "session_id": b"\x01" * 32,
                                     "cipher_suite": 0xC02F, "compression_method": 0,
                                     "extensions": (Extension(ExtensionType.RENEGOTIATION_INFO, b"\x00"),)}
    fields.update(overrides)
    return ServerHello(**fields)  # type: ignore[arg-type]


def test_reader_refuses_to_read_past_the_end() -> None:
    reader = Reader(b"\x00\x05abc", "test")
    with pytest.raises(DecodeError, match="needs 5 bytes, 3 left"):
        reader.vector(2, "payload")


def test_decode_error_is_a_protocol_violation() -> None:
    assert issubclass(DecodeError, ProtocolViolation)


def test_reader_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        Alert.parse(b"\x02\x28\x00")


@pytest.mark.parametrize("hello", [
    legacy_hello(TlsVersion.TLS1_2, (0xC02F, 0x002F), host="mx.example.test"),
    legacy_hello(TlsVersion.SSL3, (0x0005,)),
    legacy_hello(TlsVersion.TLS1_0, (0x002F,), fallback=True),
    tls13_hello((0x1301, 0x1302), host="mx.example.test"),
    tls13_hello((0x1301,), groups=(NamedGroup.SECP384R1,)),
])
def test_client_hello_round_trips(hello: ClientHello) -> None:
    assert ClientHello.parse(hello.to_bytes()) == hello
    record = Record.parse(hello.record())
    assert record.content_type == ContentType.HANDSHAKE
    assert record.payload[0] == HandshakeType.CLIENT_HELLO


def test_legacy_hello_offers_deflate_and_the_renegotiation_scsv() -> None:
    hello = legacy_hello(TlsVersion.TLS1_2, (0x002F,), fallback=True)
    assert hello.compression_methods == (1, 0)
    assert hello.cipher_suites == (0x002F, 0x00FF, 0x5600)


def test_ssl3_hello_has_no_extensions_and_an_ssl3_record() -> None:
    hello = legacy_hello(TlsVersion.SSL3, (0x0005,))
    assert hello.extensions == ()
    assert Record.parse(hello.record()).version == TlsVersion.SSL3


def test_no_server_name_for_ip_literals() -> None:
    types = {e.type for e in legacy_hello(TlsVersion.TLS1_2, (0x2F,), host="127.0.0.1").extensions}
    assert ExtensionType.SERVER_NAME not in types
    types = {e.type for e in legacy_hello(TlsVersion.TLS1_2, (0x2F,), host="::1").extensions}
    assert ExtensionType.SERVER_NAME not in types


def test_tls13_hello_without_shareable_groups_sends_an_empty_key_share() -> None:
    hello = tls13_hello((0x1301,), groups=(NamedGroup.SECP384R1,))
    key_share = next(e for e in hello.extensions if e.type == ExtensionType.KEY_SHARE)
    assert key_share.data == b"\x00\x00"


def test_server_hello_round_trips_and_reads_extensions() -> None:
    hello = _server_hello()
    assert ServerHello.parse(hello.to_bytes()) == hello
    assert hello.secure_renegotiation
    assert hello.selected_version == TlsVersion.TLS1_2
    assert not hello.is_retry_request


def test_server_hello_without_extensions_block() -> None:
    hello = _server_hello(extensions=())
    assert ServerHello.parse(hello.to_bytes()).extensions == ()
    assert not hello.secure_renegotiation


def test_tls13_server_hello_and_retry_request() -> None:
    hello = _server_hello(cipher_suite=0x1301, extensions=(
        Extension(ExtensionType.SUPPORTED_VERSIONS, b"\x03\x04"),
        Extension(ExtensionType.KEY_SHARE, b"\x00\x17"),
    ), random=HRR_RANDOM)
    parsed = ServerHello.parse(hello.to_bytes())
    assert parsed.selected_version == TlsVersion.TLS1_3
    assert parsed.is_retry_request
    assert parsed.key_share_group == NamedGroup.SECP256R1


def test_alert_round_trip_and_unknown_description() -> None:
    alert = Alert(2, AlertDescription.INAPPROPRIATE_FALLBACK)
    assert Alert.parse(alert.to_bytes()) == alert
    assert str(alert) == "fatal alert inappropriate_fallback"
    assert str(Alert(7, 0x2A)) == "unknown(0x07) alert unknown(0x2a)"


def test_describe_renders_unknown_code_points() -> None:
    assert describe(TlsVersion, 0x0303) == "TLS 1.2"
    assert describe(TlsVersion, 0x7F1C) == "unknown(0x7f1c)"
    assert describe(NamedGroup, 29) == "x25519"
    assert describe(ExtensionType, 0x2F00) == "unknown(0x2f00)"


def test_record_round_trip_and_limits() -> None:
    record = Record(ContentType.ALERT, 0x0303, b"\x02\x28")
    assert Record.parse(record.to_bytes()) == record
    with pytest.raises(DecodeError, match="exceeds"):
        Record.parse_header(bytes([22, 3, 3]) + (MAX_RECORD + 1).to_bytes(2, "big"))
    with pytest.raises(DecodeError, match="not a TLS record"):
        Record.parse_header(b"220 m")


def test_key_exchange_params_round_trip() -> None:
    dhe = DheParams(b"\xff" * 256, b"\x02", b"\x01" * 256)
    assert DheParams.parse(dhe.to_bytes() + b"signature") == dhe
    assert dhe.bits == 2048
    ecdhe = EcdheParams(NamedGroup.X25519, b"\x09" * 32)
    assert EcdheParams.parse(ecdhe.to_bytes()) == ecdhe
    with pytest.raises(DecodeError, match="explicit curve"):
        EcdheParams.parse(b"\x01\x00\x17")


def test_handshake_buffer_reassembles_across_records() -> None:
    first, second = Handshake(2, b"a" * 10), Handshake(11, b"b" * 5)
    wire = first.to_bytes() + second.to_bytes()
    buffer = HandshakeBuffer()
    assert buffer.feed(wire[:7]) == []
    assert buffer.feed(wire[7:]) == [first, second]


def test_handshake_buffer_rejects_huge_messages() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        HandshakeBuffer().feed(b"\x0b\xff\xff\xff")


def test_ssl2_hello_shape() -> None:
    hello = ssl2_hello()
    assert hello[0] & 0x80 and hello[2] == 1
    assert int.from_bytes(hello[:2], "big") & 0x7FFF == len(hello) - 2


@pytest.mark.parametrize("hello", [
    tls13_hello((0x1301, 0x1302, 0x1303)),
    legacy_hello(TlsVersion.TLS1_2, tuple(range(0x2F, 0x2F + 60))),
])
def test_hellos_avoid_the_256_to_511_byte_range(hello: ClientHello) -> None:
    length = len(Handshake(HandshakeType.CLIENT_HELLO, hello.to_bytes()).to_bytes())
    assert not 256 <= length < 512
    assert ClientHello.parse(hello.to_bytes()) == hello


def test_a_server_hello_choosing_deflate_is_recorded_as_compression() -> None:
    """No TLS stack here compresses (OpenSSL 3 without zlib, tlslite-ng without compression), so the
    one place TLS-COMP-01's evidence comes from is proven on the ServerHello's wire bytes."""
    from conformance.probes.tls.hello import ServerFlight
    from conformance.probes.tls.scan import _Findings

    deflate = ServerHello.parse(_server_hello(compression_method=1).to_bytes())
    findings = _Findings()
    findings.learn(ServerFlight(deflate))
    assert findings.compression == {TlsVersion.TLS1_2: {True}}
    findings.learn(ServerFlight(_server_hello()))
    assert findings.compression[TlsVersion.TLS1_2] == {True, False}


def test_hellos_ask_for_ocsp_stapling_and_the_answer_is_read() -> None:
    from conformance.probes.tls.wire import OCSP_STATUS_REQUEST

    tls12 = legacy_hello(TlsVersion.TLS1_2, (0xC02F,))
    assert any(e.type == ExtensionType.STATUS_REQUEST and e.data == OCSP_STATUS_REQUEST for e in tls12.extensions)
    assert not legacy_hello(TlsVersion.SSL3, (0x002F,)).extensions
    stapling = _server_hello(extensions=(Extension(ExtensionType.STATUS_REQUEST, b""),))
    assert ServerHello.parse(stapling.to_bytes()).ocsp_stapling
    assert not _server_hello().ocsp_stapling


def test_hellos_offer_ems_etm_and_truncated_hmac_and_the_echoes_are_read() -> None:
    """Issue 16: one hello asks for all three; a ServerHello's echo of each is the server's answer, and a
    flight of a CBC suite without encrypt-then-MAC is remembered per suite."""
    from conformance.probes.tls.hello import ServerFlight
    from conformance.probes.tls.scan import _Findings

    offered = {e.type for e in legacy_hello(TlsVersion.TLS1_2, (0xC02F,)).extensions}
    assert {ExtensionType.EXTENDED_MASTER_SECRET, ExtensionType.ENCRYPT_THEN_MAC,
            ExtensionType.TRUNCATED_HMAC} <= offered
    echoed = _server_hello(cipher_suite=0xC013, extensions=(Extension(ExtensionType.EXTENDED_MASTER_SECRET, b""),
                                                            Extension(ExtensionType.TRUNCATED_HMAC, b"")))
    parsed = ServerHello.parse(echoed.to_bytes())
    assert parsed.extended_master_secret and parsed.truncated_hmac and not parsed.encrypt_then_mac
    findings = _Findings()
    findings.learn(ServerFlight(parsed))
    assert findings.ems == {TlsVersion.TLS1_2: {True}} and findings.truncated_hmac == {TlsVersion.TLS1_2: {True}}
    assert findings.etm_by_suite == {(TlsVersion.TLS1_2, 0xC013): {False}}


def test_tls13_hello_offers_no_obsolete_group_and_its_shares_in_supported_groups_order() -> None:
    """RFC 8446 4.2.7 (obsolete_RESERVED groups MUST NOT be offered) and 4.2.8 (shares in the same order):
    tlslite-ng refuses a hello breaking either with illegal_parameter."""
    hello = tls13_hello((0x1301,))
    groups_data = next(e.data for e in hello.extensions if e.type == ExtensionType.SUPPORTED_GROUPS)
    groups = [int.from_bytes(groups_data[i:i + 2], "big") for i in range(2, len(groups_data), 2)]
    shares_data = next(e.data for e in hello.extensions if e.type == ExtensionType.KEY_SHARE)
    shares, at = [], 2
    while at < len(shares_data):
        shares.append(int.from_bytes(shares_data[at:at + 2], "big"))
        at += 4 + int.from_bytes(shares_data[at + 2:at + 4], "big")
    assert not [g for g in groups if g <= 0x16 or 0x1A <= g <= 0x1C], groups
    assert shares == [NamedGroup.X25519, NamedGroup.SECP256R1]
    assert groups[:2] == shares and NamedGroup.X25519MLKEM768 in groups
