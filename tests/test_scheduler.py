"""Many streams under the governor: correctness, memory bound, backpressure, cleanup, signals."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import xxhash
from conftest import peak_rss_kib

from openspec_cli import api, memory, pressure, scheduler
from openspec_cli.chunking import KIB, MAX_CHUNK, MIB, MIN_CHUNK
from openspec_cli.cleanup import Cleanup, Priority
from openspec_cli.engine import POOL_SIZE, NullObserver, StreamStats
from openspec_cli.governor import (
    STREAM_OVERHEAD,
    BufferBank,
    Governor,
    Percentiles,
    chunk_ceiling_for,
    engine_summary,
)

GIB = 1024 * MIB


def make_files(directory: Path, count: int, size: int) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count * 31 + size)
    files = {}
    for i in range(count):
        data = rng.randbytes(size)
        (directory / f"f{i:04d}").write_bytes(data)
        files[f"f{i:04d}"] = data
    return files


@pytest.mark.parametrize(
    ("budget", "streams", "level", "expected"),
    [
        (64 * MIB, 1, pressure.Level.NONE, MAX_CHUNK),
        (16 * MIB, 16, pressure.Level.NONE, 256 * KIB),
        (16 * MIB, 16, pressure.Level.MODERATE, 128 * KIB),
        (16 * MIB, 16, pressure.Level.HEAVY, 64 * KIB),
        (16 * MIB, 16, pressure.Level.CRITICAL, MIN_CHUNK),
        (POOL_SIZE * MIN_CHUNK, 4, pressure.Level.NONE, MIN_CHUNK),
    ],
)
def test_chunk_ceiling_keeps_every_pool_within_the_budget(
    budget: int, streams: int, level: pressure.Level, expected: int
) -> None:
    size = chunk_ceiling_for(budget, streams, level)
    assert size == expected
    assert size == MIN_CHUNK or streams * POOL_SIZE * size <= budget


def test_buffer_bank_reuses_buffers_and_keeps_idle_ones_bounded() -> None:
    bank = BufferBank(keep=2 * MIB)
    first = bank.lend(4, 256 * KIB)
    bank.give_back(first)
    again = bank.lend(4, 256 * KIB)
    assert {id(b.obj) for b in again} == {id(b.obj) for b in first}
    bank.give_back(again + bank.lend(8, 256 * KIB))
    assert bank.idle_bytes() <= 2 * MIB
    bank.drop_idle()
    assert bank.idle_bytes() == 0


def test_percentiles_stay_bounded() -> None:
    p = Percentiles(capacity=100)
    for i in range(10_000):
        p.add(i / 10_000)
    assert len(p.samples) == 100
    summary = p.summary()
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]


def test_cleanup_releases_by_priority_and_survives_failures() -> None:
    cleanup = Cleanup()
    order: list[str] = []
    cleanup.register("cache", Priority.LOW, lambda: order.append("cache"))
    cleanup.register("fd", Priority.IMMEDIATE, lambda: order.append("fd"))

    def broken() -> None:
        raise OSError("boom")

    cleanup.register("buffer", Priority.HIGH, broken)
    cleanup.register("stats", Priority.DEFERRED, lambda: order.append("stats"))
    handle = cleanup.register("thread", Priority.NORMAL, lambda: order.append("thread"))
    cleanup.forget(handle)
    assert cleanup.release_all() == ["fd", "buffer", "cache", "stats"]
    assert order == ["fd", "cache", "stats"]
    assert [name for name, _ in cleanup.failures] == ["buffer"]
    assert cleanup.pending() == []


def test_emergency_releases_only_what_is_optional() -> None:
    cleanup = Cleanup()
    released: list[str] = []
    for name, priority in [
        ("fd", Priority.IMMEDIATE),
        ("streams", Priority.HIGH),
        ("cache", Priority.LOW),
        ("history", Priority.DEFERRED),
    ]:
        cleanup.register(name, priority, functools.partial(released.append, name))
    assert cleanup.emergency() == ["cache", "history"]
    assert released == ["cache", "history"]
    assert cleanup.pending() == ["fd", "streams", "cache", "history"]


def test_sixteen_streams_copy_every_file_correctly(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 16, (1 << 20) + 4099)
    (tmp_path / "out").mkdir()
    report = api.copy(
        [str(p) for p in sorted((tmp_path / "src").iterdir())], str(tmp_path / "out"), jobs=16
    )
    assert report.errors == []
    assert len(report.files) == 16
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    by_dest = {Path(r.dest).name: r for r in report.files}
    assert by_dest["f0003"].digest == xxhash.xxh3_128(files["f0003"]).hexdigest()
    assert int(str(report.engine["peak_concurrency"])) > 1
    assert int(str(report.engine["peak_engine_bytes"])) <= int(str(report.engine["ceiling"]))


def test_small_files_go_a_few_at_a_time_whatever_jobs_says(tmp_path: Path) -> None:
    """Threads handing the interpreter lock around cost more than a small file's copy: -j 16
    took twice -j 4's time on a tree of small files. Larger files still run side by side."""
    small = make_files(tmp_path / "small", 64, 4096)
    (tmp_path / "out").mkdir()
    paths = [str(p) for p in sorted((tmp_path / "small").iterdir())]

    report = api.copy(paths, str(tmp_path / "out"), jobs=16, limit_rate=4 << 20)

    assert report.errors == []
    assert {Path(r.dest).name: (tmp_path / "out" / Path(r.dest).name).read_bytes()
            for r in report.files} == small  # fmt: skip
    assert 1 < int(str(report.engine["peak_concurrency"])) <= scheduler.SMALL_FILES_AT_ONCE


