"""The raw TLS scanner: versions, cipher suites, preference, groups, DHE size, compression,
secure renegotiation and TLS_FALLBACK_SCSV of one endpoint address, from ClientHellos we write.

Why not OpenSSL: OpenSSL 3 cannot offer SSL 3.0, RC4 or EXPORT and refuses TLS 1.0/1.1 client-side at
its default security level, so an OpenSSL-based scan reports "not supported" for what the *client*
refused. Here every refusal is the server's.

Thrift (a mail gateway rate-limits): one hello offers every suite of a version; the server's choice
is removed and the rest offered again until it refuses (elimination), in a few interleaved partitions
per version so the rounds run concurrently inside the per-host connection budget. Every answer is
used twice: the first flight also tells compression (DEFLATE is always offered), secure renegotiation
(the SCSV is always offered), the ECDHE group and the DHE prime size.

A probe that times out, cannot connect or meets 421 is retried within the budget, then its item is
reported in ``TlsScan.inconclusive`` with the reason — never read as "not supported".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conformance.probes.starttls.opening import open_to_tls_point
from conformance.probes.tls.confirm import Confirmation, handshakers, settle
from conformance.probes.tls.early_data import SessionTickets, session_tickets
from conformance.probes.tls.hello import Answer, Refusal, ServerFlight, exchange, exchange_ssl2
from conformance.probes.tls.robot import RSA_KEX_SUITES, Padding, Robot, RobotAnswer, judge, robot_answer
from conformance.probes.tls.suites import LEGACY_SUITES, TLS13_SUITES, CipherSuite, Grade, suite
from conformance.probes.tls.vulns import (
    PEER_ALLOWED_TO_SEND,
    CcsInjection,
    Heartbleed,
    ccs_injection,
    heartbleed,
)
from conformance.probes.tls.wire import (
    ALL_GROUPS,
    COMPRESSION_DEFLATE,
    Extension,
    ExtensionType,
    NamedGroup,
    TlsVersion,
    describe,
    legacy_hello,
    ssl2_hello,
    tls13_hello,
)
from conformance.probes.wire.connect import HostLimiter
from conformance.probes.wire.outcome import (
    Attempt,
    ProbeError,
    ProbeTimeout,
    ServerUnavailable,
    Transcript,
    Unreachable,
    attempt,
    mapped_errors,
)
from conformance.target import Endpoint

LEGACY_VERSIONS = (TlsVersion.SSL3, TlsVersion.TLS1_0, TlsVersion.TLS1_1, TlsVersion.TLS1_2)
RETRIES = 2  # extra attempts for a probe that timed out / could not connect / met 421
BUSY_BACKOFF = 0.2  # seconds, times the attempt number, before retrying after a 421


def _pool(version: TlsVersion) -> tuple[int, ...]:
    return _TLS13_POOL if version == TlsVersion.TLS1_3 else _LEGACY_POOL


EC_GROUPS = tuple(g for g in ALL_GROUPS if g < 256 or g > 511)
FFDHE_GROUPS = tuple(g for g in ALL_GROUPS if 256 <= g <= 511)
_TLS13_POOL = tuple(s.code for s in TLS13_SUITES)
_LEGACY_POOL = tuple(s.code for s in LEGACY_SUITES)
_ECDHE_POOL = tuple(s.code for s in LEGACY_SUITES if s.ephemeral_ecdh)


class ScanConfig(Protocol):
    """What a scan needs from its caller; ``conformance.target.Target`` has it."""

    @property
    def timeout(self) -> float: ...

    @property
    def ehlo_name(self) -> str: ...

    @property
    def max_connections_per_host(self) -> int: ...


@dataclass(frozen=True)
class ScanSettings:
    timeout: float = 10.0
    ehlo_name: str = "mailconform.invalid"
    max_connections_per_host: int = 4


@dataclass(frozen=True)
class TlsScan:
    """Everything one scan of one endpoint address found. ``None`` means "not determined" (see
    ``inconclusive``) or "not applicable" (e.g. fallback SCSV with a single version).

    ``suites`` lists each version's accepted suites in the order found (the first is the server's
    pick from everything offered). ``server_preference`` is measured at the best version with two
    accepted suites; ``groups`` joins the TLS 1.3 groups and the best legacy version's ECDHE curves;
    ``dhe_bits`` is the smallest DHE prime seen; ``connections`` counts TCP connections opened.
    Versions and suites are reported only when a completed handshake confirmed them (``tls.confirm``);
    compression and renegotiation come from confirmed versions only."""

    endpoint_id: str
    address: str
    accepted_versions: frozenset[TlsVersion]
    suites: dict[TlsVersion, tuple[CipherSuite, ...]]
    server_preference: bool | None
    groups: frozenset[NamedGroup]
    dhe_bits: int | None
    compression: bool | None
    secure_renegotiation: bool | None
    fallback_scsv: bool | None
    connections: int
    inconclusive: tuple[str, ...]
    duration_s: float
    ocsp_stapling: bool | None = None  # TLS 1.2 and older; TLS 1.3 staples inside the encrypted Certificate
    # Neither confirmed nor refused, and why (no answer; or a ServerHello but no completed handshake):
    unsettled_versions: dict[TlsVersion, str] = field(default_factory=dict)
    # Versions whose suite list is incomplete or holds suites no completed handshake confirmed, and why:
    unsettled_suites: dict[TlsVersion, str] = field(default_factory=dict)
    # Per version accepting both classes, under server preference: () if every suite without forward-secret
    # AEAD ranks below every one with it, else (a legacy suite, the strong suites it outranks); None: unknown.
    legacy_rank: dict[TlsVersion, tuple[CipherSuite, ...] | None] = field(default_factory=dict)
    dhe_primes: frozenset[int] = frozenset()  # every finite-field DHE prime a ServerKeyExchange carried
    # Per confirmed version TLS 1.0-1.2: did every ServerHello echo the extended master secret (RFC 7627)?
    extended_master_secret: dict[TlsVersion, bool] = field(default_factory=dict)
    cbc_without_etm: frozenset[CipherSuite] = frozenset()  # confirmed CBC suites chosen without encrypt-then-MAC
    truncated_hmac: bool | None = None  # some ServerHello of a confirmed version accepted truncated HMAC
    heartbleed: Heartbleed | None = None  # None: no TLS 1.0-1.2 answered, or the probe got no answer
    ccs_injection: CcsInjection | None = None  # the same
    robot: Robot | None = None  # the same
    session_tickets: SessionTickets | None = None  # None: no TLS 1.3, or the probe got no answer
    sni_refusal: str | None = None  # how a hello without server_name was refused ("" if it was not)
    # What TLS 1.3 did with a hello offering X25519MLKEM768 and X25519, a key share for each (None: no TLS 1.3)
    post_quantum: str | None = None
    # Connections opened per probe ("TLS 1.2 suites", "ROBOT", ...): what each check's evidence cost
    connections_by_probe: dict[str, int] = field(default_factory=dict)

    @property
    def all_suites(self) -> frozenset[CipherSuite]:
        return frozenset(s for per_version in self.suites.values() for s in per_version)

    @property
    def weakest(self) -> Grade | None:
        return min((s.grade for s in self.all_suites), default=None)

    def summary(self) -> str:
        versions = ", ".join(str(v) for v in sorted(self.accepted_versions)) or "none"
        return (f"{self.endpoint_id} [{self.address}]: {versions}; {len(self.all_suites)} suites; "
                f"{self.connections} connections in {self.duration_s:.1f} s")


Opener = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


FIRST, LONG_CHAIN, CHAIN, LAST = 0, 1, 2, 3  # probe priorities: who gets the next free connection


class _PriorityGate:
    """A semaphore that wakes the waiter with the lowest priority number first (FIFO within one)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        if self._free > 0 and not self._waiters:
            self._free -= 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._order), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


