"""The governor: what every stream of one operation consults between chunks.

It holds the operation's buffer budget (a bank of reusable buffers divided among the streams
that may run), admits streams, and runs the monitor thread that samples memory and chunk
latency every ``interval`` seconds and sets the backpressure level (see ``pressure``): streams
are then held back, slowed, or given smaller chunks. The scheduler runs the streams under it.
"""

from __future__ import annotations

import contextlib
import threading
import time

from openspec_cli import memory, pressure
from openspec_cli.chunking import MAX_CHUNK, MIN_CHUNK, initial_chunk_size
from openspec_cli.cleanup import Cleanup, Priority
from openspec_cli.engine import POOL_SIZE, StreamStats
from openspec_cli.errors import Interrupted

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator
    from typing import Any

    from openspec_cli.engine import EngineView, Observer


#: Least memory for buffers, whatever the ceiling says: one stream with a pool of small chunks.
MIN_BUDGET = POOL_SIZE * MIN_CHUNK

#: What a stream costs besides its buffers: its thread's stack and allocator arena, its objects.
#: Measured: 16 streams peaked 1.4 MiB above the interpreter plus a full buffer budget, which
#: put `openspec bench --quick` at 51.4 MiB against the 50 MiB target; this keeps 2.8x that.
STREAM_OVERHEAD = 256 * 1024


class Percentiles:
    """A bounded random sample of chunk latencies (reservoir), so memory stays flat."""

    def __init__(self, capacity: int = 8192) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.seen = 0
        self._rng: random.Random | None = None  # made when first needed: random costs ~2 ms

    def add(self, value: float) -> None:
        """Keep ``value`` with the probability that leaves every sample equally likely."""
        self.seen += 1
        if len(self.samples) < self.capacity:
            self.samples.append(value)
            return
        if self._rng is None:
            import random

            self._rng = random.Random(0)
        slot = self._rng.randrange(self.seen)
        if slot < self.capacity:
            self.samples[slot] = value

    def summary(self) -> dict[str, float]:
        """p50/p95/p99/max in seconds (zeros when nothing was measured)."""
        if not self.samples:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self.samples)
        last = len(ordered) - 1

        def pick(q: float) -> float:
            return round(ordered[min(last, int(q * len(ordered)))], 6)

        return {
            "p50": pick(0.50),
            "p95": pick(0.95),
            "p99": pick(0.99),
            "max": round(ordered[-1], 6),
        }


class BufferBank:
    """Buffers shared by the streams of one operation: allocated once, reused by size.

    Idle buffers are kept up to ``keep`` bytes; beyond that they are dropped, and under
    emergency pressure all idle ones go.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._free: dict[int, list[memoryview]] = {}
        self._lock = threading.Lock()

    def lend(self, count: int, size: int) -> list[memoryview]:
        """``count`` buffers of ``size`` bytes, reused where possible."""
        with self._lock:
            spare = self._free.get(size, [])
            taken = [spare.pop() for _ in range(min(count, len(spare)))]
            if len(taken) < count:  # the size regime changed: idle buffers of others go
                self._free = {size: spare}
        return taken + [memoryview(bytearray(size)) for _ in range(count - len(taken))]

    def give_back(self, buffers: list[memoryview]) -> None:
        """Keep buffers for the next stream, within the budget."""
        with self._lock:
            for buf in buffers:
                if self._idle() + len(buf) <= self.keep:
                    self._free.setdefault(len(buf), []).append(buf)

    def resize(self, keep: int) -> None:
        """A new operation's budget: idle buffers beyond it are released now."""
        with self._lock:
            self.keep = keep
            for size in sorted(self._free, reverse=True):
                bufs = self._free[size]
                while bufs and self._idle() > keep:
                    bufs.pop()

    def idle_bytes(self) -> int:
        """Bytes held in idle buffers."""
        with self._lock:
            return self._idle()

    def drop_idle(self) -> None:
        """Release every idle buffer (emergency cleanup)."""
        with self._lock:
            self._free.clear()

    def _idle(self) -> int:
        return sum(len(b) for bufs in self._free.values() for b in bufs)


#: One bank per process: repeated operations (a library caller, bench) reuse the same buffers
#: instead of leaving the allocator to hold on to freed ones.
SHARED_BANK = BufferBank(0)


