"""The Typer app: every command's options and help, declared once.

Command bodies live in :mod:`openspec_cli.commands`; each command here hands its parsed arguments
over unchanged, the same keyword arguments :mod:`openspec_cli.launch` passes when it parses a
common command line without typer. The man page and completions are generated from this app.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from openspec_cli import __version__, commands
from openspec_cli.algorithms import ALGORITHMS, DEFAULT_ALGO
from openspec_cli.errors import ExitCode, UsageError

app = typer.Typer(
    name="openspec",
    help="Copy, stream and hash very large files: safely, resumably, as fast as cp.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _check_algo(algo: str) -> str:
    if algo not in ALGORITHMS:
        raise typer.BadParameter(f"'{algo}' is not one of {', '.join(ALGORITHMS)}")
    return algo


def _check_optional_algo(algo: str | None) -> str | None:
    return None if algo is None else _check_algo(algo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openspec {__version__}")
        raise typer.Exit()


RateOpt = Annotated[
    str | None,
    typer.Option(
        "--limit-rate",
        "-L",
        metavar="RATE",
        help="Pace to RATE bytes/s in all (e.g. 20M; binary units like pv -L); parallel files "
        "share it equally.",
    ),
]
#: For the commands that move one file at a time.
RateOneOpt = Annotated[
    str | None,
    typer.Option(
        "--limit-rate",
        "-L",
        metavar="RATE",
        help="Pace to RATE bytes/s (e.g. 20M; binary units like pv -L).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")]
ProgressOpt = Annotated[
    str,
    typer.Option(
        "--progress",
        metavar="MODE",
        help="auto (panel on a terminal), tty, plain (lines for logs), json (NDJSON "
        "events on stderr) or none.",
    ),
]
AlgoOpt = Annotated[
    str,
    typer.Option(
        "--algo",
        "-a",
        metavar="ALGO",
        callback=_check_algo,
        help=f"Digest algorithm: {', '.join(ALGORITHMS)}.",
    ),
]


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Copy, stream and hash very large files: safely, resumably, as fast as cp."""
    commands.settings.debug = debug


# ---------------------------------------------------------------------------- copy


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


@app.command()
def copy(
    paths: Annotated[
        list[str], typer.Argument(metavar="SRC... DEST", help="Sources, then target.")
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", "-R", help="Copy directories and their contents.")
    ] = False,
    no_clobber: Annotated[
        bool, typer.Option("--no-clobber", "-n", help="Skip files that already exist.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-read the written data and compare.")
    ] = False,
    algo: AlgoOpt = DEFAULT_ALGO,
    sums: Annotated[
        str | None,
        typer.Option("--sums", metavar="FILE", help="Append sum lines for copied files."),
    ] = None,
    no_fsync: Annotated[
        bool, typer.Option("--no-fsync", help="Skip fsync (faster, not crash-safe).")
    ] = False,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Start over instead of resuming an interrupted copy."),
    ] = False,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every",
            metavar="N",
            min=1,
            help="Record a resumable checkpoint every N chunks.",
        ),
    ] = 5,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", metavar="N", min=1, help="Copy up to N files at once.")
    ] = 1,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Ceiling for the engine's buffers, at least 2M (default: what keeps the "
            "process under 50M, less if memory is scarce).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Drop copied data from the page cache as it goes.")
    ] = False,
    limit_rate: RateOpt = None,
    as_json: JsonOpt = False,
    progress_mode: ProgressOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Copy files like cp, hashing on the fly; the final name appears only when complete."""
    commands.copy(**locals())  # the parsed arguments, unchanged


# ---------------------------------------------------------------------------- resume


@app.command()
def resume(
    transfer_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="Transfer to resume; none: list them.")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", "-l", help="List interrupted transfers.")
    ] = False,
    all_: Annotated[bool, typer.Option("--all", help="Resume every resumable transfer.")] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Copy from the start, dropping the partial file.")
    ] = False,
    discard: Annotated[
        str | None,
        typer.Option("--discard", metavar="ID", help="Remove a transfer's checkpoint and partial."),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Remove orphaned checkpoints, partial files and tree-copy journals."
        ),
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="With --prune: also remove transfers and tree copies idle this long (e.g. 7d).",
        ),
    ] = None,
    prune_dirs: Annotated[
        list[str] | None,
        typer.Option(
            "--in",
            metavar="DIR",
            help="With --prune: also look for orphaned partial files in DIR and below.",
        ),
    ] = None,
    limit_rate: RateOneOpt = None,
    progress_mode: ProgressOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List interrupted transfers, or resume one from its last verified checkpoint."""
    commands.resume(**locals())  # the parsed arguments, unchanged


# ---------------------------------------------------------------------------- cat


