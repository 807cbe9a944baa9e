"""Memory readings, the backpressure score and the controller's levels, with no real pressure.

Memory situations come from fake cgroup trees and FixedProbe, time from a fake clock, so every
band edge and every transition is checked exactly and the whole file runs in well under a second.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openspec_cli.memory import (
    ABSOLUTE_LIMIT,
    CRITICAL_FRACTION,
    EMERGENCY,
    MIN_CEILING,
    WARNING,
    CgroupMemory,
    FixedProbe,
    MemoryReading,
    SystemProbe,
    cgroup_memory,
    default_ceiling,
    memory_band,
)
from openspec_cli.pressure import (
    BAND_FLOORS,
    LATENCY_TARGET,
    POLICIES,
    BackpressureController,
    LatencyWindow,
    Level,
    Policy,
    Score,
    Transition,
    latency_points,
    level_for,
    memory_points,
    score_of,
    stream_points,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
V1_UNLIMITED = 9223372036854771712


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------- bands and policies


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (-1.0, Level.NONE),
        (0.0, Level.NONE),
        (19.0, Level.NONE),
        (19.999, Level.NONE),
        (20.0, Level.LIGHT),
        (39.0, Level.LIGHT),
        (39.999, Level.LIGHT),
        (40.0, Level.MODERATE),
        (59.0, Level.MODERATE),
        (60.0, Level.HEAVY),
        (79.0, Level.HEAVY),
        (79.999, Level.HEAVY),
        (80.0, Level.CRITICAL),
        (100.0, Level.CRITICAL),
        (math.nan, Level.NONE),
    ],
)
def test_level_for_band_edges(score: float, level: Level) -> None:
    assert level_for(score) is level


def test_policies_are_the_design_records() -> None:
    design_record = {
        Level.NONE: Policy(0.0, None),
        Level.LIGHT: Policy(0.2, 6),
        Level.MODERATE: Policy(0.5, 3),
        Level.HEAVY: Policy(0.75, 1),
        Level.CRITICAL: Policy(1.0, 0),
    }
    assert design_record == POLICIES


@pytest.mark.parametrize(
    ("usage", "band"),
    [
        (0.0, "ok"),
        (0.5999, "ok"),
        (0.60, "warning"),
        (0.7499, "warning"),
        (0.75, "critical"),
        (0.8499, "critical"),
        (0.85, "emergency"),
        (1.0, "emergency"),
    ],
)
def test_memory_band_edges(usage: float, band: str) -> None:
    assert memory_band(usage) == band


# ---------------------------------------------------------------------------- memory readings


def reading(engine: int, ceiling: int, used: int, total: int) -> MemoryReading:
    return MemoryReading(0, engine, ceiling, used, total, "test")


@pytest.mark.parametrize(
    ("engine", "ceiling", "used", "total", "usage"),
    [
        (40 * MIB, 50 * MIB, 1 * GIB, 16 * GIB, 0.8),  # the engine's buffers are the short one
        (5 * MIB, 50 * MIB, 12 * GIB, 16 * GIB, 0.75),  # the machine is
        (0, 50 * MIB, 0, 16 * GIB, 0.0),
        (80 * MIB, 50 * MIB, 0, 16 * GIB, 1.0),  # clamped
        (10 * MIB, 0, 2 * GIB, 0, 0.0),  # nothing to divide by counts as no pressure
    ],
)
def test_usage_is_the_larger_share(
    engine: int, ceiling: int, used: int, total: int, usage: float
) -> None:
    assert reading(engine, ceiling, used, total).usage == pytest.approx(usage)


def test_fixed_probe_passes_the_engine_figures_through() -> None:
    got = FixedProbe(used=400 * MIB, total=512 * MIB).read(3 * MIB, 28 * MIB)
    assert (got.engine_bytes, got.ceiling, got.used, got.total) == (
        3 * MIB,
        28 * MIB,
        400 * MIB,
        512 * MIB,
    )
    assert got.source == "fixed"


def test_system_probe_reads_this_machine() -> None:
    got = SystemProbe().read(MIB, ABSOLUTE_LIMIT)
    assert got.total > 0
    assert 0 < got.rss < got.total
    assert 0 <= got.used <= got.total
    assert got.source in ("system", "cgroup v1", "cgroup v2")
    assert (got.engine_bytes, got.ceiling) == (MIB, ABSOLUTE_LIMIT)
    assert 0.0 <= got.usage <= 1.0


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="no /proc on this system")
def test_proc_reading_gives_the_figures_psutil_gives() -> None:
    import psutil

    from openspec_cli.memory import _proc_reading

    quick = _proc_reading()
    vm, rss = psutil.virtual_memory(), psutil.Process().memory_info().rss
    assert quick is not None
    assert quick[2] == vm.total
    assert abs(quick[0] - rss) <= 8 * MIB  # read a moment apart: the allocator moves a little
    assert abs(quick[1] - (vm.total - vm.available)) <= vm.total // 50


def test_system_probe_prefers_a_container_limit(tmp_path: Path) -> None:
    proc = write_v2(tmp_path, "0::/", {"": ("536870912", "419430400", 0)})
    got = SystemProbe(str(tmp_path / "cg"), str(proc)).read(0, ABSOLUTE_LIMIT)
    assert (got.total, got.used, got.source) == (512 * MIB, 400 * MIB, "cgroup v2")


def test_system_probe_ignores_a_limit_above_physical_memory(tmp_path: Path) -> None:
    proc = write_v2(tmp_path, "0::/", {"": (str(1 << 55), "4096", 0)})
    assert SystemProbe(str(tmp_path / "cg"), str(proc)).read(0, MIB).source == "system"


def test_importing_does_not_import_psutil() -> None:
    code = "import sys, openspec_cli.pressure; sys.exit('psutil' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------- cgroup trees

Files = tuple[str, str, int]  # limit, usage, inactive file bytes


def write_v2(tmp_path: Path, proc_line: str, groups: dict[str, Files]) -> Path:
    """A cgroup2 mount at tmp_path/cg with ``groups`` (relative path -> files)."""
    for rel, (limit, usage, inactive) in groups.items():
        directory = tmp_path / "cg" / rel
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.max").write_text(limit + "\n")
        (directory / "memory.current").write_text(usage + "\n")
        (directory / "memory.stat").write_text(f"anon 123\ninactive_file {inactive}\nfile 9\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(proc_line + "\n")
    return proc


def write_v1(tmp_path: Path, proc_lines: str, groups: dict[str, Files]) -> Path:
    """A v1 memory controller at tmp_path/cg/memory with ``groups``."""
    for rel, (limit, usage, inactive) in groups.items():
        directory = tmp_path / "cg" / "memory" / rel
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.limit_in_bytes").write_text(limit + "\n")
        (directory / "memory.usage_in_bytes").write_text(usage + "\n")
        stat = f"inactive_file 1\ntotal_cache 5\ntotal_inactive_file {inactive}\n"
        (directory / "memory.stat").write_text(stat)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(proc_lines)
    return proc


def read_tree(tmp_path: Path, proc: Path) -> CgroupMemory | None:
    return cgroup_memory(str(tmp_path / "cg"), str(proc))


def test_v2_limit_and_working_set(tmp_path: Path) -> None:
    groups = {"user.slice/x.scope": (str(512 * MIB), str(400 * MIB), 100 * MIB)}
    proc = write_v2(tmp_path, "0::/user.slice/x.scope", groups)
    assert read_tree(tmp_path, proc) == CgroupMemory(512 * MIB, 300 * MIB, "cgroup v2")


def test_v2_max_is_unlimited(tmp_path: Path) -> None:
    groups = {"": ("max", "1", 0), "user.slice/x.scope": ("max", str(400 * MIB), 0)}
    proc = write_v2(tmp_path, "0::/user.slice/x.scope", groups)
    assert read_tree(tmp_path, proc) is None


def test_v2_a_parents_limit_binds_its_children(tmp_path: Path) -> None:
    groups = {
        "user.slice": (str(GIB), str(900 * MIB), 0),
        "user.slice/x.scope": ("max", str(100 * MIB), 0),
    }
    proc = write_v2(tmp_path, "0::/user.slice/x.scope", groups)
    assert read_tree(tmp_path, proc) == CgroupMemory(GIB, 900 * MIB, "cgroup v2")


def test_v2_the_least_headroom_wins(tmp_path: Path) -> None:
    groups = {
        "a": (str(4 * GIB), str(3 * GIB), 0),  # 1 GiB left
        "a/b": (str(512 * MIB), str(100 * MIB), 0),  # 412 MiB left: binds first
    }
    proc = write_v2(tmp_path, "0::/a/b", groups)
    assert read_tree(tmp_path, proc) == CgroupMemory(512 * MIB, 100 * MIB, "cgroup v2")


def test_v2_path_not_visible_falls_back_to_the_mount(tmp_path: Path) -> None:
    proc = write_v2(tmp_path, "0::/docker/abc", {"": (str(512 * MIB), str(64 * MIB), 0)})
    assert read_tree(tmp_path, proc) == CgroupMemory(512 * MIB, 64 * MIB, "cgroup v2")


def test_inactive_file_beyond_usage_is_zero_not_negative(tmp_path: Path) -> None:
    proc = write_v2(tmp_path, "0::/", {"": (str(512 * MIB), str(MIB), 2 * MIB)})
    assert read_tree(tmp_path, proc) == CgroupMemory(512 * MIB, 0, "cgroup v2")


@pytest.mark.parametrize("controllers", ["memory", "cpu,memory"])
def test_v1_limit_and_working_set(tmp_path: Path, controllers: str) -> None:
    lines = f"12:pids:/docker/abc\n5:{controllers}:/docker/abc\n0::/\n"
    groups = {"docker/abc": (str(512 * MIB), str(450 * MIB), 50 * MIB)}
    proc = write_v1(tmp_path, lines, groups)
    assert read_tree(tmp_path, proc) == CgroupMemory(512 * MIB, 400 * MIB, "cgroup v1")


def test_v1_huge_limit_is_unlimited(tmp_path: Path) -> None:
    groups = {"": (str(V1_UNLIMITED), "9", 0), "docker/abc": (str(V1_UNLIMITED), "5", 0)}
    proc = write_v1(tmp_path, "5:memory:/docker/abc\n", groups)
    assert read_tree(tmp_path, proc) is None


def test_v1_container_without_namespace_sees_itself_at_the_root(tmp_path: Path) -> None:
    proc = write_v1(tmp_path, "5:memory:/docker/abc\n", {"": (str(GIB), str(100 * MIB), 0)})
    assert read_tree(tmp_path, proc) == CgroupMemory(GIB, 100 * MIB, "cgroup v1")


def test_hybrid_uses_v1_when_v2_has_no_memory_files(tmp_path: Path) -> None:
    (tmp_path / "cg" / "unified").mkdir(parents=True)
    proc = write_v1(tmp_path, "0::/\n4:memory:/job\n", {"job": (str(GIB), str(GIB // 2), 0)})
    assert read_tree(tmp_path, proc) == CgroupMemory(GIB, GIB // 2, "cgroup v1")


@pytest.mark.parametrize("proc_text", [None, "", "garbage\n1:cpu:/x\n"])
def test_no_cgroup_no_limit(tmp_path: Path, proc_text: str | None) -> None:
    proc = tmp_path / "proc-cgroup"
    if proc_text is not None:
        proc.write_text(proc_text)
    assert read_tree(tmp_path, proc) is None


# ---------------------------------------------------------------------------- the ceiling


@pytest.mark.parametrize(
    ("requested", "total", "used", "ceiling"),
    [
        (None, 16 * GIB, 4 * GIB, ABSOLUTE_LIMIT),  # a laptop: the design record's 50 MB
        (10 * MIB, 16 * GIB, 4 * GIB, 10 * MIB),  # --max-memory below it is honoured
        (8 * GIB, 16 * GIB, 4 * GIB, 3 * GIB),  # above it: a quarter of what is free
        (None, 512 * MIB, 400 * MIB, 28 * MIB),  # the 512 MB container with 400 MB used
        (None, 512 * MIB, 510 * MIB, MIN_CEILING),  # nearly full: still one stream
        (None, 512 * MIB, 600 * MIB, MIN_CEILING),  # over-reported usage
        (MIB, 16 * GIB, 0, MIN_CEILING),  # a request too small to run with
    ],
)
def test_default_ceiling(requested: int | None, total: int, used: int, ceiling: int) -> None:
    assert default_ceiling(requested, total, used) == ceiling


@pytest.mark.parametrize("requested", [0, -1])
def test_default_ceiling_refuses_nonsense(requested: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        default_ceiling(requested, GIB, 0)


def test_ceiling_from_a_probe_of_a_small_container() -> None:
    first = FixedProbe(used=400 * MIB, total=512 * MIB).read(0, ABSOLUTE_LIMIT)
    assert default_ceiling(None, first.total, first.used) == 28 * MIB


# ---------------------------------------------------------------------------- points

usages = st.floats(min_value=-1.0, max_value=2.0, allow_nan=False)
latencies = st.none() | st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
trends = st.none() | st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(usages, usages)
def test_memory_points_monotonic_and_bounded(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert 0.0 <= memory_points(low) <= memory_points(high) <= 40.0


@given(st.integers(-5, 100), st.integers(-5, 100), st.integers(2, 64))
def test_stream_points_monotonic_and_bounded(a: int, b: int, capacity: int) -> None:
    low, high = sorted((a, b))
    assert (
        0.0
        <= stream_points(low, capacity=capacity)
        <= stream_points(high, capacity=capacity)
        <= 30.0
    )


@given(latencies, latencies, trends)
def test_latency_points_rise_with_latency(
    a: float | None, b: float | None, t: float | None
) -> None:
    low, high = sorted((a or 0.0, b or 0.0))
    assert 0.0 <= latency_points(low, t) <= latency_points(high, t) <= 30.0


@given(trends, trends, latencies)
def test_latency_points_rise_as_throughput_falls(
    a: float | None, b: float | None, p95: float | None
) -> None:
    low, high = sorted((1.0 if a is None else a, 1.0 if b is None else b))
    assert 30.0 >= latency_points(p95, low) >= latency_points(p95, high) >= 0.0


@pytest.mark.parametrize(
    ("usage", "points"),
    [(0.0, 0.0), (0.5, 0.0), (WARNING, 10.0), (CRITICAL_FRACTION, 20.0), (EMERGENCY, 40.0),
     (1.0, 40.0), (math.nan, 0.0)],
)  # fmt: skip
def test_memory_points_anchors(usage: float, points: float) -> None:
    assert memory_points(usage) == pytest.approx(points)


@pytest.mark.parametrize(
    ("active", "points"), [(0, 0.0), (1, 0.0), (4, 10.0), (6, 50 / 3), (7, 20.0), (10, 30.0),
                           (50, 30.0)],
)  # fmt: skip
def test_stream_points_anchors(active: int, points: float) -> None:
    assert stream_points(active) == pytest.approx(points)


def test_stream_capacity_below_two_is_an_error() -> None:
    with pytest.raises(ValueError, match="capacity"):
        stream_points(1, capacity=1)


@pytest.mark.parametrize(
    ("p95", "trend", "points"),
    [
        (None, None, 0.0),
        (LATENCY_TARGET, 1.0, 0.0),  # at the target, steady: nothing
        (2 * LATENCY_TARGET, None, 10.0),
        (4 * LATENCY_TARGET, None, 30.0),
        (10.0, None, 30.0),
        (0.01, 0.95, 0.0),  # a 5% dip is noise
        (0.01, 0.5, 10.0),  # halved throughput
        (0.01, 0.0, 10.0),
        (4 * LATENCY_TARGET, 0.1, 30.0),  # capped
    ],
)
def test_latency_points_anchors(p95: float | None, trend: float | None, points: float) -> None:
    assert latency_points(p95, trend) == pytest.approx(points)


@pytest.mark.parametrize(
    ("usage", "active", "p95", "trend", "level"),
    [
        (0.30, 1, 0.02, 1.0, Level.NONE),  # one big file on a healthy machine
        (0.30, 1, 0.05, 0.1, Level.NONE),  # ... as the page cache fills and throughput drops
        (0.65, 1, 0.02, 1.0, Level.NONE),  # a busy desktop past WARNING: no slowdown for one copy
        (0.65, 4, 0.02, 1.0, Level.LIGHT),  # ... but WARNING plus concurrency is pressure
        (0.80, 1, 0.02, 1.0, Level.LIGHT),  # CRITICAL memory alone
        (0.90, 1, 0.02, 1.0, Level.MODERATE),  # EMERGENCY memory alone
        (0.90, 7, 0.02, 1.0, Level.HEAVY),
        (0.90, 10, 2 * LATENCY_TARGET, 1.0, Level.CRITICAL),
        (0.20, 10, 0.02, 1.0, Level.LIGHT),  # many streams alone
    ],
)
def test_scenarios(usage: float, active: int, p95: float, trend: float, level: Level) -> None:
    score = Score(memory_points(usage), stream_points(active), latency_points(p95, trend))
    assert level_for(score.total) is level


def test_score_total_adds_the_factors() -> None:
    assert Score(memory=12.5, streams=10.0, latency=3.0).total == 25.5
    assert Score().total == 0.0


# ---------------------------------------------------------------------------- latency window


def test_window_p95_needs_enough_chunks() -> None:
    window = LatencyWindow(clock=FakeClock(), min_samples=4)
    for _ in range(3):
        window.add(0.5, MIB)
    assert window.p95() is None
    window.add(0.5, MIB)
    assert window.p95() == 0.5


def test_window_p95_is_the_nearest_rank() -> None:
    window = LatencyWindow(clock=FakeClock())
    for i in range(1, 101):
        window.add(i / 100, MIB)
    assert window.p95() == 0.95


def test_window_forgets_chunks_older_than_its_span() -> None:
    clock = FakeClock()
    window = LatencyWindow(span=5.0, clock=clock)
    for _ in range(10):
        window.add(3.0, MIB)
    clock.advance(4.0)
    for _ in range(10):
        window.add(0.01, MIB)
    assert window.p95() == 3.0
    clock.advance(1.5)
    assert window.p95() == 0.01


def test_window_is_bounded() -> None:
    window = LatencyWindow(clock=FakeClock(), max_samples=8)
    for i in range(100):
        window.add(float(i), 1)
    assert window.p95() == 99.0
    assert len(window._samples) == 8


def test_window_trend_compares_halves_by_work_rate() -> None:
    clock = FakeClock()
    window = LatencyWindow(span=4.0, clock=clock)
    for _ in range(10):  # older half: 1 MiB in 10 ms = 100 MiB/s
        window.add(0.01, MIB)
        clock.advance(0.1)
    clock.advance(1.0)
    for _ in range(10):  # recent half: 1 MiB in 40 ms = 25 MiB/s
        window.add(0.04, MIB)
        clock.advance(0.1)
    assert window.trend() == pytest.approx(0.25)
    score = score_of(0.3, 1, window)  # fast chunks, but throughput fell by 3/4
    assert (score.memory, score.streams) == (0.0, 0.0)
    assert score.latency == pytest.approx(10.0)


def test_window_trend_unknown_without_both_halves() -> None:
    clock = FakeClock()
    window = LatencyWindow(span=4.0, clock=clock)
    assert window.trend() is None
    for _ in range(10):
        window.add(0.01, MIB)
    assert window.trend() is None  # all recent: nothing to compare with


# ---------------------------------------------------------------------------- the controller


def at_floor(level: Level) -> Score:
    """A score exactly at the bottom of ``level``'s band."""
    return Score(memory=BAND_FLOORS[level])


