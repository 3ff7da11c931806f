"""The reference gateway's signed zone: what its responder serves, checked with dnspython alone."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.zonefile
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.reference.gateway import Gateway
from conformance.target import TargetError, load_target

pytestmark = pytest.mark.reference

ORIGIN = dns.name.from_text("example.test.")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(workdir=tmp_path_factory.mktemp("zone")) as gw:
        yield gw
        gw.check_errors()


def _ask(gateway: Gateway, name: str, rtype: str, *, dnssec: bool = True, tcp: bool = False) -> dns.message.Message:
    target = load_target(gateway.write_target(gateway.workdir / "target.toml"))
    assert target.resolver is not None
    host, port = target.resolver.split(":")
    query = dns.message.make_query(name, rtype, want_dnssec=dnssec)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, timeout=2, port=int(port))


def _dnskeys(gateway: Gateway) -> dns.rrset.RRset:
    return _ask(gateway, "example.test", "DNSKEY").find_rrset(dns.message.ANSWER, ORIGIN, 1, dns.rdatatype.DNSKEY)


@pytest.mark.parametrize("name, rtype", [("example.test", "MX"), ("_25._tcp.mx1.example.test", "TLSA"),
                                         ("_dmarc.example.test", "TXT"), ("mx2.example.test", "A")])
def test_every_rrset_is_signed_and_validates(gateway: Gateway, name: str, rtype: str) -> None:
    reply = _ask(gateway, name, rtype)
    owner = dns.name.from_text(name)
    rrset = reply.find_rrset(dns.message.ANSWER, owner, 1, dns.rdatatype.from_text(rtype))
    sigs = reply.find_rrset(dns.message.ANSWER, owner, 1, dns.rdatatype.RRSIG, dns.rdatatype.from_text(rtype))
    dns.dnssec.validate(rrset, sigs, {ORIGIN: _dnskeys(gateway)})  # raises ValidationFailure if bogus
    assert reply.ednsflags & dns.flags.DO


def test_no_signatures_without_the_do_bit(gateway: Gateway) -> None:
    reply = _ask(gateway, "example.test", "MX", dnssec=False)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.MX]


def test_the_trust_anchor_is_the_ds_of_the_served_key(gateway: Gateway) -> None:
    target = load_target(gateway.write_target(gateway.workdir / "target.toml"))
    assert target.dkim_selectors == ("mail",)
    (anchor_file,) = target.dnssec_trust_anchors
    (ds_set,) = dns.zonefile.read_rrsets(anchor_file.read_text(), rdclass=None)
    keys = _dnskeys(gateway)
    assert any(dns.dnssec.make_ds(ORIGIN, key, "SHA256") == ds for key in keys for ds in ds_set)


def test_tlsa_is_the_spki_of_the_served_leaf(gateway: Gateway) -> None:
    chain = (gateway.workdir / "pki" / "good.pem").read_bytes()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ca = x509.load_pem_x509_certificates(chain)[1].public_bytes(serialization.Encoding.DER)
    reply = _ask(gateway, "_25._tcp.mx1.example.test", "TLSA")
    assert {r.to_text() for r in reply.answer[0]} == {f"3 1 1 {hashlib.sha256(spki).hexdigest()}",
                                                      f"2 0 1 {hashlib.sha256(ca).hexdigest()}"}


def test_srv_records_name_the_real_implicit_tls_ports_and_refuse_plaintext(gateway: Gateway) -> None:
    submissions = _ask(gateway, "_submissions._tcp.example.test", "SRV").answer[0]
    assert {(r.port, r.target.to_text()) for r in submissions} == {
        (gateway.ports[("node1", "submissions")], "mx1.example.test."),
        (gateway.ports[("node2", "submissions")], "mx2.example.test.")}
    assert _ask(gateway, "_imap._tcp.example.test", "SRV").answer[0][0].to_text() == "0 0 0 ."


def test_tcp_answers_the_same(gateway: Gateway) -> None:
    assert _ask(gateway, "example.test", "MX", tcp=True).answer == _ask(gateway, "example.test", "MX").answer


def test_single_node_publishes_one_mx(tmp_path: Path) -> None:
    with Gateway(("single_node",), workdir=tmp_path) as gw:
        assert [r.to_text() for r in _ask(gw, "example.test", "MX").answer[0]] == ["10 mx1.example.test."]


def test_bad_dns_keys_in_a_target_name_the_key(tmp_path: Path) -> None:
    base = '[target]\n{}\n[[node]]\nname="n"\nhost="h.example"\nservices={{mx=25}}\n'
    path = tmp_path / "t.toml"
    path.write_text(base.format('dkim_selectors = ["bad selector"]'))
    with pytest.raises(TargetError, match="dkim_selectors"):
        load_target(path)
    path.write_text(base.format('dnssec_trust_anchors = ["missing.ds"]'))
    with pytest.raises(TargetError, match="dnssec_trust_anchors.*not found"):
        load_target(path)


def test_responder_port_serves_udp_and_tcp(gateway: Gateway) -> None:
    target = load_target(gateway.write_target(gateway.workdir / "target.toml"))
    assert target.resolver is not None
    port = int(target.resolver.split(":")[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
