"""The streaming core every command shares: pooled buffers, read -> hash -> write, pacing.

One stream is a reader (this thread) and, for large data, a consumer thread, handing a small fixed
pool of preallocated buffers back and forth. xxhash, hashlib and file I/O release the GIL, so the
two overlap; nothing is allocated per chunk, so memory does not grow with file size. The engine
reports progress only by updating :class:`StreamStats` counters; whoever renders them samples them
on their own schedule (see ``ui``), which keeps the hot loop free of callbacks.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from openspec_cli.chunking import MAX_CHUNK, STREAMING_TRIGGER, ChunkSizer, initial_chunk_size

#: Buffers per stream: one being read, one being written, two in flight to absorb jitter.
POOL_SIZE = 4


class Hasher(Protocol):
    """What the engine needs of a hash object (hashlib and xxhash both fit)."""

    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass
class StreamStats:
    """Live counters of one stream, written by the engine and read by renderers."""

    name: str
    total: int | None = None
    done: int = 0
    chunk_size: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    chunk_sizes: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall time so far, or until finished."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)


class Observer(Protocol):
    """How streams announce themselves; renderers keep the stats and sample them."""

    def stream_started(self, stats: StreamStats) -> None: ...

    def stream_finished(self, stats: StreamStats) -> None: ...


class NullObserver:
    """The default observer: nobody is watching."""

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

    def throttle(self, nbytes: int) -> None:
        """Account ``nbytes`` and sleep until sending them keeps us at or under the rate."""
        with self._lock:
            self._sent += nbytes
            due = self._start + self._sent / self.rate
        delay = due - self._clock()
        if delay > 0:
            self._sleep(delay)


class BufferPool:
    """A fixed set of reusable buffers; taking one blocks until another is given back."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(memoryview(bytearray(size)))

    def take(self) -> memoryview:
        """Borrow a buffer."""
        return self._free.get()

    def give(self, buf: memoryview) -> None:
        """Return a buffer for reuse."""
        self._free.put(buf)


def buffer_size_for(total: int | None, ceiling: int = MAX_CHUNK) -> int:
    """Size of each pooled buffer: the largest chunk this stream may use, no larger than needed."""
    if total is None:
        return ceiling
    return max(min(ceiling, total), 1)


def write_all(fd: int, data: memoryview) -> None:
    """Write every byte of ``data``; ``os.write`` may write less than asked."""
    written = 0
    size = len(data)
    while written < size:
        written += os.write(fd, data[written:])


Sink = Callable[[memoryview], None]


@dataclass
class Pump:
    """Moves one stream from ``src`` through ``hasher`` into ``sink``.

    ``sink`` is given each chunk in order (write to a file or pipe, compare, nothing). Returns
    from :meth:`run` with the byte count; any exception from the sink is re-raised in the caller.
    """

    src: int
    stats: StreamStats
    hasher: Hasher | None = None
    sink: Sink | None = None
    limiter: RateLimiter | None = None
    sizer: ChunkSizer | None = None
    pool_size: int = POOL_SIZE
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.sizer is None:
            self.sizer = ChunkSizer(start=initial_chunk_size(self.stats.total))
        self.stats.chunk_size = self.sizer.size

    def run(self) -> int:
        """Move everything until EOF; threaded unless the stream is small or has no consumer."""
        small = self.stats.total is not None and self.stats.total < STREAMING_TRIGGER
        if small or (self.sink is None and self.hasher is None):
            return self._run_inline()
        return self._run_threaded()

    def _read(self, buf: memoryview) -> int:
        assert self.sizer is not None
        size = min(self.sizer.size, len(buf))
        while True:
            try:
                return os.readv(self.src, [buf[:size]])
            except InterruptedError:
                continue

    def _account(self, n: int) -> None:
        assert self.sizer is not None
        stats = self.stats
        stats.done += n
        size = self.sizer.record(n)
        if size != stats.chunk_size:
            stats.chunk_size = size
        if self.limiter is not None:
            self.limiter.throttle(n)

    def _run_inline(self) -> int:
        assert self.sizer is not None
        buf = memoryview(bytearray(buffer_size_for(self.stats.total, self.sizer.ceiling)))
        while not self.stop.is_set():
            n = self._read(buf)
            if not n:
                break
            view = buf[:n]
            if self.hasher is not None:
                self.hasher.update(view)
            if self.sink is not None:
                self.sink(view)
            self._account(n)
        self._finish()
        return self.stats.done

    def _run_threaded(self) -> int:
        assert self.sizer is not None
        pool = BufferPool(self.pool_size, buffer_size_for(self.stats.total, self.sizer.ceiling))
        # With a sink, the reader also hashes (read+hash is cheaper than write); without one,
        # hashing is the consumer's whole job so reading and hashing overlap.
        hash_in_reader = self.sink is not None
        full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        failure: list[BaseException] = []

        def consume() -> None:
            while True:
                item = full.get()
                if item is None:
                    return
                buf, n = item
                if not failure:
                    try:
                        view = buf[:n]
                        if not hash_in_reader and self.hasher is not None:
                            self.hasher.update(view)
                        if self.sink is not None:
                            self.sink(view)
                        self._account(n)
                    except BaseException as exc:  # handed to the reader thread, re-raised there
                        failure.append(exc)
                pool.give(buf)

        worker = threading.Thread(target=consume, name=f"openspec-{self.stats.name}", daemon=True)
        worker.start()
        try:
            while not failure and not self.stop.is_set():
                buf = pool.take()
                n = self._read(buf)
                if not n:
                    pool.give(buf)
                    break
                if hash_in_reader and self.hasher is not None:
                    self.hasher.update(buf[:n])
                full.put((buf, n))
        finally:
            full.put(None)
            worker.join()
        if failure:
            raise failure[0]
        self._finish()
        return self.stats.done

    def _finish(self) -> None:
        assert self.sizer is not None
        self.stats.chunk_sizes = list(self.sizer.sizes_used)
        self.stats.finished = time.monotonic()


def file_sink(fd: int) -> Sink:
    """A sink that writes every chunk to ``fd``."""

    def sink(view: memoryview) -> None:
        write_all(fd, view)

    return sink
