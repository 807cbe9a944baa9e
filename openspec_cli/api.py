"""The small typed Python API; the command line is a thin layer over these functions.

Failures raise :class:`openspec_cli.errors.OpenspecError` subclasses carrying a one-line
message and an exit code; a stop by signal raises :class:`openspec_cli.errors.Interrupted`
(a BaseException, like KeyboardInterrupt), so ``except OpenspecError`` never swallows it.
"""

from __future__ import annotations

import contextlib
import os
import time

from openspec_cli import (
    checkpoint,
    copy_records,
    copying,
    hashing,
    plan,
    scheduler,
    streams,
    transfer,
    unfinished,
)
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.engine import RateLimiter
from openspec_cli.errors import ExitCode, Interrupted
from openspec_cli.memory import MemoryProbe
from openspec_cli.scheduler import CopyReport
from openspec_cli.streams import CatResult, Difference
from openspec_cli.tree import keep_last_sum_lines, remove_keeping_dir_times

#: False when running, True for mypy (see engine.py): typing costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from openspec_cli.engine import Observer


def _limiter(rate: float | None) -> RateLimiter | None:
    return RateLimiter(rate) if rate else None


def copy(
    sources: str | Sequence[str],
    dest: str,
    *,
    recursive: bool = False,
    no_clobber: bool = False,
    verify: bool = False,
    algo: str = hashing.DEFAULT_ALGO,
    fsync: bool = True,
    sums: str | None = None,
    limit_rate: float | None = None,
    checkpoint_every: int = copy_records.DEFAULT_CHECKPOINT_EVERY,
    restart: bool = False,
    jobs: int = 1,
    max_memory: int | None = None,
    no_cache: bool = False,
    observer: Observer | None = None,
    probe: MemoryProbe | None = None,
) -> CopyReport:
    """Copy like ``cp`` (``-r`` with ``recursive``), hashing on the fly; see ``transfer``.

    Up to ``jobs`` files at once under the memory ceiling ``max_memory`` (bytes for the whole
    operation; default 50 MB or less when the machine has less to spare). An interrupted copy
    of the same source and destination is resumed unless ``restart``. Per-file failures are in
    ``report.errors``; the other files are still copied. ``probe`` replaces the memory probe
    (tests drive any memory situation with it).
    """
    started = time.time()
    srcs = [sources] if isinstance(sources, str) else list(sources)
    options = CopyOptions(
        algo=algo,
        recursive=recursive,
        no_clobber=no_clobber,
        verify=verify,
        fsync=fsync,
        sums_path=sums,
        limiter=_limiter(limit_rate),
        checkpoint_every=checkpoint_every,
        restart=restart,
        no_cache=no_cache,
    )
    tree = plan.tree_source(srcs, recursive)
    new_tree = tree is not None and not os.path.lexists(dest.rstrip(os.sep) or os.sep)
    journal = None
    if tree is not None and not new_tree:
        journal = unfinished.TreeJournal.reopen(tree, dest)
    steps = plan.plan_copy(srcs, dest, recursive, into=journal is not None, no_clobber=no_clobber)
    # Several files into a folder that was there: a journal too, so that a rerun after an
    # interrupt does not copy the finished ones again (cp's rule needs no help there). Taken
    # up by a rerun with even one file left, so that it is finished.
    files = sum(1 for step in steps if step.kind == "file")
    if journal is None and not new_tree and files:
        journal = unfinished.TreeJournal.reopen(srcs, dest, marked=False)
    if journal is not None and restart:
        journal.forget_completed()  # --restart: nothing is taken as done
    continued = journal is not None
    plan.check_space(steps, no_clobber, _completed_by(journal, algo))
    if tree is not None or any(transfer.keeps_checkpoint(s.size) for s in steps):
        checkpoint.require_writable()
    if sums is not None:
        plan.check_sums_file(sums)
    if tree is not None and new_tree:
        journal = unfinished.TreeJournal.begin(tree, dest)
    elif journal is None and not new_tree and files > 1:
        # Only an optimisation: without a writable state dir, a rerun copies them again.
        with contextlib.suppress(OSError, checkpoint.CheckpointError):
            journal = unfinished.TreeJournal.begin(srcs, dest, marked=False)
    if journal is not None:
        options = options.replace(journal=journal.path)
    try:
        report = scheduler.copy_all(
            steps, options, observer, jobs=jobs, max_memory=max_memory, probe=probe,
            journal=journal,
        )  # fmt: skip
        with _decided():
            if journal is not None and not report.errors:
                journal.finish()
                if continued and journal.marked:  # it finishes an interrupted one: tidy up
                    _tidy_after(steps, report, started)  # (in the tree it made: ours alone)
            if sums is not None:  # reused files too: the run that last wrote one is newest
                keep_last_sum_lines(sums, report.files)
    except (Interrupted, KeyboardInterrupt) as exc:
        if tree is None and files <= 1:
            raise  # its own hint: openspec resume ID
        # resume --all would finish only the files that had started. (A Ctrl-C between two
        # files arrives here as KeyboardInterrupt, not as a transfer's Interrupted.)
        code = exc.exit_code if isinstance(exc, Interrupted) else ExitCode.INTERRUPTED
        hint = "interrupted; to finish, run the same copy again"
        raise Interrupted(hint, code) from None
    finally:
        if journal is not None:
            journal.release()
    return report


