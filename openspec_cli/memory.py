"""Memory as the engine sees it: readings of this process, the machine and its container.

A probe reads memory (process, system, the container's cgroup v1/v2 limit, the tightest of its
ancestors); it is injectable, so tests stage any memory situation without allocating it. The
design record's thresholds (warning 60%, critical 75%, emergency 85%) and the default buffer
ceiling live here; ``pressure`` turns readings into backpressure.
"""

from __future__ import annotations

import os

from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): typing and psutil cost start-up time;
#: psutil is imported where the system is read.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    import psutil

MIB = 1024 * 1024

#: The design record's absolute per-operation limit: the default buffer ceiling.
ABSOLUTE_LIMIT = 50 * MIB
#: The design record's memory thresholds, as fractions of the memory that counts.
WARNING, CRITICAL_FRACTION, EMERGENCY = 0.60, 0.75, 0.85
#: The smallest ceiling: one stream's pool (4 buffers) of 256 KiB large-file chunks, twice over.
MIN_CEILING = 2 * MIB
#: Share of free memory one operation may claim: four side by side still leave a quarter free.
FAIR_SHARE = 0.25
#: cgroup v1 says "no limit" as 9223372036854771712; anything over an exbibyte is no limit.
UNLIMITED = 1 << 60


class MemoryReading(Record):
    """One look at memory: the engine's buffers against its ceiling, and the machine's."""

    __slots__ = ("rss", "engine_bytes", "ceiling", "used", "total", "source")

    def __init__(
        self, rss: int, engine_bytes: int, ceiling: int, used: int, total: int, source: str
    ) -> None:
        self.rss = rss  #: this process
        self.engine_bytes = engine_bytes  #: bytes in engine buffers now (the scheduler knows)
        self.ceiling = ceiling  #: the engine's buffer ceiling
        self.used = used  #: system or container memory in use (reclaimable page cache excluded)
        self.total = total  #: system total or container limit
        self.source = source  #: "cgroup v2", "cgroup v1", "system" (or a fake's name)

    @property
    def usage(self) -> float:
        """The larger share, in [0, 1]: either the engine or the machine may be the one short."""
        engine = self.engine_bytes / self.ceiling if self.ceiling > 0 else 0.0
        system = self.used / self.total if self.total > 0 else 0.0
        return min(max(engine, system, 0.0), 1.0)


_BANDS = ((EMERGENCY, "emergency"), (CRITICAL_FRACTION, "critical"), (WARNING, "warning"))


def memory_band(usage: float) -> str:
    """The design record's threshold ``usage`` has reached: ok, warning, critical, emergency."""
    return next((name for floor, name in _BANDS if usage >= floor), "ok")


if TYPE_CHECKING:

    class MemoryProbe(Protocol):
        """Where readings come from: the real system, or a test's staged situation."""

        def read(self, engine_bytes: int, ceiling: int) -> MemoryReading:
            """Read memory now, with the engine's own figures passed through."""
            ...

else:

    class MemoryProbe:
        """Where readings come from (``read(engine_bytes, ceiling) -> MemoryReading``).

        A Protocol for type checkers; at run time only a name, since typing costs start-up."""


class FixedProbe(Record):
    """A staged memory situation, for tests and benchmarks of the scheduler."""

    __slots__ = ("used", "total", "rss", "source")

    def __init__(self, used: int, total: int, rss: int = 0, source: str = "fixed") -> None:
        self.used = used
        self.total = total
        self.rss = rss
        self.source = source

    def read(self, engine_bytes: int, ceiling: int) -> MemoryReading:
        """The staged figures, with the engine's own."""
        return MemoryReading(self.rss, engine_bytes, ceiling, self.used, self.total, self.source)


class SystemProbe:
    """Reads this machine: psutil for process and system, cgroup files for a container's limit.

    A container limit below physical memory wins: 512 MB in a container acts like a 512 MB laptop.
    """

    def __init__(
        self, cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup"
    ) -> None:
        self.cgroup_root = cgroup_root
        self.proc_cgroup = proc_cgroup
        self._process: psutil.Process | None = None

    def read(self, engine_bytes: int, ceiling: int) -> MemoryReading:
        """Read process, system and container memory now (a few small file reads)."""
        rss, used, total = self._process_and_system()
        source = "system"
        group = cgroup_memory(self.cgroup_root, self.proc_cgroup)
        if group is not None and group.limit < total:
            used, total, source = group.usage, group.limit, group.source
        return MemoryReading(rss, engine_bytes, ceiling, used, total, source)

    def _process_and_system(self) -> tuple[int, int, int]:
        """RSS, used and total memory. On Linux these are read from /proc directly, the figures
        psutil computes: importing psutil costs ~25 ms of CPU, more than a small copy takes, and
        on the monitor thread it held the GIL that the copy's threads need between system calls.
        Elsewhere, psutil."""
        quick = _proc_reading()
        if quick is not None:
            return quick
        import psutil

        if self._process is None:
            self._process = psutil.Process()
        vm = psutil.virtual_memory()
        # "available" already counts reclaimable cache as free, like the cgroup working set.
        return self._process.memory_info().rss, vm.total - vm.available, vm.total


