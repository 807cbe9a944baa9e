"""Resources released by priority: on success, failure, signal, and under emergency pressure.

Each resource is registered with a priority and a function that releases it. ``release_all``
runs them most urgent first and never lets one failure stop the rest; ``emergency`` releases only
what the operation can do without (cached pages, idle memory), as the design record's CRITICAL
level asks, before streams are paused.
"""

from __future__ import annotations

import enum
import threading

from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Priority(enum.IntEnum):
    """The design record's cleanup hierarchy, most urgent first."""

    IMMEDIATE = 0  # critical and system resources: file descriptors, locks
    HIGH = 1  # large buffers, active streams
    NORMAL = 2  # standard streams and buffers, worker threads
    LOW = 3  # cached resources: page cache of finished files
    DEFERRED = 4  # history and optional resources: statistics, garbage


class Resource(Record):
    """One registered resource."""

    __slots__ = ("name", "priority", "release")

    def __init__(self, name: str, priority: Priority, release: Callable[[], object]) -> None:
        self.name = name
        self.priority = priority
        self.release = release


class Cleanup:
    """A registry of releasable resources; thread-safe, each resource released at most once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, Resource] = {}
        self._next = 0
        self.released: list[str] = []
        self.failures: list[tuple[str, BaseException]] = []

    def register(self, name: str, priority: Priority, release: Callable[[], object]) -> int:
        """Track a resource; returns a handle for :meth:`forget` or :meth:`release`."""
        with self._lock:
            handle = self._next
            self._next += 1
            self._items[handle] = Resource(name, priority, release)
            return handle

    def forget(self, handle: int) -> None:
        """The owner released it itself (the normal path); nothing left to do."""
        with self._lock:
            self._items.pop(handle, None)

    def release(self, handle: int) -> None:
        """Release one resource now."""
        with self._lock:
            item = self._items.pop(handle, None)
        if item is not None:
            self._run(item)

    def release_all(self, up_to: Priority = Priority.DEFERRED) -> list[str]:
        """Release everything at or above ``up_to`` in priority order; returns what ran."""
        return self._release(lambda p: p <= up_to)

    def emergency(self) -> list[str]:
        """Under CRITICAL pressure: give back what is optional (LOW and DEFERRED), keep it
        registered for next time (caches refill)."""
        with self._lock:
            items = sorted(
                (r for r in self._items.values() if r.priority >= Priority.LOW),
                key=lambda r: r.priority,
            )
        for item in items:
            self._run(item)
        return [item.name for item in items]

    def pending(self) -> list[str]:
        """Names of what is still registered, most urgent first."""
        with self._lock:
            return [r.name for r in sorted(self._items.values(), key=lambda r: r.priority)]

    def _release(self, keep: Callable[[Priority], bool]) -> list[str]:
        with self._lock:
            chosen = sorted(
                ((h, r) for h, r in self._items.items() if keep(r.priority)),
                key=lambda hr: (hr[1].priority, hr[0]),
            )
            for handle, _ in chosen:
                del self._items[handle]
        for _, item in chosen:
            self._run(item)
        return [item.name for _, item in chosen]

    def _run(self, item: Resource) -> None:
        try:
            item.release()
            self.released.append(item.name)
        except Exception as exc:  # one failing release must not keep the others from running
            self.failures.append((item.name, exc))
