"""What a bench run means and how it looks: targets, the JSON document, Rich tables.

Scoring is a pure function of the results, so it is tested without running anything. The targets
are the design record's (``ADR-enhanced-streaming.md``, "Performance Targets"); its "MB" is read
as MiB, as openspec counts everywhere. The baseline comparison and the machine description are in
``bench_baseline``. rich is imported only inside the functions that draw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from openspec_cli.bench import BenchResult
from openspec_cli.bench_baseline import SCHEMA, VERSION, machine_info
from openspec_cli.bench_baseline import compare as compare
from openspec_cli.bench_baseline import load_baseline as load_baseline
from openspec_cli.bench_baseline import prepare as prepare
from openspec_cli.bench_model import MIB, ScenarioResult, Spec
from openspec_cli.errors import ExitCode, UsageError, describe_os_error

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

# compare, load_baseline and prepare are re-exported (imported ``as`` themselves): the command
# and the tests use them as ``bench_report.NAME``, as before they moved to bench_baseline.

PASS, FAIL, NA = "PASS", "FAIL", "N/A"

# ---------------------------------------------------------------------------- targets

Measure = Callable[[Sequence[ScenarioResult]], tuple[float | None, str | None]]


@dataclass(frozen=True)
class Target:
    """One row of the design record's table: how it is measured and what passes."""

    key: str
    label: str
    op: str  # "<" | ">" | ">="
    limit: float
    unit: str
    scale: float  # divide a value by this to show it in ``unit``
    measure: Measure
    pending: str | None = None  # the scenario field whose absence means "engine can't tell yet"


def _extreme(field: Callable[[ScenarioResult], float | None], largest: bool) -> Measure:
    """The largest (or smallest) ``field`` over the scenarios that have one, and where."""

    def measure(scenarios: Sequence[ScenarioResult]) -> tuple[float | None, str | None]:
        found = [(v, s.id) for s in scenarios if (v := field(s)) is not None]
        if not found:
            return None, None
        return max(found) if largest else min(found)

    return measure


def _rate(done: str, tried: str) -> Measure:
    """A success rate summed over every scenario (None when nothing was tried)."""

    def measure(scenarios: Sequence[ScenarioResult]) -> tuple[float | None, str | None]:
        ok = sum(getattr(s.reliability, done) for s in scenarios)
        total = sum(getattr(s.reliability, tried) for s in scenarios)
        return (ok / total if total else None), None

    return measure


def _streams_tried(s: ScenarioResult) -> float | None:
    """Streams at once, from scenarios that asked for 10 or more (fewer cannot show it)."""
    return s.peak_concurrency if s.files >= 10 else None


def _latency_p95(s: ScenarioResult) -> float | None:
    return s.latency["p95"] if s.latency else None


TARGETS: tuple[Target, ...] = (
    Target("peak_memory", "Peak memory", "<", 50 * MIB, "MiB", MIB,
           _extreme(lambda s: s.memory.peak_rss_bytes, largest=True)),
    Target("memory_growth", "Memory growth", "<", 1 * MIB, "MiB/s", MIB,
           _extreme(lambda s: s.memory.growth_bps, largest=True)),
    Target("throughput_min", "Throughput, minimum", ">=", 10 * MIB, "MiB/s", MIB,
           _extreme(lambda s: s.throughput.min_bps, largest=False)),
    Target("throughput_avg", "Throughput, average", ">=", 25 * MIB, "MiB/s", MIB,
           _extreme(lambda s: s.throughput.avg_bps, largest=False)),
    Target("stream_success", "Stream success", ">", 0.995, "%", 0.01,
           _rate("streams_ok", "streams")),
    Target("recovery_success", "Recovery success", ">", 0.95, "%", 0.01,
           _rate("recoveries_ok", "recoveries")),
    Target("latency_p95", "Chunk latency p95", "<", 0.2, "ms", 0.001,
           _extreme(_latency_p95, largest=True), pending="chunk_latency"),
    Target("concurrency", "Concurrent streams", ">=", 10, "at once", 1,
           _extreme(_streams_tried, largest=True), pending="peak_concurrency"),
)  # fmt: skip


@dataclass
class Verdict:
    """A target against this run: the measured value, where it was worst, PASS/FAIL/N/A."""

    key: str
    label: str
    op: str
    limit: float
    requirement: str
    value: float | None
    scenario: str | None
    status: str
    note: str = ""


def passes(op: str, value: float, limit: float) -> bool:
    """``value op limit``."""
    return {"<": value < limit, ">": value > limit, ">=": value >= limit}[op]


