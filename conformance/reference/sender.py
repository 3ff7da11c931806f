"""The reference gateway as a sender: mail the test account submits for a non-local domain leaves through
the same logic a real MTA has (RFC 5321 §5.1, RFC 7672, RFC 7435), towards the suite's lab.

MX, A and TLSA come from the configured resolver, validated (``validator.py``). With a secure TLSA RRset
the sender requires STARTTLS and a certificate matching a DANE-EE record (its dates unchecked, RFC 7672 §3.1.1),
or it does not deliver to that host (RFC 7672 §2.2); a bogus answer is never used. Without TLSA it uses STARTTLS opportunistically and
does not verify the certificate (RFC 7435). A 4xx or a host that cannot be reached means the next MX host,
then a retry a moment later; every message is DKIM-signed (dkimpy) with the key the demo zone publishes.
The SMTP client is the standard library's ``smtplib``, run in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import smtplib
import socket
import ssl
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import dkim
import dns.rdtypes.ANY.TLSA
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.reference.dsn import delay_notice
from conformance.reference.flaws import Flaws
from conformance.reference.store import MailStore
from conformance.reference.sts_fetch import StsPolicy, fetch_policy, names_exactly
from conformance.reference.tlsrpt_report import Sessions, report_json, report_message
from conformance.reference.validator import LookupFailed, Security, Validator
from conformance.reference.zone import DKIM_SELECTOR, DOMAIN, dkim_key

SMTP_TIMEOUT = 10.0
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]
X509_V_FLAG_NO_CHECK_TIME = 0x200000   # OpenSSL's flag (x509_vfy.h), which ssl.VerifyFlags does not name
# why a session was refused (RFC 8460 §4.3 result types), in the words of the delay notice
REFUSALS = {"starttls-not-supported": "it offers no STARTTLS, and DANE or MTA-STS requires TLS",
            "validation-failure": "its certificate does not verify (MTA-STS enforce)",
            "certificate-host-mismatch": "its certificate does not name it (MTA-STS enforce)",
            "tlsa-invalid": "its certificate matches none of its DNSSEC-valid TLSA records"}


@dataclass(frozen=True)
class Route:
    """Where outbound mail goes: the resolver that serves the lab zone, its trust anchor, the MX port."""

    resolver: str            # "address:port"
    lab_dir: Path            # zone.ds (trust anchor) and ca.pem (the lab CA) as the suite writes them
    mx_port: int = 25
    https_port: int = 443    # the MTA-STS policy hosts
    ehlo_name: str = "mx1.example.test"
    retry_delay: float = 0.3
    attempts: int = 5


class Result(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


class Sender:
    """Queue and deliver outbound mail on the gateway's event loop (``route`` None: mail is kept, not sent)."""

    def __init__(self, flaws: Flaws) -> None:
        self.flaws = flaws
        self.route: Route | None = None
        self.results: list[tuple[str, Result]] = []     # (recipient domain, final result), for tests
        self.sessions: dict[str, Sessions] = {}         # policy domain -> TLS-RPT counts (RFC 8460 §4)
        self._since = dt.datetime.now(dt.UTC)
        self._tasks: set[asyncio.Task[None]] = set()
        self.mailbox: MailStore | None = None             # where delay notices to local senders go

    def report(self) -> None:
        """The control channel's ``tlsrpt``: send the reports now (on the gateway's loop), then start afresh."""
        if self.route is None:
            return
        sessions, since, self.sessions, self._since = self.sessions, self._since, {}, dt.datetime.now(dt.UTC)
        self._spawn(self._send_reports(self.route, sessions, since))

    async def _send_reports(self, route: Route, sessions: dict[str, Sessions], since: dt.datetime) -> None:
        validator = Validator(route.resolver, route.lab_dir / "zone.ds", trust_bogus=self.flaws.no_dnssec_validation)
        for domain, counted in sessions.items():
            try:
                txt, _ = await validator.lookup(f"_smtp._tls.{domain}", "TXT")
            except LookupFailed:
                continue
            records = [b"".join(r.strings).decode(errors="replace") for r in txt or ()]  # type: ignore[attr-defined]
            for rua in (part.strip().removeprefix("rua=mailto:") for record in records
                        if record.startswith("v=TLSRPTv1") for part in record.split(";")
                        if part.strip().startswith("rua=mailto:")):
                document = report_json(domain, counted, since, dt.datetime.now(dt.UTC))
                message = report_message(domain, rua, document, f"tlsrpt@{DOMAIN}")
                await self._deliver(route, rua.rpartition("@")[2].lower(), f"tlsrpt@{DOMAIN}", [rua],
                                    self._sign(message))

    def _count(self, domain: str, policy_type: str, failure: str | None) -> None:
        sessions = self.sessions.setdefault(domain, Sessions(policy_type))
        if failure is None:
            sessions.successes += 1
        elif not self.flaws.tlsrpt_missing_failures:
            sessions.failures[failure] = sessions.failures.get(failure, 0) + 1

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit(self, mail_from: str, recipients: list[str], message: bytes) -> None:
        """Called on the gateway's loop once the message is accepted (250 to DATA)."""
        if self.route is None:
            return
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in recipients:
            by_domain[rcpt.rpartition("@")[2].lower()].append(rcpt)
        signed = self._sign(message)
        for domain, rcpts in by_domain.items():
            self._spawn(self._deliver(self.route, domain, mail_from, rcpts, signed))

    def _sign(self, message: bytes) -> bytes:
        key = dkim_key(2048).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption())
        algorithm = b"rsa-sha1" if self.flaws.dkim_sha1 else b"rsa-sha256"
        header = dkim.sign(message, DKIM_SELECTOR.encode(), DOMAIN.encode(), key, include_headers=SIGNED_HEADERS,
                           signature_algorithm=algorithm)
        return header + message

    async def _deliver(self, route: Route, domain: str, mail_from: str, rcpts: list[str], message: bytes) -> None:
        result = Result.DEFERRED
        refusals: list[str] = []
        for attempt in range(route.attempts):
            result = await self._attempt(route, domain, mail_from, rcpts, message, refusals)
            if result is Result.DEFERRED and refusals and attempt == 0:
                self._notify_delay(route, mail_from, rcpts, refusals[-1], message)
            if result is not Result.DEFERRED or self.flaws.no_retry:
                break
            if attempt + 1 < route.attempts:
                await asyncio.sleep(route.retry_delay)   # a queue's retry interval, compressed for the lab
        self.results.append((domain, result))

    def _notify_delay(self, route: Route, mail_from: str, rcpts: list[str], reason: str, message: bytes) -> None:
        """RFC 3464: tell a local sender that its message waits, and why (the first refusal only)."""
        if self.mailbox is not None and self.mailbox.is_local(mail_from):
            self.mailbox.deliver([mail_from], delay_notice(route.ehlo_name, mail_from, rcpts, reason, message))

    async def _attempt(self, route: Route, domain: str, mail_from: str, rcpts: list[str], message: bytes,
                       refusals: list[str]) -> Result:
        validator = Validator(route.resolver, route.lab_dir / "zone.ds", trust_bogus=self.flaws.no_dnssec_validation)
        try:
            mx, mx_security = await validator.lookup(domain, "MX")
        except LookupFailed:
            return Result.DEFERRED
        if mx_security is Security.BOGUS:
            refusals.append(f"the MX records of {domain} fail DNSSEC validation (bogus)")
            return Result.DEFERRED
        if mx is None:
            return Result.BOUNCED
        hosts = [r.exchange.to_text() for r in sorted(mx, key=lambda r: r.preference)]
        policy = None if self.flaws.mta_sts_ignored else await self._sts(route, validator, domain)
        enforce = policy is not None and (policy.mode == "enforce" or (
            policy.mode == "testing" and self.flaws.mta_sts_testing_enforced))
        if enforce and policy is not None:   # RFC 8461 §5: only MX hosts the policy names, only with PKIX
            hosts = [h for h in hosts if policy.allows(h)]
            if not hosts:
                refusals.append(f"no MX host of {domain} is named by its MTA-STS policy (mode enforce)")
        for host in hosts[:1] if self.flaws.no_secondary_mx else hosts:
            result = await self._to_host(route, validator, host, mx_security, mail_from, rcpts, message, enforce,
                                         domain=domain, refusals=refusals)
            if result is not Result.DEFERRED:
                return result
        return Result.DEFERRED

    async def _sts(self, route: Route, validator: Validator, domain: str) -> StsPolicy | None:
        """The domain's MTA-STS policy (RFC 8461 §3), or None: no record, or no policy that could be fetched."""
        try:
            txt, _ = await validator.lookup(f"_mta-sts.{domain}", "TXT")
            if txt is None or not any(b"".join(r.strings).startswith(b"v=STSv1") for r in txt):  # type: ignore[attr-defined]
                return None
            addresses, _ = await validator.lookup(f"mta-sts.{domain}", "A")
        except LookupFailed:
            return None
        if addresses is None:
            return None
        return await asyncio.to_thread(fetch_policy, f"mta-sts.{domain}", addresses[0].address,
                                       route.https_port, route.lab_dir / "ca.pem",
                                       allow_wildcard=self.flaws.sts_wildcard_accepted)

    async def _to_host(self, route: Route, validator: Validator, host: str, mx_security: Security, mail_from: str,
                       rcpts: list[str], message: bytes, enforce: bool = False, domain: str = "",
                       refusals: list[str] | None = None) -> Result:
        refusals = [] if refusals is None else refusals
        try:
            addresses, a_security = await validator.lookup(host, "A")
            tlsa, tlsa_security = await validator.lookup(f"_{route.mx_port}._tcp.{host}", "TLSA")
        except LookupFailed:
            return Result.DEFERRED
        if addresses is None or Security.BOGUS in (a_security, tlsa_security):
            if Security.BOGUS in (a_security, tlsa_security):
                refusals.append(f"the address or TLSA records of {host.rstrip('.')} fail DNSSEC validation (bogus)")
            return Result.DEFERRED   # RFC 7672 §2.2: a bogus TLSA RRset means no delivery to this host
        dane = None
        if tlsa is not None and not self.flaws.no_dane and mx_security is tlsa_security is Security.SECURE:
            dane = [r for r in tlsa if isinstance(r, dns.rdtypes.ANY.TLSA.TLSA)]
        client = _Client(route, self.flaws, host.rstrip("."), addresses[0].address, dane, enforce)
        result = await asyncio.to_thread(client.send, mail_from, rcpts, message)
        if dane is not None or enforce:
            self._count(domain, "tlsa" if dane is not None else "sts", client.failure)
        if client.failure is not None:
            refusals.append(f"{host.rstrip('.')}: {REFUSALS.get(client.failure, client.failure)}")
        return result


