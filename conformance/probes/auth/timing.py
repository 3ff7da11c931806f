"""The judgement of ENUM-TIMING-01: do failed logins of a known and an unknown user take different time?

A leak needs both of:

* the box test of Crosby, Wallach and Riedi ("Opportunities and limits of remote timing attacks", ACM
  TISSEC 12(3), 2009): the boxes between the BOX percentiles of the two samples do not overlap, and the
  gap between them is at least FLOOR. Load spikes only ever add time, so the low percentiles carry the
  server's own work and the jitter of quiet moments: the gap is judged against the jitter measured in
  this very run, not against a fixed 50 ms (a real oracle was 5-8 ms against 0.4-1 ms);
* a two-sided Mann-Whitney U test at ALPHA (per look; the probe looks at most MAX_LOOKS times, so the
  family-wise level is MAX_LOOKS x ALPHA), so a gap carried by too few samples does not count.

FLOOR keeps systematic differences far below anything a network attacker can measure out of a verdict.
Rates (tests/probes/auth/test_auth_timing.py, on the loaded 2-core model: exponential jitter of 4 ms, 20 %
load spikes of 20-300 ms) are in the README and in that test module.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

BOX = (0.05, 0.30)        # percentiles of the box test: low, so load spikes stay out of it
ALPHA = 0.0001            # Mann-Whitney level per look: a suite run judges hundreds of fair endpoints
LOOSE_ALPHA = 0.05        # with overlapping boxes and p above this there is no hint of a difference
FLOOR = 0.001             # seconds between the boxes below which no difference counts
MIN_SAMPLES = 7           # per user kind, for any judgement at all
BATCH = 15                # pairs per look
MAX_LOOKS = 6             # so at most 90 pairs


def percentile(sorted_values: tuple[float, ...], q: float) -> float:
    """Linear interpolation between closest ranks (the 'inclusive' method of statistics.quantiles)."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of ``a`` against ``b`` and its two-sided p-value (normal approximation with tie correction;
    accurate enough at n >= 8 per group, and conservative in the tails we use). Hand-written: SciPy would
    be a large dependency for twenty lines."""
    n1, n2 = len(a), len(b)
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, group) in zip(ranks, ranked) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return u, math.erfc(max(z, 0.0) / math.sqrt(2))


@dataclass(frozen=True)
class TimingVerdict:
    known: tuple[float, ...]      # seconds, sorted
    unknown: tuple[float, ...]
    u: float
    p_value: float

    @classmethod
    def of(cls, known: list[float], unknown: list[float]) -> TimingVerdict | None:
        if len(known) < MIN_SAMPLES or len(unknown) < MIN_SAMPLES:
            return None
        u, p = mann_whitney(known, unknown)
        return cls(tuple(sorted(known)), tuple(sorted(unknown)), u, p)

    @property
    def n_known(self) -> int:
        return len(self.known)

    @property
    def n_unknown(self) -> int:
        return len(self.unknown)

    @property
    def known_median(self) -> float:
        return statistics.median(self.known)

    @property
    def unknown_median(self) -> float:
        return statistics.median(self.unknown)

    @property
    def known_box(self) -> tuple[float, float]:
        return percentile(self.known, BOX[0]), percentile(self.known, BOX[1])

    @property
    def unknown_box(self) -> tuple[float, float]:
        return percentile(self.unknown, BOX[0]), percentile(self.unknown, BOX[1])

    @property
    def gap(self) -> float:
        """Seconds between the two boxes, signed (positive: the known user is slower); 0 if they overlap."""
        (k_lo, k_hi), (u_lo, u_hi) = self.known_box, self.unknown_box
        if k_lo > u_hi:
            return k_lo - u_hi
        if u_lo > k_hi:
            return -(u_lo - k_hi)
        return 0.0

    @property
    def leaks(self) -> bool:
        return abs(self.gap) >= FLOOR and self.p_value < ALPHA

    @property
    def settled(self) -> bool:
        """More samples would not change the answer: a leak, or not even a hint of a difference."""
        return self.leaks or (self.p_value >= LOOSE_ALPHA and self.gap == 0.0)

    def describe(self, which: str) -> str:
        """One group's distribution in ms: percentiles, then every sample."""
        values = self.known if which == "known" else self.unknown
        marks = " ".join(f"p{int(q * 100)}={percentile(values, q) * 1000:.2f}" for q in (0, 0.1, 0.25, 0.4, 0.5,
                                                                                          0.75, 0.9, 1))
        return f"{marks} | " + " ".join(f"{v * 1000:.2f}" for v in values)
