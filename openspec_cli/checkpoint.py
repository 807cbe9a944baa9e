"""Checkpoints: the sidecar that lets an interrupted copy resume without trusting anything blindly.

One small JSON file per transfer, ``<state dir>/transfers/<id>.json``. It is replaced atomically
(temporary file in the same directory, then ``rename``), so a ``kill -9`` at any moment leaves the
previous or the next version, never a torn one. Its size is bounded (a fixed number of verified
points, the last few retries), so saving it costs the same at 1 MiB or 1 TiB. Whatever is read
back is validated field by field: a damaged checkpoint is reported in one line with the command
that removes it, and never steers a resume.

The record, its JSON form and the validation of what is read back are in ``checkpoint_record``;
this module names, stores, lists and cleans up checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable

from openspec_cli.checkpoint_record import (
    _FILE_RE,
    _ID_RE,
    MAX_FILE_BYTES,
    _decode,
    _hostname,
    _Invalid,
    _show,
    _unreadable,
)
from openspec_cli.checkpoint_record import MAX_RETRIES as MAX_RETRIES
from openspec_cli.checkpoint_record import PARTIAL_SUFFIX as PARTIAL_SUFFIX
from openspec_cli.checkpoint_record import SCHEMA_VERSION as SCHEMA_VERSION
from openspec_cli.checkpoint_record import BrokenCheckpoint as BrokenCheckpoint
from openspec_cli.checkpoint_record import Checkpoint as Checkpoint
from openspec_cli.checkpoint_record import CheckpointError as CheckpointError
from openspec_cli.checkpoint_record import Fingerprint as Fingerprint
from openspec_cli.checkpoint_record import Owner as Owner
from openspec_cli.checkpoint_record import Point as Point
from openspec_cli.checkpoint_record import partial_path as partial_path
from openspec_cli.checkpoint_record import thin_points as thin_points
from openspec_cli.errors import ExitCode, describe_os_error

# The names imported ``as`` themselves above are re-exported: the rest of openspec and the tests
# use them as ``checkpoint.NAME``, as they did before those moved to checkpoint_record.

STALE_TEMP_SECONDS = 60.0  # a save holds its temporary file for microseconds
ORPHAN_GRACE_SECONDS = 60.0  # a partial file this fresh may belong to a copy that is starting

_TEMP_RE = re.compile(r"\.[0-9a-f]{8}\.json\..+\.tmp", re.DOTALL)
_PARTIAL_RE = re.compile(r"\.(.+)\.([0-9a-f]{8})" + re.escape(PARTIAL_SUFFIX), re.DOTALL)


# ---------------------------------------------------------------------------- names and places


def state_dir() -> str:
    """``OPENSPEC_STATE_DIR``, else the platform's user state dir (honours ``XDG_STATE_HOME``)."""
    override = os.environ.get("OPENSPEC_STATE_DIR")
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return _linux_state_dir() or _platformdirs_state_dir()


def _linux_state_dir() -> str | None:
    """platformdirs' answer on Linux in the plain cases, without importing it; else None.

    Importing platformdirs (it pulls in pathlib, tempfile and shutil) took about a third of a
    small copy's start-up. On Linux every platformdirs >= 3 answers ``$XDG_STATE_HOME/openspec``
    when that is absolute and ``$HOME/.local/state/openspec`` when it is unset and ``HOME`` is
    absolute; anything else goes to platformdirs itself. tests/test_checkpoint.py holds the two
    to the same answers.
    """
    if not sys.platform.startswith("linux"):
        return None
    xdg = os.environ.get("XDG_STATE_HOME", "")  # empty counts as unset, as in platformdirs
    if os.path.isabs(xdg):
        return os.path.join(xdg, "openspec")
    home = os.environ.get("HOME", "")
    if xdg or not os.path.isabs(home):
        return None
    return os.path.join(os.path.expanduser("~/.local/state"), "openspec")


def _platformdirs_state_dir() -> str:
    import platformdirs

    return str(platformdirs.user_state_dir("openspec"))


def transfers_dir(create: bool = False) -> str:
    """Where checkpoints live; private (0700), since they name the user's files."""
    path = os.path.join(state_dir(), "transfers")
    if create:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode=0o700)
    return path


#: What a user can do about a state directory that cannot be written.
STATE_DIR_HINT = "OPENSPEC_STATE_DIR chooses another state directory"


def require_writable() -> None:
    """Refuse a copy up front when its checkpoints or tree journal could not be written (a
    service user whose HOME is not writable), rather than after creating folders for it."""
    path = transfers_dir()
    try:
        transfers_dir(create=True)
        reason = None if os.access(path, os.W_OK | os.X_OK) else "Permission denied"
    except OSError as err:
        reason = describe_os_error(err)
    if reason:
        raise CheckpointError(
            f"cannot write checkpoints in '{path}': {reason} ({STATE_DIR_HINT})",
            ExitCode.USAGE,
        )


