"""MTA-STS (RFC 8461): the ``_mta-sts`` TXT record, the policy fetched over HTTPS, and the MX patterns.

The fetch follows §3.3 as a strict sender would: ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
with the certificate verified for that name, no redirect followed, only 200 accepted, ``text/plain``
only, at most 64 KiB read and the whole fetch inside one time budget. httpx does the HTTP (redirects off
by default, per-phase timeouts, streaming so the size cap holds, and an ``sni_hostname`` extension so a
lab override can send the request to a loopback address while SNI and verification keep the real name).

The record and policy grammars are parsed here: a dozen lines (§3.1, §3.2), and the parsers that exist
(postfix-mta-sts-resolver, checkdmarc) come tied to their own fetchers and do not say which line is wrong.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from conformance.probes.dns.policy import RecordError, tag_list
from conformance.probes.wire.outcome import Attempt, Outcome, os_error_words, tls_error_words

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024        # far above any real policy; a bigger body is not a policy
MAX_AGE_LIMIT = 31557600            # RFC 8461 §3.2: about one year
MODES = ("enforce", "testing", "none")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD = re.compile(r"[A-Za-z0-9_.-]{1,32}")   # sts-policy-field-name


def parse_sts_record(text: str) -> str:
    """RFC 8461 §3.1: 'v=STSv1' first, then 'id=' of 1-32 letters and digits; returns the id."""
    tags = tag_list(text)
    if not tags or tags[0] != ("v", "STSv1"):
        raise RecordError(f"the first tag must be v=STSv1: {text!r}")
    policy_id = dict(tags).get("id")
    if policy_id is None or not _ID.fullmatch(policy_id):
        raise RecordError(f"id= must be 1-32 letters or digits: {text!r}")
    return policy_id


@dataclass(frozen=True)
class StsPolicy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...]            # patterns as written, lower case
    lines: tuple[str, ...]         # the policy's lines, for evidence

    def line_for(self, key: str) -> str:
        return next((line for line in self.lines if line.split(":")[0].strip().lower() == key), f"no {key} line")


def parse_policy(text: str) -> StsPolicy:
    """RFC 8461 §3.2: 'key: value' lines (CRLF or LF); version, mode and max_age once each, mx one or more
    (none only in mode none); unknown keys are extensions and ignored. Raises RecordError naming the line."""
    lines = tuple(line.rstrip("\r") for line in text.split("\n") if line.strip())
    values: dict[str, list[str]] = {}
    for number, line in enumerate(lines, 1):
        key, sep, value = line.partition(":")
        if not sep or not _FIELD.fullmatch(key.strip()):
            raise RecordError(f"line {number} {line!r} is not 'key: value'")
        values.setdefault(key.strip().lower(), []).append(value.strip())
    single = {}
    for key in ("version", "mode", "max_age"):
        found = values.get(key, [])
        if len(found) != 1:
            raise RecordError(f"{len(found)} '{key}' lines (exactly one needed)")
        single[key] = found[0]
    if single["version"] != "STSv1":
        raise RecordError(f"version: {single['version']!r} (must be STSv1)")
    mode = single["mode"].lower()
    if mode not in MODES:
        raise RecordError(f"mode: {single['mode']!r} is not one of {', '.join(MODES)}")
    age = single["max_age"]
    if not (age.isdigit() and len(age) <= 10 and int(age) <= MAX_AGE_LIMIT):
        raise RecordError(f"max_age: {age!r} (whole seconds, at most {MAX_AGE_LIMIT})")
    mx = tuple(p.lower().rstrip(".") for p in values.get("mx", []))
    if not mx and mode != "none":
        raise RecordError(f"no mx line: a policy in mode {mode} must name its MX hosts")
    return StsPolicy(single["version"], mode, int(age), mx, lines)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: exact, or '*.' plus a suffix matching exactly one more label on the left."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return pattern == host


@dataclass(frozen=True)
class FetchedPolicy:
    url: str
    address: str                   # where the request went: host:port
    content_type: str
    body: str


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain.rstrip('.').lower()}"


def tls_context(trust_anchors: tuple[Path, ...]) -> ssl.SSLContext:
    """The system store plus the target's extra CAs; host names checked (RFC 8461 §3.3)."""
    context = ssl.create_default_context()
    for path in trust_anchors:
        context.load_verify_locations(cafile=str(path))
    return context