def chunk_ceiling_for(budget: int, streams: int, level: pressure.Level) -> int:
    """Largest chunk (a power of two) that keeps ``streams`` full pools within ``budget``.

    Pressure shrinks it further: half at MODERATE, a quarter at HEAVY, the minimum at CRITICAL.
    """
    share = budget // (max(streams, 1) * POOL_SIZE)
    shrink = {pressure.Level.MODERATE: 2, pressure.Level.HEAVY: 4}.get(level, 1)
    size = MIN_CHUNK
    while size * 2 <= min(share // shrink, MAX_CHUNK):
        size *= 2
    return MIN_CHUNK if level >= pressure.Level.CRITICAL else size


class Governor:
    """Admission, pausing, pacing and measurement for every stream of one operation."""

    def __init__(
        self,
        jobs: int,
        max_memory: int | None = None,
        probe: memory.MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requested = max(1, jobs)
        self.probe: memory.MemoryProbe = probe or memory.SystemProbe()
        self.clock, self.sleep = clock, sleep
        first = self.probe.read(0, max_memory or memory.ABSOLUTE_LIMIT)
        # --max-memory caps the buffers. The default is the design record's 50 MB for the whole
        # operation, so the interpreter's own memory comes off it, and each stream's own costs
        # beyond its buffers (the CLI process stays under 50 MB); both are lowered when the
        # machine or container has less to spare.
        overhead = first.rss + self.requested * STREAM_OVERHEAD
        wanted = max_memory or max(memory.MIN_CEILING, memory.ABSOLUTE_LIMIT - overhead)
        self.ceiling = memory.default_ceiling(wanted, first.total, first.used)
        self.budget = max(MIN_BUDGET, self.ceiling)
        self.controller = pressure.BackpressureController(clock=clock)
        self.window = pressure.LatencyWindow(clock=clock)
        self.latencies = Percentiles()
        self.cleanup = Cleanup()
        self.bank = SHARED_BANK
        self.bank.resize(self.budget)
        self.cleanup.register("idle buffers", Priority.LOW, self.bank.drop_idle)
        self.reading = first
        self.cond = threading.Condition()
        self.running: list[StreamStats] = []
        self.slots = 0
        self.peak_concurrency = 0
        self.peak_engine_bytes = 0
        self.ticks = 0  #: samples taken: a level is reported only if there was one
        self.chunk_sizes: set[int] = set()
        self.cancelled: Interrupted | None = None
        self._last_chunk: dict[int, float] = {}
        self.allowed = min(self.requested, self._fits(self.requested))
        self.chunk_ceiling = chunk_ceiling_for(self.budget, self.allowed, pressure.Level.NONE)

    # -- what streams call --------------------------------------------------------------

    def admit(self) -> None:
        """Block until one more stream may start under the current level."""
        with self.cond:
            while self.slots >= max(self.allowed, 0) or self.allowed == 0:
                self._raise_if_cancelled()
                self.cond.wait(0.1)
            self._raise_if_cancelled()
            self.slots += 1
            self.peak_concurrency = max(self.peak_concurrency, self.slots)

    def leave(self) -> None:
        """A stream ended (any way): its slot is free."""
        with self.cond:
            self.slots -= 1
            self.cond.notify_all()

    def before_chunk(self, stats: StreamStats) -> None:
        """Hold a stream beyond the allowed count; slow every stream by the level's fraction."""
        with self.cond:
            while True:
                self._raise_if_cancelled()
                rank = self.running.index(stats) if stats in self.running else 0
                if rank < self.allowed:
                    break
                self.cond.wait(0.1)
        delay = self.controller.delay_for(self._last_chunk.get(id(stats), 0.0))
        if delay > 0:
            self.sleep(delay)

    def chunk_done(self, stats: StreamStats, seconds: float, nbytes: int) -> None:
        """Measure a chunk's end-to-end latency."""
        self._last_chunk[id(stats)] = seconds
        self.window.add(seconds, nbytes)
        self.latencies.add(seconds)
        self.chunk_sizes.add(stats.chunk_size)

    def snapshot(self) -> dict[str, Any]:
        """The state renderers show: level, score split, memory, streams."""
        score = self.controller.score
        return {
            "level": self.controller.level.name,
            "score": {
                "total": round(score.total, 1),
                "memory": round(score.memory, 1),
                "streams": round(score.streams, 1),
                "latency": round(score.latency, 1),
            },
            "memory_used": self.engine_bytes(),
            "rss": self.reading.rss,
            "memory_usage": round(self.reading.usage, 3),
            "ceiling": self.ceiling,
            "active": self.slots,
            "allowed": self.allowed,
            "chunk_ceiling": self.chunk_ceiling,
        }

    def lend(self, count: int, size: int) -> list[memoryview]:
        """Buffers for a stream, reused from streams that finished (no growth over many files)."""
        buffers = self.bank.lend(count, size)
        held = self.engine_bytes() + count * size  # the stream records its share just after
        self.peak_engine_bytes = max(self.peak_engine_bytes, held)
        return buffers

    def give_back(self, buffers: list[memoryview]) -> None:
        """Keep a finished stream's buffers for the next one."""
        self.bank.give_back(buffers)

    def cancel(self, error: Interrupted) -> None:
        """Stop every stream at its next chunk (a signal arrived)."""
        with self.cond:
            self.cancelled = error
            self.cond.notify_all()

    def _raise_if_cancelled(self) -> None:
        if self.cancelled is not None:
            raise Interrupted(self.cancelled.message, self.cancelled.exit_code)

    # -- the control loop ---------------------------------------------------------------

    def engine_bytes(self) -> int:
        """Bytes in buffers now: what running streams hold plus idle ones kept for reuse."""
        with self.cond:
            held = sum(s.buffer_bytes for s in self.running)
        return held + self.bank.idle_bytes()

    def engine_demand(self) -> int:
        """What running streams would hold at their natural chunk size (the design record's
        size classes). Above the ceiling, the ceiling is squeezing them: memory pressure."""
        with self.cond:
            return sum(POOL_SIZE * initial_chunk_size(s.total) for s in self.running)

    def _fits(self, streams: int) -> int:
        """How many streams the buffer budget can hold with minimum-size pools."""
        return max(1, min(streams, self.budget // MIN_BUDGET))

    def tick(self) -> pressure.Level:
        """Sample memory and latency, update the level, and apply it."""
        self.ticks += 1
        self.peak_engine_bytes = max(self.peak_engine_bytes, self.engine_bytes())
        self.reading = self.probe.read(self.engine_demand(), self.ceiling)
        score = pressure.Score(
            memory=pressure.memory_points(self.reading.usage),
            streams=pressure.stream_points(self.slots),
            latency=pressure.latency_points(self.window.p95(), self.window.trend()),
        )
        level = self.controller.update(score)
        with self.cond:
            self.allowed = min(
                self.controller.allowed_streams(self.requested), self._fits(self.requested)
            )
            self.chunk_ceiling = chunk_ceiling_for(self.budget, max(self.allowed, 1), level)
            self.cond.notify_all()
        if level >= pressure.Level.CRITICAL:
            self.cleanup.emergency()
        return level

    def run_monitor(self, interval: float = 0.25, first: float = 0.05) -> Callable[[], None]:
        """Start the monitor thread; returns the function that stops it. The first sample is
        taken after ``first`` seconds, once streams have started: a run of 16 streams that
        lasted 0.08 s was reported at NONE, never having been looked at."""
        stop = threading.Event()

        def loop() -> None:
            wait = min(first, interval)
            while not stop.wait(wait):
                self.tick()
                wait = interval

        thread = threading.Thread(target=loop, name="openspec-monitor", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt

    @contextlib.contextmanager
    def monitored(self) -> Iterator[None]:
        """The monitor runs while streams do; after them, what they held is released (caches
        stay: only emergencies drop them)."""
        halt = self.run_monitor()
        try:
            yield
        finally:
            halt()
            self.cleanup.release_all(up_to=Priority.NORMAL)


class GovernedObserver:
    """Tells the governor which streams run (in start order), then the user's observer."""

    def __init__(self, governor: Governor, inner: Observer) -> None:
        self.governor = governor
        self.inner = inner
        inner.engine_attached(governor)

    def engine_attached(self, engine: EngineView) -> None:
        """Pass a (nested) engine on to the user's observer."""
        self.inner.engine_attached(engine)

    def stream_started(self, stats: StreamStats) -> None:
        """Register the stream for ranking and measurement."""
        with self.governor.cond:
            self.governor.running.append(stats)
        self.inner.stream_started(stats)

    def stream_finished(self, stats: StreamStats) -> None:
        """Forget the stream; others may take its place."""
        with self.governor.cond:
            if stats in self.governor.running:
                self.governor.running.remove(stats)
            self.governor._last_chunk.pop(id(stats), None)
            self.governor.cond.notify_all()
        self.inner.stream_finished(stats)


def engine_summary(governor: Governor, seconds: float) -> dict[str, object]:
    """What ``--json`` reports about the engine itself."""
    return {
        "ceiling": governor.ceiling,
        "buffer_budget": governor.budget,
        "peak_engine_bytes": governor.peak_engine_bytes,
        "peak_concurrency": governor.peak_concurrency,
        # None: the run ended before the first sample; nothing was measured.
        "highest_level": governor.controller.highest.name if governor.ticks else None,
        "time_in_levels": {k: round(v, 3) for k, v in governor.controller.time_in_levels().items()},
        "chunk_latency": governor.latencies.summary(),
        "chunk_sizes": sorted(governor.chunk_sizes),
        "seconds": round(seconds, 6),
    }