def path_for(transfer_id: str) -> str:
    """The checkpoint file of ``transfer_id``; CheckpointError if that is not an id."""
    if not isinstance(transfer_id, str) or not _ID_RE.fullmatch(transfer_id):
        raise CheckpointError(
            f"{_show(transfer_id)} is not a transfer id (8 hex digits; list them: openspec resume)"
        )
    return os.path.join(transfers_dir(), f"{transfer_id}.json")


def partial_id(name: str) -> str | None:
    """The transfer id in a partial file's name (``.NAME.ID.openspec-part``), else None."""
    match = _PARTIAL_RE.fullmatch(os.path.basename(name))
    return match.group(2) if match else None


def partial_owner(name: str) -> str | None:
    """The NAME in a partial file's name (``.NAME.ID.openspec-part``; cut short for a long
    destination name, see ``partial_path``), else None."""
    match = _PARTIAL_RE.fullmatch(os.path.basename(name))
    return match.group(1) if match else None


def owner_of_partials_for(dest: str) -> str:
    """What :func:`partial_owner` says of every partial file of ``dest``, whatever its id."""
    any_id = "0" * 8
    return os.path.basename(partial_path(dest, any_id))[1 : -len(f".{any_id}{PARTIAL_SUFFIX}")]


# ---------------------------------------------------------------------------- store


def save(cp: Checkpoint) -> None:
    """Replace the checkpoint atomically: write a temporary file beside it, then rename.

    No fsync, on purpose: a kill -9 cannot tear it (the rename is atomic and the page cache
    outlives the process), and after a power loss an old or empty checkpoint is still safe,
    because resume re-verifies every byte of the partial against the points before using it.
    """
    target = path_for(cp.id)
    cp.updated = time.time()
    data = json.dumps(cp.to_json(), separators=(",", ":")).encode()
    head, name = os.path.split(target)
    temp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _write_new(temp, data)
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            reason = describe_os_error(err)
            message = f"cannot write checkpoint '{target}': {reason}"
            raise CheckpointError(message, ExitCode.IO_ERROR) from err
        raise


def _write_new(path: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        transfers_dir(create=True)
        fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "posix_fallocate"):  # best effort: a full disk fails the write anyway
            with contextlib.suppress(OSError):
                # Blocks allocated now, not at writeback: else ext4 flushes the file on the
                # rename over the old checkpoint (auto_da_alloc), and a save costs 2x more.
                os.posix_fallocate(fd, 0, len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def load(transfer_id: str) -> Checkpoint:
    """The checkpoint of ``transfer_id``, validated; CheckpointError says what to do if not."""
    path = path_for(transfer_id)
    try:
        return _read(path)
    except FileNotFoundError:
        message = f"no interrupted transfer with id {transfer_id} (list them: openspec resume)"
        raise CheckpointError(message) from None
    except _Invalid as err:
        raise _unreadable(transfer_id, path, err.reason) from None


def _read(path: str) -> Checkpoint:
    """FileNotFoundError when there is none; _Invalid when it cannot be used."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _Invalid(describe_os_error(err)) from None
    cp = _decode(raw)
    if cp.id != _stem(path):
        raise _Invalid(f"it records id {cp.id}")
    return cp


def delete(transfer_id: str) -> None:
    """Forget a checkpoint (not its partial file); a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path_for(transfer_id))


def _stem(path: str) -> str:
    """A checkpoint file's id: its name without ``.json``."""
    return os.path.splitext(os.path.basename(path))[0]


def _checkpoint_files() -> list[str]:
    directory = transfers_dir()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        message = f"cannot list checkpoints in '{directory}': {describe_os_error(err)}"
        raise CheckpointError(message, ExitCode.IO_ERROR) from err
    return [os.path.join(directory, name) for name in names if _FILE_RE.fullmatch(name)]


def list_all() -> list[Checkpoint | BrokenCheckpoint]:
    """Every checkpoint, oldest first; unusable ones as BrokenCheckpoint (dated by mtime)."""
    found: list[tuple[float, Checkpoint | BrokenCheckpoint]] = []
    for path in _checkpoint_files():
        try:
            cp = _read(path)
        except FileNotFoundError:
            continue  # finished or discarded while we looked
        except _Invalid as err:
            found.append((_mtime(path), BrokenCheckpoint(_stem(path), path, err.reason)))
        else:
            found.append((cp.created, cp))
    found.sort(key=lambda pair: pair[0])
    return [entry for _, entry in found]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def find_for(source: str, dest: str) -> Checkpoint | None:
    """The newest checkpoint of a copy from ``source`` to ``dest`` (compared absolute)."""
    key = (os.path.abspath(source), os.path.abspath(dest))
    found = [cp for cp in list_all() if isinstance(cp, Checkpoint)]
    found = [cp for cp in found if (cp.source.path, cp.dest) == key]
    return found[-1] if found else None