def _url_host(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


async def fetch_policy(domain: str, address: str, port: int, context: ssl.SSLContext,
                       timeout: float) -> Attempt[FetchedPolicy]:
    """GET the policy of ``domain`` from ``address:port`` (SNI and certificate name: mta-sts.<domain>).
    Never raises: a protocol breach is SERVER_ERROR, no answer in time or no connection INCONCLUSIVE."""
    host = policy_host(domain)
    url = f"https://{host}{POLICY_PATH}"
    where = f"{_url_host(address)}:{port}"
    note = f"-- GET {url} from {where}"
    try:
        fetched = await asyncio.wait_for(_get(host, where, context, timeout), timeout)
    except TimeoutError:
        return Attempt(url, Outcome.INCONCLUSIVE, None,
                       f"no complete answer from {where} within {timeout:g} s", (note,))
    except _Refused as exc:
        return Attempt(url, Outcome.SERVER_ERROR, None, str(exc), (note,))
    except httpx.HTTPError as exc:
        outcome, words = _http_words(exc, where, host)
        return Attempt(url, outcome, None, words, (note,))
    except OSError as exc:
        return Attempt(url, Outcome.INCONCLUSIVE, None, f"{os_error_words(exc)} ({where})", (note,))
    result = FetchedPolicy(url, where, fetched[0], fetched[1])
    return Attempt(url, Outcome.COMPLETED, result,
                   transcript=(note, f"-- 200 {fetched[0]}, {len(fetched[1])} characters"))


class _Refused(Exception):
    """The policy host answered, but not with a policy a sender may use (§3.3); the message says why."""


async def _get(host: str, where: str, context: ssl.SSLContext, timeout: float) -> tuple[str, str]:
    async with httpx.AsyncClient(verify=context, follow_redirects=False, timeout=timeout, trust_env=False) as client:
        request = client.build_request("GET", f"https://{where}{POLICY_PATH}",
                                       headers={"Host": host, "Accept-Encoding": "identity"},
                                       extensions={"sni_hostname": host})
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                moved = response.headers.get("location")
                raise _Refused(f"answered HTTP {response.status_code}" + (
                    f" (redirect to {moved}; senders do not follow redirects, RFC 8461 §3.3)" if moved else
                    " (only 200 is a policy, RFC 8461 §3.3)"))
            media = response.headers.get("content-type", "")
            if media.split(";")[0].strip().lower() != "text/plain":
                raise _Refused(f"Content-Type is {media or 'missing'!r}, not text/plain (RFC 8461 §3.2)")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    raise _Refused(f"the body exceeds {MAX_POLICY_BYTES // 1024} KiB: reading stopped there")
        finally:
            await response.aclose()
    return media, body.decode("utf-8", "replace")


def _http_words(exc: httpx.HTTPError, where: str, host: str) -> tuple[Outcome, str]:
    """httpx wraps the socket and TLS errors: the certificate is the domain's fault, the network is not."""
    cause: BaseException | None = exc
    # walk to the innermost OSError: anyio puts a bare "All connection attempts failed" above the real one
    while cause is not None and not (isinstance(cause, (OSError, ssl.SSLError)) and cause.errno is not None):
        deeper = cause.__cause__ or cause.__context__
        if deeper is None:
            break
        cause = deeper
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Outcome.SERVER_ERROR, f"the certificate of {where} is not valid for {host}: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return Outcome.SERVER_ERROR, f"TLS with {where} failed: {tls_error_words(cause)}"
    if isinstance(cause, OSError):
        return Outcome.INCONCLUSIVE, f"{os_error_words(cause)} ({where})"
    if isinstance(exc, httpx.TimeoutException):
        return Outcome.INCONCLUSIVE, f"{where} did not answer in time"
    if isinstance(exc, httpx.RemoteProtocolError):
        return Outcome.SERVER_ERROR, f"{where} broke HTTP/1.1 ({str(exc) or 'malformed answer'})"
    return Outcome.INCONCLUSIVE, f"HTTP with {where} failed ({str(exc) or 'no detail'})"
