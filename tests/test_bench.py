"""``openspec bench``: scoring against the design targets, the baseline gate, the JSON schema,
the measuring helpers, and cleanup when the run is interrupted (in a real process).

Scoring and comparison are pure, so they are tested on made-up results; one end-to-end run of a
small bench checks that the pieces fit, and one real process is stopped with SIGINT.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import signal
import stat
import subprocess
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from conftest import OPENSPEC, default_sigint, invoke, mounted, wait_for
from rich.console import Console
from typer.testing import CliRunner

from openspec_cli import bench, bench_report, engine, fileio
from openspec_cli.bench import (
    MIB,
    BenchResult,
    Memory,
    Reliability,
    ScenarioResult,
    Throughput,
)
from openspec_cli.bench_report import FAIL, NA, PASS
from openspec_cli.errors import ExitCode, UsageError

MACHINE: dict[str, Any] = {
    "hostname": "ci",
    "os": "Linux",
    "kernel": "6.1",
    "arch": "x86_64",
    "cpu_model": "Test CPU",
    "cpu_count": 2,
    "cpu_usable": 2,
    "memory_bytes": 8 << 30,
    "filesystem": "ext4",
    "python": "3.11.7",
    "python_implementation": "CPython",
    "openspec": "0.1.0",
    "libraries": {"rich": "13.0"},
}


def scenario(
    sid: str = "copy-1MiB",
    *,
    peak: int = 30 * MIB,
    growth: float | None = None,
    min_bps: float | None = 100 * MIB,
    avg_bps: float | None = 200 * MIB,
    efficiency: float | None = 0.9,
    p95: float | None = 0.01,
    concurrency: int | None = 16,
    files: int = 16,
    streams: tuple[int, int] = (10, 10),
    recoveries: tuple[int, int] = (0, 0),
    pending: tuple[str, ...] = (),
) -> ScenarioResult:
    """A made-up scenario result; every figure passes its target unless told otherwise."""
    latency = None if p95 is None else {"p50": p95 / 2, "p95": p95, "p99": p95, "max": p95}
    return ScenarioResult(
        id=sid,
        kind="copy",
        description=sid,
        file_size=MIB,
        files=files,
        runs=1,
        bytes=MIB,
        seconds=1.0,
        throughput=Throughput(min_bps, avg_bps, 100 * MIB, None, efficiency, None),
        latency=latency,
        memory=Memory(20 * MIB, peak, growth),
        peak_concurrency=concurrency,
        reliability=Reliability(
            streams=streams[1],
            streams_ok=streams[0],
            recoveries=recoveries[1],
            recoveries_ok=recoveries[0],
        ),
        pending=list(pending),
    )


def statuses(*scenarios: ScenarioResult) -> dict[str, str]:
    return {v.key: v.status for v in bench_report.score(scenarios)}


def result_of(*scenarios: ScenarioResult) -> BenchResult:
    return BenchResult(0.0, 1.0, bench.QUICK, list(scenarios), [0.1, 0.2, 0.3], [0.1, 0.2, 0.3])


def doc_of(*scenarios: ScenarioResult, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    return bench_report.document(result_of(*scenarios), machine or MACHINE, None, 0.10)


# ---------------------------------------------------------------------------- scoring


def test_everything_within_the_targets_passes() -> None:
    verdicts = statuses(scenario(growth=0.1 * MIB, recoveries=(20, 20)))
    assert verdicts == dict.fromkeys(verdicts, PASS)
    assert set(verdicts) == {t.key for t in bench_report.TARGETS}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"peak": 50 * MIB}, "peak_memory"),  # "under 50 MB": 50 itself fails
        ({"growth": 1.5 * MIB}, "memory_growth"),
        ({"min_bps": 9.9 * MIB}, "throughput_min"),
        ({"avg_bps": 24 * MIB}, "throughput_avg"),
        ({"streams": (995, 1000)}, "stream_success"),  # "above 99.5%": 99.5 fails
        ({"recoveries": (19, 20)}, "recovery_success"),  # 95% is not above 95%
        ({"p95": 0.2}, "latency_p95"),
        ({"concurrency": 9}, "concurrency"),
    ],
)
def test_each_target_fails_on_its_own(changes: dict[str, Any], key: str) -> None:
    verdicts = statuses(scenario(**{"growth": 0.0, "recoveries": (1, 1), **changes}))
    assert verdicts[key] == FAIL
    assert [k for k, v in verdicts.items() if v != PASS] == [key]


def test_boundaries_that_pass() -> None:
    verdicts = statuses(
        scenario(min_bps=10 * MIB, avg_bps=25 * MIB, concurrency=10, streams=(996, 1000))
    )
    assert verdicts["throughput_min"] == verdicts["throughput_avg"] == PASS
    assert verdicts["concurrency"] == verdicts["stream_success"] == PASS


def test_the_worst_scenario_is_named() -> None:
    verdicts = bench_report.score([scenario("a", peak=40 * MIB), scenario("b", peak=45 * MIB)])
    peak = next(v for v in verdicts if v.key == "peak_memory")
    assert (peak.value, peak.scenario) == (45 * MIB, "b")


def test_unmeasured_targets_are_not_applicable_and_say_why() -> None:
    verdicts = {
        v.key: v
        for v in bench_report.score(
            [scenario(p95=None, concurrency=None, pending=("chunk_latency", "peak_concurrency"))]
        )
    }
    assert verdicts["latency_p95"].status == verdicts["concurrency"].status == NA
    assert "pending" in verdicts["latency_p95"].note
    assert verdicts["recovery_success"].status == NA  # nothing was interrupted
    assert "--quick" in verdicts["memory_growth"].note


def test_concurrency_is_only_judged_when_10_or_more_streams_were_asked_for() -> None:
    (verdict,) = [v for v in bench_report.score([scenario(files=4, concurrency=4)])
                  if v.key == "concurrency"]  # fmt: skip
    assert (verdict.status, verdict.note) == (NA, "not tried: --concurrency below 10")


def test_exit_code_follows_the_targets() -> None:
    assert doc_of(scenario())["exit_code"] == 0
    assert doc_of(scenario(peak=80 * MIB))["exit_code"] == int(ExitCode.MISMATCH) == 1


# ---------------------------------------------------------------------------- baseline


def test_a_run_does_not_regress_against_itself() -> None:
    doc = doc_of(scenario(), scenario("concurrency-16"))
    comparison = bench_report.compare(doc, copy.deepcopy(doc), 0.10)
    assert comparison["same_machine"] is True
    assert comparison["regressions"] == 0
    metrics = {(r["scenario"], r["metric"]) for r in comparison["compared"]}
    assert ("copy-1MiB", "efficiency") in metrics
    assert ("copy-1MiB", "throughput_avg") in metrics
    assert ("all", "stream_success") in metrics


def test_a_forced_regression_fails_the_gate() -> None:
    base = doc_of(scenario(efficiency=1.0))
    now = doc_of(scenario(efficiency=0.85))  # 15% worse, limit 10%
    result = result_of(scenario(efficiency=0.85))
    gated = bench_report.document(result, MACHINE, base, 0.10)
    assert gated["exit_code"] == 1
    (row,) = [r for r in gated["baseline"]["compared"] if r["regressed"]]
    assert (row["scenario"], row["metric"]) == ("copy-1MiB", "efficiency")
    assert row["change"] == pytest.approx(-0.15)
    assert bench_report.compare(now, base, 0.20)["regressions"] == 0  # within a looser limit


def test_improvements_and_small_changes_are_not_regressions() -> None:
    base = doc_of(scenario(efficiency=1.0, avg_bps=200 * MIB, p95=0.001, peak=30 * MIB))
    now = doc_of(scenario(efficiency=1.5, avg_bps=190 * MIB, p95=0.002, peak=31 * MIB))
    # latency doubled, but by 1 ms (under the 5 ms slack); memory +1 MiB (under 2 MiB)
    assert bench_report.compare(now, base, 0.10)["regressions"] == 0


def test_on_another_machine_only_ratios_and_rates_are_compared() -> None:
    other = {**MACHINE, "cpu_model": "Faster CPU", "cpu_usable": 64}
    base = doc_of(scenario(avg_bps=2000 * MIB, p95=0.5), machine=other)
    now = doc_of(scenario(avg_bps=100 * MIB, p95=0.001))
    comparison = bench_report.compare(now, base, 0.10)
    assert comparison["same_machine"] is False
    assert comparison["regressions"] == 0
    assert {r["metric"] for r in comparison["compared"]} == {
        "efficiency",
        "peak_memory",
        "stream_success",
    }


def test_a_drop_in_success_rate_regresses() -> None:
    base = doc_of(scenario(streams=(100, 100)))
    now = doc_of(scenario(streams=(80, 100)))
    rows = [r for r in bench_report.compare(now, base, 0.10)["compared"] if r["regressed"]]
    assert [r["metric"] for r in rows] == ["stream_success"]


def test_scenarios_missing_on_one_side_are_skipped() -> None:
    base = doc_of(scenario("copy-1GiB"))
    now = doc_of(scenario("copy-1MiB"))
    scenarios = {r["scenario"] for r in bench_report.compare(now, base, 0.1)["compared"]}
    assert scenarios == {"all"}


# ---------------------------------------------------------------------------- JSON schema


def test_json_schema(tmp_path: Path) -> None:
    doc = doc_of(scenario(), scenario("recovery-resume", recoveries=(5, 5)))
    assert doc["schema"] == "openspec-bench"
    assert doc["version"] == 1
    assert set(doc) == {
        "schema", "version", "started_at", "seconds", "quick", "config", "machine",
        "summary", "targets", "scenarios", "baseline", "exit_code",
    }  # fmt: skip
    assert {"cpu_count", "memory_bytes", "filesystem", "python", "libraries"} <= set(doc["machine"])
    assert set(doc["summary"]) >= {"stream_success_rate", "recovery_success_rate", "retries"}
    target = doc["targets"][0]
    assert set(target) == {
        "key", "label", "op", "limit", "requirement", "value", "scenario", "status", "note",
    }  # fmt: skip
    s = doc["scenarios"][0]
    assert set(s["throughput"]) == {
        "min_bps", "avg_bps", "reference_bps", "cp_bps", "efficiency", "efficiency_cp",
    }  # fmt: skip
    assert set(s["latency"]) == {"p50", "p95", "p99", "max"}
    assert set(s["memory"]) == {"start_rss_bytes", "peak_rss_bytes", "growth_bps"}
    assert {"streams", "streams_ok", "retries", "recoveries", "recoveries_ok"} <= set(
        s["reliability"]
    )
    assert {"pressure", "peak_concurrency", "chunk_sizes", "errors", "pending"} <= set(s)
    path = tmp_path / "bench.json"
    bench_report.write_json(doc, str(path))
    assert bench_report.load_baseline(str(path)) == json.loads(json.dumps(doc))
    assert bench.result_from_dict(doc["scenarios"][0]) == scenario()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (None, "No such file"),
        ("{not json", "not JSON"),
        ('{"schema": "other"}', "not an openspec bench"),
        ('{"schema": "openspec-bench", "version": 99, "scenarios": []}', "version 99"),
        ('{"schema": "openspec-bench", "version": 1}', "'scenarios' is missing"),
        ('{"schema": "openspec-bench", "version": 1, "scenarios": {"a": 1}}', "not a list"),
        (
            '{"schema": "openspec-bench", "version": 1, "scenarios": [1, 2]}',
            "not an object with a string 'id'",
        ),
        (
            '{"schema": "openspec-bench", "version": 1, "scenarios": [], "summary": []}',
            "'summary' is not an object",
        ),
    ],
)
def test_unusable_baselines_are_usage_errors(
    tmp_path: Path, content: str | None, complaint: str
) -> None:
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=complaint):
        bench_report.load_baseline(str(path))


# ---------------------------------------------------------------------------- options and plan


def test_options_make_the_plan() -> None:
    config = bench.make_config(False, "64K, 10M", "2,2,12", None)
    assert config.sizes == (64 << 10, 10 * MIB)
    assert config.concurrency == (2, 12)
    ids = [s.id for s in bench.plan(config)]
    assert ids == [
        "copy-64KiB", "copy-10MiB", "chunking-10MiB", "concurrency-2", "concurrency-12",
        "recovery-resume", "recovery-transient",
    ]  # fmt: skip
    assert [s.id for s in bench.plan(bench.QUICK)][:3] == [
        "copy-1MiB",
        "copy-10MiB",
        "chunking-10MiB",
    ]


def test_defaults_follow_the_design_record() -> None:
    assert bench.Config().sizes == (MIB, 10 * MIB, 100 * MIB, 1 << 30)
    assert bench.Config().concurrency == (1, 4, 16)
    assert max(bench.QUICK.sizes) <= 100 * MIB


@pytest.mark.parametrize(
    ("sizes", "concurrency", "directory"),
    [("ten", None, None), ("0", None, None), (",", None, None), (None, "0", None),
     (None, "1,x", None), (None, "1000", None), (None, None, "/no/such/dir"),
     ("", None, None), (None, "", None)],  # an unset variable must not mean the full run
)  # fmt: skip
def test_bad_options_are_usage_errors(
    sizes: str | None, concurrency: str | None, directory: str | None
) -> None:
    with pytest.raises(UsageError):
        bench.make_config(True, sizes, concurrency, directory)


@pytest.mark.parametrize(
    "args",
    [
        ["--sizes", "lots"],
        ["--sizes", ""],
        ["--concurrency", "0"],
        ["--dir", "/no/such/dir"],
        ["--baseline", "missing.json"],
        ["--json", "no/such/dir/out.json"],
        ["--max-regression", "-1"],
        ["--max-regression", "nan"],
    ],
)
def test_cli_refuses_bad_input_before_running(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "run", lambda *a: pytest.fail("the bench ran"))
    result = invoke(runner, ["bench", *args])
    assert result.exit_code == 2
    assert args[1] in result.stderr


# ---------------------------------------------------------------------------- measuring


def test_slope() -> None:
    assert bench.slope([0, 1, 2, 3], [10, 12, 14, 16]) == pytest.approx(2.0)
    assert bench.slope([1], [5]) is None
    assert bench.slope([1, 1], [5, 6]) is None


def test_growth_is_only_reported_over_a_long_enough_span() -> None:
    sampler = bench.RssSampler()
    sampler.times.extend([0.0, 0.1, 0.2])
    sampler.rss.extend([10.0, 20.0, 30.0])
    assert sampler.summary() == Memory(10, 30, None)  # a step, not a trend
    sampler.times.extend([1.0, 2.0, 3.0])
    sampler.rss.extend([30.0, 30.0, 30.0])
    memory = sampler.summary()
    assert memory.peak_rss_bytes == 30
    assert memory.growth_bps == pytest.approx(0.0, abs=1.0)


def test_generated_data_is_incompressible_and_its_digest_right(tmp_path: Path) -> None:
    from conftest import xxh128_hex

    path = tmp_path / "data"
    digest = bench.make_file(path, 9 * MIB + 5, seed=1)
    data = path.read_bytes()
    assert len(data) == 9 * MIB + 5
    assert digest == xxh128_hex(data)
    assert data[: 4 * MIB] != data[4 * MIB : 8 * MIB]  # blocks are stamped: none alike


def _write_through_faults(path: Path) -> list[int]:
    """Three 8-byte writes with a fault planned at offset 10; then leave by an error."""
    with bench.injected_faults({("write", 10): errno.EIO}) as fired:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            fileio.write_all(fd, memoryview(b"x" * 8))  # 0..8: before the fault
            with pytest.raises(OSError, match="Input/output"):
                fileio.write_all(fd, memoryview(b"x" * 8))  # 8..16 covers offset 10
            fileio.write_all(fd, memoryview(b"x" * 8))  # fired once: passes now
        finally:
            os.close(fd)
        raise RuntimeError(fired)


def test_injected_faults_fire_once_and_are_always_undone(tmp_path: Path) -> None:
    real = (fileio.write_all, engine.Pump._read)
    with pytest.raises(RuntimeError) as info:
        _write_through_faults(tmp_path / "f")
    assert info.value.args == ([errno.EIO],)
    assert (fileio.write_all, engine.Pump._read) == real


def test_a_wrong_copy_is_counted_as_a_failed_stream(tmp_path: Path) -> None:
    from openspec_cli.copy_records import FileResult

    spec = bench.plan(bench.QUICK)[0]
    tally = bench.Tally(spec, expected={"s0.bin": "good"})
    dest = tmp_path / "s0.bin"
    dest.write_bytes(b"x" * spec.size)
    ok = FileResult("s0.bin", str(dest), spec.size, "xxh128", "good", 0.1)
    bad = FileResult("s0.bin", str(dest), spec.size, "xxh128", "bad", 0.1)
    assert tally.add_copy(bench.CopyRun([ok, bad], 0.2, ["boom"]), 3) == 1
    assert (tally.rel.streams, tally.rel.streams_ok) == (3, 1)
    assert tally.result().errors == ["boom"]


@pytest.mark.parametrize(
    ("levels", "pressure", "pending"),
    [
        ({}, None, False),  # the engine reported, but the run ended before its first sample
        (None, None, True),  # the engine reported nothing: pending
        ({"LIGHT": 0.1}, "LIGHT", False),
    ],
)
def test_a_run_too_short_to_sample_is_not_measured_rather_than_pending(
    levels: dict[str, float] | None, pressure: str | None, pending: bool
) -> None:
    spec = bench.plan(bench.QUICK)[0]
    tally = bench.Tally(spec, expected={})
    highest = next(iter(levels)) if levels else None
    tally.add_copy(bench.CopyRun([], 0.01, [], 2, highest, levels, None), 1)

    result = tally.result()

    assert (result.pressure or {}).get("highest") == pressure
    assert ("pressure" in result.pending) == pending


def _interrupted_in_workspace(parent: Path) -> None:
    with bench.workspace(str(parent)) as root:
        (root / "data").write_bytes(b"x")
        raise KeyboardInterrupt


def test_workspace_is_removed_on_every_way_out(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _interrupted_in_workspace(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- rendering


def test_report_renders_scenarios_targets_and_baseline() -> None:
    base = doc_of(scenario(efficiency=2.0))
    doc = bench_report.document(result_of(scenario(peak=60 * MIB)), MACHINE, base, 0.10)
    out = StringIO()
    bench_report.render(doc, Console(file=out, width=200, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert "copy-1MiB" in text
    assert "Peak memory" in text
    assert FAIL in text
    assert "REGRESSED copy-1MiB efficiency" in text
    assert "result: FAIL (exit 1)" in text


def test_progress_in_a_log_is_one_line_per_scenario() -> None:
    out = StringIO()
    view = bench_report.LiveView(out)
    view.scenario_finished(scenario())
    assert out.getvalue().startswith("openspec: bench: copy-1MiB: MiB/s min 100, ")
    assert out.getvalue().count("\n") == 1


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    """One real, small bench through the command line: exit code, its JSON, its stdout."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "result.json"
    args = ["bench", "--quick", "--sizes", "1M", "--concurrency", "2", "--dir", str(work)]
    result = invoke(CliRunner(), [*args, "--json", str(out)])
    assert sorted(p.name for p in work.iterdir()) == ["result.json"]  # nothing else left
    return result.exit_code, json.loads(out.read_text()), result.stdout