def total(points: float) -> Score:
    return Score(memory=points)


def controller_at(level: Level, clock: FakeClock) -> BackpressureController:
    ctl = BackpressureController(clock=clock, hysteresis=5.0, min_dwell=1.0)
    ctl.update(at_floor(level))
    assert ctl.level is level
    return ctl


@pytest.mark.parametrize("level", [Level.LIGHT, Level.MODERATE, Level.HEAVY, Level.CRITICAL])
def test_enters_each_band_at_once(level: Level) -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock)
    just_below = total(BAND_FLOORS[level] - 0.001)
    assert ctl.update(just_below) is Level(level - 1)
    assert ctl.update(at_floor(level)) is level
    assert ctl.transitions[-1] == Transition(clock.now, Level(level - 1), level, at_floor(level))


def test_climbs_every_band_in_turn_and_can_jump() -> None:
    ctl = BackpressureController(clock=FakeClock())
    climbed = [ctl.update(total(points)) for points in (0, 25, 45, 65, 85)]
    assert climbed == list(Level)
    assert [(t.old, t.new) for t in ctl.transitions] == list(pairwise(Level))
    jumper = BackpressureController(clock=FakeClock())
    assert jumper.update(total(95)) is Level.CRITICAL
    assert [(t.old, t.new) for t in jumper.transitions] == [(Level.NONE, Level.CRITICAL)]


