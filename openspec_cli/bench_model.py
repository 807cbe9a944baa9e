"""What passes between ``openspec bench`` and each scenario's child process: the :class:`Spec`
it runs and the :class:`ScenarioResult` it reports, as JSON both ways. Plain data that imports
nothing of openspec's, so that ``bench``, ``bench_scenarios`` and ``bench_report`` can all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Spec:
    """One scenario: its kind, file size, streams per run, repeats, and sides per repeat."""

    id: str
    kind: str  # copy | chunking | concurrency | resume | transient
    description: str
    size: int
    files: int
    runs: int
    sides: int


# ---------------------------------------------------------------------------- results


@dataclass
class Throughput:
    """Bytes/s. min: the slowest operation (one copy call or pump); avg: all bytes, all time."""

    min_bps: float | None = None
    avg_bps: float | None = None
    reference_bps: float | None = None  # the read/write loop; chunking: fixed 64 KiB chunks
    cp_bps: float | None = None
    efficiency: float | None = None  # avg_bps / reference_bps
    efficiency_cp: float | None = None  # avg_bps / cp_bps


@dataclass
class Memory:
    """This process's resident memory while the scenario ran."""

    start_rss_bytes: int = 0
    peak_rss_bytes: int = 0
    growth_bps: float | None = None  # None: too brief to tell growth from a step


@dataclass
class Reliability:
    """Streams that ended with a correct file; recoveries (resume or retry) that did."""

    streams: int = 0
    streams_ok: int = 0
    retries: int = 0
    recoveries: int = 0
    recoveries_ok: int = 0
    resumed_fraction: float | None = None  # mean share of a file a resume did not copy again


@dataclass
class ScenarioResult:
    """Everything measured for one scenario."""

    id: str
    kind: str
    description: str
    file_size: int
    files: int
    runs: int
    bytes: int = 0
    seconds: float = 0.0
    throughput: Throughput = field(default_factory=Throughput)
    latency: dict[str, float] | None = None  # p50/p95/p99/max seconds per chunk
    memory: Memory = field(default_factory=Memory)
    pressure: dict[str, Any] | None = None  # {"highest": LEVEL, "seconds_in_levels": {...}}
    peak_concurrency: int | None = None
    reliability: Reliability = field(default_factory=Reliability)
    chunk_sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what the engine cannot report yet


def result_from_dict(data: dict[str, Any]) -> ScenarioResult:
    """The inverse of ``dataclasses.asdict`` for a ScenarioResult (child to parent, baselines)."""
    parts = {"throughput": Throughput, "memory": Memory, "reliability": Reliability}
    return ScenarioResult(**{**data, **{k: cls(**data[k]) for k, cls in parts.items()}})
