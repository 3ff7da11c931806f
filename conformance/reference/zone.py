"""The reference gateway's mail domain as a zone: every policy record a sender or an MUA reads, signed.

MX and A for the nodes, SPF, DMARC, TLS-RPT, the MTA-STS TXT, a DKIM key, the RFC 6186 SRV records (the
implicit-TLS ones pointing at the nodes' real ports, the plaintext ones set to '.', RFC 6186 §4), and a
DANE-EE TLSA record (3 1 1) per MX host made from the leaf certificate the nodes really serve. The zone
is signed at start-up with an ECDSAP256SHA256 key made for this gateway (dnspython's ``sign_zone``);
its DS is the lab trust anchor the target file names. Flaws change single records before signing (or
leave the zone unsigned, or break one signature after it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dns.rdtypes.dnskeybase import Flag

from conformance.reference.flaws import Flaws

DOMAIN = "example.test"
DKIM_SELECTOR = "mail"
TTL = 300
SIGNATURE_LIFETIME = 7 * 24 * 3600


@dataclass(frozen=True)
class ZoneKey:
    """The zone's one signing key (a combined KSK/ZSK: the lab needs no key rollover)."""

    private: ec.EllipticCurvePrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @classmethod
    def create(cls) -> ZoneKey:
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                        flags=Flag.ZONE | Flag.SEP)
        return cls(private, dnskey)

    def trust_anchor(self) -> str:
        """The zone's DS as a zone-file line: what a parent zone (or a lab's resolver) would trust."""
        ds = dns.dnssec.make_ds(DOMAIN + ".", self.dnskey, "SHA256")
        return f"{DOMAIN}. {TTL} IN DS {ds.to_text()}\n"


@dataclass(frozen=True)
class MailZone:
    """What the zone is built from: the nodes' host names and the ports their services listen on."""

    hosts: tuple[str, ...]                    # MX hosts in preference order
    ports: Mapping[tuple[str, str], int]      # (host, service) -> port
    leaf_der: bytes                           # the certificate the MX hosts serve
    ca_der: bytes | None = None               # the CA certificate they send above it (None: self-signed leaf)


