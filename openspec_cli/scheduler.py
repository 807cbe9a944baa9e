"""Many transfers at once: a copy plan carried out under the governor.

Files are copied one at a time on this thread, or on up to ``-j`` worker threads, each stream
admitted, held back and sized by the :class:`~openspec_cli.governor.Governor`; small files are
limited to a few at once. A tree's folders are made first and finished (mode, times) last, and
a journal records each completed file, so that a rerun after an interrupt skips it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

from openspec_cli import memory
from openspec_cli.checkpoint import Checkpoint, list_all
from openspec_cli.chunking import STREAMING_TRIGGER
from openspec_cli.cleanup import Priority
from openspec_cli.copy_records import CopyOptions, FileResult
from openspec_cli.copying import copy_file, resume
from openspec_cli.engine import NullObserver
from openspec_cli.errors import ExitCode, Interrupted, OpenspecError
from openspec_cli.fileio import fsync_dir
from openspec_cli.governor import GovernedObserver, Governor, engine_summary
from openspec_cli.plan import Step
from openspec_cli.records import Record
from openspec_cli.streams import hash_path
from openspec_cli.tree import Made, finish_tree, prepare_tree, record_sum

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from openspec_cli.engine import Observer
    from openspec_cli.unfinished import TreeJournal

#: Files under the streaming trigger copied at once, whatever -j says. Such a file is done in
#: less time than threads take to hand the interpreter lock around: 3000 files of 0-64 KiB
#: took 2.6 s with -j 4 and 5.2 s with -j 16 (CPU time 4.1 s and 7.2 s; -j 1: 3.0 s).
SMALL_FILES_AT_ONCE = 4


def drop_cached(path: str) -> None:
    """Ask the kernel to forget a finished file's pages (they are clean after fsync)."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_parallel(
    tasks: list[Callable[[], object]],
    governor: Governor,
    small: Sequence[bool] = (),
) -> list[object | BaseException]:
    """Run ``tasks`` on up to ``governor.requested`` threads, each admitted by the governor.

    Returns each task's result or exception, in task order. A signal in the calling thread
    cancels every stream at its next chunk; their checkpoints are kept. Tasks marked ``small``
    run at most SMALL_FILES_AT_ONCE at a time (see there).
    """
    results: list[object | BaseException] = [None] * len(tasks)
    next_task = [0]
    lock = threading.Lock()
    few = threading.Semaphore(SMALL_FILES_AT_ONCE)

    def worker() -> None:
        while True:
            with lock:
                index = next_task[0]
                next_task[0] += 1
            if index >= len(tasks) or governor.cancelled is not None:
                return
            gate = few if index < len(small) and small[index] else contextlib.nullcontext()
            with gate:
                run_admitted(index)

    def run_admitted(index: int) -> None:
        try:
            governor.admit()
        except BaseException as exc:
            results[index] = exc
            return
        try:
            results[index] = tasks[index]()
        except BaseException as exc:  # reported per file; others go on
            results[index] = exc
        finally:
            governor.leave()

    threads = [
        threading.Thread(target=worker, name=f"openspec-worker-{i}", daemon=True)
        for i in range(min(governor.requested, len(tasks)))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
    except (KeyboardInterrupt, Interrupted) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else ExitCode.INTERRUPTED
        governor.cancel(Interrupted("interrupted", code))
        for thread in threads:
            thread.join()
        raise Interrupted("interrupted", code) from None  # api.copy adds how to finish
    return results


class RecentFiles:
    """The last few finished destinations, whose cached pages may be dropped under pressure."""

    def __init__(self, keep: int = 64) -> None:
        from collections import deque

        self.paths: deque[str] = deque(maxlen=keep)

    def add(self, path: str) -> None:
        """Remember a finished file."""
        self.paths.append(path)

    def drop_all(self) -> None:
        """Release their page cache (cheap to re-read if needed, costly for everyone else)."""
        while self.paths:
            drop_cached(self.paths.popleft())


class CopyReport(Record):
    """Everything one ``copy`` did: per-file results and what the engine went through."""

    __slots__ = ("files", "seconds", "engine", "errors")

    def __init__(
        self,
        files: list[FileResult],
        seconds: float,
        engine: dict[str, object],
        errors: list[OpenspecError] | None = None,
    ) -> None:
        self.files = files
        self.seconds = seconds
        self.engine = engine
        self.errors: list[OpenspecError] = errors if errors is not None else []

    @property
    def highest_level(self) -> str | None:
        """The worst backpressure level reached; None when no sample was taken."""
        level = self.engine["highest_level"]
        return None if level is None else str(level)


def copy_all(
    steps: list[Step],
    options: CopyOptions,
    observer: Observer | None = None,
    jobs: int = 1,
    max_memory: int | None = None,
    probe: memory.MemoryProbe | None = None,
    journal: TreeJournal | None = None,
) -> CopyReport:
    """Carry out a copy plan with up to ``jobs`` transfers at once, under the governor.

    ``journal``: a tree copy's record of completed files (see ``unfinished``); files it
    vouches for are not copied again, and each file completed is added to it.
    """
    started = time.monotonic()
    governor = Governor(jobs, max_memory, probe)
    recent = RecentFiles()
    governor.cleanup.register("page cache of finished files", Priority.LOW, recent.drop_all)
    governor.cleanup.register("unreferenced memory", Priority.DEFERRED, gc.collect)
    options = options.replace(pacer=governor)
    watched = GovernedObserver(governor, observer or NullObserver())
    if journal is None:
        file_steps, made = prepare_tree(steps, options)
    elif journal.marked:  # it made the tree's root: all in it is its own
        file_steps, made = prepare_tree(steps, options, journal.made_root, ours=lambda _: True)
    else:
        file_steps, made = prepare_tree(
            steps, options, ours=journal.owns_dir, made=journal.made_dir
        )
    known = known_transfers()
    if options.fsync and (len(file_steps) > 1 or made):  # one file alone syncs its own folder
        options = options.replace(dirs_to_sync=_folders_made(made))

    def task(step: Step) -> Callable[[], object]:
        def run() -> FileResult:
            earlier = None if journal is None else _reused(journal, step, options)
            if earlier is not None:
                record_sum(options, earlier)  # the earlier run may have written none
                if options.dirs_to_sync is not None:  # that run may have ended before its sync
                    options.dirs_to_sync.add(os.path.dirname(os.path.abspath(step.dest)))
                return earlier
            result = copy_file(step.source, step.dest, options, watched, known)
            record_sum(options, result)
            recent.add(step.dest)
            if journal is not None:
                journal.done(result)
            return result

        return run

    try:
        with governor.monitored():
            if governor.requested == 1 or len(file_steps) <= 1:
                outcomes = _run_serially([task(s) for s in file_steps], governor)
            else:
                small = [step.size < STREAMING_TRIGGER for step in file_steps]
                outcomes = run_parallel([task(s) for s in file_steps], governor, small)
        finish_tree(made)
    finally:
        for folder in sorted(options.dirs_to_sync or ()):
            fsync_dir(folder)
    files = [o for o in outcomes if isinstance(o, FileResult)]
    errors = [o for o in outcomes if isinstance(o, OpenspecError)]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, OpenspecError):
            raise outcome
    return CopyReport(
        files,
        time.monotonic() - started,
        engine_summary(governor, time.monotonic() - started),
        errors,
    )


