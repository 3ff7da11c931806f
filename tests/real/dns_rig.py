"""The real DNS proving ground: the rig's mail domain served by Knot (signed automatically) and resolved
through a validating Unbound holding the lab zone's trust anchor, describing the rig's real Postfix.

``DnsRig(servers)`` takes a running ``MailServers`` (the good Postfix on 127.0.0.2) and builds the zone of
its mail domain from it: MX to its host name, that name's A record, ``_25._tcp`` TLSA 3 1 1 records of
the key Postfix really serves and of its next key, SPF, DMARC p=reject, TLS-RPT, a DKIM key, the RFC 6186
SRV records and the MTA-STS TXT, whose policy nginx serves over HTTPS as ``mta-sts.<domain>`` (a certificate from the rig's
CA). ``serve(variant)`` republishes zone and policy with one weakness (a zone reload, not a restart) and
empties Unbound's cache; ``write_target`` writes the Postfix target with ``domain``, ``resolver`` (Unbound),
the lab anchor and ``mta_sts_address`` (nginx's loopback port: SNI and certificate name stay mta-sts.<domain>).

The MX host is the Postfix node's own host name, so the suite's MX expansion keeps the node's endpoints
(``with_mx_endpoints``: a node with the MX host's name keeps its own ports): the DANE check holds the TLSA
record against the certificate of Postfix's MX port on 127.0.0.2, no port-25 mapping needed.
No pytest here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.certgen import issue
from tests.real.knot import Knot
from tests.real.nginx import Nginx
from tests.real.servers import DOMAIN, MailServers, write_fleet_target
from tests.real.unbound import Unbound

DKIM_SELECTOR = "mail"
SPF_INCLUDES = 10   # with the domain's own "mx" term: 11 DNS-querying terms, one over RFC 7208 §4.6.4's limit


@dataclass(frozen=True)
class ZoneVariant:
    """The good zone, or the good zone with exactly one weakness."""

    name: str
    weakness: str = ""
    signing: str = "on"            # on | off (unsigned) | expired (Knot's own signatures, let expire)
    tlsa_old_key: bool = False     # the TLSA set names a key Postfix no longer serves (and the next one)
    spf_over_limit: bool = False   # SPF needs 11 DNS lookups
    dmarc_policy: str = "reject"
    sts_mx: str = ""               # the MTA-STS policy's only mx pattern ("" = the Postfix host)


VARIANTS: dict[str, ZoneVariant] = {v.name: v for v in (
    ZoneVariant("good"),
    ZoneVariant("unsigned", "the zone is not DNSSEC-signed", signing="off"),
    ZoneVariant("expired-signatures", "every RRSIG of the zone has expired (Knot signed, then was frozen)",
                signing="expired"),
    ZoneVariant("tlsa-old-key", "the TLSA set names Postfix's previous key (and the planned next one), not "
                "the key it serves", tlsa_old_key=True),
    ZoneVariant("spf-over-limit", f"SPF needs {SPF_INCLUDES + 1} DNS lookups (mx and {SPF_INCLUDES} includes)",
                spf_over_limit=True),
    ZoneVariant("dmarc-none", "DMARC p=none (monitoring only)", dmarc_policy="none"),
    ZoneVariant("mta-sts-omits-mx", "the MTA-STS policy names only mx2, not the MX host mx1",
                sts_mx=f"mx2.{DOMAIN}"),
)}
POLICY_PATH = "/.well-known/mta-sts.txt"


def spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _key_sha256(key: ec.EllipticCurvePrivateKey) -> str:
    return hashlib.sha256(key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _txt(text: str) -> str:
    """A TXT rdata of any length: quoted strings of at most 255 characters (RFC 1035 §3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


class DnsRig:
    """Knot and Unbound for the mail domain of ``servers``; a context manager, or ``start()``/``stop()``."""

    def __init__(self, servers: MailServers, *, knot_address: str = "127.0.0.4",
                 unbound_address: str = "127.0.0.5", web_address: str = "127.0.0.6") -> None:
        self.servers = servers
        self.domain = DOMAIN
        self.knot = Knot(knot_address, workdir=self._subdir("knot"))
        self.unbound: Unbound | None = None
        self._unbound_address = unbound_address
        self.nginx = self._policy_host(web_address)
        self._published = 0   # policies published so far: each gets a new MTA-STS id
        self.anchor_path = servers.workdir / "dns" / "lab-anchor.txt"
        self._leaf = x509.load_pem_x509_certificate((servers.workdir / "server.pem").read_bytes())
        self._old_key = ec.generate_private_key(ec.SECP256R1())    # Postfix's key before the last rollover
        self._next_key = ec.generate_private_key(ec.SECP256R1())   # the key it will roll over to
        dkim = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._dkim_public = base64.b64encode(dkim.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    def _subdir(self, name: str) -> Path:
        path = self.servers.workdir / "dns" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _policy_host(self, address: str) -> Nginx:
        assert self.servers.ca is not None, "MailServers writes its CA when it starts"
        name = f"mta-sts.{self.domain}"
        cert, key = issue(name, self.servers.ca, dns=(name,)).write(self._subdir("pki"), "mta-sts")
        return Nginx(address, server_name=name, cert=cert, key=key, workdir=self._subdir("nginx"))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """nginx and Knot with the good policy and zone, then Unbound with that zone's DS (read from what Knot
        serves) as its trust anchor."""
        try:
            self.nginx.start()
            self.knot.start()
            self.nginx.publish(POLICY_PATH, self.sts_policy(VARIANTS["good"]))
            self.knot.serve(self.domain, self.zone_body(VARIANTS["good"]))
            anchor = self.knot.trust_anchor(self.domain)
            self.anchor_path.write_text(anchor, encoding="ascii")
            self.unbound = Unbound(self._unbound_address, stub_zones={f"{self.domain}.": (self.knot.address,
                                                                                         self.knot.port)},
                                   trust_anchors=anchor.splitlines(), sig_skew=0, workdir=self._subdir("unbound"))
            self.unbound.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        errors = []
        for daemon in (self.unbound, self.knot, self.nginx):
            try:
                if daemon is not None:
                    daemon.stop()
            except RuntimeError as exc:  # the other is stopped anyway, then this is reported
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))

    def serve(self, variant: ZoneVariant) -> None:
        """Publish ``variant`` in place of the current zone; the resolver forgets what it cached."""
        assert self.unbound is not None, "DnsRig.serve before start"
        self.nginx.publish(POLICY_PATH, self.sts_policy(variant))
        self.knot.serve(self.domain, self.zone_body(variant), signing=variant.signing)
        self.unbound.flush(self.domain)

    def sts_policy(self, variant: ZoneVariant) -> str:
        """The MTA-STS policy (RFC 8461 §3.2) for ``variant``; a new id goes into the zone with it."""
        self._published += 1
        return f"version: STSv1\r\nmode: enforce\r\nmx: {variant.sts_mx or self.servers.host}\r\nmax_age: 86400\r\n"

    def zone_body(self, variant: ZoneVariant) -> str:
        host, ports = self.servers.host, self.servers.ports
        mx_label = host.removesuffix(f".{self.domain}")
        # DANE-EE for the key served and, pre-published, for the next one (RFC 7671 §8.1: rollover-ready)
        served = _key_sha256(self._old_key) if variant.tlsa_old_key else spki_sha256(self._leaf)
        includes = range(1, SPF_INCLUDES + 1) if variant.spf_over_limit else range(0)
        spf = "v=spf1 mx " + "".join(f"include:_spf{i}.{self.domain} " for i in includes) + "-all"
        lines = [
            f"@ NS ns1.{self.domain}.",
            f"ns1 A {self.knot.address}",
            f"@ MX 10 {host}.",
            f"{mx_label} A {self.servers.address}",
            f"_25._tcp.{mx_label} TLSA 3 1 1 {served}",
            f"_25._tcp.{mx_label} TLSA 3 1 1 {_key_sha256(self._next_key)}",
            f"@ TXT {_txt(spf)}",
            *(f'_spf{i} TXT "v=spf1 ip4:192.0.2.{i} -all"' for i in includes),
            f'_dmarc TXT "v=DMARC1; p={variant.dmarc_policy}; rua=mailto:dmarc-reports@{self.domain}"',
            f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls-reports@{self.domain}"',
            f"{DKIM_SELECTOR}._domainkey TXT {_txt(f'v=DKIM1; k=rsa; p={self._dkim_public}')}",
            f"_submissions._tcp SRV 0 1 {ports['submissions']} {host}.",
            f"_imaps._tcp SRV 0 1 {ports['imaps']} {host}.",
            "_submission._tcp SRV 0 0 0 .",   # RFC 6186 §4: the STARTTLS services are not offered to MUAs
            "_imap._tcp SRV 0 0 0 .",
            f'_mta-sts TXT "v=STSv1; id=rig{self._published}"',
            f"mta-sts A {self.nginx.address}",
        ]
        return "\n".join(lines) + "\n"

    def write_target(self, path: Path | None = None) -> Path:
        """The Postfix target plus the dns family's keys: the domain, Unbound as resolver, the lab anchor."""
        assert self.unbound is not None, "DnsRig.write_target before start"
        path = path or self.servers.workdir / "dns" / "target.toml"
        write_fleet_target([self.servers], path)
        dns_keys = (f'domain = "{self.domain}"\nresolver = "{self.unbound.spec}"\n'
                    f'dkim_selectors = ["{DKIM_SELECTOR}"]\ndnssec_trust_anchors = ["{self.anchor_path}"]\n'
                    f'mta_sts_address = "{self.nginx.spec}"\n')
        path.write_text(path.read_text(encoding="utf-8").replace("[target]\n", "[target]\n" + dns_keys, 1),
                        encoding="utf-8")
        return path
