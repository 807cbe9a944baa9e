"""Checkpoints: the sidecar that lets an interrupted copy resume without trusting anything blindly.

One small JSON file per transfer, ``<state dir>/transfers/<id>.json``. It is replaced atomically
(temporary file in the same directory, then ``rename``), so a ``kill -9`` at any moment leaves the
previous or the next version, never a torn one. Its size is bounded (a fixed number of verified
points, the last few retries), so saving it costs the same at 1 MiB or 1 TiB. Whatever is read
back is validated field by field: a damaged checkpoint is reported in one line with the command
that removes it, and never steers a resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openspec_cli import hashing
from openspec_cli.errors import ExitCode, OpenspecError, describe_os_error

SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".openspec-part"

MAX_RETRIES = 20  # retries kept in the file; older ones only matter as a count
MAX_ITEMS = 1000  # a sanity limit on lists read back; add_point keeps far fewer points
MAX_FILE_BYTES = 1 << 20  # real checkpoints are a few KiB; anything bigger is not ours
START_TOLERANCE = 0.01  # seconds: process start times are counted in clock ticks (1/100 s)
STALE_TEMP_SECONDS = 60.0  # a save holds its temporary file for microseconds
ORPHAN_GRACE_SECONDS = 60.0  # a partial file this fresh may belong to a copy that is starting

_OFF_MAX = 2**63 - 1  # off_t
_U64 = 2**64 - 1
_NAME_MAX = 255  # bytes in one path component, on Linux and macOS filesystems alike
_ID_RE = re.compile(r"[0-9a-f]{8}")
_HEX_RE = re.compile(r"[0-9a-f]+")
_FILE_RE = re.compile(r"([0-9a-f]{8})\.json")
_TEMP_RE = re.compile(r"\.[0-9a-f]{8}\.json\..+\.tmp", re.DOTALL)
_PARTIAL_RE = re.compile(r"\.(.+)\.([0-9a-f]{8})" + re.escape(PARTIAL_SUFFIX), re.DOTALL)


class CheckpointError(OpenspecError):
    """A checkpoint is missing, unreadable or unwritable; the message says how to go on."""

    exit_code = ExitCode.USAGE


class _Invalid(Exception):
    """Why a stored checkpoint cannot be used: a short phrase for the user's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------- names and places


def state_dir() -> Path:
    """``OPENSPEC_STATE_DIR``, else the platform's user state dir (honours ``XDG_STATE_HOME``)."""
    override = os.environ.get("OPENSPEC_STATE_DIR")
    if override:
        return Path(os.path.abspath(os.path.expanduser(override)))
    import platformdirs

    return Path(platformdirs.user_state_dir("openspec"))


def transfers_dir(create: bool = False) -> Path:
    """Where checkpoints live; private (0700), since they name the user's files."""
    path = state_dir() / "transfers"
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def path_for(transfer_id: str) -> Path:
    """The checkpoint file of ``transfer_id``; CheckpointError if that is not an id."""
    if not isinstance(transfer_id, str) or not _ID_RE.fullmatch(transfer_id):
        raise CheckpointError(
            f"{_show(transfer_id)} is not a transfer id (8 hex digits; list them: openspec resume)"
        )
    return transfers_dir() / f"{transfer_id}.json"


def partial_path(dest: str, transfer_id: str) -> str:
    """The hidden name beside ``dest`` that holds the data until the copy is complete. Its NAME
    part is cut to fit NAME_MAX, so that every legal ``dest`` has a legal partial name."""
    head, tail = os.path.split(dest)
    suffix = f".{transfer_id}{PARTIAL_SUFFIX}"
    name = os.fsdecode(os.fsencode(tail)[: _NAME_MAX - 1 - len(suffix)])
    return os.path.join(head, f".{name}{suffix}")


def partial_id(name: str) -> str | None:
    """The transfer id in a partial file's name (``.NAME.ID.openspec-part``), else None."""
    match = _PARTIAL_RE.fullmatch(os.path.basename(name))
    return match.group(2) if match else None


# ---------------------------------------------------------------------------- the record