def test_memory_pressure_engages_the_controller_and_files_stay_correct(tmp_path: Path) -> None:
    """A probe that reports an almost full machine: the level rises, streams are capped."""
    files = make_files(tmp_path / "src", 6, 3 << 20)
    (tmp_path / "out").mkdir()
    probe = memory.FixedProbe(used=90, total=100, rss=20 * MIB)
    report = api.copy(
        [str(p) for p in sorted((tmp_path / "src").iterdir())],
        str(tmp_path / "out"),
        jobs=6,
        limit_rate=48 * MIB,
        probe=probe,
    )
    assert report.errors == []
    assert report.highest_level is not None
    assert pressure.Level[report.highest_level] >= pressure.Level.MODERATE
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


class Watcher(NullObserver):
    """Keeps every stream's live counters."""

    def __init__(self) -> None:
        self.started: list[StreamStats] = []

    def stream_started(self, stats: StreamStats) -> None:
        self.started.append(stats)


def test_parallel_streams_share_a_rate_limit_equally(tmp_path: Path) -> None:
    """A 6 MiB and a 40 MiB file start with different chunk sizes; under one --limit-rate they
    used to split it by those sizes. Compared over a stretch where both are running."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.bin").write_bytes(os.urandom(6 * MIB))
    (src / "large.bin").write_bytes(b"\x01" * 40 * MIB)
    (tmp_path / "dst").mkdir()
    observer = Watcher()
    copying = threading.Thread(
        target=api.copy,
        args=([str(src / "small.bin"), str(src / "large.bin")], str(tmp_path / "dst")),
        kwargs={"jobs": 2, "limit_rate": 16 * MIB, "fsync": False, "observer": observer},
        daemon=True,
    )
    copying.start()
    deadline = time.monotonic() + 30
    while len(observer.started) < 2 or min(s.done for s in observer.started) < MIB:
        assert time.monotonic() < deadline, "the two streams never both ran"
        time.sleep(0.02)
    before = {s.name: s.done for s in observer.started}
    time.sleep(0.3)
    after = {os.path.basename(s.name): s.done for s in observer.started}
    moved = {os.path.basename(s.name): s.done - before[s.name] for s in observer.started}
    copying.join(60)
    assert not copying.is_alive()
    assert after["small.bin"] < 6 * MIB, "the small file must still have been copying"
    assert 0.6 < moved["small.bin"] / moved["large.bin"] < 1 / 0.6, moved


def test_small_max_memory_shows_in_the_json_summary(tmp_path: Path) -> None:
    # 12 MiB files want 128 KiB chunks: four streams want 2 MiB of buffers, all of the ceiling.
    make_files(tmp_path / "src", 4, 12 << 20)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openspec_cli",
            "copy",
            "--json",
            "-j",
            "4",
            "--max-memory",
            "2M",
            "--limit-rate",
            "32M",
            *sorted(str(p) for p in (tmp_path / "src").iterdir()),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    engine = json.loads(proc.stdout)["engine"]
    assert engine["ceiling"] == 2 * MIB
    assert engine["highest_level"] != "NONE"
    assert sum(v for k, v in engine["time_in_levels"].items() if k != "NONE") > 0
    assert engine["peak_engine_bytes"] <= 2 * MIB


def test_one_big_file_on_a_healthy_machine_stays_at_none(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 1, 24 << 20)
    report = api.copy(str(tmp_path / "src" / "f0000"), str(tmp_path / "copy"))
    assert report.highest_level in (None, "NONE")  # None: done before the monitor's first look


def test_thousands_of_files_leak_no_descriptors_or_memory(tmp_path: Path) -> None:
    src = tmp_path / "tree"
    make_files(src, 1500, 2048)
    me = psutil.Process()

    def copy_round(n: int) -> None:
        api.copy(str(src), str(tmp_path / f"out{n}"), recursive=True, jobs=8, fsync=False)

    copy_round(0)  # warm-up: imports, first allocations
    fds, rss = me.num_fds(), me.memory_info().rss
    for n in range(1, 3):
        copy_round(n)
    assert me.num_fds() == fds
    assert me.memory_info().rss - rss < 8 * MIB
    assert len(os.listdir(tmp_path / "out2")) == 1500


@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux fincore not installed")
def test_no_cache_leaves_the_copy_out_of_the_page_cache(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 1, 48 << 20)
    src = tmp_path / "src" / "f0000"

    def resident(path: Path) -> int:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.split()[0])

    api.copy(str(src), str(tmp_path / "cached"))
    api.copy(str(src), str(tmp_path / "uncached"), no_cache=True)
    assert resident(tmp_path / "cached") > 40 << 20
    assert resident(tmp_path / "uncached") < 8 << 20
    assert resident(src) < 8 << 20
    assert (tmp_path / "uncached").read_bytes() == src.read_bytes()


def test_sigint_stops_every_stream_and_resume_all_finishes_them(tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 4, 3 << 20)
    (tmp_path / "out").mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openspec_cli",
            "copy",
            "-j",
            "4",
            "--limit-rate",
            "4M",
            *sorted(str(p) for p in (tmp_path / "src").iterdir()),
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    # resume --all finishes the files that had started (here all four); the hint names what
    # finishes a copy of several files in every case.
    assert err.strip().splitlines()[-1] == (
        "openspec: interrupted; to finish, run the same copy again"
    )
    assert "Traceback" not in err
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "openspec_cli", "resume", "--list", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert listed
    assert {row["state"] for row in listed} == {"resumable"}
    subprocess.run([sys.executable, "-m", "openspec_cli", "resume", "--all", "-q"], check=True)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_progress_json_writes_ndjson_events(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 3, 4 << 20)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openspec_cli",
            "copy",
            "-j",
            "3",
            "--progress",
            "json",
            "--limit-rate",
            "6M",
            *sorted(str(p) for p in (tmp_path / "src").iterdir()),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"start", "finish", "sample", "engine", "level", "checkpoint"} <= kinds
    assert sum(1 for e in events if e["event"] == "finish") == 3
    assert "\x1b[" not in proc.stderr


def test_progress_plain_prints_periodic_lines(tmp_path: Path) -> None:
    make_files(tmp_path / "src", 1, 6 << 20)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openspec_cli",
            "copy",
            "--progress",
            "plain",
            "--limit-rate",
            "2M",
            str(tmp_path / "src" / "f0000"),
            str(tmp_path / "copy"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    periodic = [line for line in proc.stderr.splitlines() if "moved" in line]
    assert periodic
    assert "pressure NONE" in periodic[0]


@pytest.mark.parametrize("jobs", [1, 4, 16])
def test_default_budget_leaves_room_for_each_streams_own_costs(jobs: int) -> None:
    """Interpreter + buffers + what each stream costs besides must stay under the 50 MB."""
    probe = memory.FixedProbe(used=GIB, total=24 * GIB, rss=18 * MIB)
    governor = Governor(jobs, probe=probe)
    assert 18 * MIB + governor.budget + jobs * STREAM_OVERHEAD <= memory.ABSOLUTE_LIMIT
    assert governor.budget == memory.ABSOLUTE_LIMIT - 18 * MIB - jobs * STREAM_OVERHEAD


def test_governor_caps_streams_when_pressure_rises() -> None:
    now = [0.0]
    governor = Governor(
        8, probe=memory.FixedProbe(used=95, total=100, rss=10 * MIB), clock=lambda: now[0]
    )
    assert governor.allowed == 8
    for _ in range(3):
        now[0] += 0.25
        governor.tick()
    assert governor.controller.level >= pressure.Level.MODERATE
    assert governor.allowed <= 3
    assert governor.snapshot()["level"] == governor.controller.level.name


def test_verifying_copies_read_back_within_the_memory_budget(tmp_path: Path) -> None:
    """--verify re-read each copy with buffers of its own, outside the governor's budget:
    copying 8 files of 40 MiB at once peaked 5-6.6 MiB higher with --verify than without
    (4 MiB over the 50 MB target at -j 8 with 300 MB files)."""
    make_files(tmp_path / "src", 8, 20 * MIB)  # over the read-ahead trigger, as those were
    names = sorted(str(p) for p in (tmp_path / "src").iterdir())
    peaks = {}
    for flags in ([], ["--verify"]):
        out = tmp_path / f"out{len(flags)}"
        out.mkdir()
        code, peaks[len(flags)] = peak_rss_kib(
            ["copy", "-q", "--no-fsync", "-j", "8", *flags, *names, str(out)], tmp_path
        )
        assert code == 0
    assert peaks[1] <= peaks[0] + 2 * 1024


def test_a_level_is_reported_only_once_one_was_measured() -> None:
    """A run that ended before the monitor's first look has no level (null in --json), not
    NONE; the first look comes soon after the start, so that short runs get one."""
    probe = memory.FixedProbe(used=90, total=100, rss=20 * MIB)
    unseen = Governor(4, probe=probe)
    unseen.run_monitor(first=60)()  # stopped before its first sample
    assert engine_summary(unseen, 0.01)["highest_level"] is None

    seen = Governor(4, probe=probe)
    halt = seen.run_monitor(first=0.01)
    deadline = time.monotonic() + 10
    while not seen.ticks and time.monotonic() < deadline:
        time.sleep(0.005)
    halt()
    assert engine_summary(seen, 0.02)["highest_level"] in {lv.name for lv in pressure.Level}
    assert engine_summary(seen, 0.02)["highest_level"] != "NONE"  # 90% used was seen
