"""Tree copies that did not finish, so that running the same ``copy -r SRC NEW`` again works.

The first run of ``copy -r src backup`` creates ``backup``. Run again after an interruption,
cp's rule (an existing directory receives SRC inside it) would start a second copy in
``backup/src`` and leave the first one half done. So a copy that creates its destination tree
keeps a journal (``<state dir>/trees/<key>.jsonl``) until it has finished: a header naming the
source, the destination and a random token, then one line per file completed. The directory it
made holds an empty ``.openspec-tree.<token>`` file meanwhile, as its files' partial copies sit
beside them. A later run of the same source and destination continues into ``backup`` only if
that file is there (a directory deleted and made again by hand gets cp's rule). A file the
journal lists is not copied again only if neither it nor its source has changed since (the
checkpoints' Fingerprint: size, mtime, ctime, inode; ctime cannot be set back); anything else
is copied again, and interrupted files resume from their checkpoints.

A copy of several files, or of a tree into a folder that was there already, keeps an unmarked
journal (no marker; its key also names every source): nothing about cp's rule to protect, only
the files it completed, which a rerun does not copy again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence

from openspec_cli.checkpoint import Fingerprint, partial_locked, state_dir, try_lock
from openspec_cli.copy_records import FileResult
from openspec_cli.errors import UsageError
from openspec_cli.records import Record
from openspec_cli.transfer import SAVE_INTERVAL
from openspec_cli.tree import remove_keeping_dir_times

VERSION = 1
MARKER_PREFIX = ".openspec-tree."


def _unchanged(recorded: object, path: str) -> bool:
    """Whether ``path`` still matches a fingerprint the journal recorded for it."""
    if not isinstance(recorded, dict):
        return False
    try:
        fingerprint = Fingerprint(**recorded)
        return fingerprint.ctime_ns is not None and not fingerprint.differences(os.stat(path))
    except (TypeError, OSError):
        return False


def _key(sources: str | Sequence[str], marked: bool) -> str:
    """What a journal is the journal of, besides its destination: a marked one's source,
    absolute; an unmarked one's sources (NUL-separated: no path holds a NUL) in any order, as
    a rerun may list them otherwise, with ``SRC/.`` (its contents) told apart from ``SRC``
    (the folder itself), since they go to different places."""
    listed = [sources] if isinstance(sources, str) else list(sources)
    if marked:
        return "\0".join(os.path.abspath(source) for source in listed)
    names = [
        os.path.join(os.path.abspath(s), ".")
        if os.path.basename(s.rstrip(os.sep)) == "."
        else os.path.abspath(s)
        for s in listed
    ]
    return "\0".join(sorted(names))


def shown(key: str) -> str:
    """A journal's sources for a message."""
    return "', '".join(key.split("\0"))


def _path_for(key: str, dest: str, marked: bool) -> str:
    import hashlib  # here: most copies are not of trees, and start-up counts

    text = f"{key}\0{os.path.abspath(dest)}" + ("" if marked else "\0into an existing folder")
    digest = hashlib.sha256(text.encode(errors="surrogateescape")).hexdigest()[:16]
    return os.path.join(state_dir(), "trees", f"{digest}.jsonl")