# ---------------------------------------------------------------------------- state and locks


def state_of(cp: Checkpoint) -> str:
    """``running (pid N)``, ``partial missing``, ``source changed`` or ``resumable``."""
    owner = cp.owner
    me = owner is not None and owner.pid == os.getpid() and owner.host == _hostname()
    if owner is not None and not me and owner.alive():
        where = "" if owner.host == _hostname() else f" on {owner.host}"
        return f"running (pid {owner.pid}{where})"
    if not os.path.lexists(cp.partial):
        return "partial missing"
    try:
        st = os.stat(cp.source.path)
    except OSError:
        return "source changed"
    return "source changed" if cp.source.differences(st) else "resumable"


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open partial file; False if another open file holds it.

    An flock lock belongs to the open file description: the holder's exit (kill -9 included)
    releases it, and a second ``open`` of the same file is refused, even in the same process.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def partial_locked(path: str) -> bool:
    """Whether some process holds the lock on ``path`` (probed by locking it for an instant)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if not try_lock(fd):
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- cleaning up


def _partials_in(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            found = [e for e in entries if partial_id(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    return [entry.path for entry in found]


def _orphan(path: str, before: float) -> bool:
    """Only our own files: another user's partial (root pruning a shared backup folder) is
    named by a checkpoint in their state directory, which we cannot see."""
    if os.path.exists(path_for(str(partial_id(path)))):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and st.st_mtime < before and not partial_locked(path)


def orphan_partials(dirs: Iterable[str], before: float | None = None) -> list[str]:
    """Our partial files in ``dirs`` (not recursive) that no checkpoint names. Skipped: locked
    ones, other users' ones, and ones written since ``before`` (by default ORPHAN_GRACE_SECONDS
    ago: a copy may be starting). Files too small for a checkpoint never have one, so a kill -9
    leaves these."""
    if before is None:
        before = time.time() - ORPHAN_GRACE_SECONDS
    found = {p for d in {os.path.abspath(d) for d in dirs} for p in _partials_in(d)}
    return sorted(path for path in found if _orphan(path, before))


def _busy(cp: Checkpoint) -> bool:
    return (cp.owner is not None and cp.owner.alive()) or partial_locked(cp.partial)


def _unlink(path: str) -> bool:
    """True if we removed it; a failure is left for the next prune to retry."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _prune_one(cp: Checkpoint, older_than: float | None, now: float) -> list[str]:
    if _busy(cp):
        return []
    if not os.path.lexists(cp.partial):
        gone = f"checkpoint {cp.id} (its partial file '{cp.partial}' is gone)"
        return [gone] if _unlink(path_for(cp.id)) else []
    if older_than is None or now - cp.updated <= older_than or not _unlink(cp.partial):
        return []
    idle = f"idle for {(now - cp.updated) / 3600:.1f} h"
    removed = [f"partial file '{cp.partial}' of transfer {cp.id} ({idle})"]
    if _unlink(path_for(cp.id)):
        removed.append(f"checkpoint {cp.id} ({idle})")
    return removed


def _stale_temp_files(now: float) -> list[str]:
    directory = transfers_dir()
    try:
        paths = [os.path.join(directory, n) for n in os.listdir(directory) if _TEMP_RE.fullmatch(n)]
    except OSError:
        return []
    old = [p for p in paths if now - _mtime(p) > STALE_TEMP_SECONDS]
    return [f"temporary file '{p}' left by an interrupted save" for p in old if _unlink(p)]


def prune(older_than: float | None = None, dirs: Iterable[str] = ()) -> list[str]:
    """Remove what no transfer can use any more; returns one description per file removed.
    Orphaned partial files are looked for in ``dirs`` and every folder below them (a killed
    tree copy leaves them in its subfolders), and beside every checkpoint's destination.

    Never touches a running transfer or a broken checkpoint (``list_all`` reports those and
    ``delete`` removes them). Files that cannot be removed are skipped, to be retried.
    """
    now, removed = time.time(), []
    entries = [cp for cp in list_all() if isinstance(cp, Checkpoint)]
    for cp in entries:
        removed += _prune_one(cp, older_than, now)
    folders = [below for top in dirs for below, _, _ in os.walk(top)]  # a tree's subfolders too
    for path in orphan_partials([*folders, *(os.path.dirname(cp.dest) for cp in entries)]):
        if _unlink(path):
            removed.append(f"orphan partial file '{path}'")
    return removed + _stale_temp_files(now)
