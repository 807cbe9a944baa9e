"""The streaming core every command shares: pooled buffers, read -> hash -> write, pacing.

One stream is a reader (this thread) and, for large data, a consumer thread, handing a small fixed
pool of preallocated buffers back and forth. xxhash, hashlib and file I/O release the GIL, so the
two overlap; nothing is allocated per chunk, so memory does not grow with file size. The engine
reports progress only by updating :class:`StreamStats` counters; whoever renders them samples them
on their own schedule (see ``ui``), which keeps the hot loop free of callbacks.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
import threading
import time
from collections.abc import Callable

from openspec_cli.chunking import (
    MAX_CHUNK,
    MIN_CHUNK,
    STREAMING_TRIGGER,
    ChunkSizer,
    clamp,
    initial_chunk_size,
)
from openspec_cli.fileio import WRITEBACK_EVERY, drop_read_cache, pread_full

#: False when running, True for mypy. The interfaces below exist for type checking only, so that
#: starting a command does not import typing (~8 ms here); import them the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from openspec_cli.hashing import Hasher

#: Largest chunk when there is nothing to write (verify): the hash then reads what was just
#: copied into the buffer while it is still in the CPU's cache. 1 GiB page-cached, read and
#: hashed in a loop: 0.199 s with 256 KiB chunks, 0.230 s with 1 MiB.
HASH_ONLY_CHUNK = 256 * 1024

#: Under --limit-rate, chunks hold about this fraction of a second of data (see RateLimiter),
#: and no less than this: with the engine's 32 KiB floor, -L 4K moved 32 KiB every 8 s, and
#: with a 4 KiB one -L 2k moved 4 KiB every 2 s (pv -L 2k: 200 bytes every 0.1 s).
LIMITED_CHUNKS_PER_SECOND = 20
LIMITED_MIN_CHUNK = 256
#: Under --limit-rate, how far behind its schedule a stream may fall and then catch up at full
#: speed: a stall (backpressure's slowdown, a slow disk) is not made up for by a burst.
LIMITED_CATCH_UP = 1 / LIMITED_CHUNKS_PER_SECOND

#: Buffers per stream: one being read, one being written, two in flight to absorb jitter.
POOL_SIZE = 4

#: Hash-only streams of regular files at least this large read ahead on a second thread.
READ_AHEAD_TRIGGER = 16 * 1024 * 1024

#: Chunks the read-ahead thread may hold, read or being read, beyond the hashing thread's own.
READ_AHEAD_DEPTH = 4


class StreamStats:
    """Live counters of one stream, written by the engine and read by renderers.

    A plain class, not a dataclass: importing dataclasses costs ~20 ms of every start-up."""

    __slots__ = (
        "name",
        "total",
        "done",
        "chunk_size",
        "started",
        "finished",
        "chunk_sizes",
        "transfer_id",
        "retries",
        "checkpoints",
        "buffer_bytes",
    )

    def __init__(
        self,
        name: str,
        total: int | None = None,
        chunk_size: int = 0,
        transfer_id: str | None = None,
    ) -> None:
        self.name = name
        self.total = total
        self.transfer_id = transfer_id
        self.done = 0
        self.chunk_size = chunk_size
        self.started = time.monotonic()
        self.finished: float | None = None
        self.chunk_sizes: list[int] = []
        self.retries = 0
        self.checkpoints = 0
        self.buffer_bytes = 0

    @property
    def seconds(self) -> float:
        """Wall time so far, or until finished."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)


if TYPE_CHECKING:

    class EngineView(Protocol):
        """A scheduler's state as renderers see it (level, score split, memory, streams)."""

        def snapshot(self) -> dict[str, Any]: ...

    class Observer(Protocol):
        """How streams announce themselves; renderers keep the stats and sample them."""

        def engine_attached(self, engine: EngineView) -> None: ...

        def stream_started(self, stats: StreamStats) -> None: ...

        def stream_finished(self, stats: StreamStats) -> None: ...

    class Pacer(Protocol):
        """What a scheduler does between chunks: hold a stream back, slow it, and measure it."""

        chunk_ceiling: int

        def before_chunk(self, stats: StreamStats) -> None:
            """Block while this stream may not run; raise to stop it (e.g. Interrupted)."""
            ...

        def chunk_done(self, stats: StreamStats, seconds: float, nbytes: int) -> None:
            """One chunk went all the way through (read, hashed, written) in ``seconds``."""
            ...

        def lend(self, count: int, size: int) -> list[memoryview]:
            """Buffers for one stream, reused across the operation's streams."""
            ...

        def give_back(self, buffers: list[memoryview]) -> None:
            """A stream is done with its buffers."""
            ...


