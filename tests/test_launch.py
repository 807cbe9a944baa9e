"""The light parser in launch.py agrees with the Typer app, or leaves the command line to it.

For any command line, ``launch.parse`` must either decline (None) or produce exactly the keyword
arguments and ``--debug`` that the Typer app hands to ``openspec_cli.commands``. Hypothesis builds
the command lines from every spelling the app knows plus words typer treats specially.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from openspec_cli import argspec, commands, launch
from openspec_cli.cli import app

#: Words with a special meaning to click or to launch.py's own rules.
SPECIAL_WORDS = [
    "-",
    "--",
    "-h",
    "--help",
    "--debug",
    "--version",
    "-rn",
    "-asha256",
    "--verify=1",
    "--algo=sha256",
    "--algo=",
    "--jobs=0",
    "--jobs=3",
    "--checkpoint-every= 7",
    "-x",
    "--nope",
    "=",
]
VALUES = ["f", "a b", "-", "sha256", "bogus", "0", "1", "12", "-3", "+2", "1_0", " 4", "2x", ""]
COMMANDS = [*argspec.OPTIONS, "resume", "bench", "nope"]


class Recorder:
    """Stands in for one ``commands`` function and keeps what it was called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **values: Any) -> None:
        self.calls.append(values)


def typer_parse(argv: list[str]) -> tuple[Any, ...] | None:
    """(command, arguments, debug) as the Typer app passes them, or None if it refused."""
    recorders = {name: Recorder() for name in argspec.OPTIONS}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, recorder in recorders.items():
            monkeypatch.setattr(commands, name, recorder)
        monkeypatch.setattr(commands.settings, "debug", False)
        CliRunner().invoke(app, argv)
        called = [(name, r.calls[0]) for name, r in recorders.items() if r.calls]
        return (*called[0], commands.settings.debug) if called else None


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """Mostly well-formed: an option is followed by a value when it takes one, so the search
    spends its time where the two parsers could disagree, not on lines both refuse at once."""
    name = draw(st.sampled_from(COMMANDS))
    options = argspec.OPTIONS.get(name, {})
    spellings = sorted(options) or ["-q"]
    words: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.integers(0, 9))
        if choice < 5:
            flag = draw(st.sampled_from(spellings))
            takes_value = flag in options and options[flag][1] != "flag"
            form = draw(st.integers(0, 9))
            if flag.startswith("--") and form < 2:  # --flag=value, also (wrongly) for flags
                words.append(f"{flag}={draw(st.sampled_from(VALUES))}")
            elif takes_value and form < 9:
                words += [flag, draw(st.sampled_from(VALUES))]
            else:
                words.append(flag)
        elif choice < 8:
            words.append(draw(st.sampled_from(VALUES)))
        else:
            words.append(draw(st.sampled_from(SPECIAL_WORDS)))
    head = draw(st.lists(st.sampled_from(["--debug", "-V", "-q"]), max_size=2))
    return [*head, name, *words]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
