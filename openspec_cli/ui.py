"""Everything a person sees: the live panel, summaries, and human-readable sizes.

The only module that imports rich, and only inside the functions that draw, so pipelines and
``--version`` never pay for it. The engine updates plain counters; the panel samples them from its
own refresh thread at a fixed rate, so drawing never slows the copy.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from openspec_cli.engine import StreamStats
from openspec_cli.errors import printable, write_stderr

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from rich.console import Console, RenderableType

    from openspec_cli.engine import EngineView

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``: binary units, as ``pv`` and ``ls -h`` use."""
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(bps: float) -> str:
    """Throughput as ``123.4 MiB/s``."""
    return f"{human_bytes(bps)}/s"


def human_eta(seconds: float | None) -> str:
    """``h:mm:ss`` or ``-`` when unknown."""
    if seconds is None or seconds < 0 or seconds > 99 * 3600:
        return "-"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RateWindow:
    """Throughput over the last few seconds of samples, so the rate shown reacts but is steady."""

    def __init__(self, span: float = 3.0, start: tuple[float, int] | None = None) -> None:
        """``start``: (time, bytes done) when counting began, so the first sample has a rate."""
        self.span = span
        self._samples: deque[tuple[float, int]] = deque([start] if start else [])

    def add(self, now: float, done: int) -> float:
        """Record a sample and return bytes per second across the window."""
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.span:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