@dataclass
class _Findings:
    compression: dict[int, set[bool]] = field(default_factory=dict)
    stapling: set[bool] = field(default_factory=set)
    renegotiation: dict[int, bool] = field(default_factory=dict)
    groups_by_version: dict[int, set[int]] = field(default_factory=dict)
    dhe_bits: set[int] = field(default_factory=set)
    dhe_primes: set[int] = field(default_factory=set)
    ems: dict[int, set[bool]] = field(default_factory=dict)
    etm_by_suite: dict[tuple[int, int], set[bool]] = field(default_factory=dict)
    truncated_hmac: dict[int, set[bool]] = field(default_factory=dict)

    def learn(self, flight: ServerFlight) -> None:
        """Everything a first flight tells besides version and suite (reuse, not re-probe)."""
        if flight.version < TlsVersion.TLS1_3:
            self.compression.setdefault(flight.version, set()).add(
                flight.hello.compression_method == COMPRESSION_DEFLATE)
            if flight.version >= TlsVersion.TLS1_0:  # SSL 3.0 hellos carry no extensions
                self.stapling.add(flight.hello.ocsp_stapling)
            self.renegotiation[flight.version] = flight.hello.secure_renegotiation
        if TlsVersion.TLS1_0 <= flight.version < TlsVersion.TLS1_3:
            hello = flight.hello
            self.ems.setdefault(flight.version, set()).add(hello.extended_master_secret)
            self.truncated_hmac.setdefault(flight.version, set()).add(hello.truncated_hmac)
            if "_CBC" in suite(hello.cipher_suite).cipher:
                self.etm_by_suite.setdefault((flight.version, hello.cipher_suite), set()).add(hello.encrypt_then_mac)
        group = flight.hello.key_share_group if flight.version >= TlsVersion.TLS1_3 else flight.ecdhe_group
        if group is not None:
            self.groups_by_version.setdefault(flight.version, set()).add(group)
        if flight.dhe_bits is not None:
            self.dhe_bits.add(flight.dhe_bits)
        if flight.dhe_prime is not None:
            self.dhe_primes.add(flight.dhe_prime)