# The boundaries where the parsers could part, tried on every run rather than when drawn:
@example(argv=["copy", "a", "b", "--jobs=0"])
@example(argv=["copy", "--checkpoint-every", "0", "a", "b"])
@example(argv=["copy", "-j", "2x", "a", "b"])
@example(argv=["copy", "a", "b", "-j"])
@example(argv=["copy", "--verify=1", "a", "b"])
@example(argv=["copy"])
@example(argv=["cat", "--algo", "bogus", "f"])
@example(argv=["verify", "--algo=", "f"])
def test_launch_parses_as_typer_does_or_declines(argv: list[str]) -> None:
    fast = launch.parse(argv)
    if fast is None:
        return
    assert typer_parse(argv) == fast, argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["verify", "f"], {"files": ["f"], "algo": None, "check": False}),
        (["verify", "-c", "SUMS", "--quiet"], {"files": ["SUMS"], "check": True, "quiet": True}),
        (["verify", "--algo", "sha256", "a", "b"], {"files": ["a", "b"], "algo": "sha256"}),
        (["verify"], {"files": None}),
        (["cat", "f", "-L", "20M", "--hash"], {"files": ["f"], "limit_rate": "20M", "hash_": True}),
        (["cat", "-"], {"files": ["-"]}),
        (["cat", "--", "-x"], {"files": ["-x"]}),
        (
            ["copy", "-r", "--no-fsync", "-j", "4", "src", "dst/"],
            {"paths": ["src", "dst/"], "recursive": True, "no_fsync": True, "jobs": 4},
        ),
        (["copy", "--sums=S", "a", "b"], {"paths": ["a", "b"], "sums": "S"}),
    ],
)
def test_common_command_lines_take_the_fast_path(argv: list[str], expected: dict[str, Any]) -> None:
    fast = launch.parse(argv)
    assert fast is not None
    name, values, debug = fast
    assert name == argv[0]
    assert not debug
    assert {key: values[key] for key in expected} == expected
    assert typer_parse(argv) == fast


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["verify", "-h"],
        ["copy", "onlyone", "--jobs", "0"],
        ["copy"],
        ["cat", "-aBLAKE"],
        ["verify", "--algo", "bogus", "f"],
        ["resume", "--list"],
        ["bench", "--quick"],
        ["copy", "-rn", "a", "b"],
    ],
)
def test_everything_else_goes_to_typer(argv: list[str]) -> None:
    assert launch.parse(argv) is None


def run_module(args: list[str], cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *extra, "-m", "openspec_cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )


#: What the hot paths must not load: typer and click (~100 ms), rich and psutil, and typing and
#: dataclasses (~8 and ~20 ms; dataclasses imports inspect). Each was most of a small run once.
HEAVY = {"typer", "click", "rich", "psutil", "typing", "dataclasses", "inspect"}


@pytest.mark.parametrize("args", [["verify", "f"], ["cat", "f"], ["--version"]])
def test_fast_path_imports_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "f").write_bytes(b"data")
    done = run_module(args, tmp_path, "-X", "importtime")
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "openspec_cli.launch" in imported
    assert not HEAVY & {m.split(".")[0] for m in imported}


def test_declined_command_lines_still_get_typers_help_and_errors(tmp_path: Path) -> None:
    helped = run_module(["verify", "-h"], tmp_path)
    assert helped.returncode == 0
    assert "Usage: openspec verify" in helped.stdout
    refused = run_module(["copy", "--jobs", "0", "a", "b"], tmp_path)
    assert refused.returncode == 2
    assert "--jobs" in refused.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args", [["copy", "--limit-rate", "2Q"], ["copy", "-rn", "-L", "2Q"]])
def test_a_bad_size_is_one_line_on_either_path(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "a").write_bytes(b"data")
    done = run_module([*args, "a", "b"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "openspec: invalid value for --limit-rate: '2Q' is not a size (examples: 512K, 20M, 1.5G)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-q", "copy", "a", "b"],
         "-q is an option of 'copy': put it after the command (see: openspec copy --help)"),
        (["--json", "copy", "a", "b"],
         "--json is an option of 'copy': put it after the command (see: openspec copy --help)"),
        (["--bogus", "copy", "a", "b"], "no such option: --bogus (see: openspec --help)"),
        (["-j", "2", "copy", "a", "b"],
         "-j is an option of 'copy': put it after the command (see: openspec copy --help)"),
        (["copy", "--jobs", "x", "a", "b"],
         "invalid value for '--jobs' / '-j': 'x' is not a valid int range "
         "(see: openspec copy --help)"),
    ],
)  # fmt: skip
def test_a_usage_mistake_points_to_the_help_that_covers_it(
    tmp_path: Path, args: list[str], line: str
) -> None:
    (tmp_path / "a").write_bytes(b"data")
    done = run_module(args, tmp_path)
    assert (done.returncode, done.stderr.splitlines()) == (2, [f"openspec: {line}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


class _InterruptingFinder:
    """Raises KeyboardInterrupt when ``module`` is imported: a Ctrl-C at start-up."""

    def __init__(self, module: str) -> None:
        self.module = module

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == self.module:
            raise KeyboardInterrupt
        return None


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("openspec_cli.commands", ["verify", "f"]),  # the fast path
        ("openspec_cli.api", ["copy", "a", "b"]),  # a command's own imports
        ("openspec_cli.cli", ["resume"]),  # the Typer app
    ],
)
def test_ctrl_c_while_starting_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    argv: list[str],
) -> None:
    import openspec_cli
    from openspec_cli import commands

    monkeypatch.setattr(commands.settings, "owns_process", False)  # launch sets it: put back
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delattr(openspec_cli, module.rpartition(".")[2], raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptingFinder(module), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["openspec", *argv])
    with pytest.raises(SystemExit) as exited:
        launch.main()
    assert exited.value.code == 130
    assert capsys.readouterr().err == "openspec: interrupted\n"