class _Client:
    """One SMTP delivery to one MX host (blocking; runs in a worker thread)."""

    def __init__(self, route: Route, flaws: Flaws, host: str, address: str,
                 dane: list[dns.rdtypes.ANY.TLSA.TLSA] | None, sts_enforce: bool = False) -> None:
        self.route, self.flaws, self.host, self.address, self.dane = route, flaws, host, address, dane
        self.sts_enforce = sts_enforce   # MTA-STS enforce: STARTTLS and a PKIX-valid certificate, or nothing
        self.failure: str | None = None  # the RFC 8460 §4.3 result-type of a refused session

    def send(self, mail_from: str, rcpts: list[str], message: bytes, *, plaintext: bool = False) -> Result:
        try:
            # the name (not the address) is smtplib's host: starttls() sends it as SNI
            name = self.address if self.flaws.no_sni else self.host
            with _Smtp(self.address, name, self.route.mx_port, local_hostname=self.route.ehlo_name,
                       timeout=SMTP_TIMEOUT) as smtp:
                smtp.ehlo()
                offered = smtp.has_extn("starttls")
                if (self.dane is not None or self.sts_enforce) and not offered:
                    self.failure = "starttls-not-supported"
                    return Result.DEFERRED           # RFC 7672 §2.2, RFC 8461 §5: TLS required, none offered
                required = self.dane is not None or self.sts_enforce
                if offered and not plaintext and (required or not self.flaws.no_starttls_client):
                    result = self._starttls(smtp)
                    if result is not None:
                        return (self.send(mail_from, rcpts, message, plaintext=True)
                                if result is Result.BOUNCED else result)
                smtp.sendmail(mail_from, rcpts, message)
                return Result.DELIVERED
        except smtplib.SMTPRecipientsRefused:
            return Result.BOUNCED
        except smtplib.SMTPResponseException as exc:
            return Result.DEFERRED if 400 <= exc.smtp_code < 500 else Result.BOUNCED
        except (OSError, smtplib.SMTPException):
            return Result.DEFERRED

    def _starttls(self, smtp: smtplib.SMTP) -> Result | None:
        """None once TLS is up and acceptable; DEFERRED to give up on this host; BOUNCED (plaintext_fallback
        only) to start over in plaintext."""
        enforced = self.sts_enforce and self.dane is None
        verify = enforced or (self.flaws.plaintext_fallback and self.dane is None)
        give_up = Result.BOUNCED if verify and not enforced else Result.DEFERRED
        try:
            smtp.starttls(context=self._context(verify))
        except ssl.SSLCertVerificationError:
            self.failure = "validation-failure"
            return give_up
        except (ssl.SSLError, smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            # STARTTLS refused (454) or a handshake that failed after its 220: no TLS to be had on this session
            self.failure = ("starttls-not-supported" if isinstance(exc, smtplib.SMTPResponseException)
                            else "validation-failure")
            smtp.close()   # the session is dead: smtplib's QUIT on leaving the block would fail on it
            return Result.BOUNCED if self.flaws.plaintext_after_failed_starttls else give_up
        if verify and not self._names_host(smtp):
            self.failure = "certificate-host-mismatch"
            smtp.quit()
            return give_up
        if self.dane is not None and not self._dane_match(smtp):
            self.failure = "tlsa-invalid"
            smtp.quit()
            return Result.DEFERRED
        if self.dane is not None and self.flaws.dane_checks_expiry and _expired(smtp):
            self.failure = "certificate-expired"
            smtp.quit()
            return Result.DEFERRED
        smtp.ehlo()
        return None

    def _context(self, verify: bool) -> ssl.SSLContext:
        if verify:   # the chain here, the name in _names_host: the no_sni flaw sends no name to check against
            context = ssl.create_default_context(cafile=str(self.route.lab_dir / "ca.pem"))
            context.check_hostname = False
            if self.flaws.sts_ignores_expiry and self.sts_enforce:
                context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
            return context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE   # opportunistic TLS (RFC 7435): encrypt, authenticate nothing
        if self.flaws.tls10_client:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        else:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _names_host(self, smtp: smtplib.SMTP) -> bool:
        """The verified certificate names the MX host (a DNS-ID in its SAN, RFC 6125)."""
        return names_exactly(_peer_der(smtp), self.host)

    def _dane_match(self, smtp: smtplib.SMTP) -> bool:
        der = _peer_der(smtp)
        if not der:
            return False
        spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashlib.sha256(spki).digest()
        return any((r.usage, r.selector, r.mtype, r.cert) == (3, 1, 1, digest) for r in self.dane or ())


def _expired(smtp: smtplib.SMTP) -> bool:
    der = _peer_der(smtp)
    return der is not None and x509.load_der_x509_certificate(der).not_valid_after_utc < dt.datetime.now(dt.UTC)


def _peer_der(smtp: smtplib.SMTP) -> bytes | None:
    sock = smtp.sock
    return sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None


class _Smtp(smtplib.SMTP):
    """smtplib connecting to a fixed address while its host is the MX host's name (for SNI)."""

    def __init__(self, address: str, host: str, port: int, *, local_hostname: str, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, local_hostname=local_hostname, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)
