"""The command line: thin commands over the engine, and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from openspec_cli.engine import Observer, RateLimiter

from openspec_cli import __version__, units
from openspec_cli.algorithms import ALGORITHMS, DEFAULT_ALGO
from openspec_cli.errors import (
    BrokenPipe,
    ExitCode,
    Interrupted,
    OpenspecError,
    UsageError,
)

app = typer.Typer(
    name="openspec",
    help="Copy, stream and hash very large files: safely, resumably, as fast as cp.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

JSON_SCHEMA_VERSION = 1
PROG = "openspec"


class Settings:
    """Global flags that every command honours."""

    debug: bool = False


settings = Settings()

T = TypeVar("T")

# ---------------------------------------------------------------------------- errors and exit


def _say(message: str) -> None:
    """One line on stderr, prefixed like coreutils do."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("terminated", ExitCode.TERMINATED)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Map every expected failure to one line on stderr and its exit code (the one place)."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except BrokenPipe:
        _silence_stdout()
        raise typer.Exit(ExitCode.BROKEN_PIPE) from None
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(ExitCode.BROKEN_PIPE) from None
    except OpenspecError as err:
        if settings.debug:
            traceback.print_exc()
        _say(err.message)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except OSError as err:  # unexpected I/O failure: still one line, with the path if known
        if settings.debug:
            traceback.print_exc()
        where = f"'{err.filename}': " if err.filename else ""
        _say(f"{where}{err.strerror or err}")
        raise typer.Exit(ExitCode.IO_ERROR) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- option parsing


