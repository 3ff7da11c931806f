"""Server ssl.SSLContext per node and flaw set.

Good: TLS 1.2 with ECDHE AEAD suites only, and TLS 1.3; no compression, no renegotiation. Flaws widen or
narrow that. Debian's OpenSSL 3 refuses TLS 1.0, anonymous suites, RSA-1024 keys and SHA-1 signatures
at its default security level; "@SECLEVEL=0" in the cipher string lets the deliberately weak
configurations load and negotiate.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from conformance.reference.flaws import Flaws
from conformance.reference.pki import CertVariant, Pki, variant_for

GOOD_TLS12_SUITES = "ECDHE+AESGCM:ECDHE+CHACHA20"
LEGACY_CBC_SUITES = "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"   # TLS 1.0 has no AEAD suite
# forward-secret AEAD suites whose only defect is that nobody is authenticated (OpenSSL has no
# anonymous ECDHE AEAD suite, hence finite-field DH)
ANON_SUITES = "ADH-AES128-GCM-SHA256:ADH-AES256-GCM-SHA384"
STATIC_RSA_SUITES = "AES128-GCM-SHA256"
# the top pick stays strong; the CBC suite outranks the remaining AEAD suites
RANKED_HIGH_SUITES = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA"
# OpenSSL 3.0 option bits the ssl module does not name (include/openssl/ssl.h.in)
OP_NO_EXTENDED_MASTER_SECRET = 1 << 0
OP_NO_ENCRYPT_THEN_MAC = 1 << 19
OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8
DHE_SUITES = "DHE-RSA-AES128-GCM-SHA256"  # forward-secret AEAD: only its prime is weak


def server_context(pki: Pki, flaws: Flaws, node: str) -> ssl.SSLContext:
    """The context a node's listeners and STARTTLS use. Raises ssl.SSLError if OpenSSL refuses it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    suites = [RANKED_HIGH_SUITES, GOOD_TLS12_SUITES] if flaws.legacy_suite_ranked_high else [GOOD_TLS12_SUITES]
    weak_level = False
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if flaws.tls1_0_on(node):
        context.minimum_version = ssl.TLSVersion.TLSv1
        suites.append(LEGACY_CBC_SUITES)
        weak_level = True
    if flaws.tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    if flaws.no_tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if flaws.anon_suites:
        suites.append(ANON_SUITES)
        context.load_dh_params(str(pki.dh_params()))
        weak_level = True
    if flaws.static_rsa:
        suites.append(STATIC_RSA_SUITES)
    if flaws.client_cipher_preference:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if flaws.no_extended_master_secret:
        context.options |= OP_NO_EXTENDED_MASTER_SECRET
    if flaws.cbc_without_etm:
        suites.append(LEGACY_CBC_SUITES)
        context.options |= OP_NO_ENCRYPT_THEN_MAC
    if flaws.client_renegotiation:  # OpenSSL 3 refuses clients' renegotiations unless told otherwise
        context.options &= ~ssl.OP_NO_RENEGOTIATION
        context.options |= OP_ALLOW_CLIENT_RENEGOTIATION
    if flaws.weak_dh_params:
        suites.append(DHE_SUITES)
        weak_level = True
    variant = variant_for(flaws)
    if variant in (CertVariant.WEAK_KEY, CertVariant.SHA1):
        weak_level = True
    context.set_ciphers(":".join(suites) + (":@SECLEVEL=0" if weak_level else ""))
    if flaws.weak_dh_params:  # after the security level is lowered: OpenSSL refuses 1024-bit DH at level 2
        context.load_dh_params(str(pki.weak_dh_params()))
    chain, key = pki.leaf(variant)
    context.load_cert_chain(chain, key)
    if flaws.sni_required or flaws.no_sni_wrong_cert:
        context.sni_callback = _without_sni(pki, flaws)
    return context


def _without_sni(pki: Pki, flaws: Flaws) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    """What a node does with a hello that names no server: refuse it, or answer with another host's certificate."""
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.load_cert_chain(*pki.leaf(CertVariant.WRONG_HOST))

    def callback(connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> int | None:
        if server_name is not None:
            return None
        if flaws.sni_required:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        connection.context = other
        return None

    return callback