@pytest.mark.parametrize("level", [Level.LIGHT, Level.MODERATE, Level.HEAVY, Level.CRITICAL])
def test_leaves_each_band_after_hysteresis_and_dwell(level: Level) -> None:
    clock = FakeClock()
    ctl = controller_at(level, clock)
    below = total(BAND_FLOORS[level] - 5.001)
    assert ctl.update(below) is level  # the dwell starts
    clock.advance(0.999)
    assert ctl.update(below) is level
    clock.advance(0.001)
    assert ctl.update(below) is Level(level - 1)
    assert ctl.transitions[-1] == Transition(clock.now, level, Level(level - 1), below)


@pytest.mark.parametrize("level", [Level.LIGHT, Level.MODERATE, Level.HEAVY, Level.CRITICAL])
def test_inside_the_hysteresis_band_it_stays(level: Level) -> None:
    clock = FakeClock()
    ctl = controller_at(level, clock)
    for _ in range(50):
        clock.advance(0.5)
        assert ctl.update(total(BAND_FLOORS[level] - 5.0)) is level


def test_goes_down_one_step_per_dwell() -> None:
    clock = FakeClock()
    ctl = controller_at(Level.CRITICAL, clock)
    seen = []
    for _ in range(9):
        seen.append(ctl.update(Score()))
        clock.advance(0.5)
    assert seen == [
        Level.CRITICAL, Level.CRITICAL, Level.HEAVY, Level.HEAVY, Level.MODERATE,
        Level.MODERATE, Level.LIGHT, Level.LIGHT, Level.NONE,
    ]  # fmt: skip
    assert ctl.highest is Level.CRITICAL