class TreeJournal:
    """The journal of one copy of a tree or of several files; safe to use from the copy's
    worker threads.

    ``marked``: the copy made its destination directory, which holds the marker file (see the
    module's notes). A copy into a folder that was there already, of a tree (``SRC/.``, or
    into ``DIR/SRC``) or of several files, has an unmarked journal: rerun, it skips the files
    the journal vouches for and cp's rule is unchanged.
    """

    def __init__(
        self,
        path: str,
        dest: str,
        token: str,
        done: dict[str, dict[str, object]],
        marked: bool = True,
    ) -> None:
        self.path = path
        self.dest = dest
        self.token = token
        self.marked = marked
        self._done = done
        self._made: set[str] = set()  # folders an earlier run made (unmarked journals)
        self._lock = threading.Lock()
        self._held = -1  # an fd holding the journal's flock while this copy runs
        self._pending: list[bytes] = []  # completed files not yet written down
        self._written_at = time.monotonic()

    @property
    def marker(self) -> str:
        """The file in the destination that says this journal is about it."""
        return _marker(self.dest, self.token)

    @classmethod
    def begin(cls, sources: str | Sequence[str], dest: str, marked: bool = True) -> TreeJournal:
        """Start the journal of a copy of ``sources`` that creates the directory ``dest``
        (``marked``), or that copies into it."""
        key = _key(sources, marked)
        path = _path_for(key, dest, marked)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        token = os.urandom(8).hex()
        header = {
            "version": VERSION,
            "source": key,
            "dest": os.path.abspath(dest),
            "token": token,
            "created": time.time(),
            "marked": marked,
        }
        fd = _lock(path, key, dest, create=True)
        try:
            os.ftruncate(fd, 0)  # only now: a copy still running keeps its journal
            os.write(fd, (json.dumps(header) + "\n").encode(errors="surrogateescape"))
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, os.path.abspath(dest), token, {}, marked)
        journal._held = fd
        return journal

    @classmethod
    def reopen(
        cls, sources: str | Sequence[str], dest: str, marked: bool = True
    ) -> TreeJournal | None:
        """The journal of an earlier copy of ``sources`` into ``dest`` that did not finish."""
        key = _key(sources, marked)
        path = _path_for(key, dest, marked)
        try:
            fd = _lock(path, key, dest, create=False)
        except OSError:
            return None  # none, or none we can use: cp's rule applies
        try:
            journal = cls._read_locked(fd, path, key, dest)
        except BaseException:
            os.close(fd)
            raise
        if journal is None:
            os.close(fd)
            return None
        journal._held = fd
        return journal

    @classmethod
    def _read_locked(cls, fd: int, path: str, key: str, dest: str) -> TreeJournal | None:
        with os.fdopen(os.dup(fd), encoding="utf-8", errors="surrogateescape") as fh:
            decoded = _decode(fh.read())
        if decoded is None or (decoded.key, decoded.dest) != (key, os.path.abspath(dest)):
            return None  # not ours or unreadable: cp's rule applies
        done = {str(r["dest"]): r for r in decoded.done}
        journal = cls(path, decoded.dest, decoded.token, done, decoded.marked)
        journal._made = decoded.made
        if not _in_place(decoded.dest, journal.marker if decoded.marked else None):
            finished(path)  # that directory is gone: whatever is there now is not ours
            return None
        return journal

    def release(self) -> None:
        """This run is over, finished or not: unlock, and date the journal to now, which is
        when the copy was last worked on (``resume --prune --older-than`` counts from it)."""
        if self._held < 0:
            return
        with contextlib.suppress(OSError), self._lock:
            self._write_pending()
        with contextlib.suppress(OSError):
            os.utime(self.path)
        os.close(self._held)
        self._held = -1

    def made_root(self) -> None:
        """Mark the directory the copy made, once it exists (before any file is copied)."""
        if not self.marked:
            return
        with contextlib.suppress(OSError):
            os.close(os.open(self.marker, os.O_WRONLY | os.O_CREAT, 0o600))

    def already(self, source: str, dest: str, algo: str) -> FileResult | None:
        """The earlier result for this file, if it completed, nothing changed since, and its
        digest is in ``algo`` (what this run reports and writes to --sums)."""
        entry = self._done.get(os.path.abspath(dest))
        if entry is None or entry.get("algo") != algo:
            return None
        if not (_unchanged(entry.get("source"), source) and _unchanged(entry.get("copy"), dest)):
            return None
        size, digest = entry.get("bytes"), entry.get("digest")
        if not (isinstance(size, int) and isinstance(digest, str)):
            return None  # a damaged record vouches for nothing: the file is copied again
        return FileResult(source, dest, size, algo, digest, 0.0, resumed_from=size, reused=True)

    def made_dir(self, path: str) -> None:
        """Note a folder this copy made in a destination that was there: a rerun after an
        interrupt gives it its source's mode and times, as it does for the ones it makes."""
        with contextlib.suppress(OSError):
            self._append({"made_dir": os.path.abspath(path)}, at_once=True)

    def owns_dir(self, path: str) -> bool:
        """Whether an earlier run of this copy made the folder ``path``."""
        return os.path.abspath(path) in self._made

    def forget_completed(self) -> None:
        """``--restart``: vouch for nothing the earlier run did."""
        self._done.clear()

    def done(self, result: FileResult) -> None:
        """Note a completed file; a failure to write here only costs a copy next time.

        Notes are written together at most every ``SAVE_INTERVAL`` seconds, and when the run
        ends (``release``), not with a write per small file. A ``kill -9`` loses the last
        fraction of a second of them, which costs those files a copy on the rerun, never a
        wrong skip.
        """
        entry = _completed(result)
        if entry is not None:
            with contextlib.suppress(OSError):
                self._append(entry)

    def _append(self, record: dict[str, object], at_once: bool = False) -> None:
        line = (json.dumps(record) + "\n").encode(errors="surrogateescape")
        with self._lock:
            self._pending.append(line)
            if at_once or time.monotonic() - self._written_at >= SAVE_INTERVAL:
                self._write_pending()

    def _write_pending(self) -> None:
        """Write the notes kept so far (the caller holds ``_lock``)."""
        data = b"".join(self._pending)
        self._pending.clear()
        self._written_at = time.monotonic()
        if not data:
            return
        if self._held < 0:
            _append_to(self.path, data)
            return
        os.lseek(self._held, 0, os.SEEK_END)  # through the fd we hold: no open per file
        os.write(self._held, data)

    def finish(self) -> None:
        """The copy is complete: forget it."""
        if self.marked:
            remove_keeping_dir_times(self.marker)
        finished(self.path)
        if self._held >= 0:
            os.close(self._held)
            self._held = -1


