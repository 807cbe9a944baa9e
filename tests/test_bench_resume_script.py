"""scripts/bench_resume.py run for real on a small file: exit codes, table, JSON and clean-up.

Timings are never asserted: on a shared machine they are noise at this size. What is checked is
that the benchmark runs end to end, really resumes from about half of the file, keeps its
checkpoints out of the user's state directory and always leaves its temporary directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_resume.py"
SIZE = 8 * 1024 * 1024
SCENARIOS = [
    "checkpoint_fsync",
    "checkpoint_fsync_inproc",
    "checkpoint_nofsync",
    "checkpoint_nofsync_inproc",
    "resume_50",
]
NUMBERS = ["a_median", "b_median", "a_min", "b_min", "a_max", "b_max", "ratio_median", "ratio_min"]
TOP_KEYS = {"schema", "size_bytes", "runs", "warmup", "openspec", "python", "load_before"}
TOP_KEYS |= {"load_after", "scenarios", "throughput", "resume"}
SCENARIO_KEYS = {"name", "a", "b", "a_seconds", "b_seconds", "target", "meets_target", *NUMBERS}
MEASURED = ["resume_wall", "startup", "rehash", "copy_rest", "full_wall", "full_copy"]

pytestmark = pytest.mark.skipif(shutil.which("cmp") is None, reason="bench_resume.py needs cmp")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    work: Path
    json_path: Path
    user_state: Path


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real run shared by the tests that only read its results (keeps the suite short)."""
    base = tmp_path_factory.mktemp("bench-resume")
    work = base / "work"
    work.mkdir()
    json_path = base / "results.json"
    user_state = base / "xdg-state"  # where openspec would keep checkpoints without the override
    env = {k: v for k, v in os.environ.items() if k != "OPENSPEC_STATE_DIR"}
    env["XDG_STATE_HOME"] = str(user_state)
    done = _bench(
        "--size", "8M", "--runs", "1", "--dir", str(work), "--json", str(json_path), env=env
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, work, json_path, user_state)


def _data(run: Run) -> dict[str, Any]:
    assert run.code == 0, run.stderr
    data: dict[str, Any] = json.loads(run.json_path.read_text())
    return data


def test_exits_zero_and_prints_every_scenario(tiny_run: Run) -> None:
    assert tiny_run.code == 0, tiny_run.stderr
    rows = {line.split()[0] for line in tiny_run.stdout.splitlines() if line.strip()}
    assert set(SCENARIOS) <= rows
    for column in ("A median s", "B median s", "A/B median", "A/B min", "target", "meets"):
        assert column in tiny_run.stdout
    assert "spread of the runs" in tiny_run.stdout
    assert "resumed_from" in tiny_run.stdout
    assert "re-hash of the verified prefix" in tiny_run.stdout


def test_json_has_documented_keys_with_numbers(tiny_run: Run) -> None:
    data = _data(tiny_run)
    assert set(data) == TOP_KEYS
    assert data["size_bytes"] == SIZE
    assert data["runs"] == 1
    assert [s["name"] for s in data["scenarios"]] == SCENARIOS
    for scenario in data["scenarios"]:
        assert set(scenario) == SCENARIO_KEYS, scenario["name"]
        for key in NUMBERS:
            assert isinstance(scenario[key], float), (scenario["name"], key)
            assert scenario[key] > 0, (scenario["name"], key)
        for key in ("a_seconds", "b_seconds"):
            assert len(scenario[key]) == 1
            assert all(isinstance(v, float) and v > 0 for v in scenario[key])
        assert isinstance(scenario["target"], float)
        assert isinstance(scenario["meets_target"], bool)
    assert set(data["throughput"]) == {"fsync", "nofsync"}
    for rates in data["throughput"].values():
        for key in ("a_median_bps", "b_median_bps", "ratio_median"):
            assert isinstance(rates[key], float)
            assert rates[key] > 0
    parts = data["resume"]["breakdown"]
    assert all(isinstance(parts[key], float) and parts[key] > 0 for key in MEASURED), parts
    assert isinstance(parts["resume_other"], float)  # by difference: may dip below zero
    assert isinstance(parts["full_other"], float)


def test_resume_starts_from_about_half(tiny_run: Run) -> None:
    resume = _data(tiny_run)["resume"]
    assert resume["interrupt_at"] == SIZE // 2
    assert len(resume["resumed_from"]) == 1
    for done, resumed in zip(resume["bytes_done"], resume["resumed_from"], strict=True):
        assert resumed == done  # the whole checkpointed prefix was re-verified and kept
        assert 0.35 * SIZE <= resumed <= 0.5 * SIZE
    assert 0.35 <= resume["resumed_from_fraction"] <= 0.5


def test_temp_dir_is_removed_and_user_state_untouched(tiny_run: Run) -> None:
    assert tiny_run.code == 0, tiny_run.stderr
    assert list(tiny_run.work.iterdir()) == []
    assert not tiny_run.user_state.exists()


def test_missing_cmp_exits_2_and_names_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    openspec = Path(sys.executable).parent / "openspec"
    env = {**os.environ, "PATH": str(bin_dir)}
    done = _bench("--openspec", str(openspec), "--dir", str(tmp_path), env=env)
    assert done.returncode == 2
    assert "cmp" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]


def test_wrong_resumed_file_exits_1_and_cleans_up(tmp_path: Path) -> None:
    """A resume that leaves one wrong byte is caught, however fast it was."""
    fake = tmp_path / "fake-openspec"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, subprocess, sys\n"
        "args = sys.argv[1:]\n"
        "real = [sys.executable, '-m', 'openspec_cli', *args]\n"
        "done = subprocess.run(real, capture_output=True)\n"
        "sys.stdout.buffer.write(done.stdout)\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "if done.returncode == 0 and args[:2] == ['resume', '--json']:\n"
        "    with open(json.loads(done.stdout)['files'][0]['dest'], 'r+b') as out:\n"
        "        out.seek(-1, 2)\n"
        "        last = out.read(1)[0]\n"
        "        out.seek(-1, 2)\n"
        "        out.write(bytes([last ^ 1]))\n"
        "sys.exit(done.returncode)\n"
    )
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    done = _bench(
        "--openspec", str(fake), "--size", "2M", "--runs", "1", "--warmup", "0",
        "--dir", str(work),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "differs from its source" in done.stderr
    assert list(work.iterdir()) == []


def test_interrupt_kills_children_and_cleans_up(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--size", "16M", "--runs", "200", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(work.glob("*/state")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the state dir appears with the first checkpoint: copies running
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "interrupted" in stderr
    assert list(work.iterdir()) == []
