"""MTA-STS for the reference sender (RFC 8461): the TXT record, the policy fetched over HTTPS with a
verified certificate, and which MX hosts it allows.

The fetch dials the policy host's address from the sender's own resolver (not the system's), so it is a
small hand-written HTTP/1.1 GET over an ``ssl`` socket; stdlib ``http.client`` would resolve the name itself.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

WELL_KNOWN = "/.well-known/mta-sts.txt"
MAX_POLICY = 64 * 1024      # RFC 8461 §3.3: senders may limit the policy's size
FETCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class StsPolicy:
    mode: str                       # enforce, testing or none
    mx: tuple[str, ...]

    def allows(self, host: str) -> bool:
        """RFC 8461 §4.1: an exact name, or "*.example.com" for exactly one more label."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                if host.partition(".")[2] == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_policy(text: str) -> StsPolicy | None:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip().lower().rstrip("."))
    if fields.get("version") != ["stsv1"] or not fields.get("mode"):
        return None
    return StsPolicy(fields["mode"][0], tuple(fields.get("mx", ())))


def fetch_policy(name: str, address: str, port: int, ca_file: Path, *,
                 allow_wildcard: bool = False) -> StsPolicy | None:
    """GET the policy from ``address`` as ``name`` (certificate verified for ``name``); None on any failure.
    A certificate naming the host only through a wildcard is a failure unless ``allow_wildcard`` (BSI TR-03108
    4.1.8 refuses it where RFC 8461 §3.3 accepts it)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    request = f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((address, port), FETCH_TIMEOUT) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            if not allow_wildcard and not names_exactly(tls.getpeercert(binary_form=True), name):
                return None
            tls.sendall(request)
            data = b""
            while len(data) <= MAX_POLICY and (chunk := tls.recv(4096)):
                data += chunk
    except (OSError, ssl.SSLError):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        return None
    return parse_policy(body.decode("utf-8", "replace"))


def names_exactly(der: bytes | None, name: str) -> bool:
    """The certificate carries ``name`` itself as a DNS-ID (a wildcard covering it does not count)."""
    if not der:
        return False
    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return name.lower() in (n.lower() for n in san.value.get_values_for_type(x509.DNSName))