@dataclass
class Fingerprint:
    """What the source looked like when the copy started: any change means start over."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> Fingerprint:
        """The fingerprint of ``path`` (stored absolute) as ``st`` describes it."""
        return cls(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def differences(self, st: os.stat_result) -> list[str]:
        """What changed since, in words for the user; empty when nothing did."""
        changes = [f"size {self.size} -> {st.st_size}"] if st.st_size != self.size else []
        for what, old, new in (
            ("mtime", self.mtime_ns, st.st_mtime_ns),
            ("inode", self.inode, st.st_ino),
            ("device", self.device, st.st_dev),
        ):
            if old != new:
                changes.append(f"{what} changed")
        return changes


@dataclass
class Point:
    """The digest of bytes [0, offset) of the copy: where a resume may restart once re-verified."""

    offset: int
    digest: str


@dataclass
class Owner:
    """The process writing a transfer, precise enough that a reused pid is not taken for it."""

    pid: int
    host: str
    started: float  # psutil's create_time() of that process

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(pid, _hostname(), _create_time(pid))

    def alive(self) -> bool:
        """Whether the owner still runs. Another host's processes cannot be seen, so the answer
        there is True: the safe one, since "running" only ever stops us touching a transfer."""
        if self.host != _hostname():
            return True
        import psutil

        try:
            proc = psutil.Process(self.pid)
            started = proc.create_time()
            zombie = proc.status() == psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, ValueError, OverflowError):
            return False
        except psutil.AccessDenied:
            return True
        return not zombie and _same_start(started, self.started)


def _hostname() -> str:
    return os.uname().nodename


@functools.lru_cache(maxsize=4)
def _create_time(pid: int) -> float:
    """A process's start time as psutil reports it; read from /proc directly on Linux while
    psutil is not loaded yet (its import costs ~25 ms on every copy's start)."""
    if "psutil" not in sys.modules:
        quick = _proc_create_time(pid)
        if quick is not None:
            return quick
    import psutil

    return psutil.Process(pid).create_time()


def _proc_create_time(pid: int) -> float | None:
    """psutil's formula on Linux: boot time (``btime``) + start ticks / clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            after_name = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith(b"btime"))
        return btime + int(after_name[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _same_start(now: float, recorded: float) -> bool:
    """Start times match. On Linux psutil adds the boot time, which the kernel gives in whole
    seconds and moves when the clock is stepped: a whole-second shift is the same process."""
    delta = now - recorded
    whole = round(delta)
    return abs(whole) <= 2 and abs(delta - whole) <= START_TOLERANCE


@dataclass
class Checkpoint:
    """Everything a resume must check before it trusts a single byte of the partial file."""

    id: str
    source: Fingerprint
    dest: str  # absolute final path
    partial: str  # absolute partial path: partial_path(dest, id)
    algo: str
    size: int  # source size at start
    bytes_done: int = 0  # committed (written) bytes
    points: list[Point] = field(default_factory=list)  # strictly ascending offsets
    attempts: int = 1
    retries: list[dict[str, Any]] = field(default_factory=list)  # errno, message, offset, at
    last_error: str | None = None
    owner: Owner | None = None
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def add_point(self, offset: int, digest: str, keep: int = 12) -> None:
        """Record a verified prefix. Points at or past ``offset`` are dropped first: the newest
        point is the truth (after a rewind, what lay beyond it is gone)."""
        if not 0 <= offset <= self.size:
            raise ValueError(f"point offset {offset} is outside 0..{self.size}")
        while self.points and self.points[-1].offset >= offset:
            self.points.pop()
        self.points.append(Point(offset, digest))
        self.bytes_done = max(self.bytes_done, offset)
        self.points = thin_points(self.points, keep)

    def to_json(self) -> dict[str, Any]:
        """The stored form; bounded in size however large the file (only the last retries)."""
        data: dict[str, Any] = {"version": SCHEMA_VERSION, **vars(self)}
        data["source"] = dict(vars(self.source))
        data["points"] = [dict(vars(point)) for point in self.points]
        data["retries"] = self.retries[-MAX_RETRIES:]
        data["owner"] = None if self.owner is None else dict(vars(self.owner))
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_json(cls, data: object, origin: str) -> Checkpoint:
        """Validate stored data; CheckpointError names ``origin`` and how to get rid of it."""
        try:
            return _parse(data)
        except _Invalid as err:
            raise _unreadable(_id_of(origin, data), origin, err.reason) from None


@dataclass
class BrokenCheckpoint:
    """A checkpoint file that cannot be used, listed so that the user can remove it."""

    id: str
    path: str
    reason: str


# ---------------------------------------------------------------------------- thinning


def thin_points(points: list[Point], keep: int) -> list[Point]:
    """At most ``keep`` of ``points`` (strictly ascending), always the oldest and newest three.

    Drops, one at a time, the point whose removal leaves the smallest gap *relative to its
    distance from the newest point* (the smallest gap in log-distance). Spacing then grows
    geometrically toward the past, so damage of any depth at the tail falls back to a point
    not much further back than the damage. (The smallest absolute gap would space points
    evenly: then losing the last 1% of a long copy costs a ninth of it.)
    """
    if keep < 4:
        raise ValueError(f"keep must be at least 4, not {keep}")
    kept = list(points)
    while len(kept) > keep:
        del kept[_cheapest(kept)]
    return kept


def _cheapest(points: list[Point]) -> int:
    """Index in 1..n-4 minimising gap / distance to the newest; compared exactly, as integers."""
    newest = points[-1].offset
    best, best_gap, best_span = 1, 0, 0
    for i in range(1, len(points) - 3):
        gap = points[i + 1].offset - points[i - 1].offset
        span = newest - points[i - 1].offset
        if i == 1 or gap * best_span < best_gap * span:
            best, best_gap, best_span = i, gap, span
    return best


# ---------------------------------------------------------------------------- validation


def _show(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _is_path(value: object) -> bool:
    if not isinstance(value, str) or "\0" in value or not os.path.isabs(value):
        return False
    try:
        os.fsencode(value)  # lone surrogates from JSON escapes cannot name a file
    except UnicodeError:
        return False
    return True


def _is_time(value: object) -> bool:
    """Seconds since the epoch, usable in arithmetic (no NaN, infinity or 400-digit int)."""
    if type(value) is int:
        return 0 <= value <= _OFF_MAX
    return type(value) is float and 0 <= value < math.inf


def _is_plain(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return isinstance(value, dict)


# What each kind of stored value must be: a test, and what to say when it fails.
_KINDS: dict[str, tuple[Callable[[Any], object], str]] = {
    "id": (lambda v: isinstance(v, str) and _ID_RE.fullmatch(v), "is not 8 lowercase hex digits"),
    "hex": (lambda v: isinstance(v, str) and _HEX_RE.fullmatch(v), "is not lowercase hex"),
    "algo": (lambda v: v in hashing.ALGORITHMS, "is not a known algorithm"),
    "str": (lambda v: isinstance(v, str), "is not a string"),
    "str?": (lambda v: v is None or isinstance(v, str), "is not a string or null"),
    "path": (_is_path, "is not an absolute path"),
    "int": (lambda v: type(v) is int, "is not an integer"),
    "size": (lambda v: type(v) is int and 0 <= v <= _OFF_MAX, "is not a size in 0..2**63-1"),
    "u64": (lambda v: type(v) is int and 0 <= v <= _U64, "is not an integer in 0..2**64-1"),
    "pid": (lambda v: type(v) is int and 0 < v < 2**31, "is not a process id"),
    "time": (_is_time, "is not a time"),
    "list": (lambda v: isinstance(v, list) and len(v) <= MAX_ITEMS, "is not a short list"),
    "object": (lambda v: isinstance(v, dict), "is not an object"),
    "object?": (lambda v: v is None or isinstance(v, dict), "is not an object or null"),
    "options": (_is_plain, "is not a plain JSON object"),
}
_TOP = {
    "id": "id", "source": "object", "dest": "path", "partial": "path", "algo": "algo",
    "size": "size", "bytes_done": "size", "points": "list", "attempts": "size",
    "retries": "list", "last_error": "str?", "owner": "object?", "options": "options",
    "created": "time", "updated": "time",
}  # fmt: skip
_SOURCE = {"path": "path", "size": "size", "mtime_ns": "int", "inode": "u64", "device": "u64"}
_POINT = {"offset": "size", "digest": "hex"}
_RETRY = {"errno": "str", "message": "str", "offset": "size", "at": "time"}
_OWNER = {"pid": "pid", "host": "str", "started": "time"}


def _fields(value: object, where: str, spec: dict[str, str]) -> dict[str, Any]:
    """The fields ``spec`` names, each checked; extra keys are ignored, missing ones are not."""
    if not isinstance(value, dict):
        raise _Invalid(f"{where.rstrip('.') or 'the data'} is not an object")
    for key, kind in spec.items():
        test, phrase = _KINDS[kind]
        if key not in value:
            raise _Invalid(f"{where}{key} is missing")
        if not test(value[key]):
            raise _Invalid(f"{where}{key} {_show(value[key])} {phrase}")
    return {key: value[key] for key in spec}


def _parse(data: object) -> Checkpoint:
    _check_version(data)
    top = _fields(data, "", _TOP)
    top["source"] = Fingerprint(**_fields(top["source"], "source.", _SOURCE))
    points = enumerate(top["points"])
    top["points"] = [Point(**_fields(p, f"points[{i}].", _POINT)) for i, p in points]
    retries = list(enumerate(top["retries"]))[-MAX_RETRIES:]
    top["retries"] = [_fields(r, f"retries[{i}].", _RETRY) for i, r in retries]
    if top["owner"] is not None:
        top["owner"] = Owner(**_fields(top["owner"], "owner.", _OWNER))
    cp = Checkpoint(**top)
    _check_consistent(cp)
    return cp


def _check_version(data: object) -> None:
    version = data.get("version") if isinstance(data, dict) else None
    if version is None:
        raise _Invalid("no schema version" if isinstance(data, dict) else "not a JSON object")
    if type(version) is not int:
        raise _Invalid(f"schema version {_show(version)} is not a number")
    if version > SCHEMA_VERSION:
        raise _Invalid(f"schema version {version} is from a newer openspec")
    if version != SCHEMA_VERSION:
        raise _Invalid(f"unknown schema version {version}")


def _check_consistent(cp: Checkpoint) -> None:
    """What no single field shows: the fields must also agree with each other."""
    if cp.bytes_done > cp.size:
        raise _Invalid(f"bytes_done {cp.bytes_done} is beyond size {cp.size}")
    if cp.partial != partial_path(cp.dest, cp.id):
        raise _Invalid("the partial file is not named after dest and id")
    previous, width = -1, hashing.hex_length(cp.algo)
    for i, point in enumerate(cp.points):
        if not previous < point.offset <= cp.bytes_done:
            raise _Invalid(
                f"points[{i}].offset {point.offset} is out of order or beyond bytes_done"
            )
        if len(point.digest) != width:
            raise _Invalid(f"points[{i}].digest is not a {cp.algo} digest")
        previous = point.offset


def _decode(raw: bytes) -> Checkpoint:
    if len(raw) > MAX_FILE_BYTES:
        raise _Invalid(f"larger than {MAX_FILE_BYTES} bytes")
    if not raw.strip():
        raise _Invalid("empty file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Invalid("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise _Invalid(f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (ValueError, RecursionError):
        raise _Invalid("invalid JSON: a number too long or nesting too deep") from None
    return _parse(data)


def _id_of(origin: str, data: object) -> str | None:
    """The id to offer to ``--discard``: the file's name, else the id stored in it."""
    match = _FILE_RE.fullmatch(os.path.basename(origin))
    if match:
        return match.group(1)
    stored = data.get("id") if isinstance(data, dict) else None
    return stored if isinstance(stored, str) and _ID_RE.fullmatch(stored) else None


def _unreadable(transfer_id: str | None, origin: str, reason: str) -> CheckpointError:
    if transfer_id is None:
        return CheckpointError(f"checkpoint '{origin}' is unreadable ({reason}); remove that file")
    return CheckpointError(
        f"checkpoint {transfer_id} ('{origin}') is unreadable ({reason}); "
        f"remove it with: openspec resume --discard {transfer_id}"
    )


# ---------------------------------------------------------------------------- store


def save(cp: Checkpoint) -> None:
    """Replace the checkpoint atomically: write a temporary file beside it, then rename.

    No fsync, on purpose: a kill -9 cannot tear it (the rename is atomic and the page cache
    outlives the process), and after a power loss an old or empty checkpoint is still safe,
    because resume re-verifies every byte of the partial against the points before using it.
    """
    target = str(path_for(cp.id))
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
        raise _unreadable(transfer_id, str(path), err.reason) from None


def _read(path: Path) -> Checkpoint:
    """FileNotFoundError when there is none; _Invalid when it cannot be used."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise _Invalid(describe_os_error(err)) from None
    cp = _decode(raw)
    if cp.id != path.stem:
        raise _Invalid(f"it records id {cp.id}")
    return cp


def delete(transfer_id: str) -> None:
    """Forget a checkpoint (not its partial file); a missing one is fine."""
    path_for(transfer_id).unlink(missing_ok=True)


def _checkpoint_files() -> list[Path]:
    directory = transfers_dir()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        message = f"cannot list checkpoints in '{directory}': {describe_os_error(err)}"
        raise CheckpointError(message, ExitCode.IO_ERROR) from err
    return [directory / name for name in names if _FILE_RE.fullmatch(name)]


def list_all() -> list[Checkpoint | BrokenCheckpoint]:
    """Every checkpoint, oldest first; unusable ones as BrokenCheckpoint (dated by mtime)."""
    found: list[tuple[float, Checkpoint | BrokenCheckpoint]] = []
    for path in _checkpoint_files():
        try:
            cp = _read(path)
        except FileNotFoundError:
            continue  # finished or discarded while we looked
        except _Invalid as err:
            found.append((_mtime(path), BrokenCheckpoint(path.stem, str(path), err.reason)))
        else:
            found.append((cp.created, cp))
    found.sort(key=lambda pair: pair[0])
    return [entry for _, entry in found]


def _mtime(path: Path | str) -> float:
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


def _orphan(path: str, now: float) -> bool:
    if path_for(str(partial_id(path))).exists():
        return False
    return now - _mtime(path) > ORPHAN_GRACE_SECONDS and not partial_locked(path)


def orphan_partials(dirs: Iterable[str]) -> list[str]:
    """Partial files in ``dirs`` (not recursive) that no checkpoint names. Skipped: locked ones
    and ones touched in the last ORPHAN_GRACE_SECONDS (a copy may be starting)."""
    now = time.time()
    found = {p for d in {os.path.abspath(d) for d in dirs} for p in _partials_in(d)}
    return sorted(path for path in found if _orphan(path, now))


def _busy(cp: Checkpoint) -> bool:
    return (cp.owner is not None and cp.owner.alive()) or partial_locked(cp.partial)


def _unlink(path: str | Path) -> bool:
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
        paths = [str(directory / n) for n in os.listdir(directory) if _TEMP_RE.fullmatch(n)]
    except OSError:
        return []
    old = [p for p in paths if now - _mtime(p) > STALE_TEMP_SECONDS]
    return [f"temporary file '{p}' left by an interrupted save" for p in old if _unlink(p)]


def prune(older_than: float | None = None, dirs: Iterable[str] = ()) -> list[str]:
    """Remove what no transfer can use any more; returns one description per file removed.

    Never touches a running transfer or a broken checkpoint (``list_all`` reports those and
    ``delete`` removes them). Files that cannot be removed are skipped, to be retried.
    """
    now, removed = time.time(), []
    entries = [cp for cp in list_all() if isinstance(cp, Checkpoint)]
    for cp in entries:
        removed += _prune_one(cp, older_than, now)
    for path in orphan_partials([*dirs, *(os.path.dirname(cp.dest) for cp in entries)]):
        if _unlink(path):
            removed.append(f"orphan partial file '{path}'")
    return removed + _stale_temp_files(now)