def test_a_bounce_above_the_threshold_restarts_the_dwell() -> None:
    clock = FakeClock()
    ctl = controller_at(Level.LIGHT, clock)
    ctl.update(total(10))
    clock.advance(0.9)
    ctl.update(total(16))  # back inside the hysteresis band
    clock.advance(0.2)
    assert ctl.update(total(10)) is Level.LIGHT
    clock.advance(0.9)
    assert ctl.update(total(10)) is Level.LIGHT
    clock.advance(0.1)
    assert ctl.update(total(10)) is Level.NONE


@pytest.mark.parametrize("edge", [20.0, 40.0, 60.0, 80.0])
def test_no_flapping_around_an_edge(edge: float) -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock)
    ctl.update(total(edge - 1.0))
    entered = len(ctl.transitions)
    for i in range(200):
        ctl.update(total(edge + (1.0 if i % 2 else -1.0)))
        clock.advance(0.1)
    assert len(ctl.transitions) == entered + 1
    assert ctl.level is level_for(edge)


def test_no_flapping_with_a_dip_shorter_than_the_dwell() -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock)
    for i in range(200):  # 0.8 s far below, 0.2 s above, repeatedly
        ctl.update(total(25.0 if i % 5 == 4 else 0.0))
        clock.advance(0.2)
    assert [(t.old, t.new) for t in ctl.transitions] == [(Level.NONE, Level.LIGHT)]


