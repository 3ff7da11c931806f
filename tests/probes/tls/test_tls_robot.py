"""ROBOT's premaster blocks, checked by decrypting them with the private key, and the oracle decision."""

from __future__ import annotations

import pytest
from certgen import issue
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.probes.tls.robot import Padding, RobotAnswer, encrypted_premaster, judge, server_key
from conformance.probes.tls.wire import DecodeError

pytestmark = pytest.mark.unit

KEY = rsa.generate_private_key(65537, 2048)


def _decrypts(block: Padding) -> bytes | None:
    """The message a strict PKCS#1 v1.5 decryption (RFC 8017 7.2.2) finds in the block, None if the padding
    is wrong. By hand: OpenSSL 3 answers a bad padding with a synthetic message (implicit rejection)."""
    numbers = KEY.private_numbers()
    secret = encrypted_premaster(block, KEY.public_key(), 0x0303)
    plain = pow(int.from_bytes(secret, "big"), numbers.d, numbers.public_numbers.n).to_bytes(len(secret), "big")
    separator = plain.find(b"\x00", 2)
    return plain[separator + 1:] if plain[:2] == b"\x00\x02" and separator >= 10 else None


def test_only_the_valid_and_wrong_version_blocks_are_well_formed_48_byte_secrets() -> None:
    assert _decrypts(Padding.VALID)[:2] == b"\x03\x03"  # type: ignore[index]
    assert _decrypts(Padding.WRONG_VERSION)[:2] == b"\x02\x02"  # type: ignore[index]
    assert len(_decrypts(Padding.VALID) or b"") == len(_decrypts(Padding.WRONG_VERSION) or b"") == 48
    assert _decrypts(Padding.WRONG_FIRST_BYTES) is None
    assert _decrypts(Padding.NO_ZERO) is None
    assert len(_decrypts(Padding.MISPLACED_ZERO) or b"") == 1


def test_the_key_comes_from_the_first_certificate_and_must_be_rsa() -> None:
    def message(der: bytes) -> bytes:
        entry = len(der).to_bytes(3, "big") + der
        return len(entry).to_bytes(3, "big") + entry

    leaf = issue("localhost", key=KEY)
    assert server_key(message(leaf.der)).public_numbers() == KEY.public_key().public_numbers()
    with pytest.raises(DecodeError, match="RSA key exchange chosen with a"):
        server_key(message(issue("localhost").der))  # an EC certificate


def test_differing_answers_are_an_oracle_only_when_repeated() -> None:
    alike = dict.fromkeys(Padding, RobotAnswer("fatal alert bad_record_mac"))
    oracle = {**alike, Padding.NO_ZERO: RobotAnswer("closed the connection")}
    assert judge([alike]).vulnerable is False
    assert judge([oracle, oracle]).vulnerable is True
    assert "no 0x00 separator: closed the connection" in judge([oracle, oracle]).reason
    assert judge([oracle, alike]).vulnerable is None
