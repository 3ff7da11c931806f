"""Key-exchange strength: the size of each named group (IANA TLS Supported Groups registry) and the
finite-field primes that are known to be shared by many servers (Logjam's precomputation targets)."""

from __future__ import annotations

import re

from conformance.probes.tls.wire import NamedGroup

_CURVE_SIZE = re.compile(r"^(?:SECT|SECP|BRAINPOOLP)(\d{3})")
# Names that do not carry their size: the curve's field size in bits (a hybrid counts its classical half).
_SIZES = {NamedGroup.X25519: 255, NamedGroup.X448: 448,
          NamedGroup.SECP256R1MLKEM768: 256, NamedGroup.X25519MLKEM768: 255}


def is_finite_field(group: NamedGroup) -> bool:
    return group.name.startswith("FFDHE")


def group_bits(group: NamedGroup) -> int:
    """The field size of an elliptic curve, or the prime size of an RFC 7919 group, in bits."""
    if is_finite_field(group):
        return int(group.name.removeprefix("FFDHE"))
    if group in _SIZES:
        return _SIZES[group]
    match = _CURVE_SIZE.match(group.name)
    if match is None:
        raise ValueError(f"no size known for group {group}")
    return int(match.group(1))


# RFC 2409 6.2, the Second Oakley Group (1024 bits), checked against its defining formula
# 2^1024 - 2^960 - 1 + 2^64 * ([2^894 pi] + 129093): the prime most Logjam-era servers shared.
_OAKLEY_GROUP_2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)
KNOWN_WEAK_PRIMES = {_OAKLEY_GROUP_2: "the RFC 2409 Oakley group 2 prime, shared by many servers (Logjam)"}
