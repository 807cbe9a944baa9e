"""What each command does once its arguments are parsed, and the one place errors become exit
codes.

Two parsers call in here with the same keyword arguments: the Typer app (``cli``) and the
light parser of common command lines (``launch``), which starts without importing typer. Nothing
here imports typer, so a command costs only what it uses.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from openspec_cli import units
from openspec_cli.errors import (
    BrokenPipe,
    ExitCode,
    Interrupted,
    OpenspecError,
    UsageError,
    printable,
    write_stderr,
)

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from openspec_cli.engine import Observer, RateLimiter

JSON_SCHEMA_VERSION = 1
PROG = "openspec"


class Settings:
    """Global flags that every command honours."""

    debug: bool = False
    #: ``--progress json``: stderr is NDJSON, so messages go out as events too.
    json_stderr: bool = False
    #: This process is the command line's own (it exits after one command), not a caller's
    #: (tests, which need their signal handlers back).
    owns_process: bool = False


settings = Settings()

# ---------------------------------------------------------------------------- errors and exit


def say(message: str) -> None:
    """One line on stderr, prefixed like coreutils do (an NDJSON event under --progress json)."""
    if settings.json_stderr:
        _event({"event": "message", "message": message})
    else:
        write_stderr(f"{PROG}: {printable(message)}\n")


def _event(fields: dict[str, Any], output: bool = False) -> None:
    """One NDJSON line on stderr, shaped as the progress events are."""
    from openspec_cli.ui import ndjson_event

    write_stderr(ndjson_event(fields) + "\n", output=output)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("terminated", ExitCode.TERMINATED)


def _print_traceback() -> None:
    if settings.debug:
        import traceback

        traceback.print_exc()


class _ClosedStdout(io.TextIOBase):
    """Stands in for a closed stdout (``openspec verify f >&-``): Python leaves sys.stdout None,
    and a write would end in a traceback instead of one line about the output."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), "standard output")


@contextlib.contextmanager
def handled(progress_mode: str = "auto") -> Iterator[None]:
    """Map every expected failure to one line on stderr and its exit code (the one place)."""
    settings.json_stderr = progress_mode == "json"
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
        _settled()
    except (BrokenPipe, BrokenPipeError):
        _silence_stdout()
        _settled()
        raise SystemExit(ExitCode.BROKEN_PIPE) from None
    except (OpenspecError, Interrupted) as err:
        _settled()
        _print_traceback()
        say(err.message)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        _settled()
        say("interrupted")
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except OSError as err:  # unexpected I/O failure: still one line, with the path if known
        _settled()
        _print_traceback()
        where = f"'{err.filename}': " if err.filename else ""
        say(f"{where}{err.strerror or err}")
        raise SystemExit(ExitCode.IO_ERROR) from None
    finally:
        if not settings.owns_process:
            signal.signal(signal.SIGTERM, previous)


def _settled() -> None:
    """The outcome is decided: from here, a second Ctrl-C or SIGTERM (or one during exit) must
    not turn it into a death by signal or a traceback, which reported a finished tree copy as
    killed. Standard output is flushed first, while a Ctrl-C can still end a stalled pipe."""
    if not settings.owns_process:
        return
    with contextlib.suppress(Exception):
        if sys.stdout is not None:
            sys.stdout.flush()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ---------------------------------------------------------------------------- option values


def size_option(text: str | None, option: str) -> int | None:
    """``--limit-rate 20M`` -> 20971520; a bad size is a usage error naming the option."""
    if text is None:
        return None
    try:
        return units.parse_size(text)
    except ValueError as err:
        raise UsageError(f"invalid value for {option}: {err}") from None


def _limiter(rate: str | None) -> RateLimiter | None:
    from openspec_cli.engine import RateLimiter

    limit = size_option(rate, "--limit-rate")
    return RateLimiter(limit) if limit else None


def age_option(text: str) -> float:
    """``7d`` -> seconds. Units s, m, h, d, w; a bare number is seconds."""
    import re

    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", text)
    if not match:
        raise UsageError(
            f"invalid value for --older-than: '{text}' is not an age (examples: 90m, 12h, 7d)"
        )
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * factor


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

    if mode == "auto" and sys.stderr.isatty() and os.environ.get("TERM") == "dumb":
        mode = "plain"  # a terminal that cannot move the cursor: lines, as for a log
    if mode == "tty" or (mode == "auto" and sys.stderr.isatty()):
        board = Dashboard(title)
        with LivePanel(board, sys.stderr):
            yield board
        return
    interval = {"plain": 2.0, "json": 1.0}.get(mode)
    with ProgressLog(title, sys.stderr, "json" if mode == "json" else "plain", interval) as log:
        yield log