def test_small_run_measures_every_scenario(small_run: tuple[int, dict[str, Any], str]) -> None:
    code, doc, stdout = small_run
    assert code == doc["exit_code"]
    ids = [s["id"] for s in doc["scenarios"]]
    assert ids == ["copy-1MiB", "concurrency-2", "recovery-resume", "recovery-transient"]
    assert doc["summary"]["stream_success_rate"] == 1.0
    assert doc["summary"]["recovery_success_rate"] == 1.0
    copied = doc["scenarios"][0]
    assert copied["throughput"]["avg_bps"] > 0
    assert copied["throughput"]["efficiency"] > 0
    assert copied["memory"]["peak_rss_bytes"] > 0
    assert doc["scenarios"][3]["reliability"]["retries"] >= 5
    assert "copy-1MiB" in stdout
    assert "result:" in stdout


def test_small_run_against_a_better_baseline_exits_1(
    small_run: tuple[int, dict[str, Any], str],
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, doc, _ = small_run
    better = copy.deepcopy(doc)
    for s in better["scenarios"]:
        if s["throughput"]["efficiency"]:
            s["throughput"]["efficiency"] *= 2
    (tmp_path / "base.json").write_text(json.dumps(better))
    again = BenchResult(
        0.0, 1.0, bench.QUICK, [bench.result_from_dict(s) for s in doc["scenarios"]]
    )
    monkeypatch.setattr(bench, "run", lambda config, observer=None: again)
    result = invoke(runner, ["bench", "--baseline", str(tmp_path / "base.json")])
    assert result.exit_code == 1
    assert "REGRESSED copy-1MiB efficiency" in result.stdout
    result = invoke(runner, ["bench", "--baseline", str(tmp_path / "base.json"),
                             "--max-regression", "60"])  # fmt: skip
    assert "0 regressed" in result.stdout


def test_sigint_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*OPENSPEC, "bench", "--quick", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    try:
        wait_for(lambda: any(tmp_path.glob("openspec-bench-*/*/s0.bin")), what="bench data")
        time.sleep(0.2)  # well into a scenario: its child is copying
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "openspec: interrupted; benchmark files removed"
    assert "Traceback" not in err.decode()
    time.sleep(0.3)  # a child left running would write again by now
    assert list(tmp_path.iterdir()) == []


def test_a_failed_scenario_says_why_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "stderr").write_bytes(b"Traceback (most recent call last):\n  ...\nOSError: boom\n")
    child = subprocess.Popen(["false"])
    child.wait()
    assert bench._why(child, tmp_path) == "OSError: boom"
    (tmp_path / "stderr").write_bytes(b"")  # a full disk swallowed the child's message
    assert bench._why(child, tmp_path) == "exit status 1, no message"