class Dashboard:
    """Observer that keeps the streams and renders them; drawing is done by :class:`LivePanel`.

    Finished streams are folded into counters, so the panel's memory does not grow with the
    number of files.
    """

    def __init__(self, title: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self._clock = clock
        self._lock = threading.Lock()
        self.active: list[StreamStats] = []
        self.done_files = 0
        self.done_bytes = 0
        self.done_retries = 0
        self.done_checkpoints = 0
        self._rates: dict[int, RateWindow] = {}
        #: Where each active stream started: a resume's verified prefix was not moved by us.
        self._starts: dict[int, int] = {}
        self._total_rate = RateWindow(start=(clock(), 0))
        self.engine: EngineView | None = None

    def engine_attached(self, engine: EngineView) -> None:
        """The scheduler's state, for the footer."""
        self.engine = engine

    def stream_started(self, stats: StreamStats) -> None:
        """Show a new row."""
        with self._lock:
            self.active.append(stats)
            self._rates[id(stats)] = RateWindow(start=(self._clock(), stats.done))
            self._starts[id(stats)] = stats.done

    def stream_finished(self, stats: StreamStats) -> None:
        """Fold the row into the finished counters."""
        with self._lock:
            if stats in self.active:
                self.active.remove(stats)
            self._rates.pop(id(stats), None)
            self.done_files += 1
            self.done_bytes += stats.done - self._starts.pop(id(stats), 0)
            self.done_retries += stats.retries
            self.done_checkpoints += stats.checkpoints

    @property
    def _copies(self) -> bool:
        """Only copies checkpoint and retry; cat and verify have nothing to count there."""
        return self.title in ("copy", "resume")

    def _moved(self, stats: StreamStats) -> int:
        """Bytes this run moved for an active stream (caller holds the lock)."""
        return stats.done - self._starts.get(id(stats), 0)

    def render(self) -> RenderableType:
        """The panel as it is now: a row per active stream and an engine footer."""
        from rich.console import Group
        from rich.text import Text

        now = self._clock()
        with self._lock:
            active = list(self.active)
            rows = [
                (s, self._rates[id(s)].add(now, s.done)) for s in active if id(s) in self._rates
            ]
            moved = self.done_bytes + sum(self._moved(s) for s in active)
            retries = self.done_retries + sum(s.retries for s in active)
            checkpoints = self.done_checkpoints + sum(s.checkpoints for s in active)
            done_files = self.done_files
        table = _StreamRows([self._row(stats, rate) for stats, rate in rows])
        chunk = max((s.chunk_size for s in active), default=0)
        rate = self._total_rate.add(now, moved)
        durable = f" | {checkpoints} checkpoints | {retries} retries" if self._copies else ""
        footer = Text(
            f"{self.title}: {done_files} done, {len(active)} active | "
            f"{human_bytes(moved)} moved | {human_rate(rate)} | "
            f"chunk {human_bytes(chunk) if chunk else '-'}{durable}",
            style="dim",
        )
        parts: list[RenderableType] = [table, footer]
        if self.engine is not None:
            parts.append(Text(engine_line(self.engine.snapshot()), style="dim"))
        return Group(*parts)

    @staticmethod
    def _row(stats: StreamStats, rate: float) -> tuple[RenderableType, ...]:
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        total = stats.total
        eta = (total - stats.done) / rate if total is not None and rate > 0 else None
        bar = ProgressBar(
            total=float(total) if total else None, completed=float(stats.done), width=16
        )
        size = f"{human_bytes(stats.done)}" + (f" / {human_bytes(total)}" if total else "")
        # The id first: on a narrow terminal the name is cut, and the id is what resume needs.
        name = printable(stats.name)  # a name's escape sequences must not reach the terminal
        label = f"[{stats.transfer_id}] {name}" if stats.transfer_id else name
        return (
            Text(label, overflow="ellipsis", no_wrap=True),
            bar,
            size,
            human_rate(rate),
            f"ETA {human_eta(eta)}",
        )


class _StreamRows:
    """The panel's stream rows, laid out for the width there is: a row is one line, and on a
    narrow terminal the bar goes first, then the rate, then the bytes (the footer still has
    them), so that the id, which resume needs, and the ETA stay readable. At 80 columns the
    byte counts used to wrap onto a second line; at 40 the ETA was cut to "0:0".
    """

    #: (least width, columns kept): name, bar, bytes, rate, ETA.
    LAYOUTS = ((80, (0, 1, 2, 3, 4)), (60, (0, 2, 3, 4)), (50, (0, 2, 4)), (0, (0, 4)))

    def __init__(self, rows: list[tuple[RenderableType, ...]]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.table import Table

        keep = next(cols for least, cols in self.LAYOUTS if options.max_width >= least)
        table = Table.grid(padding=(0, 1))
        table.add_column(min_width=12, ratio=1)  # "[id] name": the id and a "…" at least
        for _ in keep[1:]:
            table.add_column(no_wrap=True)
        for row in self.rows:
            table.add_row(*(row[i] for i in keep))
        yield table


def ndjson_event(fields: dict[str, Any]) -> str:
    """One ``--progress json`` line: the time it was written, then the event's fields."""
    import json

    return json.dumps({"t": round(time.time(), 3), **fields})


def engine_line(snap: dict[str, Any]) -> str:
    """The engine footer: pressure level with its score split, memory, streams."""
    score = snap["score"]
    return (
        f"pressure {snap['level']} (score {score['total']:.0f}: memory {score['memory']:.0f}"
        f" / streams {score['streams']:.0f} / latency {score['latency']:.0f}) | "
        f"memory {human_bytes(snap['memory_used'])} / {human_bytes(snap['ceiling'])} | "
        f"streams {snap['active']}/{snap['allowed']}"
    )


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


class LivePanel:
    """Draws a :class:`Dashboard` on a terminal at a fixed rate from rich's refresh thread."""

    def __init__(self, dashboard: Dashboard, stream: TextIO, refresh_per_second: float = 8) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console: Console = Console(file=stream, stderr=True)
        self._dashboard = dashboard
        self._live = Live(
            console=self.console,
            refresh_per_second=refresh_per_second,
            transient=True,
            get_renderable=dashboard.render,
            # Lines for a terminal stdout are printed above the panel so they do not tear it;
            # stdout redirected to a file or pipe must get them itself (``verify * > SUMS``).
            redirect_stdout=_is_terminal(sys.stdout),
        )

    def __enter__(self) -> LivePanel:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)


class ProgressLog(Dashboard):
    """Progress for logs and machines: plain lines or NDJSON events on a non-terminal stream.

    ``plain``: a line when a transfer starts (so its id is on record) and, with ``interval``,
    a summary line every ``interval`` seconds. ``json``: one JSON object per line for stream
    start/finish, periodic per-stream samples, engine samples, level changes, checkpoints and
    retries, for log shippers and dashboards. Sampling runs on its own thread.
    """

    def __init__(
        self,
        title: str,
        stream: TextIO,
        mode: str = "plain",
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(title, clock)
        self.stream, self.mode, self.interval = stream, mode, interval
        self._level: str | None = None
        self._seen: dict[int, tuple[int, int]] = {}  # id(stats) -> (checkpoints, retries)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLog:
        if self.interval:
            self._thread = threading.Thread(
                target=self._loop, name="openspec-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def stream_started(self, stats: StreamStats) -> None:
        """Record the stream and say so."""
        super().stream_started(stats)
        if self.mode == "json":
            self._emit(
                {
                    "event": "start",
                    "id": stats.transfer_id,
                    "name": stats.name,
                    "total": stats.total,
                    "from": stats.done,
                }
            )
        elif stats.transfer_id is not None:
            size = human_bytes(stats.total) if stats.total is not None else "?"
            start = f" from {human_bytes(stats.done)}" if stats.done else ""
            self._write(
                f"openspec: transfer {stats.transfer_id}: {printable(stats.name)} ({size}){start}"
            )

    def stream_finished(self, stats: StreamStats) -> None:
        """Fold the stream into the totals; a JSON log also gets a finish event."""
        self._events_for(stats)
        self._seen.pop(id(stats), None)
        super().stream_finished(stats)
        if self.mode == "json":
            self._emit(
                {
                    "event": "finish",
                    "id": stats.transfer_id,
                    "name": stats.name,
                    "bytes": stats.done,
                    "seconds": round(stats.seconds, 6),
                }
            )

    def _loop(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """One periodic report (called by the thread; tests call it directly)."""
        now = self._clock()
        with self._lock:
            rows = [
                (s, self._rates[id(s)].add(now, s.done))
                for s in self.active
                if id(s) in self._rates
            ]
            moved = self.done_bytes + sum(self._moved(s) for s, _ in rows)
            done_files = self.done_files
        rate = self._total_rate.add(now, moved)
        snap = self.engine.snapshot() if self.engine is not None else None
        if self.mode != "json":
            level = f", pressure {snap['level']}" if snap else ""
            self._write(
                f"openspec: {self.title}: {done_files} done, {len(rows)} active, "
                f"{human_bytes(moved)} moved, {human_rate(rate)}{level}"
            )
            return
        for stats, stream_rate in rows:
            self._events_for(stats)
            self._emit(
                {
                    "event": "sample",
                    "id": stats.transfer_id,
                    "name": stats.name,
                    "done": stats.done,
                    "total": stats.total,
                    "rate_bps": round(stream_rate),
                    "chunk_size": stats.chunk_size,
                }
            )
        if snap is not None:
            if snap["level"] != self._level:
                self._emit(
                    {
                        "event": "level",
                        "from": self._level,
                        "to": snap["level"],
                        "score": snap["score"],
                    }
                )
                self._level = str(snap["level"])
            self._emit({"event": "engine", **snap, "moved": moved, "rate_bps": round(rate)})

    def _events_for(self, stats: StreamStats) -> None:
        if self.mode != "json":
            return
        checkpoints, retries = self._seen.get(id(stats), (0, 0))
        if stats.checkpoints > checkpoints:
            self._emit(
                {
                    "event": "checkpoint",
                    "id": stats.transfer_id,
                    "bytes_done": stats.done,
                    "count": stats.checkpoints,
                }
            )
        if stats.retries > retries:
            self._emit({"event": "retry", "id": stats.transfer_id, "count": stats.retries})
        self._seen[id(stats)] = (stats.checkpoints, stats.retries)

    def _emit(self, event: dict[str, Any]) -> None:
        self._write(ndjson_event(event))

    def _write(self, line: str) -> None:
        write_stderr(line + "\n", self.stream)