@functools.lru_cache(maxsize=2)
def dkim_key(bits: int) -> rsa.RSAPrivateKey:
    """Cached: RSA generation is the slow part of building the zone."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _spki_sha256(leaf_der: bytes) -> str:
    spki = x509.load_der_x509_certificate(leaf_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _dkim_record(flaws: Flaws) -> str:
    public = dkim_key(1024 if flaws.dkim_1024 else 2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = base64.b64encode(public).decode()
    chunks = " ".join(f'"{key[i:i + 200]}"' for i in range(0, len(key), 200))
    return f'"v=DKIM1; k=rsa; p=" {chunks}'


def _txt(*texts: str) -> list[str]:
    return [f'"{t}"' for t in texts]


def _spf(flaws: Flaws) -> dict[tuple[str, str], list[str]]:
    if flaws.spf_two_records:
        return {("@", "TXT"): _txt("v=spf1 mx -all", "v=spf1 a -all")}
    if flaws.spf_too_many_lookups:  # 1 (mx) + 1 (include) + 10 (a:) = 12 terms that query the DNS
        ten = " ".join(f"a:mx1.{DOMAIN}" for _ in range(10))
        return {("@", "TXT"): _txt(f"v=spf1 mx include:_spf.{DOMAIN} -all"), ("_spf", "TXT"): _txt(f"v=spf1 {ten} -all")}
    return {("@", "TXT"): _txt("v=spf1 mx ~all" if flaws.spf_softfail else "v=spf1 mx -all")}


def _policies(flaws: Flaws) -> dict[tuple[str, str], list[str]]:
    policy = "none" if flaws.dmarc_none else "reject"
    reports = "dmarc@reports.example.net" if flaws.dmarc_external_rua else f"dmarc-reports@{DOMAIN}"
    out = {("_dmarc", "TXT"): _txt(f"v=DMARC1; p={policy}; rua=mailto:{reports}"),
           ("mta-sts", "A"): ["127.0.0.1"]}   # the policy host (the lab target overrides its port)
    if not flaws.mta_sts_missing:
        out[("_mta-sts", "TXT")] = _txt("v=STSv1; id=20261201T000000")
    if not flaws.tlsrpt_missing:
        rua = f"https://tlsrpt.{DOMAIN}/v1" if flaws.tlsrpt_https_only else f"mailto:tlsrpt@{DOMAIN}"
        out[("_smtp._tls", "TXT")] = _txt(f"v=TLSRPTv1; rua={rua}")
    if not flaws.dkim_missing:
        out[(f"{DKIM_SELECTOR}._domainkey", "TXT")] = [_dkim_record(flaws)]
    return out


def _srv(mail: MailZone, flaws: Flaws) -> dict[tuple[str, str], list[str]]:
    def point(service: str) -> list[str]:
        return [f"{10 * i} 1 {mail.ports[(h, service)]} {h}." for i, h in enumerate(mail.hosts)]

    return {("_submissions._tcp", "SRV"): point("submissions"), ("_imaps._tcp", "SRV"): point("imaps"),
            ("_submission._tcp", "SRV"): point("submission") if flaws.srv_plaintext else ["0 0 0 ."],
            ("_imap._tcp", "SRV"): ["0 0 0 ."]}


def _tlsa(label: str, mail: MailZone, flaws: Flaws) -> dict[tuple[str, str], list[str]]:
    """DANE-EE (3 1 1) for the served key, plus DANE-TA (2 0 1) for the CA above it (or a 3 1 1 for the next
    key): the set survives a change of leaf key (RFC 7671 §8.1). ``tlsa_single_record`` leaves one 3 1 1."""
    if flaws.tlsa_missing:
        return {}
    digest = _spki_sha256(mail.leaf_der)
    ca = hashlib.sha256(mail.ca_der).hexdigest() if mail.ca_der else None
    if flaws.tlsa_mismatch:  # what is left behind after a key and CA change that forgot the DNS
        digest = hashlib.sha256(b"the key this host served last year").hexdigest()
        ca = hashlib.sha256(b"the CA this host used last year").hexdigest()
    records = [f"3 1 1 {digest}"]
    if not flaws.tlsa_single_record:  # a self-signed leaf has no CA above it: pre-publish the next key instead
        records.append(f"2 0 1 {ca}" if ca else f"3 1 1 {hashlib.sha256(b'the key this host serves next').hexdigest()}")
    extra = [f"1 1 1 {digest}"] if flaws.tlsa_pkix_usage else []
    return {(f"_25._tcp.{label}", "TLSA"): [*records, *extra]}


def records(mail: MailZone, flaws: Flaws) -> dict[tuple[str, str], list[str]]:
    """(name relative to the zone, type) -> rdata texts."""
    out: dict[tuple[str, str], list[str]] = {
        ("@", "SOA"): [f"ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 {TTL}"],
        ("@", "NS"): [f"ns.{DOMAIN}."],
        ("ns", "A"): ["127.0.0.1"],
        ("@", "MX"): [f"{10 * (i + 1)} {host}." for i, host in enumerate(mail.hosts)],
        **_spf(flaws), **_policies(flaws), **_srv(mail, flaws),
    }
    for host in mail.hosts:
        label = host.removesuffix("." + DOMAIN)
        out[(label, "A")] = ["127.0.0.1"]
        out.update(_tlsa(label, mail, flaws))
    if flaws.mx_cname and len(mail.hosts) > 1:  # the backup MX becomes an alias of the primary
        label = mail.hosts[1].removesuffix("." + DOMAIN)
        del out[(label, "A")]
        out[(label, "CNAME")] = [f"{mail.hosts[0]}."]
    return out


def build_zone(mail: MailZone, flaws: Flaws, key: ZoneKey) -> dns.zone.Zone:
    """The zone, signed with ``key``."""
    lines = [f"{name} {TTL} IN {rtype} {text}" for (name, rtype), texts in records(mail, flaws).items()
             for text in texts]
    zone = dns.zone.from_text("\n".join(lines) + "\n", origin=DOMAIN + ".", relativize=False)
    if flaws.unsigned_zone:
        return zone
    dns.dnssec.sign_zone(zone, keys=[(key.private, key.dnskey)], lifetime=SIGNATURE_LIFETIME, dnskey_ttl=TTL)
    if flaws.bogus_signature:
        _corrupt_signature(zone, dns.rdatatype.MX)
    return zone


def _corrupt_signature(zone: dns.zone.Zone, covered: dns.rdatatype.RdataType) -> None:
    """Flip one bit of the RRSIG over the apex RRset of type ``covered``: the data no longer verifies."""
    with zone.writer() as txn:
        sigs = txn.get(DOMAIN + ".", dns.rdatatype.RRSIG, covered)
        broken = [sig.replace(signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:]) for sig in sigs]
        txn.replace(DOMAIN + ".", dns.rdataset.from_rdata_list(sigs.ttl, broken))
