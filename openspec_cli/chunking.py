"""Chunk sizing: the design record's size classes, then adaptation to measured throughput.

Pure: the sizer is fed byte counts and timestamps from an injectable clock and never sleeps or
does I/O, so its behaviour is tested exhaustively without real files.
"""

from __future__ import annotations

import time
from collections.abc import Callable

KIB = 1024
MIB = 1024 * KIB

#: Files smaller than this take the simple single-threaded path (the design record's trigger).
STREAMING_TRIGGER = 1 * MIB

#: Bounds for adaptation. The floor is the smallest class; the ceiling was chosen by measuring
#: a 1 GiB page-cached copy on a 2-core machine: 1 MiB chunks beat 256 KiB by ~10% and 4 MiB
#: gained nothing further while quadrupling the buffer pool.
MIN_CHUNK = 32 * KIB
MAX_CHUNK = 1 * MIB

#: (upper bound of file size, chunk size) from the design record; the last class is open-ended.
SIZE_CLASSES: tuple[tuple[int, int], ...] = (
    (1 * MIB, 32 * KIB),
    (10 * MIB, 64 * KIB),
    (100 * MIB, 128 * KIB),
)
LARGE_FILE_CHUNK = 256 * KIB


def initial_chunk_size(file_size: int | None) -> int:
    """Chunk size for a file of ``file_size`` bytes; unknown sizes (pipes) count as large."""
    if file_size is None:
        return LARGE_FILE_CHUNK
    for upper, chunk in SIZE_CLASSES:
        if file_size < upper:
            return chunk
    return LARGE_FILE_CHUNK


def clamp(size: int, low: int, high: int) -> int:
    """Bound ``size`` to ``[low, high]``."""
    return max(low, min(high, size))


class ChunkSizer:
    """Hill-climbs the chunk size on measured throughput, within ``[floor, ceiling]``.

    Every ``window`` seconds it compares the window's throughput with the best seen: if a larger
    chunk helped (or has not been tried) it doubles; if it got slower by more than ``tolerance`` it
    steps back and stops climbing. A lower ``ceiling`` (memory pressure) takes effect at once.
    (A plain class: importing dataclasses would cost every command ~20 ms of start-up.)
    """

    def __init__(
        self,
        start: int,
        floor: int = MIN_CHUNK,
        ceiling: int = MAX_CHUNK,
        window: float = 0.05,
        tolerance: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if floor <= 0 or ceiling < floor:
            raise ValueError(f"bad chunk bounds: floor={floor} ceiling={ceiling}")
        self.start = start
        self.floor = floor
        self.ceiling = ceiling
        self.window = window
        self.tolerance = tolerance
        self.clock = clock
        self.size = clamp(start, floor, ceiling)
        self.sizes_used = [self.size]
        self._window_start = clock()
        self._window_bytes = 0
        self._best_rate = 0.0
        self._best_size = self.size
        self._settled = False

    def record(self, nbytes: int) -> int:
        """Account ``nbytes`` moved with the current size; return the size for the next chunk."""
        self._window_bytes += nbytes
        now = self.clock()
        elapsed = now - self._window_start
        if elapsed >= self.window:
            self._adapt(self._window_bytes / elapsed)
            self._window_start = now
            self._window_bytes = 0
        return self.size

    def set_ceiling(self, ceiling: int) -> None:
        """Lower (or raise) the largest allowed chunk, e.g. when memory pressure changes."""
        self.ceiling = max(self.floor, ceiling)
        if self.size > self.ceiling:
            self._set(self.ceiling)
        self._best_size = min(self._best_size, self.ceiling)
        self._settled = False

    def _adapt(self, rate: float) -> None:
        if rate >= self._best_rate * (1 - self.tolerance):
            if rate > self._best_rate:
                self._best_rate, self._best_size = rate, self.size
            if not self._settled and self.size < self.ceiling:
                self._set(min(self.size * 2, self.ceiling))
        else:
            self._settled = True
            self._set(self._best_size)

    def _set(self, size: int) -> None:
        self.size = size
        if size not in self.sizes_used:
            self.sizes_used.append(size)
