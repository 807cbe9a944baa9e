"""Backpressure: how hard the engine may push the machine right now.

A pure core turns a memory reading (see ``memory``), the active stream count and chunk
latencies into the design record's 0-100 score and five levels, with hysteresis so a score at
an edge does not flap. Nothing here sleeps or prints: the governor acts.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from itertools import pairwise

from openspec_cli.memory import CRITICAL_FRACTION, EMERGENCY, WARNING
from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): typing, dataclasses and psutil all cost
#: start-up time; psutil is imported where the system is read.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


#: The design record's per-chunk latency target (95th percentile), in seconds.
LATENCY_TARGET = 0.2
#: Concurrent streams at which stream pressure is full: the design record's "10+ streams".
STREAM_CAPACITY = 10


class Level(enum.IntEnum):
    """Backpressure levels, ordered: a higher level holds the engine back more."""

    NONE = 0
    LIGHT = 1
    MODERATE = 2
    HEAVY = 3
    CRITICAL = 4


#: Lowest score of each level's band (the design record's NONE 0-19 ... CRITICAL 80+).
BAND_FLOORS: dict[Level, float] = dict(zip(Level, (0.0, 20.0, 40.0, 60.0, 80.0), strict=True))


class Policy(Record):
    """What a level asks: a fraction slower, a cap on streams (None: no cap; 0 and 1.0: pause)."""

    __slots__ = ("slowdown", "max_streams")

    def __init__(self, slowdown: float, max_streams: int | None) -> None:
        self.slowdown = slowdown
        self.max_streams = max_streams


POLICIES: dict[Level, Policy] = {
    Level.NONE: Policy(0.0, None),
    Level.LIGHT: Policy(0.2, 6),
    Level.MODERATE: Policy(0.5, 3),
    Level.HEAVY: Policy(0.75, 1),
    Level.CRITICAL: Policy(1.0, 0),
}


def level_for(score: float) -> Level:
    """The band ``score`` falls in, without hysteresis (NaN counts as no pressure)."""
    return next((lv for lv in reversed(Level) if score >= BAND_FLOORS[lv]), Level.NONE)


# ---------------------------------------------------------------------------- the score

#: Points along a piecewise-linear curve: ((x, points), ...), flat beyond both ends.
Curve = tuple[tuple[float, float], ...]

#: (usage, points), linear between. Below half used there is room to spare. WARNING alone
#: gives 10 (a busy desktop sits there; one copy should not slow for it) but tips into LIGHT
#: with 10 points of any other pressure. CRITICAL alone gives 20 (LIGHT). The last stretch to
#: EMERGENCY, where swapping and OOM kills start, climbs twice as steeply to 40 (MODERATE alone,
#: HEAVY or CRITICAL together with stream or latency pressure).
MEMORY_CURVE: Curve = ((0.5, 0.0), (WARNING, 10.0), (CRITICAL_FRACTION, 20.0), (EMERGENCY, 40.0))
#: (p95 / LATENCY_TARGET, points): nothing at or under target, all 30 at four times it.
LATENCY_CURVE: Curve = ((1.0, 0.0), (4.0, 30.0))
#: (recent / earlier throughput, points): a 10% dip is noise; a halving is worth 10.
TREND_CURVE: Curve = ((0.5, 10.0), (0.9, 0.0))


class Score(Record):
    """The design record's three pressure factors, in points."""

    __slots__ = ("memory", "streams", "latency")

    def __init__(self, memory: float = 0.0, streams: float = 0.0, latency: float = 0.0) -> None:
        self.memory = memory  #: 0-40
        self.streams = streams  #: 0-30
        self.latency = latency  #: 0-30

    @property
    def total(self) -> float:
        """0-100: what the levels' bands are drawn on."""
        return self.memory + self.streams + self.latency


def memory_points(usage: float) -> float:
    """0-40 points for memory usage (a fraction), along MEMORY_CURVE."""
    return _interpolate(usage, MEMORY_CURVE)


def stream_points(active: int, *, capacity: int = STREAM_CAPACITY) -> float:
    """0-30 points for concurrency: none for one stream, linear to 30 at ``capacity``.

    With capacity 10, streams alone reach LIGHT (20) at 7, one more than LIGHT allows; at
    LIGHT's cap of 6 they score 16.7, inside the hysteresis band, so a ``-j 10`` settles at 6
    streams instead of swinging between 10 and 6.
    """
    if capacity < 2:
        raise ValueError(f"stream capacity must be at least 2, not {capacity}")
    return _interpolate(float(active), ((1.0, 0.0), (float(capacity), 30.0)))


def latency_points(p95: float | None, throughput_trend: float | None) -> float:
    """0-30 points for slow chunks (p95 against target) plus falling throughput, capped at 30."""
    slow = 0.0 if p95 is None else _interpolate(p95 / LATENCY_TARGET, LATENCY_CURVE)
    falling = 0.0 if throughput_trend is None else _interpolate(throughput_trend, TREND_CURVE)
    return min(slow + falling, 30.0)


def score_of(usage: float, active: int, window: LatencyWindow) -> Score:
    """The score from a reading's usage, the active stream count and the chunk latencies."""
    latency = latency_points(window.p95(), window.trend())
    return Score(memory_points(usage), stream_points(active), latency)


def _interpolate(x: float, curve: Curve) -> float:
    """Piecewise-linear through ``curve``'s points, flat beyond its ends; NaN is the low end."""
    if not x > curve[0][0]:
        return curve[0][1]
    for (x0, y0), (x1, y1) in pairwise(curve):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return curve[-1][1]


# ---------------------------------------------------------------------------- chunk latency


