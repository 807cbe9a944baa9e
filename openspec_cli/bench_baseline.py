"""Comparing a bench run with an earlier one (``--baseline``): the machine each ran on, the
baseline file, the metrics compared and the regression gate.

Pure functions of two ``--json`` documents, apart from reading the machine and the baseline file;
``bench_report`` builds the document and calls :func:`compare`. psutil is imported only inside
:func:`machine_info`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openspec_cli.bench_model import MIB
from openspec_cli.errors import UsageError, describe_os_error

#: The ``--json`` document's schema and version (``bench_report.document``); a baseline needs both.
SCHEMA = "openspec-bench"
VERSION = 1


# ---------------------------------------------------------------------------- the machine


def machine_info(directory: str | None) -> dict[str, Any]:
    """What a result must be read against: CPUs, memory, filesystem, Python and libraries."""
    import platform

    import psutil

    from openspec_cli import __version__

    affinity = getattr(os, "sched_getaffinity", None)
    where = directory or tempfile.gettempdir()
    return {
        "hostname": platform.node(),
        "os": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(affinity(0)) if affinity else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "filesystem": filesystem_of(where, psutil.disk_partitions(all=True)),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "openspec": __version__,
        "libraries": _library_versions(),
    }


def _cpu_model() -> str:
    import platform

    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(("model name", "Hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def filesystem_of(directory: str, partitions: Sequence[Any]) -> str | None:
    """Type of the filesystem holding ``directory``: that of the longest mount point above it."""
    real = os.path.realpath(directory)
    best: tuple[int, str | None] = (-1, None)
    for part in partitions:
        mount = part.mountpoint.rstrip("/")
        if (real == mount or real.startswith(mount + "/")) and len(mount) > best[0]:
            best = (len(mount), part.fstype)
    return best[1]


def _library_versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in ("typer", "rich", "psutil", "xxhash", "platformdirs"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same kind of machine: CPU, count, memory (within 5%), filesystem, OS and architecture."""
    keys = ("cpu_model", "cpu_usable", "filesystem", "os", "arch")
    memory = a.get("memory_bytes") or 0, b.get("memory_bytes") or 0
    close = abs(memory[0] - memory[1]) <= 0.05 * max(memory)
    return close and all(a.get(k) == b.get(k) for k in keys)


# ---------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class Metric:
    """A number compared with the baseline, and when it may be compared at all."""

    name: str
    path: tuple[str, ...]  # inside a scenario (or the summary, for the rates)
    higher_is_better: bool
    any_machine: bool  # ratios and rates hold across machines; raw speeds do not
    slack: float  # differences smaller than this are noise, whatever the percentage


METRICS: tuple[Metric, ...] = (
    Metric("efficiency", ("throughput", "efficiency"), True, True, 0.0),
    Metric("throughput_avg", ("throughput", "avg_bps"), True, False, 0.0),
    Metric("latency_p95", ("latency", "p95"), False, False, 0.005),
    Metric("peak_memory", ("memory", "peak_rss_bytes"), False, True, 2 * MIB),
)
RATES: tuple[Metric, ...] = (
    Metric("stream_success", ("stream_success_rate",), True, True, 0.0),
    Metric("recovery_success", ("recovery_success_rate",), True, True, 0.0),
)


def dig(data: Any, path: Sequence[str]) -> float | None:
    """``data[a][b]...`` as a number, or None when any step is missing."""
    for key in path:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return float(data) if isinstance(data, int | float) else None


def regressed(metric: Metric, old: float, new: float, max_regression: float) -> bool:
    """Worse than the baseline by more than ``max_regression`` (a fraction) and the slack."""
    worse = old - new if metric.higher_is_better else new - old
    return worse > metric.slack and worse > abs(old) * max_regression


def compare(doc: dict[str, Any], base: dict[str, Any], max_regression: float) -> dict[str, Any]:
    """Every comparable metric of ``doc`` against ``base`` (both ``--json`` documents)."""
    same = same_machine(doc.get("machine", {}), base.get("machine", {}))
    rows = _compare_rates(doc, base, max_regression)
    old_scenarios = {s.get("id"): s for s in base.get("scenarios", [])}
    for scenario in doc["scenarios"]:
        old = old_scenarios.get(scenario["id"])
        for metric in METRICS if old is not None else ():
            if metric.any_machine or same:
                rows += _row(scenario["id"], metric, old, scenario, max_regression)
    return {
        "same_machine": same,
        "max_regression": max_regression,
        "compared": rows,
        "regressions": sum(1 for r in rows if r["regressed"]),
    }


def _compare_rates(doc: dict[str, Any], base: dict[str, Any], limit: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for metric in RATES:
        rows += _row("all", metric, base.get("summary", {}), doc["summary"], limit)
    return rows


def _row(
    where: str, metric: Metric, old_data: Any, new_data: Any, limit: float
) -> list[dict[str, Any]]:
    old, new = dig(old_data, metric.path), dig(new_data, metric.path)
    if old is None or new is None:
        return []
    change = (new - old) / abs(old) if old else 0.0
    bad = regressed(metric, old, new, limit)
    row = {"scenario": where, "metric": metric.name, "baseline": old, "current": new}
    return [{**row, "change": change, "regressed": bad}]


def prepare(baseline: str | None, json_path: str | None) -> dict[str, Any] | None:
    """Check the files before a long run: read the baseline, and see that the JSON can go."""
    folder = os.path.dirname(os.path.abspath(json_path or "."))
    if json_path not in (None, "-") and not os.access(folder, os.W_OK):
        raise UsageError(f"--json '{json_path}': cannot write in its directory")
    return load_baseline(baseline) if baseline else None


def load_baseline(path: str) -> dict[str, Any]:
    """An earlier ``--json`` result; UsageError (exit 2) when unreadable or not one of ours."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as err:
        raise UsageError(f"--baseline '{path}': {describe_os_error(err)}") from err
    except ValueError as err:
        raise UsageError(f"--baseline '{path}': not JSON ({err})") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"--baseline '{path}': not an openspec bench --json result")
    if data.get("version") != VERSION:
        raise UsageError(
            f"--baseline '{path}': schema version {data.get('version')!r}, "
            f"this openspec reads version {VERSION}"
        )
    problem = _shape_problem(data)
    if problem:
        raise UsageError(f"--baseline '{path}': {problem}")
    return data


def _shape_problem(data: dict[str, Any]) -> str:
    """What is wrong with a baseline's parts that :func:`compare` reads, found before a run
    (a hand-edited one used to crash the comparison after the whole benchmark)."""
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list):
        return "'scenarios' is missing or not a list"
    if not all(isinstance(s, dict) and isinstance(s.get("id"), str) for s in scenarios):
        return "'scenarios' holds an entry that is not an object with a string 'id'"
    for part in ("summary", "machine"):
        if not isinstance(data.get(part, {}), dict):
            return f"'{part}' is not an object"
    return ""