def test_too_small_a_disk_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A 10 MiB scenario holds its source and two copies at once: 40 MiB is not enough."""
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=40m", "tmpfs") as mnt:
        result = subprocess.run(
            [*OPENSPEC, "bench", "--quick", "--sizes", "10M", "--concurrency", "1",
             "--dir", str(mnt)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        left = list(mnt.iterdir())
    assert result.returncode == 2, result.stderr
    assert "free" in result.stderr.strip().splitlines()[-1]
    assert left == []


def test_a_read_only_dir_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with mounted(tmp_path / "ro", "-t", "tmpfs", "-o", "size=10m,ro", "tmpfs") as mnt:
        result = subprocess.run(
            [*OPENSPEC, "bench", "--quick", "--dir", str(mnt)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"openspec: --dir: cannot work in '{mnt}': Read-only file system"
    )


def test_the_json_result_is_made_as_the_shell_would_make_it(tmp_path: Path) -> None:
    """mkstemp's 0600 kept a CI job's artifact step (another user) from reading it."""
    old = os.umask(0o022)
    try:
        bench_report.write_json({"a": 1}, str(tmp_path / "out.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644


def test_a_narrow_terminal_still_shows_every_verdict(
    small_run: tuple[int, dict[str, Any], str],
) -> None:
    """Cells wrap instead of being cut: at 40 columns no target loses its PASS/FAIL."""
    _, doc, _ = small_run
    out = StringIO()
    Console(file=out, width=40, force_terminal=False).print(
        bench_report.targets_table(doc["targets"])
    )
    verdicts = re.findall(rf"\b({PASS}|{FAIL}|{re.escape(NA)})\s*$", out.getvalue(), re.M)
    assert len(verdicts) == len(doc["targets"])
    assert "…" not in out.getvalue()


def test_json_numbers_are_tidy(small_run: tuple[int, dict[str, Any], str]) -> None:
    """Whole bytes per second, as copy --json gives them; no 0.30000000000000004."""
    _, doc, _ = small_run

    def numbers(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from numbers(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from numbers(v, key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, value

    found = list(numbers({"targets": doc["targets"], "scenarios": doc["scenarios"]}))
    rates = [v for k, v in found if k.endswith("_bps")]
    assert rates
    assert all(isinstance(v, int) for v in rates)
    assert all(float(f"{v:.6g}") == v for _, v in found if isinstance(v, float))


def test_regressions_are_shown_in_their_units() -> None:
    lines = bench_report.baseline_lines({
        "compared": [{"scenario": "copy-1GiB", "metric": "throughput_avg", "regressed": True,
                      "baseline": 2.535e8, "current": 1.045e8, "change": -0.5878}],
        "same_machine": True, "regressions": 1, "max_regression": 0.1,
    })  # fmt: skip
    assert lines[1] == "  REGRESSED copy-1GiB throughput_avg: 241.8 MiB/s -> 99.7 MiB/s (-58.8%)"