def parse_size(text: str) -> int:
    """``20M`` -> 20971520 (see :mod:`openspec_cli.units`), as a typer parameter error."""
    try:
        return units.parse_size(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _limiter(rate: str | None) -> RateLimiter | None:
    from openspec_cli.engine import RateLimiter

    return RateLimiter(parse_size(rate)) if rate else None


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


PROGRESS_MODES = ("auto", "tty", "plain", "json", "none")


@contextlib.contextmanager
def progress(
    title: str, mode: str, quiet: bool = False, as_json: bool = False
) -> Iterator[Observer]:
    """Where progress goes: the live panel on a terminal (``auto``), plain lines or NDJSON
    events for logs, or nowhere (``-q``). ``auto`` writes no escape codes to a non-terminal."""
    if mode not in PROGRESS_MODES:
        raise UsageError(f"--progress must be one of {', '.join(PROGRESS_MODES)}, not '{mode}'")
    from openspec_cli.engine import NullObserver

    if quiet or mode == "none" or (mode == "auto" and as_json):
        yield NullObserver()
        return
    from openspec_cli.ui import Dashboard, LivePanel, ProgressLog

    if mode == "tty" or (mode == "auto" and sys.stderr.isatty()):
        board = Dashboard(title)
        with LivePanel(board, sys.stderr):
            yield board
        return
    interval = {"plain": 2.0, "json": 1.0}.get(mode)
    with ProgressLog(title, sys.stderr, "json" if mode == "json" else "plain", interval) as log:
        yield log


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


RateOpt = Annotated[
    str | None,
    typer.Option(
        "--limit-rate",
        "-L",
        metavar="RATE",
        help="Pace to RATE bytes/s (e.g. 20M); binary units like pv -L.",
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
    settings.debug = debug


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
            help="Memory ceiling for the operation (default 50M, less if scarce).",
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
    from openspec_cli import api

    with handled():
        if len(paths) < 2:
            raise UsageError(f"missing destination file operand after '{paths[0]}'")
        rate = parse_size(limit_rate) if limit_rate else None
        memory = parse_size(max_memory) if max_memory else None
        with progress("copy", progress_mode, quiet, as_json) as observer:
            report = api.copy(
                paths[:-1],
                paths[-1],
                recursive=recursive,
                no_clobber=no_clobber,
                verify=verify,
                algo=algo,
                fsync=not no_fsync,
                sums=sums,
                limit_rate=rate,
                checkpoint_every=checkpoint_every,
                restart=restart,
                jobs=jobs,
                max_memory=memory,
                no_cache=no_cache,
                observer=observer,
            )
        _report(report.files, "copy", quiet, as_json, report.engine, report.errors)
        if report.errors:
            for err in report.errors:
                _say(err.message)
            raise typer.Exit(max(int(err.exit_code) for err in report.errors))


def _report(
    results: list[Any],
    command: str,
    quiet: bool,
    as_json: bool,
    engine: dict[str, Any] | None = None,
    errors: list[OpenspecError] | None = None,
) -> None:
    if as_json:
        wall = float(engine["seconds"]) if engine is not None else None
        summary = _copy_summary(results, command, wall)
        if engine is not None:
            summary["engine"] = engine
        summary["errors"] = [err.message for err in errors or []]
        _emit_json(summary)
    elif not quiet and (results or not errors):
        _print_copy_summary(results, engine)


def _copy_summary(
    results: list[Any], command: str = "copy", wall: float | None = None
) -> dict[str, Any]:
    """The ``--json`` object; totals use wall time when streams ran side by side."""
    files = [
        {
            "id": r.transfer_id,
            "source": r.source,
            "dest": r.dest,
            "bytes": r.bytes,
            "algo": r.algo,
            "digest": r.digest,
            "seconds": round(r.seconds, 6),
            "throughput_bps": round(r.throughput_bps),
            "chunk_sizes": r.chunk_sizes,
            "verified": r.verified,
            "skipped": r.skipped,
            "resumed_from": r.resumed_from,
            "retries": r.retries,
        }
        for r in results
    ]
    total_bytes = sum(r.bytes for r in results)
    moved = sum(r.bytes - r.resumed_from for r in results)
    seconds = wall if wall is not None else sum(r.seconds for r in results)
    return {
        "version": JSON_SCHEMA_VERSION,
        "command": command,
        "files": files,
        "totals": {
            "files": sum(1 for r in results if not r.skipped),
            "skipped": sum(1 for r in results if r.skipped),
            "bytes": total_bytes,
            "resumed_from": sum(r.resumed_from for r in results),
            "retries": sum(len(r.retries) for r in results),
            "seconds": round(seconds, 6),
            "throughput_bps": round(moved / seconds) if seconds > 0 else 0,
        },
    }


def _print_copy_summary(results: list[Any], engine: dict[str, Any] | None = None) -> None:
    from openspec_cli.ui import human_bytes, human_rate

    for r in results:
        if r.skipped:
            _say(f"skipped '{r.dest}' (exists)")
        if r.resumed_from:
            _say(
                f"resumed transfer {r.transfer_id} of '{r.source}' at "
                f"{human_bytes(r.resumed_from)} (verified)"
            )
        for attempt in r.retries:
            _say(
                f"retried '{r.source}' at byte {attempt['offset']} after "
                f"{attempt['errno']} ({attempt['message']})"
            )
    copied = [r for r in results if not r.skipped]
    total = sum(r.bytes for r in copied)
    moved = sum(r.bytes - r.resumed_from for r in copied)
    seconds = sum(r.seconds for r in copied)
    rate = human_rate(moved / seconds) if seconds > 0 else "-"
    verified = ", verified" if copied and all(r.verified for r in copied) else ""
    if engine is not None and engine.get("highest_level", "NONE") != "NONE":
        verified += f", backpressure up to {engine['highest_level']}"
    sys.stderr.write(
        f"copied {len(copied)} file(s), {human_bytes(total)} in {seconds:.2f} s "
        f"({rate}{verified})\n"
    )


# ---------------------------------------------------------------------------- resume

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_age(text: str) -> float:
    """``7d`` -> seconds. Units s, m, h, d, w; a bare number is seconds."""
    match = _AGE.match(text)
    if not match:
        raise typer.BadParameter(f"'{text}' is not an age (examples: 90m, 12h, 7d)")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * factor


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
        bool, typer.Option("--prune", help="Remove orphaned checkpoints and partial files.")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="With --prune: also remove transfers idle this long (e.g. 7d).",
        ),
    ] = None,
    prune_dirs: Annotated[
        list[str] | None,
        typer.Option(
            "--in",
            metavar="DIR",
            help="With --prune: also look for orphaned partial files in DIR (repeatable).",
        ),
    ] = None,
    limit_rate: RateOpt = None,
    progress_mode: ProgressOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List interrupted transfers, or resume one from its last verified checkpoint."""
    from openspec_cli import api, resuming

    with handled():
        if discard is not None:
            api.discard(discard)
            if not quiet:
                _say(f"discarded transfer {discard}")
        elif prune:
            age = parse_age(older_than) if older_than else None
            for line in api.prune(age, prune_dirs or ()):
                if not quiet:
                    _say(f"removed {line}")
        elif list_ or (transfer_id is None and not all_):
            resuming.print_list(api.transfers(), as_json)
        else:
            rate = parse_size(limit_rate) if limit_rate else None
            ids = [transfer_id] if transfer_id else resuming.resumable_ids(api.transfers())
            with progress("resume", progress_mode, quiet, as_json) as observer:
                results = [
                    api.resume(i, restart=restart, limit_rate=rate, observer=observer) for i in ids
                ]
            _report(results, "resume", quiet, as_json)


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
    limit_rate: RateOpt = None,
    progress_mode: ProgressOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Stream files to stdout for pipelines, with a pv-like panel on a terminal's stderr."""
    from openspec_cli import hashing, streams

    with handled():
        with progress("cat", progress_mode, quiet) as observer:
            result = streams.cat(
                files or [streams.STDIN], 1, algo if hash_ else None, _limiter(limit_rate), observer
            )
        if result.digest is not None and result.algo is not None:
            # A bare sum line (no "openspec:" prefix), so `2> SUMS` gives a usable sum file.
            name = hashing.display_name_for_stdin(result.algo)
            sys.stderr.write(hashing.format_sum_line(result.algo, result.digest, name) + "\n")


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
    limit_rate: RateOpt = None,
    progress_mode: ProgressOpt = "auto",
) -> None:
    """Print digests as xxh128sum/sha256sum do, check sum files, or compare files and trees."""
    from openspec_cli import hashing, verifying

    with handled():
        targets = files or ["-"]
        limiter = _limiter(limit_rate)
        if against is not None:
            verifying.run_compare(targets, against, recursive)
            return
        if check:
            opts = hashing.CheckOptions(
                quiet=quiet,
                status=status,
                strict=strict,
                ignore_missing=ignore_missing,
                warn=warn,
                algo=algo,
            )
            raise typer.Exit(verifying.run_check(targets, opts, limiter, _say))
        with progress("verify", progress_mode) as observer:
            code = verifying.run_digests(
                targets, algo or DEFAULT_ALGO, tag, limiter, observer, _say
            )
        raise typer.Exit(code)


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
    from openspec_cli import bench as bench_
    from openspec_cli import bench_report

    with handled():
        config = bench_.make_config(quick, sizes, concurrency, directory)
        earlier = bench_report.prepare(baseline, json_file)
        with bench_report.live_view(sys.stderr) as view:
            result = bench_.run(config, view)
        code = bench_report.publish(result, earlier, max_regression, json_file)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app(prog_name=PROG)