def test_many_streams_settle_at_light_with_six() -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock)
    active = 10
    for _ in range(100):
        ctl.update(Score(streams=stream_points(active)))
        active = ctl.allowed_streams(10)
        clock.advance(0.25)
    assert (ctl.level, active, len(ctl.transitions)) == (Level.LIGHT, 6, 1)


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=60), st.floats(0, 2))
def test_level_never_below_the_raw_band_and_falls_one_step(scores: list[float], dt: float) -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock)
    for points in scores:
        before = ctl.level
        after = ctl.update(total(points))
        assert after >= level_for(points)
        assert after >= before - 1
        clock.advance(dt)


def test_time_in_levels_sums_to_elapsed() -> None:
    clock = FakeClock()
    start = clock.now
    ctl = BackpressureController(clock=clock)
    clock.advance(2.0)
    ctl.update(total(45))
    clock.advance(3.0)
    ctl.update(total(0))
    clock.advance(1.5)
    ctl.update(total(0))  # dwell over: down to LIGHT
    clock.advance(0.5)
    spent = ctl.time_in_levels()
    assert spent == pytest.approx(
        {"NONE": 2.0, "LIGHT": 0.5, "MODERATE": 4.5, "HEAVY": 0.0, "CRITICAL": 0.0}
    )
    assert sum(spent.values()) == pytest.approx(clock.now - start)