@contextlib.contextmanager
def _decided() -> Iterator[None]:
    """SIGINT and SIGTERM are taken as answered while a copy that is complete does its last
    bookkeeping (its journal goes, --sums is tidied). An interrupt there said "run the same
    copy again" of a complete copy, and the rerun, its marker gone, nested a second copy in
    the first. (Handlers can be set from the main thread only; elsewhere nothing changes.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.getsignal(sig) for sig in held}
    for sig in held:
        signal.signal(sig, lambda *_: None)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _completed_by(
    journal: unfinished.TreeJournal | None, algo: str
) -> Callable[[plan.Step], bool] | None:
    """Files an interrupted copy completed, unchanged since: a rerun will not write them."""
    if journal is None:
        return None
    return lambda step: journal.already(step.source, step.dest, algo) is not None


def _tidy_after(steps: list[plan.Step], report: CopyReport, since: float) -> None:
    """Partial files a kill -9 left (small files have no checkpoint to find them by)."""
    dirs = {os.path.dirname(os.path.abspath(s.dest)) for s in steps if s.kind == "file"}
    for path in checkpoint.orphan_partials(dirs, before=since):
        remove_keeping_dir_times(path)


def resume(
    transfer_id: str,
    *,
    restart: bool = False,
    limit_rate: float | None = None,
    observer: Observer | None = None,
) -> FileResult:
    """Finish an interrupted transfer from its last verified point (or from zero: ``restart``)."""
    options = CopyOptions(limiter=_limiter(limit_rate), restart=restart)
    return scheduler.resume_governed(
        transfer_id, options, observer, plan.check_replaceable, unfinished.note_resumed
    )


def transfers() -> list[checkpoint.Checkpoint | checkpoint.BrokenCheckpoint]:
    """Every interrupted transfer on record, including unreadable checkpoints."""
    return checkpoint.list_all()


def discard(transfer_id: str) -> str | None:
    """Forget a transfer: remove its checkpoint and partial file. Returns, for an unreadable
    checkpoint whose partial file could not be found from what is left of it, the name that
    file has (``.NAME.ID.openspec-part``, beside the destination), for the user to look for."""
    try:
        cp = checkpoint.load(transfer_id)
    except checkpoint.CheckpointError:
        sidecar = checkpoint.path_for(transfer_id)
        if not os.path.exists(sidecar):
            raise
        partial = _partial_named_in(sidecar, transfer_id)
        checkpoint.delete(transfer_id)
        if partial is None:
            return f".*.{transfer_id}{checkpoint.PARTIAL_SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        return None
    copying.discard(cp)
    return None


def _partial_named_in(sidecar: str, transfer_id: str) -> str | None:
    """The partial file an unreadable checkpoint still names, if its "partial" field survived
    and names a regular file of this transfer that no process is writing; else None."""
    import json
    import re
    import stat

    with contextlib.suppress(OSError), open(sidecar, "rb") as fh:
        text = fh.read(1 << 20).decode("utf-8", "surrogateescape")
        found = re.search(r'"partial"\s*:\s*("(?:[^"\\]|\\.)*")', text)
        if found is None:
            return None
        with contextlib.suppress(ValueError):
            path = json.loads(found.group(1))
            ours = isinstance(path, str) and path.endswith(
                f".{transfer_id}{checkpoint.PARTIAL_SUFFIX}"
            )
            if (
                ours
                and stat.S_ISREG(os.lstat(path).st_mode)
                and not checkpoint.partial_locked(path)
            ):
                return str(path)
    return None


def prune(older_than: float | None = None, dirs: Sequence[str] = ()) -> list[str]:
    """Remove orphaned checkpoints, partial files and tree journals; returns what was removed."""
    return checkpoint.prune(older_than, dirs) + unfinished.prune_trees(older_than, time.time())


def trees() -> list[unfinished.TreeCopy]:
    """Tree copies (``copy -r SRC NEW``) that did not finish: running the same copy finishes one."""
    return unfinished.list_trees()


def cat(
    paths: Sequence[str],
    out_fd: int = 1,
    *,
    algo: str | None = None,
    limit_rate: float | None = None,
    observer: Observer | None = None,
) -> CatResult:
    """Concatenate ``paths`` (``-`` is stdin) to ``out_fd``, optionally hashing the stream."""
    return streams.cat(list(paths), out_fd, algo, _limiter(limit_rate), observer)


def hash_file(path: str, algo: str = hashing.DEFAULT_ALGO) -> str:
    """Hex digest of a file, as ``xxh128sum`` (or the tool for ``algo``) prints it."""
    return streams.hash_path(path, algo)


def compare(left: str, right: str, *, recursive: bool = False) -> list[Difference]:
    """Differences between two files (or trees with ``recursive``); empty when identical."""
    if recursive:
        return streams.compare_trees(left, right)
    diff = streams.compare_files(left, right)
    return [diff] if diff else []
