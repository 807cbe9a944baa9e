"""Everything a person sees: the live panel, summaries, and human-readable sizes.

The only module that imports rich, and only inside the functions that draw, so pipelines and
``--version`` never pay for it. The engine updates plain counters; the panel samples them from its
own refresh thread at a fixed rate, so drawing never slows the copy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from openspec_cli.engine import StreamStats

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

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

    def __init__(self, span: float = 3.0) -> None:
        self.span = span
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> float:
        """Record a sample and return bytes per second across the window."""
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.span:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


class Dashboard:
    """Observer that keeps the streams and renders them; drawing is done by :class:`LivePanel`."""

    def __init__(self, title: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self._clock = clock
        self._lock = threading.Lock()
        self.active: list[StreamStats] = []
        self.finished: list[StreamStats] = []
        self._rates: dict[int, RateWindow] = {}
        self._started = self._clock()

    def stream_started(self, stats: StreamStats) -> None:
        """Show a new row."""
        with self._lock:
            self.active.append(stats)
            self._rates[id(stats)] = RateWindow()

    def stream_finished(self, stats: StreamStats) -> None:
        """Move the row to the finished count."""
        with self._lock:
            if stats in self.active:
                self.active.remove(stats)
            self.finished.append(stats)

    def render(self) -> RenderableType:
        """The panel as it is now: a row per active stream and an engine footer."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = self._clock()
        with self._lock:
            active = list(self.active)
            done_files = len(self.finished)
            done_bytes = sum(s.done for s in self.finished)
            retries = sum(s.retries for s in self.finished)
        table = Table.grid(padding=(0, 1))
        for _ in range(6):
            table.add_column()
        total_rate = 0.0
        chunk = 0
        for stats in active:
            rate = self._rates[id(stats)].add(now, stats.done)
            total_rate += rate
            chunk = stats.chunk_size
            total = stats.total
            eta = (total - stats.done) / rate if total is not None and rate > 0 else None
            bar = ProgressBar(
                total=float(total) if total else None, completed=float(stats.done), width=24
            )
            size = f"{human_bytes(stats.done)}" + (f" / {human_bytes(total)}" if total else "")
            label = f"{stats.name} [{stats.transfer_id}]" if stats.transfer_id else stats.name
            table.add_row(
                Text(label, overflow="ellipsis", no_wrap=True),
                bar,
                size,
                human_rate(rate),
                f"ETA {human_eta(eta)}",
                "",
            )
        moved = done_bytes + sum(s.done for s in active)
        retries += sum(s.retries for s in active)
        footer = Text(
            f"{self.title}: {done_files} done, {len(active)} active | "
            f"{human_bytes(moved)} moved | {human_rate(total_rate)} | "
            f"chunk {human_bytes(chunk) if chunk else '-'}"
            + (f" | {retries} retries" if retries else ""),
            style="dim",
        )
        return Group(table, footer)


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
        )

    def __enter__(self) -> LivePanel:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)


def make_console(stream: TextIO) -> Console:
    """A console for one-off lines (summaries) that respects NO_COLOR and non-terminals."""
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


class PlainLines:
    """Observer for logs: one plain line when a transfer starts, so its id is on record."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def stream_started(self, stats: StreamStats) -> None:
        """Name the transfer; streams without an id (cat, verify) stay silent."""
        if stats.transfer_id is None:
            return
        size = human_bytes(stats.total) if stats.total is not None else "?"
        start = f" from {human_bytes(stats.done)}" if stats.done else ""
        self.stream.write(f"openspec: transfer {stats.transfer_id}: {stats.name} ({size}){start}\n")
        self.stream.flush()

    def stream_finished(self, stats: StreamStats) -> None:
        """Nothing: the summary line follows."""