class _Scan:
    def __init__(self, endpoint: Endpoint, cfg: ScanConfig, opener: Opener, transcript: Transcript,
                 limiter: HostLimiter) -> None:
        self.endpoint, self.cfg, self.opener = endpoint, cfg, opener
        self.transcript, self.limiter = transcript, limiter
        self.connections = 0
        self.connections_by_probe: Counter[str] = Counter()
        self.inconclusive: list[str] = []
        self.errors: list[ProbeError] = []
        self.findings = _Findings()
        self.unsettled_suites: dict[TlsVersion, str] = {}
        self._preamble_logged = False
        self.gate = _PriorityGate(limiter.max_per_host)
        # Resolved by the first elimination round of a version: the preference probe needs no more.
        self.second_suite: dict[TlsVersion, asyncio.Future[int]] = {}
        self.chains: dict[TlsVersion, list[list[int]]] = {}  # each partition's picks, in the server's order
        self.confirmations: dict[tuple[TlsVersion, int], asyncio.Future[Confirmation]] = {}

    async def _connection(self, item: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Only the first connection's STARTTLS preamble goes into the transcript; the rest repeat it.
        log = self.transcript if not self._preamble_logged else Transcript(self.endpoint.id)
        self._preamble_logged = True
        streams = await self.opener(self.endpoint, timeout=self.cfg.timeout, ehlo_name=self.cfg.ehlo_name,
                                    transcript=log, limiter=self.limiter)
        self.connections += 1
        self.connections_by_probe[item.split(" (")[0]] += 1  # "ROBOT (no 0x00 separator)" counts as ROBOT
        return streams

    async def _once(self, send: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Any]],
                    priority: int, item: str) -> Any:
        # The limiter slot is taken by the opener and given back when the connection is lost; the gate
        # in front of it decides which waiting probe goes next (long sequential chains first).
        async with self.gate.slot(priority):
            reader, writer = await self._connection(item)
            try:
                with mapped_errors(f"TLS handshake with {self.endpoint}"):
                    return await asyncio.wait_for(send(reader, writer), self.cfg.timeout)
            finally:
                writer.transport.abort()

    async def probe(self, item: str, send: Callable[..., Awaitable[Any]], priority: int = 1) -> Any | None:
        """One exchange, retried on timeout/unreachable/421; None (and an inconclusive note) if no answer."""
        last: ProbeError | None = None
        for number in range(1 + RETRIES):
            if isinstance(last, ServerUnavailable):
                await asyncio.sleep(BUSY_BACKOFF * number)  # a rate-limiting MX needs a pause, not a burst
            try:
                return await self._once(send, priority, item)
            except (Unreachable, ProbeTimeout, ServerUnavailable) as exc:
                last = exc
            except ProbeError as exc:  # a protocol violation or our own error: retrying will not help
                last = exc
                break
        assert last is not None
        self.errors.append(last)
        self.inconclusive.append(f"{item}: {last}")
        self.transcript.note(f"{item}: no answer ({last})")
        return None

    async def hello(self, item: str, hello_factory: Callable[[], Any], priority: int = 1) -> Answer | None:
        answer: Answer | None = await self.probe(item, lambda r, w: exchange(r, w, hello_factory()), priority)
        if isinstance(answer, ServerFlight):
            self.findings.learn(answer)
            self.transcript.note(f"{item}: {describe(TlsVersion, answer.version)} "
                                 f"{suite(answer.cipher_suite)}{' (HRR)' if answer.hello.is_retry_request else ''}")
        elif isinstance(answer, Refusal):
            self.transcript.note(f"{item}: refused ({answer.reason})")
        return answer

    def _hello_for(self, version: TlsVersion, suites: tuple[int, ...], **kw: Any) -> Callable[[], Any]:
        host = self.endpoint.host
        if version == TlsVersion.TLS1_3:
            return lambda: tls13_hello(suites, host=host, **kw)
        return lambda: legacy_hello(version, suites, host=host, **kw)

    # --- versions and suites ------------------------------------------------------------------

    async def eliminate(self, version: TlsVersion, offer: list[int], item: str,
                        priority: int = CHAIN) -> tuple[list[int], bool]:
        """Suites the server picks from ``offer`` round after round; the flag says the list is complete."""
        chosen: list[int] = []
        remaining = list(offer)
        while remaining:
            answer = await self.hello(item, self._hello_for(version, tuple(remaining)), priority)
            if answer is None:
                return chosen, False
            if isinstance(answer, Refusal) or answer.version != version:
                return chosen, True
            if answer.cipher_suite not in remaining:
                self.inconclusive.append(f"{item}: server chose {suite(answer.cipher_suite)}, which was not offered")
                return chosen, False
            chosen.append(answer.cipher_suite)
            remaining.remove(answer.cipher_suite)
            second = self.second_suite.get(version)
            if second is not None and not second.done():
                second.set_result(answer.cipher_suite)
        return chosen, True

    async def first_contact(self, version: TlsVersion) -> tuple[bool | None, int | None]:
        """(accepted?, the suite chosen from every one we know); accepted is None if nothing answered."""
        first = await self.hello(f"{version} support", self._hello_for(version, _pool(version)), FIRST)
        if first is None:
            self.inconclusive.append(f"{version} support: not determined")
            return None, None
        if isinstance(first, Refusal) or first.version != version:
            return False, None
        if first.cipher_suite not in _pool(version):
            self.inconclusive.append(f"{version} suites: server chose {suite(first.cipher_suite)}, "
                                     "which was not offered")
            return True, None
        return True, first.cipher_suite

    async def enumerate_suites(self, version: TlsVersion, first: int, main: bool) -> list[int]:
        """Every suite the server answers at ``version``, in the order found, ``first`` first."""
        pool = [code for code in _pool(version) if code != first]
        parts = self._partitions(version, pool, main)
        # The best legacy version's list is the longest: its rounds go first, shorter lists fill the gaps.
        priority = LONG_CHAIN if main else CHAIN
        results = await asyncio.gather(*(self.eliminate(version, part, f"{version} suites", priority)
                                         for part in parts))
        if not all(complete for _, complete in results):
            self.unsettled_suites[version] = "the suite list could not be completed"
        self.chains[version] = [chosen for chosen, _ in results]
        return [first] + [code for chosen, _ in results for code in chosen]

    def _partitions(self, version: TlsVersion, pool: list[int], main: bool) -> list[list[int]]:
        # Each chain costs one refusal, and chains beyond the connection budget only queue. TLS 1.3
        # has a handful of suites: one chain. The best legacy version usually has the most suites:
        # most of the budget; older versions (shorter lists, running alongside) fewer.
        budget = self.limiter.max_per_host
        if version == TlsVersion.TLS1_3:
            count = 1
        elif main:
            count = min(4, max(1, budget - 2))
        else:
            count = 2 if budget >= 5 else 1
        return [part for part in (pool[i::count] for i in range(count)) if part]

    async def ssl2(self) -> bool | None:
        return await self.probe("SSL 2.0 support", lambda r, w: exchange_ssl2(r, w, ssl2_hello()), LAST)

    def confirm(self, version: TlsVersion, chosen: CipherSuite) -> asyncio.Future[Confirmation]:
        """A completed handshake at ``version`` offering ``chosen``, through a stack that speaks it; started
        once, so a confirmation begun early (a version's first suite, right after first contact) is reused."""
        key = (version, chosen.code)
        if key not in self.confirmations:
            self.confirmations[key] = asyncio.ensure_future(self._confirm(version, chosen))
        return self.confirmations[key]

    async def _confirm(self, version: TlsVersion, chosen: CipherSuite) -> Confirmation:
        found = Confirmation(version, chosen, False, "but no local TLS stack can complete this handshake")
        timeout = self.cfg.timeout * 0.9  # inside _once's own bound, so the stack's words win over a timeout
        for stack in handshakers(version, chosen):
            answer: Confirmation | None = await self.probe(
                f"{version} confirmation", lambda r, w, s=stack: s(r, w, self.endpoint.host, timeout), LAST)
            found = answer or Confirmation(version, chosen, False, "but the confirmation handshake got no answer")
            self.transcript.note(f"confirmation: {found}")
            if not found.ours:
                break
        return found

    # --- properties that need their own hello ---------------------------------------------------

    async def server_preference(self, firsts: dict[TlsVersion, int],
                                enumerations: Mapping[TlsVersion, asyncio.Future[list[int]]]) -> bool | None:
        """At the best version with two accepted suites, offer the second-found before the first: a
        server that keeps its first pick chooses; one that switches follows the client. Starts as soon
        as that second suite is known, alongside the rest of the enumeration."""
        for version in sorted(firsts, reverse=True):
            second = self.second_suite[version]
            either: set[asyncio.Future[Any]] = {second, enumerations[version]}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if second.done():
                return await self._preference_at(version, firsts[version], second.result())
        return None

    async def _preference_at(self, version: TlsVersion, first: int, second: int) -> bool | None:
        answer = await self.hello(f"{version} cipher preference", self._hello_for(version, (second, first)), CHAIN)
        if not isinstance(answer, ServerFlight) or answer.version != version:
            self.inconclusive.append(f"{version} cipher preference: the server refused suites it had accepted")
            return None
        return answer.cipher_suite == first

    async def legacy_ranks(self, found: dict[TlsVersion, list[int]], preference: bool | None,
                           ) -> dict[TlsVersion, tuple[CipherSuite, ...] | None]:
        """Where the server orders suites and accepts both classes, whether a suite without forward-secret
        AEAD outranks one with it (RFC 9325 4.1: prefer them). Each elimination chain already holds the
        server's order within its partition; across partitions only the lowest strong and the highest
        legacy suite of each chain can be out of order, so those few are ranked against each other."""
        if not preference:
            return {}
        mixed = [v for v, codes in found.items() if v != TlsVersion.TLS1_3 and v in self.chains
                 and len({suite(c).grade is Grade.STRONG for c in codes}) == 2]
        ranks = await asyncio.gather(*(self._rank(v, suite(found[v][0])) for v in mixed))
        return dict(zip(mixed, ranks))

    async def _rank(self, version: TlsVersion, first: CipherSuite) -> tuple[CipherSuite, ...] | None:
        if first.grade is not Grade.STRONG:  # the server's top pick from everything is already legacy
            return (first, *(suite(c) for chain in self.chains[version] for c in chain
                             if suite(c).grade is Grade.STRONG))
        lowest_strong: list[CipherSuite] = []
        highest_legacy: list[CipherSuite] = []
        for chain in self.chains[version]:
            picks = [suite(c) for c in chain]
            strong = [i for i, s in enumerate(picks) if s.grade is Grade.STRONG]
            legacy = [i for i, s in enumerate(picks) if s.grade is not Grade.STRONG]
            if strong and legacy and legacy[0] < strong[-1]:
                return (picks[legacy[0]], *(picks[i] for i in strong if i > legacy[0]))
            lowest_strong += [picks[strong[-1]]] if strong else []
            highest_legacy += [picks[legacy[0]]] if legacy else []
        if not lowest_strong or not highest_legacy:
            return ()
        # Each chain's lowest strong suite against every chain's highest legacy one, all in one round: a
        # legacy pick means that legacy suite (the top one: every hello offers the same) outranks it.
        legacy_codes = tuple(s.code for s in highest_legacy)
        answers = await asyncio.gather(*(self.hello(f"{version} legacy suite rank",
                                                    self._hello_for(version, (strong.code, *legacy_codes)), CHAIN)
                                         for strong in lowest_strong))
        top_legacy: CipherSuite | None = None
        outranked: list[CipherSuite] = []
        for candidate, answer in zip(lowest_strong, answers):
            if (not isinstance(answer, ServerFlight) or answer.version != version
                    or answer.cipher_suite not in (candidate.code, *legacy_codes)):
                self.inconclusive.append(f"{version} legacy suite rank: the server refused suites it had accepted")
                return None
            if suite(answer.cipher_suite).grade is not Grade.STRONG:
                top_legacy = suite(answer.cipher_suite)
                outranked.append(candidate)
        return (top_legacy, *outranked) if top_legacy is not None else ()

    async def fallback_scsv(self, accepted: set[TlsVersion]) -> bool | None:
        """RFC 7507: a hello below the server's best version carrying the SCSV must get inappropriate_fallback."""
        ordered = sorted(v for v in accepted if v >= TlsVersion.SSL3)
        if len(ordered) < 2:
            return None
        lower = ordered[-2]
        answer = await self.hello(f"{lower} with TLS_FALLBACK_SCSV",
                                  self._hello_for(lower, _pool(lower), fallback=True), LAST)
        if answer is None:
            return None
        # The same hello without the SCSV was accepted, so any refusal is the SCSV's doing; some stacks (and
        # asyncio's TLS server) close without sending the inappropriate_fallback alert RFC 7507 3 asks for.
        return isinstance(answer, Refusal)

    async def heartbleed(self, firsts: dict[TlsVersion, int]) -> Heartbleed | None:
        """CVE-2014-0160 at the best version from TLS 1.0 to 1.2 that chose a suite (``tls.vulns``)."""
        legacy = sorted(v for v in firsts if TlsVersion.TLS1_0 <= v <= TlsVersion.TLS1_2)
        if not legacy:
            return None
        hello = legacy_hello(legacy[-1], _pool(legacy[-1]), host=self.endpoint.host,
                             extra=(Extension(ExtensionType.HEARTBEAT, PEER_ALLOWED_TO_SEND),))
        found: Heartbleed | None = await self.probe("Heartbleed", lambda r, w: heartbleed(r, w, hello), LAST)
        if found is not None:
            self.transcript.note(f"Heartbleed: {found.reason}")
        return found

    async def ccs_injection(self, firsts: dict[TlsVersion, int]) -> CcsInjection | None:
        """CVE-2014-0224 at the best version from TLS 1.0 to 1.2 that chose a suite (``tls.vulns``)."""
        legacy = sorted(v for v in firsts if TlsVersion.TLS1_0 <= v <= TlsVersion.TLS1_2)
        if not legacy:
            return None
        hello = legacy_hello(legacy[-1], _pool(legacy[-1]), host=self.endpoint.host)
        found: CcsInjection | None = await self.probe("CCS injection", lambda r, w: ccs_injection(r, w, hello), LAST)
        if found is not None:
            self.transcript.note(f"CCS injection: {found.reason}")
        return found

    async def robot(self, firsts: dict[TlsVersion, int]) -> Robot | None:
        """ROBOT at the best version from TLS 1.0 to 1.2 (``tls.robot``): one handshake with a well-formed
        premaster; only if RSA key exchange is accepted, the four malformed ones, and all five again if
        their answers differed (an oracle must answer the same way twice)."""
        legacy = sorted(v for v in firsts if TlsVersion.TLS1_0 <= v <= TlsVersion.TLS1_2)
        if not legacy:
            return None
        hello = legacy_hello(legacy[-1], RSA_KEX_SUITES, host=self.endpoint.host)

        async def ask(padding: Padding) -> RobotAnswer | Refusal | None:
            # CHAIN, not LAST: up to three rounds that depend on each other must not all wait for the end
            answer: RobotAnswer | Refusal | None = await self.probe(
                f"ROBOT ({padding.value})", lambda r, w: robot_answer(r, w, hello, padding, self.cfg.timeout / 2),
                CHAIN)
            return answer

        first = await ask(Padding.VALID)
        if first is None:
            return None
        if isinstance(first, Refusal):
            return Robot(False, f"refused a hello offering only RSA key exchange ({first.reason}): no RSA "
                                "decryption to act as an oracle")
        malformed: list[Padding] = [p for p in Padding if p is not Padding.VALID]
        rest = dict(zip(malformed, await asyncio.gather(*map(ask, malformed))))
        answers: list[dict[Padding, RobotAnswer | Refusal | None]] = [{Padding.VALID: first, **rest}]
        if len(set(answers[0].values())) > 1:
            answers.append(dict(zip(Padding, await asyncio.gather(*map(ask, Padding)))))
        rounds = [{p: a for p, a in r.items() if isinstance(a, RobotAnswer)} for r in answers]
        if any(len(r) < len(Padding) for r in rounds):
            if not any(a is None for r in answers for a in r.values()):  # else ``probe`` noted the lost answer
                self.inconclusive.append("ROBOT: the server refused a hello with RSA key exchange only sometimes")
            return None
        found = judge(rounds)
        self.transcript.note(f"ROBOT: {found.reason}")
        return found

    async def session_tickets(self, accepted: set[TlsVersion]) -> SessionTickets | None:
        """TLS 1.3 resumption and 0-RTT as the server's tickets announce them (``tls.early_data``)."""
        if TlsVersion.TLS1_3 not in accepted:
            return None
        timeout = self.cfg.timeout * 0.9  # inside _once's own bound, so the probe's words win over a timeout
        found: SessionTickets | None = await self.probe(
            "TLS 1.3 session tickets", lambda r, w: session_tickets(r, w, self.endpoint, timeout), LAST)
        if found is not None:
            self.transcript.note(f"TLS 1.3 session tickets: {found}")
        return found

    async def without_sni(self, firsts: dict[TlsVersion, int]) -> str | None:
        """The best version's hello again, without server_name: '' if answered, else how it was refused."""
        if not firsts:
            return None
        best = max(firsts)
        hello = (lambda: tls13_hello(_pool(best))) if best == TlsVersion.TLS1_3 else (lambda: legacy_hello(best, _pool(best)))
        answer = await self.hello(f"{best} without SNI", hello, LAST)
        if answer is None:
            return None
        return answer.reason if isinstance(answer, Refusal) else ""

    async def post_quantum(self, accepted: set[TlsVersion]) -> str | None:
        """Does TLS 1.3 pick the hybrid ML-KEM group when a client offers it first, with a real share?"""
        if TlsVersion.TLS1_3 not in accepted:
            return None
        offer = (NamedGroup.X25519MLKEM768, NamedGroup.X25519)
        answer = await self.hello("TLS 1.3 post-quantum key share", lambda: tls13_hello(
            _TLS13_POOL, host=self.endpoint.host, groups=offer, shares=offer), LAST)
        if answer is None:
            return None
        if isinstance(answer, Refusal):
            return f"refused a hello offering X25519MLKEM768 and X25519 ({answer.reason})"
        group = answer.hello.key_share_group
        if group == NamedGroup.X25519MLKEM768:
            return "X25519MLKEM768 (hybrid ML-KEM) chosen"
        return f"{describe(NamedGroup, group or 0)} chosen although X25519MLKEM768 was offered first with a key share"

    async def curves(self, legacy_best: TlsVersion | None, tls13: bool) -> None:
        """Elliptic curves: TLS 1.3's, then the best legacy version offering only curves TLS 1.3 did not
        take (the scan reports their union, so a curve both take costs one connection, not two)."""
        if tls13:
            await self.groups(TlsVersion.TLS1_3, EC_GROUPS)
        if legacy_best is not None:
            await self.groups(legacy_best, EC_GROUPS, union=True)

    async def groups(self, version: TlsVersion, family: tuple[int, ...], union: bool = False) -> None:
        """Eliminate groups: offer all not yet seen (``union``: at any version) until the server refuses.
        TLS 1.3 learns the group from key_share/HelloRetryRequest; older versions from an ECDHE
        ServerKeyExchange, so they offer only ECDHE suites (a server without any refuses the first hello)."""
        suites = _pool(version) if version == TlsVersion.TLS1_3 else _ECDHE_POOL
        item = f"{version} groups"
        found = self.findings.groups_by_version
        seen = found.setdefault(version, set())
        for _ in range(len(family)):
            known = set().union(*found.values()) if union else seen
            offer = tuple(g for g in family if g not in known)
            if not offer:
                return
            answer = await self.hello(item, self._hello_for(version, tuple(suites), groups=offer), LONG_CHAIN)
            if not isinstance(answer, ServerFlight) or answer.version != version:
                return
            group = answer.hello.key_share_group if version == TlsVersion.TLS1_3 else answer.ecdhe_group
            if group is None or group not in offer:
                self.inconclusive.append(f"{item}: server answered with group {group}, which was not offered")
                return
            seen.add(group)