def shown(value: float, unit: str, scale: float) -> str:
    """A value in a target's unit, e.g. ``42.1 MiB`` or ``99.8 %``."""
    number = value / scale
    digits = 0 if unit == "at once" else (3 if abs(number) < 1 else 1)
    return f"{number:.{digits}f} {unit}"


def score(scenarios: Sequence[ScenarioResult]) -> list[Verdict]:
    """Every target against the scenarios; N/A when no scenario measured it."""
    verdicts = []
    for t in TARGETS:
        value, where = t.measure(scenarios)
        requirement = f"{t.op} {shown(t.limit, t.unit, t.scale)}"
        if value is None:
            pending = t.pending and any(t.pending in s.pending for s in scenarios)
            note = "pending: the engine does not report it yet" if pending else "not measured"
            note = {
                "memory_growth": "runs too short to tell: run without --quick",
                "concurrency": "not tried: --concurrency below 10",
            }.get(t.key, note)
            verdicts.append(
                Verdict(t.key, t.label, t.op, t.limit, requirement, None, None, NA, note)
            )
            continue
        status = PASS if passes(t.op, value, t.limit) else FAIL
        verdicts.append(Verdict(t.key, t.label, t.op, t.limit, requirement, value, where, status))
    return verdicts


def summary(scenarios: Sequence[ScenarioResult]) -> dict[str, Any]:
    """Totals over the run: the success rates and the worst memory figures."""
    rel = [s.reliability for s in scenarios]
    streams, recoveries = sum(r.streams for r in rel), sum(r.recoveries for r in rel)
    growth = [s.memory.growth_bps for s in scenarios if s.memory.growth_bps is not None]
    return {
        "streams": streams,
        "streams_ok": sum(r.streams_ok for r in rel),
        "stream_success_rate": sum(r.streams_ok for r in rel) / streams if streams else None,
        "recoveries": recoveries,
        "recoveries_ok": sum(r.recoveries_ok for r in rel),
        "recovery_success_rate": (
            sum(r.recoveries_ok for r in rel) / recoveries if recoveries else None
        ),
        "retries": sum(r.retries for r in rel),
        "peak_rss_bytes": max((s.memory.peak_rss_bytes for s in scenarios), default=0),
        "max_rss_growth_bps": max(growth) if growth else None,
    }


# ---------------------------------------------------------------------------- the document


def document(
    result: BenchResult, machine: dict[str, Any], base: dict[str, Any] | None, limit: float
) -> dict[str, Any]:
    """The ``--json`` document (schema documented in README.md), with the verdict and exit code."""
    verdicts = score(result.scenarios)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.started_at)),
        "seconds": result.seconds,
        "quick": result.config.quick,
        "config": {
            "sizes": list(result.config.sizes),
            "concurrency": list(result.config.concurrency),
            "directory": result.config.directory,
        },
        "machine": {**machine, "load_before": result.load_before, "load_after": result.load_after},
        "summary": summary(result.scenarios),
        "targets": [tidy(dataclasses.asdict(v)) for v in verdicts],
        "scenarios": [tidy(dataclasses.asdict(s)) for s in result.scenarios],
        "baseline": None,
    }
    if base is not None:
        doc["baseline"] = compare(doc, base, limit)
    regressions = (doc["baseline"] or {}).get("regressions", 0)
    failed = regressions > 0 or any(v.status == FAIL for v in verdicts)
    doc["exit_code"] = int(ExitCode.MISMATCH if failed else ExitCode.OK)
    return doc


