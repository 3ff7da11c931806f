"""Confirm a raw-scan finding with a completed handshake through a real TLS stack.

A ServerHello proves only that the server *answered*: a server may pick a version or suite and then
abort (internal_error after the key exchange, a static-RSA suite that dies on bad padding). A version
or suite counts as accepted only when a full handshake completes: through OpenSSL where it can speak
it, through tlslite-ng (an independent stack that still speaks SSL 3.0, RC4 and 3DES) where it cannot.
One handshake per version and one per weakness class keep the connection count low.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from conformance.probes.tls.suites import CipherSuite, Weakness
from conformance.probes.tls.tlslite_stack import load_tlslite
from conformance.probes.tls.wire import AlertDescription, TlsVersion, describe
from conformance.probes.wire.outcome import ProbeError, alert_words, tls_error_words
from conformance.probes.wire.streams import blocking_twin
from conformance.probes.wire.upgrade import probe_context, upgrade

_OPENSSL_VERSIONS = {
    TlsVersion.TLS1_0: ssl.TLSVersion.TLSv1, TlsVersion.TLS1_1: ssl.TLSVersion.TLSv1_1,
    TlsVersion.TLS1_2: ssl.TLSVersion.TLSv1_2, TlsVersion.TLS1_3: ssl.TLSVersion.TLSv1_3,
}
_TLSLITE_KEX = {"RSA": "rsa", "DHE_RSA": "dhe_rsa", "ECDHE_RSA": "ecdhe_rsa", "ECDHE_ECDSA": "ecdhe_ecdsa",
                "DH_anon": "dh_anon", "ECDH_anon": "ecdh_anon", "DHE_DSS": "dhe_dsa"}
_TLSLITE_CIPHER = {"RC4_128": "rc4", "3DES_EDE_CBC": "3des", "AES_128_CBC": "aes128", "AES_256_CBC": "aes256",
                   "AES_128_GCM": "aes128gcm", "AES_256_GCM": "aes256gcm", "CHACHA20_POLY1305": "chacha20-poly1305",
                   "NULL": "null"}
_TLSLITE_MAC = {"SHA": "sha", "SHA256": "sha256", "SHA384": "sha384", "MD5": "md5"}
# OpenSSL reasons that are the client's own limits, not the server's doing
_OPENSSL_LIMITS = frozenset({"EXCESSIVE_MESSAGE_SIZE", "NO_CIPHERS_AVAILABLE", "DH_KEY_TOO_SMALL", "EE_KEY_TOO_SMALL"})

@dataclass(frozen=True)
class Confirmation:
    """One confirmation handshake: ``completed`` or the server's reason in words."""

    version: TlsVersion
    suite: CipherSuite
    completed: bool
    detail: str
    ours: bool = False  # our stack's own limit stopped it (e.g. OpenSSL's 100 KiB certificate list): try another

    def __str__(self) -> str:
        if self.completed:
            return f"{self.version} {self.suite}: handshake completed ({self.detail})"
        return f"{self.version} {self.suite}: answers ServerHello, {self.detail}"