async def _scan(endpoint: Endpoint, cfg: ScanConfig, address: str, opener: Opener,
                transcript: Transcript, limiter: HostLimiter) -> TlsScan:
    started = time.monotonic()
    target = dataclasses.replace(endpoint, address=address)
    scan = _Scan(target, cfg, opener, transcript, limiter)
    versions = LEGACY_VERSIONS + (TlsVersion.TLS1_3,)
    contact_jobs = [asyncio.ensure_future(scan.first_contact(v)) for v in versions]
    ssl2_job = asyncio.ensure_future(scan.ssl2())  # after the contacts: everything else waits for them, not for it
    contacts = dict(zip(versions, await asyncio.gather(*contact_jobs)))
    accepted = {v for v, (ok, _) in contacts.items() if ok}
    if not accepted and not await ssl2_job and len(scan.errors) >= len(versions):
        raise scan.errors[0]  # nothing answered at all: the whole scan has the outcome of its first error
    # Everything below needs only the accepted versions, so it all runs at once within the budget.
    firsts = {v: first for v, (ok, first) in contacts.items() if ok and first is not None}
    legacy = [v for v in LEGACY_VERSIONS if v in accepted]
    loop = asyncio.get_running_loop()
    scan.second_suite = {v: loop.create_future() for v in firsts}
    suite_jobs = {v: asyncio.ensure_future(scan.enumerate_suites(v, first, main=v in legacy[-1:]))
                  for v, first in firsts.items()}
    preference_job = asyncio.ensure_future(scan.server_preference(firsts, suite_jobs))
    for version, first in firsts.items():  # each version's confirmation, while its suites are enumerated
        if handshakers(version, suite(first)):
            scan.confirm(version, suite(first))
    side_jobs = [asyncio.ensure_future(scan.curves(legacy[-1] if legacy else None, TlsVersion.TLS1_3 in accepted))]
    if TlsVersion.TLS1_3 in accepted:  # RFC 7919 finite fields alongside
        side_jobs.append(asyncio.ensure_future(scan.groups(TlsVersion.TLS1_3, FFDHE_GROUPS)))
    fallback_job = asyncio.ensure_future(scan.fallback_scsv(accepted))
    heartbleed_job = asyncio.ensure_future(scan.heartbleed(firsts))
    ccs_job = asyncio.ensure_future(scan.ccs_injection(firsts))
    robot_job = asyncio.ensure_future(scan.robot(firsts))
    tickets_job = asyncio.ensure_future(scan.session_tickets(accepted))
    sni_job = asyncio.ensure_future(scan.without_sni(firsts))
    pq_job = asyncio.ensure_future(scan.post_quantum(accepted))
    jobs: list[asyncio.Future[Any]] = [*suite_jobs.values(), preference_job, *side_jobs, fallback_job,
                                       heartbleed_job, ccs_job, robot_job, tickets_job, sni_job, pq_job, ssl2_job]
    try:
        ssl2 = await ssl2_job
        found = {v: await job for v, job in suite_jobs.items()}
        preference = await preference_job
        found.update({v: [] for v in accepted if v not in found})
        # Confirmations and ranks need only the suites: they run while the other probes finish.
        finishing = asyncio.gather(settle({v: tuple(suite(c) for c in codes) for v, codes in found.items()},
                                          scan.confirm), scan.legacy_ranks(found, preference))
        jobs.append(finishing)
        await asyncio.gather(*side_jobs)
        fallback = await fallback_job
        bleed = await heartbleed_job
        ccs = await ccs_job
        robot = await robot_job
        tickets = await tickets_job
        sni_refusal = await sni_job
        post_quantum = await pq_job
        settled, legacy_rank = await finishing
    finally:  # a bug or a cancellation in one job must not leave the others running
        for job in [*jobs, *scan.confirmations.values()]:
            job.cancel()
    confirmed = set(settled.suites)
    unsettled_versions = {v: next((i for i in scan.inconclusive if i.startswith(f"{v} support:")), "no answer")
                          for v, (ok, _) in contacts.items() if ok is None}
    unsettled_versions.update(settled.unsettled_versions)
    if ssl2 is None:
        unsettled_versions[TlsVersion.SSL2] = "no answer"
    unsettled_suites = {v: why for v, why in scan.unsettled_suites.items() if v in confirmed}
    for version, why in settled.unsettled_suites.items():
        unsettled_suites[version] = "; ".join(filter(None, (unsettled_suites.get(version), why)))
    f = scan.findings
    compression = {c for v, seen in f.compression.items() if v in confirmed for c in seen}
    renegotiation = {v: secure for v, secure in f.renegotiation.items() if v in confirmed}
    return TlsScan(
        endpoint_id=endpoint.id,
        address=address,
        accepted_versions=frozenset(confirmed | ({TlsVersion.SSL2} if ssl2 else set())),
        suites=settled.suites,
        server_preference=preference,
        groups=frozenset(NamedGroup(g) for per in f.groups_by_version.values() for g in per
                         if g in NamedGroup._value2member_map_),
        dhe_bits=min(f.dhe_bits, default=None),
        compression=(True in compression) if compression else None,
        secure_renegotiation=renegotiation[max(renegotiation)] if renegotiation else None,
        fallback_scsv=fallback,
        ocsp_stapling=(True in f.stapling) if f.stapling else None,
        connections=scan.connections,
        connections_by_probe=dict(scan.connections_by_probe),
        inconclusive=tuple(scan.inconclusive),
        duration_s=time.monotonic() - started,
        unsettled_versions=unsettled_versions,
        unsettled_suites=unsettled_suites,
        legacy_rank={v: rank for v, rank in legacy_rank.items() if v in settled.suites},
        dhe_primes=frozenset(f.dhe_primes),
        heartbleed=bleed,
        ccs_injection=ccs,
        robot=robot,
        session_tickets=tickets,
        sni_refusal=sni_refusal,
        post_quantum=post_quantum,
        extended_master_secret={TlsVersion(v): all(seen) for v, seen in f.ems.items() if v in confirmed},
        cbc_without_etm=frozenset(s for v, s in ((TlsVersion(v), suite(c)) for (v, c), seen in f.etm_by_suite.items()
                                                 if not all(seen)) if s in settled.suites.get(v, ())),
        truncated_hmac=(any(True in seen for v, seen in f.truncated_hmac.items() if v in confirmed)
                        if set(f.truncated_hmac) & confirmed else None),
    )