def test_transitions_are_bounded() -> None:
    clock = FakeClock()
    ctl = BackpressureController(clock=clock, min_dwell=0.0)
    for _ in range(BackpressureController.MAX_TRANSITIONS):
        ctl.update(total(25))
        ctl.update(total(0))
    assert len(ctl.transitions) == BackpressureController.MAX_TRANSITIONS


@pytest.mark.parametrize(("hysteresis", "dwell"), [(-1.0, 1.0), (20.0, 1.0), (5.0, -0.1)])
def test_controller_refuses_bad_settings(hysteresis: float, dwell: float) -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        BackpressureController(hysteresis=hysteresis, min_dwell=dwell)


@pytest.mark.parametrize(
    ("level", "streams_of_8", "streams_of_2", "delay_per_second", "paused"),
    [
        (Level.NONE, 8, 2, 0.0, False),
        (Level.LIGHT, 6, 2, 0.25, False),
        (Level.MODERATE, 3, 2, 1.0, False),
        (Level.HEAVY, 1, 1, 3.0, False),
        (Level.CRITICAL, 0, 0, 3.0, True),
    ],
)
def test_policy_per_level(
    level: Level, streams_of_8: int, streams_of_2: int, delay_per_second: float, paused: bool
) -> None:
    ctl = controller_at(level, FakeClock())
    assert ctl.allowed_streams(8) == streams_of_8
    assert ctl.allowed_streams(2) == streams_of_2
    assert ctl.delay_for(1.0) == pytest.approx(delay_per_second)
    assert ctl.delay_for(0.0) == 0.0
    assert ctl.paused is paused
    assert ctl.policy is POLICIES[level]


def test_delay_slows_throughput_by_the_policys_fraction() -> None:
    for level in (Level.LIGHT, Level.MODERATE, Level.HEAVY):
        ctl = controller_at(level, FakeClock())
        work = 0.04
        rate = work / (work + ctl.delay_for(work))
        assert rate == pytest.approx(1.0 - POLICIES[level].slowdown)