class LatencyWindow:
    """Recent chunks (time, seconds, bytes): their p95 latency and whether throughput falls.

    Throughput is bytes over seconds of work, not wall time, so the scheduler's own slowdown
    (its sleeps between chunks) does not read as the machine slowing down. Thread-safe: writer
    threads of many streams record into one window. Bounded to ``max_samples``.
    """

    def __init__(
        self,
        span: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_samples: int = 2048,
        min_samples: int = 4,
    ) -> None:
        self.span = span
        self.min_samples = min_samples
        self._clock = clock
        self._samples: deque[tuple[float, float, int]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, seconds: float, nbytes: int) -> None:
        """A chunk of ``nbytes`` went through in ``seconds`` (ending now)."""
        with self._lock:
            self._samples.append((self._clock(), seconds, nbytes))

    def p95(self) -> float | None:
        """95th-percentile seconds per chunk (nearest rank); None with too few chunks."""
        durations = sorted(seconds for _, seconds, _ in self._recent())
        if len(durations) < self.min_samples:
            return None
        return durations[math.ceil(0.95 * len(durations)) - 1]

    def trend(self) -> float | None:
        """Throughput of the recent half of the span over the older half; None if unknown."""
        samples = self._recent()
        middle = self._clock() - self.span / 2
        older = [s for s in samples if s[0] < middle]
        recent = [s for s in samples if s[0] >= middle]
        if min(len(older), len(recent)) < self.min_samples:
            return None
        before, after = _rate(older), _rate(recent)
        if before is None or after is None or before <= 0:
            return None
        return after / before

    def _recent(self) -> list[tuple[float, float, int]]:
        """Drop samples older than the span; a copy of the rest."""
        horizon = self._clock() - self.span
        with self._lock:
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()
            return list(self._samples)


def _rate(samples: Sequence[tuple[float, float, int]]) -> float | None:
    """Bytes per second of work over ``samples``."""
    seconds = sum(s[1] for s in samples)
    return sum(s[2] for s in samples) / seconds if seconds > 0 else None


# ---------------------------------------------------------------------------- the controller


class Transition(Record):
    """A level change: when, from, to, and the score that caused it."""

    __slots__ = ("at", "old", "new", "score")

    def __init__(self, at: float, old: Level, new: Level, score: Score) -> None:
        self.at = at
        self.old = old
        self.new = new
        self.score = score


class BackpressureController:
    """Turns a stream of scores into a level that moves up at once and down reluctantly.

    Up: as soon as the score reaches a higher band (pressure needs an answer now). Down: one
    level at a time, after the score stayed below the band's floor minus ``hysteresis`` for
    ``min_dwell`` seconds. Call ``update`` from one thread; the readers from any.
    """

    #: Transitions kept; older ones are dropped so a long run's memory stays bounded.
    MAX_TRANSITIONS = 1000

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        hysteresis: float = 5.0,
        min_dwell: float = 1.0,
    ) -> None:
        if not 0 <= hysteresis < 20 or min_dwell < 0:
            raise ValueError(f"bad hysteresis {hysteresis} or dwell {min_dwell}")
        self.hysteresis = hysteresis
        self.min_dwell = min_dwell
        self.level = Level.NONE
        self.highest = Level.NONE
        self.score = Score()
        self.transitions: list[Transition] = []
        self._clock = clock
        self._last = clock()
        self._seconds = dict.fromkeys(Level, 0.0)
        self._below_since: float | None = None

    @property
    def policy(self) -> Policy:
        """The current level's policy."""
        return POLICIES[self.level]

    @property
    def paused(self) -> bool:
        """CRITICAL: no stream may take another chunk until the level falls."""
        return self.level is Level.CRITICAL

    def update(self, score: Score) -> Level:
        """Take a new score; returns the level after it."""
        now = self._clock()
        self._account(now)
        self.score = score
        target = self._next_level(score.total, now)
        if target != self.level:
            self._move(target, now, score)
        return self.level

    def time_in_levels(self) -> dict[str, float]:
        """Seconds spent at each level so far (they sum to the controller's age)."""
        seconds = {level.name: spent for level, spent in self._seconds.items()}
        seconds[self.level.name] += self._clock() - self._last
        return seconds

    def allowed_streams(self, requested: int) -> int:
        """How many of the ``requested`` streams may run now; 0 while paused."""
        cap = self.policy.max_streams
        return requested if cap is None else min(requested, cap)

    def delay_for(self, seconds_worked: float) -> float:
        """Sleep after ``seconds_worked`` of work that slows a stream by the policy's fraction.

        20% slower: sleep a quarter of the work time, so throughput is 80%. A pause is not a
        sleep but ``allowed_streams`` 0: a chunk slipping in as the level turns CRITICAL gets
        HEAVY's (finite) delay.
        """
        slowdown = min(self.policy.slowdown, POLICIES[Level.HEAVY].slowdown)
        return max(seconds_worked, 0.0) * slowdown / (1.0 - slowdown)

    def _next_level(self, total: float, now: float) -> Level:
        """Up at once to the score's band; down a step after a dwell below floor - hysteresis."""
        raw = level_for(total)
        if raw > self.level:
            self._below_since = None
            return raw
        if self.level is Level.NONE or total >= BAND_FLOORS[self.level] - self.hysteresis:
            self._below_since = None
            return self.level
        if self._below_since is None:
            self._below_since = now
        if now - self._below_since < self.min_dwell:
            return self.level
        self._below_since = now  # the next step down waits a dwell of its own
        return Level(self.level - 1)

    def _move(self, target: Level, now: float, score: Score) -> None:
        self.transitions.append(Transition(now, self.level, target, score))
        if len(self.transitions) > self.MAX_TRANSITIONS:
            del self.transitions[0]
        self.level = target
        self.highest = max(self.highest, target)

    def _account(self, now: float) -> None:
        self._seconds[self.level] += now - self._last
        self._last = now