async def scan_endpoint(endpoint: Endpoint, cfg_like: ScanConfig | None = None, *, address: str | None = None,
                        opener: Opener = open_to_tls_point, limiter: HostLimiter | None = None,
                        secrets: tuple[str, ...] = ()) -> Attempt[TlsScan]:
    """Scan one address of ``endpoint`` (default: its connect host) within ``limiter``'s per-host
    budget (a fresh one of ``cfg.max_connections_per_host`` if not given). Never raises for network
    or server trouble: the Attempt carries the outcome and the reason."""
    cfg = cfg_like or ScanSettings()
    address = address or endpoint.connect_host
    transcript = Transcript(endpoint.id, secrets)
    limiter = limiter or HostLimiter(cfg.max_connections_per_host)
    return await attempt(endpoint.id, transcript, _scan(endpoint, cfg, address, opener, transcript, limiter))


async def addresses_of(endpoint: Endpoint, timeout: float) -> list[str]:
    """Every A and AAAA address of the endpoint's host (its pinned address if the target gives one)."""
    if endpoint.address:
        return [endpoint.address]
    loop = asyncio.get_running_loop()
    with mapped_errors(f"resolving {endpoint.host}"):
        infos = await asyncio.wait_for(loop.getaddrinfo(endpoint.host, endpoint.port, type=1), timeout)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def scan_all(endpoints: Iterable[Endpoint], cfg_like: ScanConfig | None = None, *,
                   opener: Opener = open_to_tls_point, limiter: HostLimiter | None = None,
                   secrets: tuple[str, ...] = ()) -> dict[str, Attempt[TlsScan]]:
    """Scan every address of every endpoint concurrently. Keys are endpoint IDs, with ``[address]``
    appended when a host has several addresses, so a weak AAAA cannot hide behind a strong A."""
    cfg = cfg_like or ScanSettings()
    limiter = limiter or HostLimiter(cfg.max_connections_per_host)
    jobs: dict[str, Awaitable[Attempt[TlsScan]]] = {}
    for endpoint in endpoints:
        try:
            addresses = await addresses_of(endpoint, cfg.timeout)
        except ProbeError as exc:
            jobs[endpoint.id] = _failed(endpoint, exc)
            continue
        for address in addresses:
            key = endpoint.id if len(addresses) == 1 else f"{endpoint.id}[{address}]"
            transcript = Transcript(endpoint.id, secrets)
            jobs[key] = attempt(endpoint.id, transcript,
                                _scan(endpoint, cfg, address, opener, transcript, limiter))
    results = await asyncio.gather(*jobs.values())
    return dict(zip(jobs, results))


async def _failed(endpoint: Endpoint, error: ProbeError) -> Attempt[TlsScan]:
    return await attempt(endpoint.id, Transcript(endpoint.id), _raise(error))


async def _raise(error: ProbeError) -> TlsScan:
    raise error