class NullObserver:
    """The default observer: nobody is watching."""

    def engine_attached(self, engine: EngineView) -> None:
        """Ignore."""

    def stream_started(self, stats: StreamStats) -> None:
        """Ignore."""

    def stream_finished(self, stats: StreamStats) -> None:
        """Ignore."""


class RateLimiter:
    """Paces a stream to ``rate`` bytes per second (like ``pv -L`` or ``rsync --bwlimit``).

    Shared by every stream of a command, so the limit is on the total. ``clock`` and ``sleep``
    are injectable so tests check pacing without waiting.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._sent = 0
        self._lock = threading.Lock()

    def chunk(self, ceiling: int) -> int:
        """The one chunk size for every stream paced by this limiter: about 1/20 s of data.

        Streams take turns booking whole chunks, so each one's share of the rate follows its
        chunk size; with sizes adapted per stream, ``-j 2`` split 8 MiB/s as 4 to 1. One size
        for all makes the shares equal, and small chunks keep a slow rate smooth (as ``pv -L``).
        Measured throughput cannot guide a sizer here anyway: the limiter sets it.
        """
        per_turn = int(self.rate / LIMITED_CHUNKS_PER_SECOND)
        return clamp(1 << max(per_turn.bit_length() - 1, 0), LIMITED_MIN_CHUNK, ceiling)

    def throttle(self, nbytes: int) -> None:
        """Account ``nbytes`` and sleep until sending them keeps us at or under the rate.

        Time lost to a stall is lost: a stream further behind its schedule than
        ``LIMITED_CATCH_UP`` (or one chunk, if longer) is put back to that much behind, not let
        through at full speed until it has caught up (backpressure's slowdowns were undone so,
        at MODERATE and HEAVY). A source slower than the rate is never held back.
        """
        now = self._clock()
        with self._lock:
            behind = now - (self._start + self._sent / self.rate)
            allowed = max(LIMITED_CATCH_UP, nbytes / self.rate)
            if behind > allowed:
                self._start += behind - allowed
            self._sent += nbytes
            due = self._start + self._sent / self.rate
        delay = due - now
        if delay > 0:
            self._sleep(delay)


class BufferPool:
    """A fixed set of reusable buffers; taking one blocks until another is given back."""

    def __init__(self, buffers: list[memoryview]) -> None:
        import queue  # only threaded streams need it; verify and cat start without

        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for buf in buffers:
            self._free.put(buf)

    def take(self) -> memoryview:
        """Borrow a buffer."""
        return self._free.get()

    def give(self, buf: memoryview) -> None:
        """Return a buffer for reuse."""
        self._free.put(buf)


def buffer_size_for(total: int | None, ceiling: int = MAX_CHUNK) -> int:
    """Size of each pooled buffer: the largest chunk this stream may use, no larger than needed.

    Rounded up to a power of two: a tree of small files then asks the scheduler's bank for a
    few sizes it can reuse, not a new size (a new allocation, the old ones dropped) per file.
    Never under the smallest chunk: a file in /proc says it holds 0 bytes, and one that grows
    as it is read outgrows what it said; a 1-byte buffer read them a byte per system call.
    """
    if total is None:
        return ceiling
    return min(ceiling, max(MIN_CHUNK, 1 << max(total - 1, 0).bit_length()))


@functools.cache
def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


if TYPE_CHECKING:
    Sink = Callable[[memoryview], None]
    #: Called after the chunk that ends at ``offset`` has been handed to the sink, with a
    #: snapshot of the hash of bytes [0, offset): what a checkpoint records and a retry
    #: restarts from.
    CommitHook = Callable[[int, Hasher], None]


class Pump:
    """Moves one stream from ``src`` through ``hasher`` into ``sink``.

    ``sink`` is given each chunk in order (write to a file or pipe, compare, nothing). Returns
    from :meth:`run` with the byte count; any exception from the sink is re-raised in the caller.
    ``abandon_wait``: on an interrupt, how long to wait for a write already in progress; None
    waits for it (a file: its fd must not be closed under it), a number suits a pipe whose
    reader stalled.
    """

    def __init__(
        self,
        src: int,
        stats: StreamStats,
        hasher: Hasher | None = None,
        sink: Sink | None = None,
        limiter: RateLimiter | None = None,
        sizer: ChunkSizer | None = None,
        pool_size: int = POOL_SIZE,
        commit_every: int = 0,
        on_commit: CommitHook | None = None,
        pacer: Pacer | None = None,
        drop_source_cache: bool = False,
        abandon_wait: float | None = None,
    ) -> None:
        self.src = src
        self.stats = stats
        self.hasher = hasher
        self.sink = sink
        self.limiter = limiter
        self.pool_size = pool_size
        self.commit_every = commit_every
        self.on_commit = on_commit
        self.pacer = pacer
        self.drop_source_cache = drop_source_cache
        self.abandon_wait = abandon_wait
        self._chunks = 0
        self._read_pos = self._dropped = 0
        if drop_source_cache:
            self._read_pos = self._dropped = os.lseek(src, 0, os.SEEK_CUR)
        if sizer is None:
            # Pools are sized from the ceiling: a scheduler's memory budget holds from the start.
            ceiling = self._ceiling(pacer.chunk_ceiling if pacer is not None else MAX_CHUNK)
            if limiter is not None:
                size = limiter.chunk(ceiling)
                sizer = ChunkSizer(start=size, floor=size, ceiling=size, window=math.inf)
            else:
                sizer = ChunkSizer(start=initial_chunk_size(stats.total), ceiling=ceiling)
        self.sizer = sizer
        stats.chunk_size = sizer.size

    def run(self) -> int:
        """Move everything until EOF.

        With writing to overlap, a second thread writes (a 1 GiB copy: 0.30 s threaded vs
        0.55 s inline). Hashing alone does not gain from handing chunks to a hashing thread
        (0.20 s vs 0.28 s for 1 GiB), but a large file gains from a second thread reading part
        of it (:meth:`_run_read_ahead`).
        """
        small = self.stats.total is not None and self.stats.total < STREAMING_TRIGGER
        if self.sink is None and self._can_read_ahead():
            return self._run_read_ahead()
        if small and self.limiter is None and not self.drop_source_cache:
            return self._run_small()
        if small or self.sink is None:
            return self._run_inline()
        return self._run_threaded()

    def _ceiling(self, allowed: int) -> int:
        """The largest chunk to use when ``allowed`` is what memory permits."""
        return min(allowed, HASH_ONLY_CHUNK) if self.sink is None else allowed

    def _read(self, buf: memoryview) -> int:
        size = min(self.sizer.size, len(buf))
        while True:
            try:
                return os.readv(self.src, [buf[:size]])
            except InterruptedError:
                continue

    def _account(self, n: int) -> None:
        stats = self.stats
        stats.done += n
        size = self.sizer.record(n)
        if size != stats.chunk_size:
            stats.chunk_size = size

    def _throttle(self, n: int) -> None:
        """Pace on the reading thread, where a Ctrl-C interrupts the sleep at once."""
        if self.limiter is not None:
            self.limiter.throttle(n)
        if self.drop_source_cache:
            self._read_pos += n
            if self._read_pos - self._dropped >= WRITEBACK_EVERY:
                drop_read_cache(self.src, self._dropped, self._read_pos)
                self._dropped = self._read_pos

    def _gate(self) -> float:
        """Before each read: let the scheduler hold us back; returns the chunk's start time."""
        pacer = self.pacer
        if pacer is not None:
            pacer.before_chunk(self.stats)
            ceiling = self._ceiling(pacer.chunk_ceiling)
            if ceiling != self.sizer.ceiling:
                self.sizer.set_ceiling(ceiling)
        return time.monotonic()

    def _borrow(self, count: int) -> list[memoryview]:
        """This stream's buffers: from the scheduler's bank when there is one."""
        size = buffer_size_for(self.stats.total, self.sizer.ceiling)
        if self.pacer is not None:
            buffers = self.pacer.lend(count, size)
        else:
            buffers = [memoryview(bytearray(size)) for _ in range(count)]
        self.stats.buffer_bytes = count * size
        return buffers

    def _return(self, buffers: list[memoryview]) -> None:
        self.stats.buffer_bytes = 0
        if self.pacer is not None:
            self.pacer.give_back(buffers)

    def _done(self, started: float, n: int) -> None:
        if self.pacer is not None:
            self.pacer.chunk_done(self.stats, time.monotonic() - started, n)

    def _run_inline(self) -> int:
        buffers = self._borrow(1)
        try:
            self._loop_inline(buffers[0])
        finally:
            self._return(buffers)
        self._finish()
        return self.stats.done

    def _loop_inline(self, buf: memoryview) -> None:
        pending = 0
        while True:
            self._throttle(pending)  # pace for the last chunk before timing the next one
            started = self._gate()
            n = self._read(buf)
            if not n:
                break
            view = buf[:n]
            if self.hasher is not None:
                self.hasher.update(view)
            snap = self._snapshot()
            if self.sink is not None:
                self.sink(view)
            self._account(n)
            self._commit(snap)
            self._done(started, n)
            pending = n

    def _run_small(self) -> int:
        """A file under the streaming trigger: a read or a few, in a plain loop.

        Its chunks are too few for the sizer to adapt or for a checkpoint to be worth taking,
        and the scheduler is asked once rather than per chunk: in a tree of small files the
        per-chunk bookkeeping cost more than the reads and writes (3000 files of 0-64 KiB).
        """
        started = self._gate()
        buffers = self._borrow(1)
        stats, hasher, sink = self.stats, self.hasher, self.sink
        said = stats.total if stats.total is not None else -1
        try:
            buf = buffers[0]
            while n := self._read(buf):
                view = buf[:n]
                if hasher is not None:
                    hasher.update(view)
                if sink is not None:
                    sink(view)
                stats.done += n
                if stats.done > said >= 0 and self.on_commit and hasher is not None:
                    # It grew while read: the commit hook judges (a copy refuses it at once;
                    # reading on, a file appended to without end was copied without end).
                    self.on_commit(stats.done, hasher.copy())
        finally:
            self._return(buffers)
        if stats.done:
            self._done(started, stats.done)
        self._finish()
        return stats.done

    def _run_threaded(self) -> int:
        """Read and hash on this thread (cheaper than writing); write on a second one."""
        buffers = self._borrow(self.pool_size)
        try:
            self._loop_threaded(BufferPool(buffers))
        finally:
            self._return(buffers)
        self._finish()
        return self.stats.done

    def _loop_threaded(self, pool: BufferPool) -> None:
        assert self.sink is not None
        sink = self.sink
        import queue

        full: queue.SimpleQueue[tuple[memoryview, int, Hasher | None, float] | None] = (
            queue.SimpleQueue()
        )
        failure: list[BaseException] = []
        abandon = threading.Event()

        def consume() -> None:
            while True:
                item = full.get()
                if item is None:
                    return
                buf, n, snap, started = item
                if not failure and not abandon.is_set():
                    try:
                        sink(buf[:n])
                        self._account(n)
                        self._commit(snap)
                        self._done(started, n)
                    except BaseException as exc:  # handed to the reader thread, re-raised there
                        failure.append(exc)
                pool.give(buf)

        worker = threading.Thread(target=consume, name=f"openspec-{self.stats.name}", daemon=True)
        worker.start()
        pending = 0
        try:
            while not failure:
                buf = pool.take()
                self._throttle(pending)  # pace for the last chunk before timing the next one
                started = self._gate()
                n = self._read(buf)
                if not n:
                    pool.give(buf)
                    break
                if self.hasher is not None:
                    self.hasher.update(buf[:n])
                full.put((buf, n, self._snapshot(), started))
                pending = n
        except BaseException:
            abandon.set()  # an interrupt: drop what is queued rather than write it first
            raise
        finally:
            full.put(None)
            worker.join(self.abandon_wait if abandon.is_set() else None)
        if failure:
            raise failure[0]

    def _can_read_ahead(self) -> bool:
        """Whether to hash with a second thread reading ahead (see :meth:`_run_read_ahead`).

        Only for a large regular file hashed without pacing, checkpoints or cache dropping: those
        stay on the simple loop, where the numbers were measured. One CPU gains nothing.
        """
        total = self.stats.total
        if total is None or total < READ_AHEAD_TRIGGER or self.hasher is None:
            return False
        if self.limiter is not None or self.pacer is not None or self.drop_source_cache:
            return False
        if self.commit_every or self.on_commit is not None or _usable_cpus() < 2:
            return False
        try:
            return stat.S_ISREG(os.fstat(self.src).st_mode)
        except OSError:
            return False

    def _run_read_ahead(self) -> int:
        """Hash a regular file while a second thread reads some of the chunks ahead with pread.

        Copying data out of the page cache costs four times what hashing it does (1 GiB: 0.20 s
        of reads, 0.05 s of XXH3), and one thread does that copy at a time. Here a helper reads
        two chunks in three into its own buffers while this thread reads the third and hashes all
        of them in order. 1 GiB page-cached on 2 CPUs: 0.17 s against 0.24 s for the simple
        loop, side by side in one process (the hand-offs cost the rest of the ideal 0.13 s).
        The hash is the same, the reads are the same bytes, just not one after the other.
        """
        buffers = self._borrow(1 + READ_AHEAD_DEPTH)
        try:
            self._loop_read_ahead(buffers[0], buffers[1:])
        finally:
            self._return(buffers)
        self._finish()
        return self.stats.done

    def _loop_read_ahead(self, own: memoryview, spare: list[memoryview]) -> None:
        import queue

        assert self.hasher is not None
        hasher, src = self.hasher, self.src
        requests: queue.SimpleQueue[tuple[int, memoryview] | None] = queue.SimpleQueue()
        results: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()

        def helper() -> None:
            while (request := requests.get()) is not None:
                try:
                    results.put(pread_full(src, request[1], request[0]))
                except BaseException as exc:  # handed to the hashing thread, raised there
                    results.put(exc)

        worker = threading.Thread(target=helper, name=f"openspec-{self.stats.name}", daemon=True)
        worker.start()
        # In reading order: (offset, the chunk's view, the helper's buffer or None for ours).
        planned: list[tuple[int, memoryview, memoryview | None]] = []
        offset = end = os.lseek(src, 0, os.SEEK_CUR)
        issued = 0
        try:
            while True:
                while spare and len(planned) <= READ_AHEAD_DEPTH:
                    size = self.sizer.size
                    lent = spare.pop() if issued % 3 else None
                    chunk = own[:size] if lent is None else lent[:size]
                    if lent is not None:
                        requests.put((offset, chunk))
                    planned.append((offset, chunk, lent))
                    offset += size
                    issued += 1
                at, chunk, lent = planned.pop(0)
                got = pread_full(src, chunk, at) if lent is None else results.get()
                if isinstance(got, BaseException):
                    raise got
                if got:
                    hasher.update(chunk[:got])
                    self._account(got)
                    end = at + got
                if lent is not None:
                    spare.append(lent)
                if got < len(chunk):
                    break
        finally:
            requests.put(None)
            worker.join()
            os.lseek(src, end, os.SEEK_SET)  # where a plain read loop would have left it

    def _snapshot(self) -> Hasher | None:
        """Every ``commit_every`` chunks, a copy of the hash state for the commit hook."""
        if not self.commit_every or self.hasher is None:
            return None
        self._chunks += 1
        if self._chunks % self.commit_every:
            return None
        return self.hasher.copy()

    def _commit(self, snap: Hasher | None) -> None:
        if snap is not None and self.on_commit is not None:
            self.on_commit(self.stats.done, snap)

    def _finish(self) -> None:
        self.stats.chunk_sizes = list(self.sizer.sizes_used)
        self.stats.finished = time.monotonic()


def _is_fifo(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def splice_stream(
    src: int,
    dst: int,
    stats: StreamStats,
    limiter: RateLimiter | None = None,
    chunk: int = MAX_CHUNK,
) -> bool:
    """Move ``src`` to ``dst`` inside the kernel (``splice``), when nothing needs to see the data.

    Only possible when one side is a pipe (as ``pv`` does). Returns False, having moved nothing,
    when the kernel or platform cannot do it, so the caller falls back to :class:`Pump`.
    """
    splice = getattr(os, "splice", None)
    if splice is None or not (_is_fifo(src) or _is_fifo(dst)):
        return False
    if limiter is not None:
        chunk = limiter.chunk(chunk)
    stats.chunk_size = chunk  # what each splice asks the kernel to move, shown by the panel
    stats.chunk_sizes.append(chunk)
    while True:
        try:
            n = splice(src, dst, chunk)
        except InterruptedError:
            continue
        except OSError as err:
            if stats.done == 0 and err.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                return False
            raise
        if not n:
            break
        stats.done += n
        if limiter is not None:
            limiter.throttle(n)
    stats.finished = time.monotonic()
    return True