@functools.lru_cache(maxsize=1)
def _openssl_names() -> dict[int, tuple[str, str]]:
    """IANA code -> (OpenSSL name, the oldest protocol it runs on: 'SSLv3' or 'TLSv1.2')."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return {c["id"] & 0xFFFF: (c["name"], c["protocol"]) for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}


def _needs_tls12(chosen: CipherSuite) -> bool:
    return chosen.aead or chosen.cipher.endswith(("_SHA256", "_SHA384"))


def _openssl_context(version: TlsVersion, chosen: CipherSuite) -> ssl.SSLContext | None:
    """A client context pinned to ``version`` (and, below TLS 1.3, to ``chosen``); None if OpenSSL cannot."""
    name, protocol = _openssl_names().get(chosen.code, (None, None))
    if version not in _OPENSSL_VERSIONS or (version != TlsVersion.TLS1_3 and name is None):
        return None
    if version < TlsVersion.TLS1_2 and protocol == "TLSv1.2":
        return None
    context = probe_context()
    # OpenSSL 3 refuses servers without RFC 5746 by default; that refusal is TLS-RENEG-01's finding, not ours
    context.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is what we are confirming
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = _OPENSSL_VERSIONS[version]
    if version != TlsVersion.TLS1_3:
        try:
            context.set_ciphers(f"{name}:@SECLEVEL=0")
        except ssl.SSLError:
            return None
    return context


def _tlslite_settings(version: TlsVersion, chosen: CipherSuite) -> Callable[[], object] | None:
    """The tlslite-ng settings that offer ``chosen`` (and its twins) at ``version``; None if it cannot."""
    if version == TlsVersion.TLS1_3:
        return functools.partial(_tlslite_tls13_settings)
    cipher, _, mac = chosen.cipher.rpartition("_")
    names = (_TLSLITE_KEX.get(chosen.kex), _TLSLITE_CIPHER.get(cipher), _TLSLITE_MAC.get(mac))
    if None in names or not TlsVersion.SSL3 <= version <= TlsVersion.TLS1_2:
        return None
    if version < TlsVersion.TLS1_2 and _needs_tls12(chosen):
        return None
    kex, cipher_name, mac_name = names

    def settings() -> object:
        from tlslite.handshakesettings import HandshakeSettings

        made = HandshakeSettings()
        made.minVersion = made.maxVersion = (3, version & 0xFF)
        made.keyExchangeNames, made.cipherNames = [kex], [cipher_name]
        made.macNames = ["aead"] if chosen.aead else [mac_name]
        made.minKeySize = 512  # a weak key is CERT-KEY-01's finding, not a reason to refuse the handshake
        return made
    return settings


def _tlslite_tls13_settings() -> object:
    from tlslite.handshakesettings import HandshakeSettings

    made = HandshakeSettings()
    made.minVersion = made.maxVersion = (3, 4)
    return made


Handshaker = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, float], Awaitable[Confirmation]]


def handshakers(version: TlsVersion, chosen: CipherSuite) -> list[Handshaker]:
    """The stacks that can complete a handshake at ``version`` offering ``chosen``, OpenSSL first, bound
    to them: call one with an open stream at the TLS point, the server name and a timeout; try the next
    only when one stops at its own limit (``Confirmation.ours``). Empty if no stack can."""
    found: list[Handshaker] = []
    context = _openssl_context(version, chosen)
    if context is not None:
        found.append(functools.partial(_by_openssl, context=context, version=version, chosen=chosen))
    settings = _tlslite_settings(version, chosen)
    if settings is not None and load_tlslite():
        found.append(functools.partial(_by_tlslite, settings=settings, version=version, chosen=chosen))
    return found


async def _by_openssl(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, timeout: float, *,
                      context: ssl.SSLContext, version: TlsVersion, chosen: CipherSuite) -> Confirmation:
    try:
        info = await upgrade(reader, writer, context, host, timeout=timeout, what="confirmation handshake")
    except ProbeError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return Confirmation(version, chosen, False, f"handshake fails: {tls_error_words(cause)}",
                                ours=cause.reason in _OPENSSL_LIMITS)
        return Confirmation(version, chosen, False, f"handshake fails: {exc}")
    return Confirmation(version, chosen, True, f"OpenSSL: {info.version} {info.cipher}")


async def _by_tlslite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, timeout: float, *,
                      settings: Callable[[], object], version: TlsVersion, chosen: CipherSuite) -> Confirmation:
    sock = blocking_twin(reader, writer, timeout)
    if sock is None:
        return Confirmation(version, chosen, False, "handshake fails: the server sent plaintext where TLS was due")
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(_tlslite_handshake, sock, settings, host, timeout),
                                        timeout + 1)
    except TimeoutError:
        detail = f"no answer within {timeout:g} s"
    finally:
        sock.close()
    completed = detail.startswith("tlslite-ng:")
    return Confirmation(version, chosen, completed, detail if completed else f"handshake fails: {detail}")


def _tlslite_handshake(sock: socket.socket, settings: Callable[[], object], host: str, timeout: float) -> str:
    from tlslite.errors import TLSAbruptCloseError, TLSLocalAlert, TLSRemoteAlert
    from tlslite.tlsconnection import TLSConnection

    connection = TLSConnection(sock)
    try:
        connection.handshakeClientCert(settings=settings(), serverName=host)
    except TLSRemoteAlert as exc:
        return alert_words(describe(AlertDescription, exc.description))
    except TLSLocalAlert as exc:
        return f"our client gave up: {exc.message or describe(AlertDescription, exc.description).lower()}"
    except TLSAbruptCloseError:
        return "the server closed the connection"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return f"network error: {exc.strerror or exc}"
    cipher = connection.getCipherName() or "?"
    return f"tlslite-ng: {connection.getVersionName()} {cipher}"


def representatives(found: dict[TlsVersion, tuple[CipherSuite, ...]], confirmed: Iterable[CipherSuite],
                    tried: Iterable[tuple[TlsVersion, CipherSuite]] = ()) -> list[tuple[TlsVersion, CipherSuite]]:
    """(version, suite) pairs that together cover every weakness ``confirmed`` does not: suites with the
    fewest weaknesses first, so that a handshake that dies leaves as few classes open as possible; at the
    highest version (where OpenSSL is likeliest to speak them); never one already ``tried``."""
    covered: set[Weakness] = set().union(*(s.weaknesses for s in confirmed))
    done = set(tried)
    candidates = sorted(((v, s) for v in found for s in found[v] if (v, s) not in done),
                        key=lambda vs: (len(vs[1].weaknesses), -vs[0], vs[1].code))
    chosen: list[tuple[TlsVersion, CipherSuite]] = []
    for version, candidate in candidates:
        if candidate.weaknesses - covered and handshakers(version, candidate):
            chosen.append((version, candidate))
            covered |= candidate.weaknesses
    return chosen


def _speakable_first(version: TlsVersion, found: tuple[CipherSuite, ...]) -> CipherSuite:
    """The server's first pick among the suites a local stack can speak at ``version``."""
    return next((s for s in found if handshakers(version, s)), found[0])