def _completed(result: FileResult) -> dict[str, object] | None:
    """The journal's record of a file completed, or None when nothing can vouch for it."""
    if result.skipped or result.digest is None or result.fingerprints is None:
        return None
    source, copy = result.fingerprints
    return {
        "dest": copy.path,
        "source": source.as_dict(),
        "copy": copy.as_dict(),
        "bytes": result.bytes,
        "algo": result.algo,
        "digest": result.digest,
    }


def note_resumed(journal: str, result: FileResult) -> None:
    """A file of an interrupted copy, finished by ``openspec resume``: its copy's journal
    learns of it, so that running that copy again does not copy it a second time. Only an
    existing journal, appended to in one write (as a running copy appends, whose lock we
    leave alone); failing only costs that copy."""
    entry = _completed(result)
    if entry is None:
        return
    with contextlib.suppress(OSError):
        _append_to(journal, (json.dumps(entry) + "\n").encode(errors="surrogateescape"))


def _append_to(journal: str, data: bytes) -> None:
    """Add lines to an existing journal in one write, without its lock."""
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _lock(path: str, key: str, dest: str, create: bool) -> int:
    """The journal's fd, holding its lock for as long as this copy runs: prune must not take it
    from under us, and a second run of the same copy must neither rewrite nor delete it."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    if not try_lock(fd):
        os.close(fd)
        raise UsageError(
            f"a copy of '{shown(key)}' into '{os.path.abspath(dest)}' is already running; "
            "wait for it to end"
        )
    return fd


def finished(path: str) -> None:
    """Remove a journal; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _in_place(dest: str, marker: str | None) -> bool:
    """Whether a journal is still about what is at ``dest``: the directory the copy made,
    with its ``marker``; or, unmarked, the folder it copied into."""
    return os.path.isfile(marker) if marker is not None else os.path.isdir(dest)


def _marker(dest: str, token: str) -> str:
    """The file in a tree copy's destination that ties it to its journal."""
    return os.path.join(dest, f"{MARKER_PREFIX}{token}")


class _Decoded(Record):
    """What a journal says: its header, the files it completed, the folders it made."""

    __slots__ = ("key", "dest", "token", "done", "made", "marked")

    def __init__(
        self,
        key: str,
        dest: str,
        token: str,
        done: list[dict[str, object]],
        made: set[str],
        marked: bool,
    ) -> None:
        self.key = key
        self.dest = dest
        self.token = token
        self.done = done
        self.made = made
        self.marked = marked


