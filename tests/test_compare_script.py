"""scripts/compare.py run for real on a tiny file: exit codes, table, JSON and clean-up.

Timings are never asserted: on a shared machine they are noise at this size. What is checked
is that the benchmark runs end to end and always leaves its temporary directory behind it.
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

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
PAIRS = ["copy_fsync", "copy_nofsync", "verify", "cat", "startup", "verify_empty"]
PAIR_NUMBERS = ["a_median", "b_median", "a_min", "b_min", "a_max", "b_max"]
PAIR_NUMBERS += ["ratio_median", "ratio_min"]
TOP_KEYS = {"schema", "size_bytes", "runs", "warmup", "openspec", "python", "rss_tool"}
TOP_KEYS |= {"rss_target_mib", "load_before", "load_after", "pairs"}
PAIR_KEYS = {"name", "a", "b", "a_seconds", "b_seconds", "target", "meets_target"}
PAIR_KEYS |= {"openspec_peak_rss_mib", "b_peak_rss_mib", *PAIR_NUMBERS}
HAS_GNU_TIME = os.access("/usr/bin/time", os.X_OK)

MISSING = [tool for tool in ("cp", "xxh128sum", "pv") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"compare.py needs {', '.join(MISSING)} on PATH"
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    work: Path
    json_path: Path


def _compare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
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
    base = tmp_path_factory.mktemp("compare")
    work = base / "work"
    work.mkdir()
    json_path = base / "results.json"
    done = _compare(
        "--size", "4M", "--runs", "1", "--warmup", "0", "--dir", str(work),
        "--json", str(json_path),
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, work, json_path)


def test_exits_zero_and_prints_every_pair(tiny_run: Run) -> None:
    assert tiny_run.code == 0, tiny_run.stderr
    rows = {line.split()[0] for line in tiny_run.stdout.splitlines() if line.strip()}
    assert set(PAIRS) <= rows
    assert "A/B median" in tiny_run.stdout
    assert "openspec RSS MiB" in tiny_run.stdout


def test_json_has_documented_keys_with_numbers(tiny_run: Run) -> None:
    assert tiny_run.code == 0, tiny_run.stderr
    data: dict[str, Any] = json.loads(tiny_run.json_path.read_text())
    assert set(data) == TOP_KEYS
    assert data["size_bytes"] == 4 * 1024 * 1024
    assert data["runs"] == 1
    assert [p["name"] for p in data["pairs"]] == PAIRS
    for pair in data["pairs"]:
        assert set(pair) == PAIR_KEYS, pair["name"]
        for key in PAIR_NUMBERS:
            assert isinstance(pair[key], float), (pair["name"], key)
            assert pair[key] > 0, (pair["name"], key)
        for key in ("a_seconds", "b_seconds"):
            assert len(pair[key]) == 1
            assert all(isinstance(v, float) and v > 0 for v in pair[key])
        if pair["name"] == "verify_empty":
            assert pair["target"] is None
            assert pair["meets_target"] is None
        else:
            assert isinstance(pair["target"], float)
            assert isinstance(pair["meets_target"], bool)
        if HAS_GNU_TIME:
            assert isinstance(pair["openspec_peak_rss_mib"], float)
            assert pair["openspec_peak_rss_mib"] > 0


def test_temp_dir_is_removed(tiny_run: Run) -> None:
    assert tiny_run.code == 0, tiny_run.stderr
    assert list(tiny_run.work.iterdir()) == []


def test_missing_tool_exits_2_and_names_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cp", "xxh128sum", "cat"):  # everything but pv
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    openspec = Path(sys.executable).parent / "openspec"
    env = {**os.environ, "PATH": str(bin_dir)}
    done = _compare("--openspec", str(openspec), "--dir", str(tmp_path), env=env)
    assert done.returncode == 2
    assert "pv" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_wrong_digest_exits_1_and_cleans_up(tmp_path: Path) -> None:
    fake = tmp_path / "fake-openspec"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        "if args[0] == 'copy':\n"
        "    shutil.copyfile(args[-2], args[-1])\n"
        "elif args[0] == 'verify':\n"
        "    print('0' * 32 + '  ' + args[-1])\n"
        "elif args[0] == 'cat':\n"
        "    shutil.copyfileobj(open(args[1], 'rb'), sys.stdout.buffer)\n"
    )
    fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    done = _compare(
        "--openspec", str(fake), "--size", "64K", "--runs", "1", "--warmup", "0",
        "--dir", str(work),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "digest mismatch" in done.stderr
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
        while not any(work.glob("*/src.bin")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the 200 copy runs
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "interrupted" in stderr
    assert list(work.iterdir()) == []