@dataclass(frozen=True)
class Settled:
    """What completed handshakes confirmed of a raw scan's answers, and what they left open (with why)."""

    suites: dict[TlsVersion, tuple[CipherSuite, ...]]   # confirmed versions -> their confirmed suites
    unsettled_versions: dict[TlsVersion, str]
    unsettled_suites: dict[TlsVersion, str]


Check = Callable[[TlsVersion, CipherSuite], Awaitable[Confirmation]]


async def settle(answered: dict[TlsVersion, tuple[CipherSuite, ...]], check: Check) -> Settled:
    """Confirm each answered version with its first suite, then one suite per weakness those left
    uncovered; a suite counts only at a confirmed version and when each of its weaknesses was confirmed."""
    unsettled_versions = {v: "answers ServerHello with a suite that was not offered"
                          for v, found in answered.items() if not found}
    firsts = list(await asyncio.gather(*(check(v, _speakable_first(v, found)) for v, found in answered.items()
                                         if found)))
    for failed in (c for c in firsts if not c.completed):
        unsettled_versions[failed.version] = str(failed)
    confirmed = {c.version: answered[c.version] for c in firsts if c.completed}
    tried = list(firsts)
    for _ in range(2):  # a second round stands in for representatives that died
        more = representatives(confirmed, (c.suite for c in tried if c.completed), ((c.version, c.suite) for c in tried))
        tried += await asyncio.gather(*(check(v, s) for v, s in more))
    extra = tried[len(firsts):]
    done = [c for c in tried if c.completed]
    covered: set[Weakness] = set().union(*(c.suite.weaknesses for c in done))
    failures = [c for c in extra if not c.completed]
    suites: dict[TlsVersion, tuple[CipherSuite, ...]] = {}
    unsettled_suites: dict[TlsVersion, str] = {}
    for version, found in confirmed.items():
        suites[version] = tuple(s for s in found if s.weaknesses <= covered)
        dropped = [s for s in found if not s.weaknesses <= covered]
        if dropped:
            why = "; ".join(str(c) for c in failures if c.suite.weaknesses & {w for s in dropped for w in s.weaknesses})
            unsettled_suites[version] = (f"{len(dropped)} suite(s) not confirmed by a completed handshake "
                                         f"({', '.join(s.name for s in dropped[:3])}{', ...' if len(dropped) > 3 else ''})"
                                         f": {why}")
    return Settled(suites, unsettled_versions, unsettled_suites)
