"""Start-up stays light: `--version` and `cat` in a pipeline load no rich, psutil or xxhash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openspec_cli import algorithms, hashing

PROBE = """
import sys
from openspec_cli.cli import app
try:
    app({args!r})
except SystemExit:
    pass
heavy = {{"rich", "psutil", "xxhash", "pydantic"}}
print(sorted({{m.split(".")[0] for m in sys.modules}} & heavy), file=sys.stderr)
"""


def loaded_after(args: list[str], cwd: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    last = proc.stderr.strip().splitlines()[-1]
    return [name.strip("' ") for name in last.strip("[]").split(",") if name.strip()]


def test_version_loads_nothing_heavy(tmp_path: Path) -> None:
    assert loaded_after(["--version"], tmp_path) == []


@pytest.mark.parametrize("args", [["cat", "f"], ["--help"]])
def test_pipeline_paths_skip_rich_and_psutil(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "f").write_bytes(b"data")
    loaded = loaded_after(args, tmp_path)
    assert "psutil" not in loaded
    if args[0] == "cat":
        assert "rich" not in loaded


def test_a_copy_watched_by_the_monitor_loads_no_psutil(tmp_path: Path) -> None:
    """The pressure monitor reads /proc on Linux: psutil's import held the GIL mid-copy."""
    (tmp_path / "f").write_bytes(bytes(2 << 20))
    args = ["copy", "-q", "--no-fsync", "--limit-rate", "4M", "f", "g"]  # ~0.5 s: readings
    assert "psutil" not in loaded_after(args, tmp_path)
    assert (tmp_path / "g").read_bytes() == bytes(2 << 20)


def test_light_algorithm_list_matches_the_registry() -> None:
    assert algorithms.ALGORITHMS == hashing.ALGORITHMS
    assert algorithms.DEFAULT_ALGO == hashing.DEFAULT_ALGO
