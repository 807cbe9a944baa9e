"""The man page, the shell completions and README.md stay in step with the live command line.

Generated files must equal what ``scripts/gen_docs.py`` produces now; rendering and completion are
checked with the real tools (groff, bash, zsh, fish), skipped only when a tool is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from openspec_cli import checkpoint as ckpt
from openspec_cli.errors import ExitCode
from openspec_cli.hashing import ALGORITHMS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_docs  # noqa: E402

REGENERATE = "run `python scripts/gen_docs.py` and commit the result"
MAN = ROOT / "man" / "openspec.1"
README = ROOT / "README.md"
BASH = ROOT / "completions" / "openspec.bash"
ZSH = ROOT / "completions" / "openspec.zsh"
FISH = ROOT / "completions" / "openspec.fish"


@pytest.fixture(scope="module")
def tree() -> gen_docs.Node:
    return gen_docs.live_tree()


@pytest.fixture(scope="module")
def generated(tree: gen_docs.Node) -> dict[str, str]:
    return gen_docs.generate(tree)


@pytest.fixture(scope="module")
def man_page() -> str:
    return MAN.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def readme() -> str:
    if not README.exists():
        pytest.fail(
            "README.md is missing; it must name every command (`openspec COMMAND`), every long "
            "option, and have an exit-status table with one row per ExitCode"
        )
    return README.read_text(encoding="utf-8")


def _commands(tree: gen_docs.Node) -> Iterator[gen_docs.Node]:
    return (node for node in tree.walk() if node is not tree)


def _long_options(node: gen_docs.Node) -> list[str]:
    return [flag for option in node.options for flag in option.longs]


def _word(text: str) -> str:
    """A regex for ``text`` as a whole token: ``--no`` must not match inside ``--no-clobber``."""
    return rf"(?<![\w-]){re.escape(text)}(?![\w-])"


def _in_roff(flag: str, source: str) -> bool:
    """Whether ``flag`` is in roff source, where it is written ``\\-\\-flag`` amid font escapes."""
    plain = re.sub(r"\\f[BIRP]", "", source)
    escaped = re.escape(flag.replace("-", "\\-"))
    return re.search(rf"(?<![\w-]){escaped}(?!\w|\\-)", plain) is not None


def _man_sections(man_page: str, macro: str) -> dict[str, str]:
    """``.SH``/``.SS`` heading (unescaped, unquoted) -> the roff source up to the next heading."""
    sections: dict[str, str] = {}
    parts = re.split(rf"^{re.escape(macro)} (.*)$", man_page, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[heading.strip('"').replace("\\-", "-")] = body
    return sections


def _run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=False, cwd=cwd, env=env
    )


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


# ---------------------------------------------------------------------------- (a) not stale


@pytest.mark.parametrize("path", sorted(gen_docs.RENDERERS))
def test_generated_file_is_current(path: str, generated: dict[str, str]) -> None:
    expected = generated[path]
    target = ROOT / path
    assert target.exists(), f"{path} is missing: {REGENERATE}"
    assert target.read_text(encoding="utf-8") == expected, f"{path} is stale: {REGENERATE}"


def test_every_exit_code_has_a_meaning() -> None:
    missing = [code.name for code in ExitCode if code not in gen_docs.EXIT_MEANINGS]
    assert not missing, f"add a line for {missing} to EXIT_MEANINGS in scripts/gen_docs.py"


@pytest.mark.parametrize(
    ("example", "complaint"),
    [("openspec copy --no-such a b", "--no-such"), ("openspec frobnicate x", "frobnicate")],
)
def test_examples_must_use_real_commands_and_options(
    tree: gen_docs.Node, monkeypatch: pytest.MonkeyPatch, example: str, complaint: str
) -> None:
    monkeypatch.setattr(gen_docs, "EXAMPLES", (("An example.", example),))
    with pytest.raises(gen_docs.DocsError, match=complaint):
        gen_docs.check_tables(tree)


def test_check_mode_names_the_stale_files(tmp_path: Path, generated: dict[str, str]) -> None:
    for path, content in generated.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content, encoding="utf-8")
    assert gen_docs.stale_files(tmp_path, generated) == []
    (tmp_path / "completions" / "openspec.zsh").write_text("# edited by hand\n", encoding="utf-8")
    (tmp_path / "man" / "openspec.1").unlink()
    stale = gen_docs.stale_files(tmp_path, generated)
    assert stale == ["man/openspec.1", "completions/openspec.zsh"]


# ---------------------------------------------------------------------------- (b) renders


def test_man_page_renders_without_warnings() -> None:
    groff = _require("groff")
    result = _run([groff, "-man", "-ww", "-z", str(MAN)])
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_roff_escaping() -> None:
    assert gen_docs.roff_line(gen_docs.roff_text(".hidden")) == "\\&.hidden"
    assert gen_docs.roff_line(gen_docs.roff_text("'quoted")) == "\\&'quoted"
    assert gen_docs.roff_text("a\\b") == "a\\eb"
    assert gen_docs.roff_text("use --no-fsync, -L or - for stdin; pv-like") == (
        "use \\-\\-no\\-fsync, \\-L or \\- for stdin; pv-like"
    )
    assert gen_docs.roff_text("caf\u00e9") == "caf\\[u00E9]"


# ---------------------------------------------------------------------------- (c) all documented


def test_man_page_documents_every_command_and_option(tree: gen_docs.Node, man_page: str) -> None:
    sections = _man_sections(man_page, ".SH")
    commands = _man_sections(sections["COMMANDS"], ".SS")
    missing = [
        f"global {flag}"
        for flag in _long_options(tree)
        if not _in_roff(flag, sections.get("OPTIONS", ""))
    ]
    for node in _commands(tree):
        name = " ".join(node.path[1:])
        if name not in commands:
            missing.append(f"command {name}")
            continue
        missing += [
            f"{name} {flag}" for flag in _long_options(node) if not _in_roff(flag, commands[name])
        ]
    assert not missing, f"not in man/openspec.1: {missing}; {REGENERATE}"


def test_readme_documents_every_command_and_option(tree: gen_docs.Node, readme: str) -> None:
    wanted = [f"openspec {' '.join(node.path[1:])}" for node in _commands(tree)]
    wanted += sorted({flag for node in tree.walk() for flag in _long_options(node)})
    missing = [text for text in wanted if not re.search(_word(text), readme)]
    assert not missing, f"README.md does not mention: {missing}"


def _bash_complete(
    script: Path, lines: list[list[str]], cwd: Path, env: dict[str, str] | None = None
) -> list[list[str]]:
    """COMPREPLY for each command line, the last word being the one completed."""
    bash = _require("bash")
    calls = [f"source {shlex.quote(str(script))}", "complete -p openspec >/dev/null || exit 3"]
    for words in lines:
        quoted = " ".join(shlex.quote(w) for w in words)
        calls += [
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=()",
            "_openspec; printf '%s\\n' \"${COMPREPLY[*]}\"",
        ]
    result = _run([bash, "--norc", "--noprofile", "-c", "\n".join(calls)], cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [sorted(line.split()) for line in result.stdout.splitlines()]


def test_bash_completion_offers_every_command_and_option(
    tree: gen_docs.Node, tmp_path: Path
) -> None:
    nodes = list(tree.walk())
    lines = [["openspec", *node.path[1:], "--"] for node in nodes] + [["openspec", ""]]
    *options, commands = _bash_complete(BASH, lines, tmp_path)
    missing = [c.path[-1] for c in tree.children if c.path[-1] not in commands]
    for node, offered in zip(nodes, options, strict=True):
        missing += [f"{node.name} {f}" for f in _long_options(node) if f not in offered]
    assert not missing, f"bash completion lacks {missing}; {REGENERATE}"


# ---------------------------------------------------------------------------- (d) exit codes


def test_man_page_lists_every_exit_code(man_page: str) -> None:
    section = _man_sections(man_page, ".SH")["EXIT STATUS"]
    missing = [
        f"{int(code)} ({code.name})"
        for code in ExitCode
        if not re.search(rf"^\.BR? {int(code)}(\s|$)", section, re.M)
    ]
    assert not missing, f"EXIT STATUS in man/openspec.1 lacks {missing}; {REGENERATE}"


def test_readme_lists_every_exit_code(readme: str) -> None:
    missing = [
        f"{int(code)} ({code.name})"
        for code in ExitCode
        if not re.search(rf"^\|\s*`?{int(code)}`?\s*\|", readme, re.M)
    ]
    assert not missing, (
        f"README.md needs an exit-status table row starting `| {{code}} |` for {missing}"
    )


# ---------------------------------------------------------------------------- (e) shells


def test_bash_completes_commands_options_values_and_files(tmp_path: Path) -> None:
    (tmp_path / "disk.img").touch()
    (tmp_path / "docs").mkdir()
    replies = _bash_complete(
        BASH,
        [
            ["openspec", "co"],
            ["openspec", "copy", "--ve"],
            ["openspec", "copy", "--algo", "sha2"],
            ["openspec", "copy", "--algo", "=", "xxh1"],
            ["openspec", "cat", "--hash", "--algo", ""],
            ["openspec", "copy", "--quiet", "d"],
            ["openspec", "--debug", "verify", "--sta"],
        ],
        tmp_path,
    )
    assert replies == [
        ["copy"],
        ["--verify"],
        sorted(a for a in ALGORITHMS if a.startswith("sha2")),
        sorted(a for a in ALGORITHMS if a.startswith("xxh1")),
        sorted(ALGORITHMS),
        ["disk.img", "docs"],
        ["--status"],
    ]


def test_bash_completes_modes_folders_and_transfer_ids(tmp_path: Path) -> None:
    """--progress has fixed values, --dir and --in want folders, and resume wants an id (from
    the real `openspec resume --json`), never a file name."""
    (tmp_path / "disk.img").touch()
    (tmp_path / "docs").mkdir()
    script = Path(sys.executable).parent / "openspec"
    if not script.exists():
        pytest.skip("no openspec console script beside this interpreter")
    state = tmp_path / "state"
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    src = tmp_path / "src"
    src.write_bytes(b"x" * 100)
    record = ckpt.Checkpoint(
        id="0badcafe", source=ckpt.Fingerprint.of(str(src), src.stat()),
        dest=str(tmp_path / "dst"), partial=ckpt.partial_path(str(tmp_path / "dst"), "0badcafe"),
        algo="xxh128", size=100,
    )  # fmt: skip
    (state / "transfers").mkdir(parents=True)
    (state / "transfers" / "0badcafe.json").write_text(json.dumps(record.to_json()))

    replies = _bash_complete(
        BASH,
        [
            ["openspec", "cat", "--progress", "j"],
            ["openspec", "bench", "--dir", "d"],
            ["openspec", "resume", "--prune", "--in", ""],
            ["openspec", "resume", ""],
            ["openspec", "resume", "--discard", "0b"],
        ],
        tmp_path,
        env,
    )
    assert replies == [["json"], ["docs"], ["docs", "state"], ["0badcafe"], ["0badcafe"]]


def test_bash_completion_follows_any_tree(tmp_path: Path) -> None:
    """Nested groups and global options that take a value: nothing is specific to our commands."""
    demo = typer.Typer()
    remote = typer.Typer()
    demo.add_typer(remote, name="remote")

    @demo.callback()
    def main(profile: str = typer.Option("", "--profile", "-p")) -> None:
        """Demo."""

    @remote.command()
    def add(name: str, fetch: bool = typer.Option(False, "--fetch")) -> None:
        """Add a remote."""

    @remote.command("rm")
    def remove(name: str) -> None:
        """Remove a remote."""

    script = tmp_path / "demo.bash"
    script.write_text(gen_docs.render_bash(gen_docs.build_tree(get_command(demo))))
    replies = _bash_complete(
        script,
        [
            ["openspec", "--profile", "remote", "re"],  # "remote" is the profile's value here
            ["openspec", "-p", "x", "remote", ""],
            ["openspec", "--profile", "=", "x", "remote", "add", "--fe"],
        ],
        tmp_path,
    )
    assert replies == [["remote"], ["add", "rm"], ["--fetch"]]


def test_zsh_completion_loads() -> None:
    zsh = _require("zsh")
    assert _run([zsh, "-n", str(ZSH)]).returncode == 0
    load = "autoload -Uz compinit && compinit -u -D && source {} && print -r -- $_comps[openspec]"
    result = _run([zsh, "-f", "-c", load.format(shlex.quote(str(ZSH)))])
    assert (result.stdout.strip(), result.stderr) == ("_openspec", "")


def test_fish_completion_loads_and_completes() -> None:
    fish = _require("fish")
    syntax = _run([fish, "-n", str(FISH)])
    assert syntax.returncode == 0, syntax.stderr
    queries = "complete -C 'openspec co'; complete -C 'openspec copy --algo=sha2'"
    script = f"source {shlex.quote(str(FISH))}; {queries}"
    result = _run([fish, "--no-config", "-c", script])
    assert result.stderr == ""
    offered = [line.split("\t")[0] for line in result.stdout.splitlines()]
    wanted = ["copy", *sorted(f"--algo={a}" for a in ALGORITHMS if a.startswith("sha2"))]
    assert sorted(offered) == sorted(wanted)