@app.command()
def cat(
    files: Annotated[
        list[str] | None, typer.Argument(metavar="[FILE]...", help="Files to stream; - is stdin.")
    ] = None,
    hash_: Annotated[
        bool,
        typer.Option("--hash", help="Print the digest of everything written, on stderr."),
    ] = False,
    algo: AlgoOpt = DEFAULT_ALGO,
    limit_rate: RateOneOpt = None,
    progress_mode: ProgressOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Stream files to stdout for pipelines, with a pv-like panel on a terminal's stderr."""
    commands.cat(**locals())  # the parsed arguments, unchanged


# ---------------------------------------------------------------------------- verify


@app.command()
def verify(
    files: Annotated[
        list[str] | None,
        typer.Argument(metavar="[FILE]...", help="Files to hash, or sum files with -c."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", "-c", help="Read sums from FILEs and check them.")
    ] = False,
    algo: Annotated[
        str | None,
        typer.Option(
            "--algo",
            "-a",
            metavar="ALGO",
            callback=_check_optional_algo,
            help="Digest algorithm: "
            f"{', '.join(ALGORITHMS)} (default xxh128; "
            "with -c inferred per line).",
        ),
    ] = None,
    tag: Annotated[bool, typer.Option("--tag", help="Write BSD-style lines.")] = False,
    against: Annotated[
        str | None,
        typer.Option("--against", metavar="OTHER", help="Compare FILE with OTHER byte for byte."),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", "-r", "-R", help="With --against: compare two trees."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="With -c: don't print OK lines.")] = False,
    status: Annotated[
        bool, typer.Option("--status", help="With -c: print nothing; exit code only.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="With -c: fail on malformed lines.")
    ] = False,
    ignore_missing: Annotated[
        bool, typer.Option("--ignore-missing", help="With -c: skip missing files.")
    ] = False,
    warn: Annotated[
        bool, typer.Option("--warn", "-w", help="With -c: warn about malformed lines.")
    ] = False,
    limit_rate: RateOneOpt = None,
    progress_mode: ProgressOpt = "auto",
) -> None:
    """Print digests as xxh128sum/sha256sum do, check sum files, or compare files and trees."""
    commands.verify(**locals())  # the parsed arguments, unchanged


# ---------------------------------------------------------------------------- bench


@app.command()
def bench(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="A short run (well under 30 s): 1-100 MiB, fewer repeats."),
    ] = False,
    sizes: Annotated[
        str | None,
        typer.Option("--sizes", metavar="LIST", help="File sizes (default 1M,10M,100M,1G)."),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option("--concurrency", metavar="LIST", help="Streams at once (default 1,4,16)."),
    ] = None,
    directory: Annotated[
        str | None,
        typer.Option("--dir", metavar="DIR", help="Put the test files in DIR (default: temp dir)."),
    ] = None,
    json_file: Annotated[
        str | None,
        typer.Option("--json", metavar="FILE", help="Write results as JSON to FILE (- stdout)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", metavar="FILE", help="Compare with an earlier --json result."),
    ] = None,
    max_regression: Annotated[
        float,
        typer.Option("--max-regression", metavar="PCT", min=0, help="Allowed regression, percent."),
    ] = 10.0,
) -> None:
    """Measure copy speed, latency, memory and recovery here; PASS/FAIL vs the design targets."""
    commands.bench(**locals())  # the parsed arguments, unchanged


#: click's UsageError (bad option values, unknown options, missing arguments), reached through
#: a public name: typer 0.20 depends on click, 0.28 keeps its own copy of it.
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]


def main() -> None:
    """Run the Typer app on ``sys.argv`` (what :func:`openspec_cli.launch.main` falls back to).

    Usage mistakes become one line, like every other expected failure, instead of click's
    usage text and a boxed error."""
    if not sys.argv[1:]:
        app(prog_name=commands.PROG)  # 'openspec' alone: the help, exit 2
    try:
        code = app(prog_name=commands.PROG, standalone_mode=False)
    except _USAGE_ERROR as err:
        _refuse_usage(err, sys.argv[1:])
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _refuse_usage(err: Exception, argv: list[str]) -> NoReturn:
    """One line (an NDJSON event under --progress json) and exit 2; with copy's or resume's
    --json, also the refusal object those print for every other refusal."""
    names = {c.name or getattr(c.callback, "__name__", None) for c in app.registered_commands}
    command = next((a for a in argv if a in names), None)
    line = _usage_line(err, command)
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    commands.settings.json_stderr = "--progress=json" in argv or ("--progress", "json") in pairs
    if command in ("copy", "resume") and "--json" in argv:
        commands.json_refusal(command, UsageError(line))
    commands.say(line)
    raise SystemExit(ExitCode.USAGE) from None


def _usage_line(err: Exception, command: str | None) -> str:
    """click's message, and the help that covers it: that of the command whose arguments were
    wrong; for a command's option given before the command, where it goes instead."""
    message = str(err.format_message()).rstrip(".")  # type: ignore[attr-defined]
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        where = str(ctx.command_path)
    else:  # some errors carry no context: the command named on the line, if one is
        where = f"{commands.PROG} {command}" if command else commands.PROG
    option = getattr(err, "option_name", None)
    if ctx is not None and ctx.parent is None and option and command:
        sub = ctx.command.get_command(ctx, command)
        if sub is not None and any(option in p.opts for p in sub.params):
            return (
                f"{option} is an option of '{command}': put it after the command "
                f"(see: {where} {command} --help)"
            )
    return f"{message[:1].lower()}{message[1:]} (see: {where} --help)"
