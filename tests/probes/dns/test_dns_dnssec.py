"""The suite's own DNSSEC validation, against zones signed here and served on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.probes.dns.dnssec import (
    ROOT_ANCHORS,
    Security,
    TrustAnchorError,
    Validation,
    Validator,
    load_anchors,
)
from conformance.probes.dns.records import lookup, policy_resolver
from conformance.reference.dns import DnsResponder

pytestmark = pytest.mark.unit


def _key() -> tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, dns.dnssec.make_dnskey(private.public_key(), "ECDSAP256SHA256", flags=257)


def _zone(origin: str, body: str, key: tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata] | None) -> dns.zone.Zone:
    text = f"@ 300 IN SOA ns.{origin}. h.{origin}. 1 3600 600 86400 300\n@ 300 IN NS ns.{origin}.\n{body}"
    zone = dns.zone.from_text(text, origin=origin + ".", relativize=False)
    if key is not None:
        dns.dnssec.sign_zone(zone, keys=[key], lifetime=3600)
    return zone


CHILD_KEY, PARENT_KEY, OTHER_KEY = _key(), _key(), _key()
CHILD = "@ 300 IN MX 10 mx.child.test.\nmx 300 IN A 192.0.2.1\n"


def _ds(name: str, key: tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]) -> str:
    return f"{name}. 300 IN DS {dns.dnssec.make_ds(name + '.', key[1], 'SHA256')}\n"


@pytest.fixture
def responder() -> Iterator[DnsResponder]:
    with DnsResponder() as server:
        yield server
        server.check_errors()


def validate(responder: DnsResponder, anchors: str, name: str = "child.test", rtype: str = "MX",
             tmp: Path | None = None) -> Validation:
    async def run() -> Validation:
        assert tmp is not None
        (tmp / "anchors").write_text(anchors)
        resolver = policy_resolver(responder.address, 2)
        return await Validator(resolver, load_anchors((tmp / "anchors",))).validate(await lookup(resolver, name, rtype))
    return asyncio.run(run())


def test_a_zone_under_its_own_anchor_is_secure(responder: DnsResponder, tmp_path: Path) -> None:
    responder.load_zone(_zone("child.test", CHILD, CHILD_KEY))
    found = validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path)
    assert found.security is Security.SECURE and found.chain == ("child.test", "child.test (trust anchor)")


def test_the_chain_runs_through_the_parents_ds(responder: DnsResponder, tmp_path: Path) -> None:
    parent = _zone("test", f"child 300 IN DS {dns.dnssec.make_ds('child.test.', CHILD_KEY[1], 'SHA256')}\n",
                   PARENT_KEY)
    responder.load_zone(parent, _zone("child.test", CHILD, CHILD_KEY))
    found = validate(responder, _ds("test", PARENT_KEY), tmp=tmp_path)
    assert found.security is Security.SECURE, found
    assert found.chain == ("child.test", "child.test", "test", "test (trust anchor)")


def test_a_missing_ds_at_the_parent_is_not_secure(responder: DnsResponder, tmp_path: Path) -> None:
    responder.load_zone(_zone("test", "other 300 IN A 192.0.2.9\n", PARENT_KEY), _zone("child.test", CHILD, CHILD_KEY))
    found = validate(responder, _ds("test", PARENT_KEY), tmp=tmp_path)
    assert found.security is Security.INSECURE and "no DS for child.test." in found.reason


def test_a_corrupted_signature_is_bogus_and_named(responder: DnsResponder, tmp_path: Path) -> None:
    zone = _zone("child.test", CHILD, CHILD_KEY)
    with zone.writer() as txn:
        sigs = txn.get("child.test.", dns.rdatatype.RRSIG, dns.rdatatype.MX)
        broken = [s.replace(signature=bytes([s.signature[0] ^ 1]) + s.signature[1:]) for s in sigs]
        txn.replace("child.test.", dns.rdataset.from_rdata_list(sigs.ttl, broken))
    responder.load_zone(zone)
    found = validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path)
    assert found.security is Security.BOGUS and "RRSIG over MX child.test does not verify" in found.reason


def test_a_key_the_anchor_does_not_vouch_for_is_bogus(responder: DnsResponder, tmp_path: Path) -> None:
    responder.load_zone(_zone("child.test", CHILD, CHILD_KEY))
    found = validate(responder, _ds("child.test", OTHER_KEY), tmp=tmp_path)
    assert found.security is Security.BOGUS and "matches its trust anchor" in found.reason


def test_unsigned_and_stripped_answers_have_no_signatures(responder: DnsResponder, tmp_path: Path) -> None:
    responder.load_zone(_zone("child.test", CHILD, None))
    assert "no signatures returned" in validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path).reason
    responder.load_zone(_zone("child.test", CHILD, CHILD_KEY))
    responder.strip_signatures = True
    found = validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path)
    assert found.security is Security.INSECURE and "no signatures returned" in found.reason


def test_a_failing_resolver_is_indeterminate(responder: DnsResponder, tmp_path: Path) -> None:
    responder.load_zone(_zone("child.test", CHILD, CHILD_KEY))
    responder.servfail.add("child.test.")
    assert validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path).security is Security.INDETERMINATE


def test_the_shipped_root_anchors_are_ksk_2017_and_ksk_2024() -> None:
    (root,) = load_anchors().values()
    assert root.name == dns.name.root and sorted(ds.key_tag for ds in root) == [20326, 38696]
    assert ROOT_ANCHORS.is_file()


def test_a_bad_anchor_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("example.test. IN DS not-a-ds\n")
    with pytest.raises(TrustAnchorError, match="bad.txt"):
        load_anchors((bad,))
    empty = tmp_path / "empty.txt"
    empty.write_text("; nothing\n")
    with pytest.raises(TrustAnchorError, match="no DS or DNSKEY"):
        load_anchors((empty,))


@pytest.mark.parametrize(("inception", "expiration", "words"), [
    (-7200, -3600, "every RRSIG has expired (the last at "), (3600, 7200, "no RRSIG is valid yet (the first from ")])
def test_signatures_outside_their_validity_period_say_so(responder: DnsResponder, tmp_path: Path, inception: int,
                                                          expiration: int, words: str) -> None:
    """Knot's frozen zone in tests/real/test_real_dns.py: the reason names the expiry, not just "no RRSIGs
    validated" (all dnspython says when a set carries more than one signature)."""
    zone = _zone("child.test", CHILD, None)
    now = int(time.time())
    dns.dnssec.sign_zone(zone, keys=[CHILD_KEY, OTHER_KEY], inception=now + inception, expiration=now + expiration)
    responder.load_zone(zone)
    found = validate(responder, _ds("child.test", CHILD_KEY), tmp=tmp_path)
    assert found.security is Security.BOGUS and words in found.reason, found
