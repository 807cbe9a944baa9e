"""The live panel: deterministic rendering, and the real thing in a pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
from rich.console import Console

from openspec_cli.engine import StreamStats
from openspec_cli.ui import Dashboard, ProgressLog, RateWindow, human_bytes, human_eta


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1 << 30, "1.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_human_eta() -> None:
    assert human_eta(None) == "-"
    assert human_eta(3725) == "1:02:05"


def test_rate_window_uses_recent_samples_only() -> None:
    window = RateWindow(span=2.0)
    window.add(0.0, 0)
    window.add(1.0, 100)
    window.add(2.0, 200)
    window.add(3.0, 1200)  # speeds up: the oldest sample leaves the window
    assert window.add(4.0, 2200) == pytest.approx(1000.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def render_text(board: Dashboard, width: int = 100) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=width, color_system=None).print(board.render())
    return out.getvalue()


def test_dashboard_shows_each_stream_rate_and_chunk() -> None:
    clock = Clock()
    board = Dashboard("copy", clock=clock)
    stats = StreamStats(name="disk.img", total=4 << 20, chunk_size=256 << 10)
    board.stream_started(stats)
    render_text(board)
    clock.now += 1.0
    stats.done = 2 << 20
    text = render_text(board)
    assert "disk.img" in text
    assert "2.0 MiB / 4.0 MiB" in text
    assert "2.0 MiB/s" in text
    assert "ETA 0:00:01" in text
    assert "chunk 256.0 KiB" in text
    assert "0 done, 1 active" in text
    board.stream_finished(stats)
    assert "1 done, 0 active" in render_text(board)


def test_the_first_sample_already_has_a_rate() -> None:
    """Rates count from when the stream (and the board) started, not from the first sample."""
    clock = Clock()
    log = ProgressLog("copy", io.StringIO(), mode="plain", clock=clock)
    stats = StreamStats(name="disk.img", total=8 << 20, chunk_size=256 << 10)
    log.stream_started(stats)
    clock.now += 2.0
    stats.done = 4 << 20
    assert "2.0 MiB/s" in render_text(log)
    log.sample()
    assert log.stream.getvalue().endswith("4.0 MiB moved, 2.0 MiB/s\n")  # type: ignore[attr-defined]


def run_in_pty(
    tmp_path: Path,
    src: Path,
    extra_env: dict[str, str],
    args: list[str] | None = None,
    stdout_on_terminal: bool = False,
) -> tuple[str, bytes]:
    """Run openspec (by default a paced copy of ``src``) with stderr on a real pseudo-terminal;
    return what the terminal received and what went to stdout, when that is a pipe."""
    args = args or ["copy", "--limit-rate", "2M", str(src), str(tmp_path / "out.bin")]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openspec_cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_on_terminal else subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **extra_env},
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0
    out = proc.stdout.read() if proc.stdout is not None else b""
    return seen.decode(errors="replace"), out


def test_panel_draws_in_a_real_terminal_and_clears(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    text, out = run_in_pty(tmp_path, src, {})
    assert out == b""
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "payload.bin" in text
    assert "MiB/s" in text
    assert "chunk" in text
    assert "copied 1 file(s), 3.0 MiB" in text
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()


COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7]|38;)")


def test_no_color_keeps_the_panel_but_drops_colour(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    coloured, _ = run_in_pty(tmp_path, src, {})
    plain, _ = run_in_pty(tmp_path, src, {"NO_COLOR": "1"})
    assert COLOUR.search(coloured)
    assert "payload.bin" in plain
    assert not COLOUR.search(plain)


def test_digests_go_to_redirected_stdout_while_the_panel_is_up(tmp_path: Path) -> None:
    """``openspec verify * > SUMS`` on a terminal: the panel must not swallow the lines."""
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    drawn, out = run_in_pty(
        tmp_path, src, {}, ["verify", "--progress", "tty", "--limit-rate", "2M", str(src)]
    )
    assert "payload.bin" in drawn  # the panel was there
    digest = xxhash.xxh3_128(src.read_bytes()).hexdigest()
    assert out == f"{digest}  {src}\n".encode()
    assert digest not in drawn


def test_checking_a_sum_file_shows_the_panel_too(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    sums = tmp_path / "SUMS"
    sums.write_text(f"{xxhash.xxh3_128(src.read_bytes()).hexdigest()}  {src}\n")
    drawn, out = run_in_pty(
        tmp_path, src, {}, ["verify", "-c", "--progress", "tty", "--limit-rate", "2M", str(sums)]
    )
    assert "payload.bin" in drawn
    assert "MiB/s" in drawn
    assert out == f"{src}: OK\n".encode()


def test_cat_to_the_terminal_draws_no_panel_over_the_data(tmp_path: Path) -> None:
    src = tmp_path / "numbers.txt"
    src.write_text("".join(f"{n}\n" for n in range(200_000)))
    drawn, _ = run_in_pty(
        tmp_path, src, {}, ["cat", "--limit-rate", "800K", str(src)], stdout_on_terminal=True
    )
    assert "\x1b[" not in drawn  # no panel: nothing but the data
    assert drawn.replace("\r\n", "\n") == src.read_text()


def test_a_dumb_terminal_gets_plain_lines(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    drawn, _ = run_in_pty(tmp_path, src, {"TERM": "dumb"})
    assert "\x1b[" not in drawn
    assert "openspec: transfer" in drawn
    assert "copied 1 file(s), 3.0 MiB" in drawn


def test_json_progress_leaves_stderr_all_json(tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 << 20))
    result = subprocess.run(
        [sys.executable, "-m", "openspec_cli", "copy", "--progress", "json", str(src),
         str(tmp_path / "out.bin")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"start", "finish"} <= {e["event"] for e in events}


class FakeEngine:
    def snapshot(self) -> dict[str, object]:
        return {
            "level": "MODERATE",
            "score": {"total": 47.0, "memory": 20.0, "streams": 20.0, "latency": 7.0},
            "memory_used": 12 << 20,
            "ceiling": 24 << 20,
            "active": 3,
            "allowed": 3,
        }


def test_engine_footer_shows_level_score_split_memory_and_streams() -> None:
    board = Dashboard("copy", clock=Clock())
    board.engine_attached(FakeEngine())
    stats = StreamStats(name="a.bin", total=8 << 20, chunk_size=128 << 10, transfer_id="0a1b2c3d")
    stats.checkpoints, stats.retries = 4, 1
    board.stream_started(stats)
    text = render_text(board)
    assert "[0a1b2c3d] a.bin" in text
    assert "pressure MODERATE (score 47: memory 20 / streams 20 / latency 7)" in text
    assert "memory 12.0 MiB / 24.0 MiB" in text
    assert "streams 3/3" in text
    assert "4 checkpoints | 1 retries" in text


def test_a_resumed_stream_counts_only_what_this_run_moves() -> None:
    clock = Clock()
    board = Dashboard("resume", clock=clock)
    stats = StreamStats(name="disk.img", total=8 << 20)
    stats.done = 6 << 20  # the verified prefix: already there
    board.stream_started(stats)
    clock.now += 1.0
    stats.done = 7 << 20
    text = render_text(board)
    assert "7.0 MiB / 8.0 MiB" in text
    assert "| 1.0 MiB moved | 1.0 MiB/s |" in text
    stats.done = 8 << 20
    board.stream_finished(stats)
    assert board.done_bytes == 2 << 20


@pytest.mark.parametrize(("title", "shown"), [("copy", True), ("resume", True), ("verify", False)])
def test_only_copies_count_checkpoints_and_retries(title: str, shown: bool) -> None:
    board = Dashboard(title, clock=Clock())
    board.stream_started(StreamStats(name="f", total=10))
    text = render_text(board)
    assert ("0 checkpoints | 0 retries" in text) == shown
    assert "chunk" in text


def test_finished_streams_are_folded_into_counters() -> None:
    board = Dashboard("copy", clock=Clock())
    for i in range(1000):
        stats = StreamStats(name=f"f{i}", total=10)
        board.stream_started(stats)
        stats.done = 10
        board.stream_finished(stats)
    assert board.active == []
    assert board.done_files == 1000
    assert board.done_bytes == 10_000
    assert "1000 done, 0 active" in render_text(board)


def test_a_narrow_terminal_cuts_the_name_not_the_transfer_id() -> None:
    """The id is what `openspec resume ID` needs; at 40 columns the long name gives way."""
    board = Dashboard("copy", clock=Clock())
    stats = StreamStats(name="a-rather-long-name-for-a-disk-image.img", total=8 << 20,
                        transfer_id="0a1b2c3d")  # fmt: skip
    board.stream_started(stats)
    assert "[0a1b2c3d]" in render_text(board, width=40)


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_a_stream_row_is_one_whole_line_at_any_width(width: int) -> None:
    """At 80 columns the byte counts wrapped onto a second line, at 40 the ETA was cut to
    "0:0": the bar, then the rate, then the bytes give way first."""
    clock = Clock()
    board = Dashboard("copy", clock=clock)
    stats = StreamStats(name="a-rather-long-file-name-of-a-disk-image.iso", total=300 << 20,
                        transfer_id="0a1b2c3d")  # fmt: skip
    board.stream_started(stats)
    render_text(board, width)
    clock.now += 1.0
    stats.done = 14 << 20

    row, footer = render_text(board, width).splitlines()[:2]

    assert row.startswith("[0a1b2c3d] a-r")
    assert row.rstrip().endswith("ETA 0:00:20")
    assert footer.startswith("copy: 0 done, 1 active")
    if width >= 60:
        assert "14.0 MiB / 300.0 MiB" in row


@pytest.mark.parametrize("term", ["xterm-256color", "dumb"], ids=["panel", "plain lines"])
def test_a_name_cannot_send_escape_sequences_to_the_terminal(tmp_path: Path, term: str) -> None:
    """A downloaded file named to retitle the terminal (OSC 2), or to recolour it, is shown
    with its control characters escaped, as error messages show them."""
    src = tmp_path / "x\x1b]2;PWNED\x07\x9b31m.bin"
    src.write_bytes(os.urandom(3 << 20))
    drawn, _ = run_in_pty(
        tmp_path, src, {"TERM": term},
        ["copy", "--limit-rate", "2M", str(src), str(tmp_path / "out.bin")],
    )  # fmt: skip
    assert "\x1b]" not in drawn
    assert "\x07" not in drawn
    assert "\x9b" not in drawn
    assert "PWNED" in drawn  # the name is shown, escaped
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