def resume_governed(
    transfer_id: str,
    options: CopyOptions,
    observer: Observer | None = None,
    check_dest: Callable[[str, str, bool], None] | None = None,
    finished: Callable[[str, FileResult], None] | None = None,
) -> FileResult:
    """:func:`copying.resume` under a governor of its own, as each transfer of a copy runs:
    the memory thresholds and backpressure apply to it, and the panel shows them."""
    governor = Governor(1)
    watched = GovernedObserver(governor, observer or NullObserver())
    with governor.monitored():
        governor.admit()
        try:
            return resume(
                transfer_id, options.replace(pacer=governor), watched, check_dest, finished
            )
        finally:
            governor.leave()


def _folders_made(made: list[Made]) -> set[str]:
    """Folders to sync at the end of a copy of many files: those its files were renamed into
    (added as they are), and those it made, with their parents (which hold their names).

    Once per folder rather than once per file: a tree of 3000 small files made 3000 more
    directory syncs, each a journal commit on ext4. A crash before the end can lose renames,
    never expose a partial file under a final name (each file was synced before its rename);
    the journal then no longer vouches for the lost ones, and the rerun copies them again.
    """
    folders: set[str] = set()
    for step, _, _ in made:
        where = os.path.abspath(step.dest)  # as transfers name theirs
        folders.update((where, os.path.dirname(where)))
    return folders


def _reused(journal: TreeJournal, step: Step, options: CopyOptions) -> FileResult | None:
    """A file an earlier run of this copy completed, unchanged since: not copied again. With
    ``--verify`` it is read back and checked against the digest recorded then (a copy that
    fails is copied again), so that every file the run reports is verified."""
    earlier = journal.already(step.source, step.dest, options.algo)
    if earlier is None or not options.verify:
        return earlier
    try:
        again = hash_path(step.dest, options.algo, drop_cache=True)
    except OSError:
        return None
    return earlier.replace(verified=True) if again == earlier.digest else None


def known_transfers() -> dict[tuple[str, str], Checkpoint]:
    """Interrupted transfers by (source, dest), read once per operation (newest wins)."""
    return {(cp.source.path, cp.dest): cp for cp in list_all() if isinstance(cp, Checkpoint)}


def _run_serially(tasks: list[Callable[[], object]], governor: Governor) -> list[object]:
    """One stream at a time on this thread, so a signal reaches the copy directly."""
    outcomes: list[object] = []
    for run in tasks:
        governor.admit()
        try:
            outcomes.append(run())
        except OpenspecError as err:
            outcomes.append(err)
        finally:
            governor.leave()
    return outcomes