def tidy(value: Any, key: str = "") -> Any:
    """Numbers as a reader wants them: whole bytes per second (as ``copy --json`` gives them)
    and six significant digits elsewhere, not 0.30000000000000004."""
    if isinstance(value, dict):
        return {k: tidy(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [tidy(v, key) for v in value]
    if isinstance(value, float):
        if key.endswith("_bps"):
            return round(value)
        short = float(f"{value:.6g}")
        return int(short) if abs(short) >= 1000 and short.is_integer() else short
    return value


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write ``doc`` to ``path`` (``-``: stdout), atomically: a CI job never reads half of it."""
    text = json.dumps(doc, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    target = os.path.abspath(path)
    fd, temp = tempfile.mkstemp(prefix=".bench-", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            umask = os.umask(0o022)
            os.umask(umask)
            os.fchmod(handle.fileno(), 0o666 & ~umask)  # as the shell's `>`; mkstemp's is 0600
            handle.write(text)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def publish(
    result: BenchResult, base: dict[str, Any] | None, max_regression: float, json_path: str | None
) -> int:
    """Score, compare, write JSON and print the tables; returns the exit code."""
    doc = document(result, machine_info(result.config.directory), base, max_regression / 100)
    if json_path is not None:
        try:
            write_json(doc, json_path)
        except OSError as err:
            raise UsageError(f"--json '{json_path}': {describe_os_error(err)}") from err
    stream = sys.stderr if json_path == "-" else sys.stdout
    render(doc, console_for(stream))
    return int(doc["exit_code"])


# ---------------------------------------------------------------------------- tables


def console_for(stream: TextIO) -> Console:
    """A console that keeps tables whole in logs (wide when not a terminal); honours NO_COLOR."""
    from rich.console import Console

    return Console(file=stream, width=None if stream.isatty() else 160, highlight=False)


def _mib(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value / MIB:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(latency: dict[str, float] | None) -> str:
    if not latency:
        return "-"
    return "/".join(f"{latency[k] * 1000:.1f}" for k in ("p50", "p95", "p99"))


def _ok(rel: dict[str, Any]) -> str:
    """Correct files over tries: streams, or recoveries where nothing else ran."""
    if rel["recoveries"] and not rel["streams"]:
        return f"{rel['recoveries_ok']}/{rel['recoveries']}"
    return f"{rel['streams_ok']}/{rel['streams']}"


def scenario_row(s: dict[str, Any]) -> list[str]:
    """One scenario as table cells."""
    t, m = s["throughput"], s["memory"]
    pressure = (s["pressure"] or {}).get("highest") or ("pending" if s["pending"] else "-")
    return [
        s["id"], _mib(t["min_bps"]), _mib(t["avg_bps"]), _ratio(t["efficiency"]),
        _ratio(t["efficiency_cp"]), _ms(s["latency"]), _mib(m["peak_rss_bytes"], 1),
        _mib(m["growth_bps"], 2), pressure, str(s["peak_concurrency"] or "-"),
        str(s["reliability"]["retries"]), _ok(s["reliability"]),
    ]  # fmt: skip


SCENARIO_COLUMNS = (
    "scenario", "MiB/s min", "MiB/s avg", "vs loop", "vs cp", "ms p50/95/99",
    "peak", "growth/s", "pressure", "streams", "retries", "ok",
)  # fmt: skip
#: The columns of the two tables, each narrow enough for an 80-column terminal.
SPEED, HEALTH = (0, 1, 2, 3, 4, 5), (0, 6, 7, 8, 9, 10, 11)


def _table(title: str | None, columns: Sequence[str], numbers: bool = True) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE, pad_edge=False)
    for i, name in enumerate(columns):
        # On a narrow terminal cells wrap rather than end in "...": a verdict cut to "PA…" or
        # dropped says nothing. At 80 columns and more nothing wraps.
        verdict = name == "result"
        table.add_column(
            name,
            justify="right" if numbers and i else "left",
            overflow="fold",
            no_wrap=verdict,
            min_width=len(FAIL) if verdict else None,
        )
    return table


def scenario_tables(scenarios: Sequence[dict[str, Any]], running: bool = False) -> list[Table]:
    """Speed, then memory and reliability, a row per scenario; "vs loop"/"vs cp" are
    efficiencies (openspec's average over the reference's)."""
    tables = []
    for title, picked in (("speed", SPEED), ("memory (MiB) and reliability", HEALTH)):
        table = _table(
            title + (" (running)" if running else ""), [SCENARIO_COLUMNS[i] for i in picked]
        )
        for s in scenarios:
            cells = scenario_row(s)
            table.add_row(*(cells[i] for i in picked))
        tables.append(table)
    return tables


def targets_table(targets: Sequence[dict[str, Any]]) -> Table:
    """The design record's targets, PASS/FAIL/N/A, with the worst scenario for each."""
    style = {PASS: "bold green", FAIL: "bold red", NA: "dim"}
    title = "targets (ADR-enhanced-streaming, Performance Targets)"
    table = _table(title, ("target", "required", "measured", "where", "result"), numbers=False)
    units = {t.key: t for t in TARGETS}
    for v in targets:
        spec = units[v["key"]]
        value = "-" if v["value"] is None else shown(v["value"], spec.unit, spec.scale)
        result = f"[{style[v['status']]}]{v['status']}[/]"
        table.add_row(v["label"], v["requirement"], value, v["scenario"] or "-", result)
    return table


def baseline_lines(comparison: dict[str, Any]) -> list[str]:
    """The baseline verdict: one line, then one per regression."""
    rows = comparison["compared"]
    kind = "same machine" if comparison["same_machine"] else "another machine: ratios only"
    head = (
        f"baseline ({kind}): {len(rows)} metrics compared, {comparison['regressions']} "
        f"regressed by more than {comparison['max_regression'] * 100:g}%"
    )
    lines = [head]
    for r in rows:
        if r["regressed"]:
            was, now = (_metric(r["metric"], r[k]) for k in ("baseline", "current"))
            lines.append(
                f"  REGRESSED {r['scenario']} {r['metric']}: {was} -> {now} "
                f"({r['change'] * 100:+.1f}%)"
            )
    return lines


def _metric(name: str, value: float) -> str:
    """A compared number in its unit: 241.8 MiB/s, not 2.535e+08."""
    if name == "throughput_avg":
        return f"{value / MIB:.1f} MiB/s"
    if name == "peak_memory":
        return f"{value / MIB:.1f} MiB"
    if name == "latency_p95":
        return f"{value * 1000:.1f} ms"
    return f"{value:.3g}"


def render(doc: dict[str, Any], console: Console) -> None:
    """The final report: scenarios, targets, the baseline verdict and the overall result."""
    m = doc["machine"]
    console.print(
        f"openspec bench{' --quick' if doc['quick'] else ''}: {doc['seconds']:.1f} s on "
        f"{m['cpu_usable']} CPU(s), {m['memory_bytes'] / 2**30:.1f} GiB, "
        f"{m['filesystem'] or '?'}; Python {m['python']}, openspec {m['openspec']}",
        markup=False,
    )
    for table in scenario_tables(doc["scenarios"]):
        console.print(table)
    console.print(targets_table(doc["targets"]))
    for v in doc["targets"]:
        if v["note"]:
            console.print(f"{v['status']} {v['label'].lower()}: {v['note']}", markup=False)
    if doc["baseline"] is not None:
        for line in baseline_lines(doc["baseline"]):
            console.print(line, markup=False)
    verdict = "PASS" if doc["exit_code"] == 0 else "FAIL"
    console.print(f"[bold]result: {verdict}[/] (exit {doc['exit_code']})")


# ---------------------------------------------------------------------------- while it runs


class LiveView:
    """Follows the run: a Rich table of finished scenarios over progress bars (terminal), or one
    plain line per scenario (logs). Drawing happens on rich's refresh thread."""

    def __init__(self, stream: TextIO, progress: Any = None) -> None:
        self.stream = stream
        self.rows: list[dict[str, Any]] = []
        self._progress = progress
        self._tasks: tuple[Any, Any] | None = None
        if progress is not None:
            self._tasks = (progress.add_task("scenarios"), progress.add_task("starting"))

    def renderable(self) -> RenderableType:
        """The table so far, then the bars."""
        from rich.console import Group

        return Group(*scenario_tables(self.rows, running=True), self._progress)

    def scenario_started(self, spec: Spec, index: int, count: int) -> None:
        """Point the bars at the next scenario."""
        if self._progress is None or self._tasks is None:
            return
        overall, current = self._tasks
        self._progress.update(overall, total=count, completed=index)
        total = spec.runs * spec.sides
        self._progress.reset(current, total=total, description=spec.description)

    def step_done(self, spec: Spec, done: int, total: int) -> None:
        """Advance the scenario's bar."""
        if self._progress is not None and self._tasks is not None:
            self._progress.update(self._tasks[1], completed=done)

    def scenario_finished(self, result: ScenarioResult) -> None:
        """Add the scenario's row (or print its line)."""
        row = dataclasses.asdict(result)
        self.rows.append(row)
        if self._progress is None:
            cells = zip(SCENARIO_COLUMNS[1:], scenario_row(row)[1:], strict=True)
            text = ", ".join(f"{k} {v}" for k, v in cells if v != "-")
            self.stream.write(f"openspec: bench: {result.id}: {text} ({result.seconds:.1f} s)\n")
            self.stream.flush()


@contextlib.contextmanager
def live_view(stream: TextIO) -> Iterator[LiveView]:
    """A :class:`LiveView` on ``stream``: drawn live on a terminal, plain lines otherwise."""
    if not stream.isatty():
        yield LiveView(stream)
        return
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bars = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    view = LiveView(stream, bars)
    console = console_for(stream)
    with Live(console=console, get_renderable=view.renderable, transient=True):
        yield view