def _emit_json(payload: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


# ---------------------------------------------------------------------------- copy


def copy(
    paths: list[str],
    recursive: bool,
    no_clobber: bool,
    verify: bool,
    algo: str,
    sums: str | None,
    no_fsync: bool,
    restart: bool,
    checkpoint_every: int,
    jobs: int,
    max_memory: str | None,
    no_cache: bool,
    limit_rate: str | None,
    as_json: bool,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Copy files like cp, hashing on the fly; the final name appears only when complete."""
    from openspec_cli import api

    with handled(progress_mode), _json_on_refusal("copy", as_json):
        if len(paths) < 2:
            raise UsageError(f"missing destination file operand after '{paths[0]}'")
        rate = size_option(limit_rate, "--limit-rate")
        memory = size_option(max_memory, "--max-memory")
        with progress("copy", progress_mode, quiet, as_json) as observer:
            result = api.copy(
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
        # NDJSON progress on stderr stays parseable: its finish events replace the summary.
        summary_quiet = quiet or progress_mode == "json"
        _report(result.files, "copy", summary_quiet, as_json, result.engine, result.errors)
        if result.errors:
            for err in result.errors:
                say(err.message)
            raise SystemExit(max(int(err.exit_code) for err in result.errors))


@contextlib.contextmanager
def _json_on_refusal(command: str, as_json: bool) -> Iterator[None]:
    """With ``--json``, a refusal still prints the object (no files, the reason in ``errors``):
    a script reading stdout must not get nothing. An interrupt prints none: it is no answer."""
    try:
        yield
    except OpenspecError as refused:
        if as_json:
            json_refusal(command, refused)
        raise


def json_refusal(command: str, refused: OpenspecError) -> None:
    """The ``--json`` object of a command refused before it did anything."""
    _report([], command, True, True, errors=[refused])


def _report(
    results: list[Any],
    command: str,
    quiet: bool,
    as_json: bool,
    engine: dict[str, Any] | None = None,
    errors: list[OpenspecError] | None = None,
) -> None:
    wall = float(engine["seconds"]) if engine is not None else None
    if as_json:
        summary = _copy_summary(results, command, wall)
        if engine is not None:
            summary["engine"] = engine
        summary["errors"] = [err.message for err in errors or []]
        _emit_json(summary)
    elif not quiet and (results or not errors):
        _print_copy_summary(results, engine, wall)


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


def _print_copy_summary(
    results: list[Any], engine: dict[str, Any] | None = None, wall: float | None = None
) -> None:
    """The closing line; like the JSON totals, it uses wall time when files ran side by side
    (per-file seconds added up would count parallel copies twice)."""
    from openspec_cli.ui import human_bytes, human_rate

    for r in results:
        if r.skipped:
            say(f"skipped '{r.dest}' (exists)")
        if r.resumed_from and not r.reused:  # reused ones are counted in the closing line
            say(
                f"resumed transfer {r.transfer_id} of '{r.source}' at "
                f"{human_bytes(r.resumed_from)} (verified)"
            )
        for attempt in r.retries:
            say(
                f"retried '{r.source}' at byte {attempt['offset']} after "
                f"{attempt['errno']} ({attempt['message']})"
            )
    copied = [r for r in results if not r.skipped]
    total = sum(r.bytes for r in copied)
    moved = sum(r.bytes - r.resumed_from for r in copied)
    seconds = wall if wall is not None else sum(r.seconds for r in copied)
    rate = human_rate(moved / seconds) if seconds > 0 else "-"
    verified = ", verified" if copied and all(r.verified for r in copied) else ""
    if engine is not None and engine.get("highest_level") not in (None, "NONE"):
        verified += f", backpressure up to {engine['highest_level']}"
    sys.stderr.write(
        f"copied {len(copied)} file(s), {human_bytes(total)}{_moved_note(copied, moved, total)} "
        f"in {seconds:.2f} s ({rate}{verified})\n"
    )


def _moved_note(copied: list[Any], moved: int, total: int) -> str:
    """What this run did not move itself: the rate is of the bytes it moved."""
    from openspec_cli.ui import human_bytes

    reused = sum(1 for r in copied if r.reused)
    if moved == total and not reused:
        return ""
    unchanged = f", {reused} file(s) unchanged since an earlier run" if reused else ""
    return f" ({human_bytes(moved)} moved{unchanged})"


# ---------------------------------------------------------------------------- resume


def _check_resume_flags(
    transfer_id: str | None,
    list_: bool,
    all_: bool,
    restart: bool,
    discard: str | None,
    prune: bool,
    older_than: str | None,
    prune_dirs: list[str] | None,
) -> None:
    """Refuse flags that the chosen action would silently ignore."""
    if (older_than is not None or prune_dirs) and not prune:
        flag = "--older-than" if older_than is not None else "--in"
        raise UsageError(f"{flag} applies only with --prune")
    actions = [a for a, on in (("--list", list_), ("--all", all_), ("--prune", prune)) if on]
    if discard is not None:
        actions.append("--discard")
    if len(actions) > 1:
        raise UsageError(f"{actions[0]} and {actions[1]} cannot be used together")
    resuming = (transfer_id is not None or all_) and not (list_ or prune or discard)
    if restart and not resuming:
        raise UsageError("--restart applies only when resuming (an ID or --all)")


def resume(
    transfer_id: str | None,
    list_: bool,
    all_: bool,
    restart: bool,
    discard: str | None,
    prune: bool,
    older_than: str | None,
    prune_dirs: list[str] | None,
    limit_rate: str | None,
    progress_mode: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """List interrupted transfers, or resume one from its last verified checkpoint."""
    from openspec_cli import api, resuming

    with handled(progress_mode):
        _check_resume_flags(
            transfer_id, list_, all_, restart, discard, prune, older_than, prune_dirs
        )
        if discard is not None:
            unknown = api.discard(discard)
            if not quiet:
                say(f"discarded transfer {discard}")
            if unknown is not None:  # its checkpoint was unreadable: where its data is, unknown
                say(
                    f"its partial file, if any, is named '{unknown}' beside the destination: "
                    "openspec resume --prune --in DIR removes it"
                )
        elif prune:
            age = age_option(older_than) if older_than else None
            for line in api.prune(age, prune_dirs or ()):
                if not quiet:
                    say(f"removed {line}")
        elif list_ or (transfer_id is None and not all_):
            resuming.print_list(api.transfers(), as_json, api.trees())
        else:
            results: list[Any] = []
            errors: list[OpenspecError] = []
            with _json_on_refusal("resume", as_json):
                rate = size_option(limit_rate, "--limit-rate")
                entries = [] if transfer_id else api.transfers()
                ids = [transfer_id] if transfer_id else resuming.resumable_ids(entries)
                for line in resuming.left_out(entries, [] if transfer_id else api.trees()):
                    say(line)
            with (
                _json_on_refusal("resume", as_json),
                progress("resume", progress_mode, quiet, as_json) as observer,
            ):
                for i in ids:
                    try:
                        results.append(
                            api.resume(i, restart=restart, limit_rate=rate, observer=observer)
                        )
                    except OpenspecError as failed:
                        if transfer_id is not None:
                            raise
                        errors.append(failed)  # --all: one bad transfer must not stop the rest
            _report(results, "resume", quiet or progress_mode == "json", as_json, errors=errors)
            for error in errors:
                say(error.message)
            status = max([resuming.left_out_status(entries), *(e.exit_code for e in errors)])
            if status:
                raise SystemExit(status)


# ---------------------------------------------------------------------------- cat


def cat(
    files: list[str] | None,
    hash_: bool,
    algo: str,
    limit_rate: str | None,
    progress_mode: str,
    quiet: bool,
) -> None:
    """Stream files to stdout for pipelines, with a pv-like panel on a terminal's stderr."""
    from openspec_cli import hashing, streams

    if progress_mode == "auto" and sys.stdout is not None and sys.stdout.isatty():
        progress_mode = "none"  # the data goes to the terminal: a panel there would tear it
    failed: list[OpenspecError] = []

    def skip(err: OpenspecError) -> None:  # as GNU cat: say so, go on, fail at the end
        say(err.message)
        failed.append(err)

    with handled(progress_mode):
        with progress("cat", progress_mode, quiet) as observer:
            result = streams.cat(
                files or [streams.STDIN], 1, algo if hash_ else None, _limiter(limit_rate),
                observer, on_error=skip,
            )  # fmt: skip
        if result.digest is not None and result.algo is not None:
            if settings.json_stderr:
                digest = {"event": "digest", "algo": result.algo, "digest": result.digest}
                _event(digest, output=True)
            else:  # a bare sum line (no "openspec:" prefix), so `2> SUMS` is a usable sum file
                name = hashing.display_name_for_stdin(result.algo)
                line = hashing.format_sum_line(result.algo, result.digest, name) + "\n"
                write_stderr(line, output=True)
        if failed:
            raise SystemExit(max(int(err.exit_code) for err in failed))


# ---------------------------------------------------------------------------- verify


def _check_verify_flags(
    check: bool,
    tag: bool,
    quiet: bool,
    status: bool,
    strict: bool,
    ignore: bool,
    warn: bool,
    against: str | None = None,
    recursive: bool = False,
) -> None:
    """Refuse flags that would be silently ignored, as sha256sum does."""
    if check and tag:
        raise UsageError("the --tag option is meaningless when verifying checksums")
    if check and (against is not None or recursive):
        flag = "--against" if against is not None else "--recursive"
        raise UsageError(f"{flag} compares files; it cannot be used with --check")
    if check:
        return
    if recursive and against is None:
        raise UsageError("--recursive compares two trees: it needs --against DIR")
    for flag, given in (
        ("--quiet", quiet),
        ("--status", status),
        ("--strict", strict),
        ("--ignore-missing", ignore),
        ("--warn", warn),
    ):
        if given:
            raise UsageError(f"the {flag} option is meaningful only when verifying checksums")


def verify(
    files: list[str] | None,
    check: bool,
    algo: str | None,
    tag: bool,
    against: str | None,
    recursive: bool,
    quiet: bool,
    status: bool,
    strict: bool,
    ignore_missing: bool,
    warn: bool,
    limit_rate: str | None,
    progress_mode: str,
) -> None:
    """Print digests as xxh128sum/sha256sum do, check sum files, or compare files and trees."""
    from openspec_cli import verifying
    from openspec_cli.algorithms import DEFAULT_ALGO
    from openspec_cli.streams import STDIN

    with handled(progress_mode):
        _check_verify_flags(
            check, tag, quiet, status, strict, ignore_missing, warn, against, recursive
        )
        targets = files or [STDIN]
        limiter = _limiter(limit_rate)
        if against is not None:
            if STDIN in [*targets, against]:
                raise UsageError("--against compares files; it does not read standard input")
            with progress("verify", progress_mode) as observer:
                verifying.run_compare(targets, against, recursive, limiter, observer, say)
            return
        if check:
            from openspec_cli import sumfiles

            opts = sumfiles.CheckOptions(
                quiet=quiet,
                status=status,
                strict=strict,
                ignore_missing=ignore_missing,
                warn=warn,
                algo=algo,
            )
            with progress("verify", progress_mode) as observer:
                code = verifying.run_check(targets, opts, limiter, say, observer)
            raise SystemExit(code)
        with progress("verify", progress_mode) as observer:
            code = verifying.run_digests(targets, algo or DEFAULT_ALGO, tag, limiter, observer, say)
        raise SystemExit(code)


# ---------------------------------------------------------------------------- bench


def bench(
    quick: bool,
    sizes: str | None,
    concurrency: str | None,
    directory: str | None,
    json_file: str | None,
    baseline: str | None,
    max_regression: float,
) -> None:
    """Measure copy speed, latency, memory and recovery here; PASS/FAIL vs the design targets."""
    from openspec_cli import bench as bench_
    from openspec_cli import bench_report

    with handled():
        if not math.isfinite(max_regression):  # nan compares false: nothing could regress
            raise UsageError(f"--max-regression must be a number of percent, not {max_regression}")
        config = bench_.make_config(quick, sizes, concurrency, directory)
        earlier = bench_report.prepare(baseline, json_file)
        with bench_report.live_view(sys.stderr) as view:
            result = bench_.run(config, view)
        code = bench_report.publish(result, earlier, max_regression, json_file)
    raise SystemExit(code)