def test_a_signal_escaping_a_commands_handler_is_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second SIGTERM landing while the command reports the first raises outside its handler
    (seen in CI, 1 ms apart): a traceback and exit 1 before."""
    from openspec_cli import commands
    from openspec_cli.errors import ExitCode, Interrupted

    def terminated_while_reporting(**_: object) -> None:
        raise Interrupted("terminated", ExitCode.TERMINATED)

    monkeypatch.setattr(commands.settings, "owns_process", False)  # launch sets it: put back
    monkeypatch.setattr(commands, "verify", terminated_while_reporting)
    monkeypatch.setattr(sys, "argv", ["openspec", "verify", "f"])
    with pytest.raises(SystemExit) as exited:
        launch.main()
    assert exited.value.code == 143
    assert capsys.readouterr().err == "openspec: terminated\n"


def test_a_copy_loads_neither_platformdirs_nor_pathlib(tmp_path: Path) -> None:
    """Together they were a third of a small copy's start-up (see checkpoint.state_dir)."""
    (tmp_path / "f").write_bytes(b"data")
    env = {k: v for k, v in os.environ.items() if k != "OPENSPEC_STATE_DIR"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "openspec_cli", "copy", "f", "g"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "g").read_bytes() == b"data"
    names = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    # An editable install's import hook may load pathlib before openspec starts.
    ours = names[names.index("openspec_cli.launch") :]
    assert not {"platformdirs", "pathlib"} & {m.split(".")[0] for m in ours}


@pytest.mark.parametrize(("closed", "reason"), [(True, "Bad file descriptor"),
                                                (False, "No space left on device")])  # fmt: skip
def test_version_on_an_unwritable_stdout_is_one_line(closed: bool, reason: str) -> None:
    """`openspec --version >&-` ended in a traceback: the fast path runs before any handler."""
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "openspec_cli", "--version"],
            stdout=None if closed else full, stderr=subprocess.PIPE, text=True, check=False,
            preexec_fn=(lambda: os.close(1)) if closed else None,
        )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr == f"openspec: error writing standard output: {reason}\n"


def test_a_usage_mistake_keeps_the_json_promises(tmp_path: Path) -> None:
    """copy --json prints its refusal object, and --progress json keeps stderr NDJSON, also for
    mistakes the argument parser finds."""
    (tmp_path / "a").write_bytes(b"data")
    refused = run_module(["copy", "--json", "--jobs", "0", "a", "b"], tmp_path)
    evented = run_module(["copy", "--progress", "json", "--bogus", "a", "b"], tmp_path)

    assert (refused.returncode, evented.returncode) == (2, 2)
    (error,) = json.loads(refused.stdout)["errors"]
    assert error.startswith("invalid value for '--jobs' / '-j': ")
    (event,) = [json.loads(line) for line in evented.stderr.splitlines()]
    assert event["event"] == "message"
    assert event["message"].startswith("no such option: --bogus")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