def _decode(text: str) -> _Decoded | None:
    """A journal's contents; None when its header is not one this version wrote. Torn or
    foreign record lines are left out."""
    records = [_parse(line) for line in text.splitlines()]
    header = (records[0] if records else None) or {}
    source, dest, token = header.get("source"), header.get("dest"), header.get("token")
    if header.get("version") != VERSION or not (
        isinstance(source, str) and isinstance(dest, str) and isinstance(token, str)
    ):
        return None
    done = [r for r in records[1:] if r is not None and "dest" in r]
    made = {str(r["made_dir"]) for r in records[1:] if r is not None and "made_dir" in r}
    return _Decoded(source, dest, token, done, made, header.get("marked") is not False)


def _parse(line: str) -> dict[str, object] | None:
    """One journal line; None for a torn or foreign one (a kill -9 mid-append)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# ---------------------------------------------------------------------------- listing and pruning


class TreeCopy:
    """What ``openspec resume`` says about one unfinished copy of a tree or of several files."""

    __slots__ = ("journal", "source", "dest", "marker", "files_done", "updated")
    #: ``marker`` None for a copy into a folder that was there already (see TreeJournal).

    def __init__(
        self,
        journal: str,
        source: str | None = None,
        dest: str | None = None,
        marker: str | None = None,
        files_done: int = 0,
        updated: float = 0.0,
    ) -> None:
        self.journal = journal
        self.source = source  #: None when the journal is unreadable
        self.dest = dest
        self.marker = marker  #: the file that ties ``dest`` to this journal
        self.files_done = files_done
        self.updated = updated  #: when the copy last completed a file (the journal's mtime)

    @property
    def in_place(self) -> bool:
        """Whether the directory the copy made is still there with its marker file (for a copy
        into a folder that was there already: whether that folder still is)."""
        return self.dest is not None and _in_place(self.dest, self.marker)

    @property
    def running(self) -> bool:
        """Whether a copy is working on it now (it holds the journal's lock)."""
        return partial_locked(self.journal)


def _read_tree(path: str) -> TreeCopy | None:
    """One journal as a TreeCopy; None if it went away meanwhile."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
        updated = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return TreeCopy(path, updated=time.time())
    decoded = _decode(text)
    if decoded is None:
        return TreeCopy(path, updated=updated)
    marker = _marker(decoded.dest, decoded.token) if decoded.marked else None
    return TreeCopy(path, shown(decoded.key), decoded.dest, marker, len(decoded.done), updated)


def list_trees() -> list[TreeCopy]:
    """Every unfinished copy with a journal, oldest first (by when it last completed a file)."""
    directory = os.path.join(state_dir(), "trees")
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".jsonl") and e.is_file())
    except OSError:
        return []
    found = [t for n in names if (t := _read_tree(os.path.join(directory, n))) is not None]
    return sorted(found, key=lambda t: t.updated)


def prune_trees(older_than: float | None, now: float) -> list[str]:
    """Forget tree copies nothing can finish; with ``older_than``, also idle ones.

    A journal whose directory no longer holds the marker (deleted, or made again by hand) or
    that cannot be read serves nothing. One idle longer than ``older_than`` seconds is removed
    with its marker, so the same copy run again applies cp's rule; its partial files are
    checkpoint prune's business.
    """
    removed = []
    for tree in list_trees():
        try:
            fd = os.open(tree.journal, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if try_lock(fd):  # held while we decide, so no copy can take it up meanwhile
                removed += _prune_tree(tree, older_than, now)
        finally:
            os.close(fd)
    return removed


def _prune_tree(tree: TreeCopy, older_than: float | None, now: float) -> list[str]:
    if tree.source is None or not tree.in_place:
        why = "unreadable" if tree.source is None else f"'{tree.dest}' no longer holds it"
        with contextlib.suppress(OSError):
            os.unlink(tree.journal)
            return [f"journal of an unfinished copy ({why})"]
        return []
    if older_than is None or now - tree.updated <= older_than:
        return []
    if tree.marker is not None:
        remove_keeping_dir_times(tree.marker)
    with contextlib.suppress(OSError):
        os.unlink(tree.journal)
        idle = f"idle for {_idle(now - tree.updated)}"
        return [f"unfinished copy of '{tree.source}' -> '{tree.dest}' ({idle})"]
    return []


def _idle(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds:.0f} s"
