"""Many transfers at once under the memory thresholds and the backpressure policy.

The :class:`Governor` is the one place that knows about all streams of an operation. A monitor
thread samples memory and chunk latency every ``interval`` seconds and updates the backpressure
level; streams consult the governor between chunks (admission, pause, slowdown, chunk ceiling).
Memory is bounded by construction: the buffer budget is divided among the streams that may run,
and each stream's fixed buffer pool is sized from its share before it starts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

from openspec_cli import pressure
from openspec_cli.checkpoint import Checkpoint, list_all
from openspec_cli.chunking import MAX_CHUNK, MIN_CHUNK, STREAMING_TRIGGER, initial_chunk_size
from openspec_cli.cleanup import Cleanup, Priority
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.copying import copy_file
from openspec_cli.engine import POOL_SIZE, NullObserver, StreamStats
from openspec_cli.errors import ExitCode, Interrupted, OpenspecError
from openspec_cli.fileio import fsync_dir
from openspec_cli.plan import Step
from openspec_cli.records import Record
from openspec_cli.streams import hash_path
from openspec_cli.tree import Made, finish_tree, prepare_tree, record_sum

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence
    from typing import Any

    from openspec_cli.engine import EngineView, Observer
    from openspec_cli.unfinished import TreeJournal

#: Least memory for buffers, whatever the ceiling says: one stream with a pool of small chunks.
MIN_BUDGET = POOL_SIZE * MIN_CHUNK

#: Files under the streaming trigger copied at once, whatever -j says. Such a file is done in
#: less time than threads take to hand the interpreter lock around: 3000 files of 0-64 KiB
#: took 2.6 s with -j 4 and 5.2 s with -j 16 (CPU time 4.1 s and 7.2 s; -j 1: 3.0 s).
SMALL_FILES_AT_ONCE = 4

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
        probe: pressure.MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requested = max(1, jobs)
        self.probe: pressure.MemoryProbe = probe or pressure.SystemProbe()
        self.clock, self.sleep = clock, sleep
        first = self.probe.read(0, max_memory or pressure.ABSOLUTE_LIMIT)
        # --max-memory caps the buffers. The default is the design record's 50 MB for the whole
        # operation, so the interpreter's own memory comes off it, and each stream's own costs
        # beyond its buffers (the CLI process stays under 50 MB); both are lowered when the
        # machine or container has less to spare.
        overhead = first.rss + self.requested * STREAM_OVERHEAD
        wanted = max_memory or max(pressure.MIN_CEILING, pressure.ABSOLUTE_LIMIT - overhead)
        self.ceiling = pressure.default_ceiling(wanted, first.total, first.used)
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

    def run_monitor(self, interval: float = 0.25) -> Callable[[], None]:
        """Start the monitor thread; returns the function that stops it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.tick()

        thread = threading.Thread(target=loop, name="openspec-monitor", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt


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


def drop_cached(path: str) -> None:
    """Ask the kernel to forget a finished file's pages (they are clean after fsync)."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_parallel(
    tasks: list[Callable[[], object]],
    governor: Governor,
    small: Sequence[bool] = (),
) -> list[object | BaseException]:
    """Run ``tasks`` on up to ``governor.requested`` threads, each admitted by the governor.

    Returns each task's result or exception, in task order. A signal in the calling thread
    cancels every stream at its next chunk; their checkpoints are kept. Tasks marked ``small``
    run at most SMALL_FILES_AT_ONCE at a time (see there).
    """
    results: list[object | BaseException] = [None] * len(tasks)
    next_task = [0]
    lock = threading.Lock()
    few = threading.Semaphore(SMALL_FILES_AT_ONCE)

    def worker() -> None:
        while True:
            with lock:
                index = next_task[0]
                next_task[0] += 1
            if index >= len(tasks) or governor.cancelled is not None:
                return
            gate = few if index < len(small) and small[index] else contextlib.nullcontext()
            with gate:
                run_admitted(index)

    def run_admitted(index: int) -> None:
        try:
            governor.admit()
        except BaseException as exc:
            results[index] = exc
            return
        try:
            results[index] = tasks[index]()
        except BaseException as exc:  # reported per file; others go on
            results[index] = exc
        finally:
            governor.leave()

    threads = [
        threading.Thread(target=worker, name=f"openspec-worker-{i}", daemon=True)
        for i in range(min(governor.requested, len(tasks)))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
    except (KeyboardInterrupt, Interrupted) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else ExitCode.INTERRUPTED
        governor.cancel(Interrupted("interrupted", code))
        for thread in threads:
            thread.join()
        raise Interrupted("interrupted", code) from None  # api.copy adds how to finish
    return results


def engine_summary(governor: Governor, seconds: float) -> dict[str, object]:
    """What ``--json`` reports about the engine itself."""
    return {
        "ceiling": governor.ceiling,
        "buffer_budget": governor.budget,
        "peak_engine_bytes": governor.peak_engine_bytes,
        "peak_concurrency": governor.peak_concurrency,
        "highest_level": governor.controller.highest.name,
        "time_in_levels": {k: round(v, 3) for k, v in governor.controller.time_in_levels().items()},
        "chunk_latency": governor.latencies.summary(),
        "chunk_sizes": sorted(governor.chunk_sizes),
        "seconds": round(seconds, 6),
    }


class RecentFiles:
    """The last few finished destinations, whose cached pages may be dropped under pressure."""

    def __init__(self, keep: int = 64) -> None:
        from collections import deque

        self.paths: deque[str] = deque(maxlen=keep)

    def add(self, path: str) -> None:
        """Remember a finished file."""
        self.paths.append(path)

    def drop_all(self) -> None:
        """Release their page cache (cheap to re-read if needed, costly for everyone else)."""
        while self.paths:
            drop_cached(self.paths.popleft())


class CopyReport(Record):
    """Everything one ``copy`` did: per-file results and what the engine went through."""

    __slots__ = ("files", "seconds", "engine", "errors")

    def __init__(
        self,
        files: list[FileResult],
        seconds: float,
        engine: dict[str, object],
        errors: list[OpenspecError] | None = None,
    ) -> None:
        self.files = files
        self.seconds = seconds
        self.engine = engine
        self.errors: list[OpenspecError] = errors if errors is not None else []

    @property
    def highest_level(self) -> str:
        """The worst backpressure level reached."""
        return str(self.engine["highest_level"])


def copy_all(
    steps: list[Step],
    options: CopyOptions,
    observer: Observer | None = None,
    jobs: int = 1,
    max_memory: int | None = None,
    probe: pressure.MemoryProbe | None = None,
    journal: TreeJournal | None = None,
) -> CopyReport:
    """Carry out a copy plan with up to ``jobs`` transfers at once, under the governor.

    ``journal``: a tree copy's record of completed files (see ``unfinished``); files it
    vouches for are not copied again, and each file completed is added to it.
    """
    started = time.monotonic()
    governor = Governor(jobs, max_memory, probe)
    recent = RecentFiles()
    governor.cleanup.register("page cache of finished files", Priority.LOW, recent.drop_all)
    governor.cleanup.register("unreferenced memory", Priority.DEFERRED, gc.collect)
    options = options.replace(pacer=governor)
    watched = GovernedObserver(governor, observer or NullObserver())
    if journal is None:
        file_steps, made = prepare_tree(steps, options)
    elif journal.marked:  # it made the tree's root: all in it is its own
        file_steps, made = prepare_tree(steps, options, journal.made_root, ours=lambda _: True)
    else:
        file_steps, made = prepare_tree(
            steps, options, ours=journal.owns_dir, made=journal.made_dir
        )
    known = known_transfers()
    if options.fsync and len(file_steps) > 1:
        options = options.replace(dirs_to_sync=_folders_made(made))

    def task(step: Step) -> Callable[[], object]:
        def run() -> FileResult:
            earlier = None if journal is None else _reused(journal, step, options)
            if earlier is not None:
                record_sum(options, earlier)  # the earlier run may have written none
                return earlier
            result = copy_file(step.source, step.dest, options, watched, known)
            record_sum(options, result)
            recent.add(step.dest)
            if journal is not None:
                journal.done(result)
            return result

        return run

    halt = governor.run_monitor()
    try:
        try:
            if governor.requested == 1 or len(file_steps) <= 1:
                outcomes = _run_serially([task(s) for s in file_steps], governor)
            else:
                small = [step.size < STREAMING_TRIGGER for step in file_steps]
                outcomes = run_parallel([task(s) for s in file_steps], governor, small)
        finally:
            halt()
            governor.cleanup.release_all(
                up_to=Priority.NORMAL
            )  # caches stay: only emergencies drop them
        finish_tree(made)
    finally:
        for folder in sorted(options.dirs_to_sync or ()):
            fsync_dir(folder)
    files = [o for o in outcomes if isinstance(o, FileResult)]
    errors = [o for o in outcomes if isinstance(o, OpenspecError)]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, OpenspecError):
            raise outcome
    return CopyReport(
        files,
        time.monotonic() - started,
        engine_summary(governor, time.monotonic() - started),
        errors,
    )


def _folders_made(made: list[Made]) -> set[str]:
    """Folders to sync at the end of a copy of many files: those its files were renamed into
    (added as they are), and those it made, with their parents (which hold their names).

    Once per folder rather than once per file: a tree of 3000 small files made 3000 more
    directory syncs, each a journal commit on ext4. A crash before the end can lose renames,
    never expose a partial file under a final name (each file was synced before its rename);
    the journal then no longer vouches for the lost ones, and the rerun copies them again.
    """
    folders: set[str] = set()
    for step, _, _ in made:
        where = os.path.abspath(step.dest)  # as transfers name theirs
        folders.update((where, os.path.dirname(where)))
    return folders


def _reused(journal: TreeJournal, step: Step, options: CopyOptions) -> FileResult | None:
    """A file an earlier run of this copy completed, unchanged since: not copied again. With
    ``--verify`` it is read back and checked against the digest recorded then (a copy that
    fails is copied again), so that every file the run reports is verified."""
    earlier = journal.already(step.source, step.dest, options.algo)
    if earlier is None or not options.verify:
        return earlier
    try:
        again = hash_path(step.dest, options.algo, drop_cache=True)
    except OSError:
        return None
    return earlier.replace(verified=True) if again == earlier.digest else None


def known_transfers() -> dict[tuple[str, str], Checkpoint]:
    """Interrupted transfers by (source, dest), read once per operation (newest wins)."""
    return {(cp.source.path, cp.dest): cp for cp in list_all() if isinstance(cp, Checkpoint)}


def _run_serially(tasks: list[Callable[[], object]], governor: Governor) -> list[object]:
    """One stream at a time on this thread, so a signal reaches the copy directly."""
    outcomes: list[object] = []
    for run in tasks:
        governor.admit()
        try:
            outcomes.append(run())
        except OpenspecError as err:
            outcomes.append(err)
        finally:
            governor.leave()
    return outcomes