def _proc_reading() -> tuple[int, int, int] | None:
    """(rss, used, total) from /proc on Linux, as psutil computes them; None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        fields: dict[str, int] = {}
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                key, _, rest = line.partition(b":")
                fields[key.decode()] = int(rest.split()[0]) * 1024
        total, available = fields["MemTotal"], fields["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return rss, total - available, total


def default_ceiling(requested: int | None, reading_total: int, reading_used: int) -> int:
    """The engine's buffer ceiling for one operation.

    ``requested`` (``--max-memory``) or else the design record's 50 MB, but never more than
    FAIR_SHARE of what is free (a 512 MB container with 400 MB used gives 28 MB) and never less
    than MIN_CEILING, below which a single stream cannot run.
    """
    if requested is not None and requested <= 0:
        raise ValueError(f"memory ceiling must be positive, not {requested}")
    wanted = ABSOLUTE_LIMIT if requested is None else requested
    spare = max(reading_total - reading_used, 0)
    return max(min(wanted, int(spare * FAIR_SHARE)), MIN_CEILING)


# ---------------------------------------------------------------------------- cgroup limits


class CgroupMemory(Record):
    """A cgroup's memory limit and working set, in bytes, and which cgroup version said so."""

    __slots__ = ("limit", "usage", "source")

    def __init__(self, limit: int, usage: int, source: str) -> None:
        self.limit = limit
        self.usage = usage
        self.source = source


class _Layout(Record):
    """Where one cgroup version keeps the limit, the usage and the inactive file pages."""

    __slots__ = ("limit", "usage", "inactive", "source")

    def __init__(self, limit: str, usage: str, inactive: str, source: str) -> None:
        self.limit = limit
        self.usage = usage
        self.inactive = inactive
        self.source = source


_V2 = _Layout("memory.max", "memory.current", "inactive_file", "cgroup v2")
_V1 = _Layout("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", "cgroup v1")


def cgroup_memory(cgroup_root: str, proc_cgroup: str) -> CgroupMemory | None:
    """The memory limit that binds this process's cgroup, or None when unlimited or absent.

    v2 at ``cgroup_root`` first, then v1 at ``cgroup_root/memory``. A parent's limit binds its
    children, so the cgroup and its ancestors are read and the least headroom wins. A path that
    is not visible (a container without a cgroup namespace sees itself at the mount's root)
    falls back to its nearest existing ancestor.
    """
    paths = _own_cgroups(proc_cgroup)
    if "v2" in paths:
        found = _tightest(cgroup_root, paths["v2"], _V2)
        if found is not None:
            return found
    if "v1" in paths:
        return _tightest(os.path.join(cgroup_root, "memory"), paths["v1"], _V1)
    return None


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """This process's v2 path (``0::/x``) and v1 memory path (``5:memory:/x``)."""
    paths: dict[str, str] = {}
    for line in _lines(proc_cgroup):
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1"] = path
    return paths


def _tightest(mount: str, path: str, layout: _Layout) -> CgroupMemory | None:
    """Among the cgroup and its ancestors, the limited one closest to its limit."""
    found = [r for d in _lineage(mount, path) if (r := _read_cgroup(d, layout)) is not None]
    return min(found, key=lambda r: r.limit - r.usage, default=None)


def _lineage(mount: str, path: str) -> list[str]:
    """Existing directories from the cgroup's own up to the mount."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    dirs = [os.path.join(mount, *parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in dirs if os.path.isdir(d)]


def _read_cgroup(directory: str, layout: _Layout) -> CgroupMemory | None:
    """One cgroup's limit and working set; None if it has no limit or no memory files.

    Working set = usage minus inactive file pages, as the kernel's reclaim, cAdvisor and the
    kubelet see it: copying a big file fills page cache charged to our cgroup, which the kernel
    drops before it ever OOM-kills. Counted as used, a 512 MB container would look full after
    copying 500 MB and we would throttle ourselves for memory nobody needs.
    """
    limit = _read_int(os.path.join(directory, layout.limit))
    usage = _read_int(os.path.join(directory, layout.usage))
    if limit is None or limit >= UNLIMITED or usage is None:
        return None
    inactive = _stat_value(os.path.join(directory, "memory.stat"), layout.inactive)
    return CgroupMemory(limit, max(usage - inactive, 0), layout.source)


def _lines(path: str) -> list[str]:
    """A small text file's lines; none when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _read_int(path: str) -> int | None:
    """An integer file's value; None when absent, unreadable or "max"."""
    try:
        with open(path, encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _stat_value(path: str, key: str) -> int:
    """One ``key value`` line of a memory.stat file; 0 when missing."""
    for line in _lines(path):
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0
