"""The checkpoint record: its fields, its stored (JSON) form, and the validation of whatever is
read back, field by field, so that a damaged checkpoint never steers a resume.

``checkpoint`` stores, lists and cleans up these records; it imports this module, never the
reverse. psutil is imported only inside the functions that need it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import time

from openspec_cli import hashing
from openspec_cli.errors import ExitCode, OpenspecError
from openspec_cli.records import Record

#: False when running, True for mypy (see engine.py): these names are for type checking only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".openspec-part"

MAX_RETRIES = 20  # retries kept in the file; older ones only matter as a count
MAX_ITEMS = 1000  # a sanity limit on lists read back; add_point keeps far fewer points
MAX_FILE_BYTES = 1 << 20  # real checkpoints are a few KiB; anything bigger is not ours
START_TOLERANCE = 0.01  # seconds: process start times are counted in clock ticks (1/100 s)

_OFF_MAX = 2**63 - 1  # off_t
_U64 = 2**64 - 1
_NAME_MAX = 255  # bytes in one path component, on Linux and macOS filesystems alike
_ID_RE = re.compile(r"[0-9a-f]{8}")
_HEX_RE = re.compile(r"[0-9a-f]+")
_FILE_RE = re.compile(r"([0-9a-f]{8})\.json")


class CheckpointError(OpenspecError):
    """A checkpoint is missing, unreadable or unwritable; the message says how to go on."""

    exit_code = ExitCode.USAGE


class _Invalid(Exception):
    """Why a stored checkpoint cannot be used: a short phrase for the user's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def partial_path(dest: str, transfer_id: str) -> str:
    """The hidden name beside ``dest`` that holds the data until the copy is complete. Its NAME
    part is cut to fit NAME_MAX, so that every legal ``dest`` has a legal partial name."""
    head, tail = os.path.split(dest)
    suffix = f".{transfer_id}{PARTIAL_SUFFIX}"
    name = os.fsdecode(os.fsencode(tail)[: _NAME_MAX - 1 - len(suffix)])
    return os.path.join(head, f".{name}{suffix}")


# ---------------------------------------------------------------------------- the record


class Fingerprint(Record):
    """What the source looked like when the copy started: any change means start over.

    ctime is there because mtime can be set back (``touch -d``, ``rsync -t``, ``tar``) after
    the content changed; ctime cannot be set, so a rewrite in place is seen. It also moves on
    chmod or rename: then the copy starts over, which is the safe way to be wrong. Checkpoints
    written before it was recorded have None and are compared without it.
    """

    __slots__ = ("path", "size", "mtime_ns", "inode", "device", "ctime_ns")

    def __init__(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        inode: int,
        device: int,
        ctime_ns: int | None = None,
    ) -> None:
        self.path = path
        self.size = size
        self.mtime_ns = mtime_ns
        self.inode = inode
        self.device = device
        self.ctime_ns = ctime_ns

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> Fingerprint:
        """The fingerprint of ``path`` (stored absolute) as ``st`` describes it."""
        return cls(
            os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns
        )

    def differences(self, st: os.stat_result) -> list[str]:
        """What changed since, in words for the user; empty when nothing did."""
        changes = [f"size {self.size} -> {st.st_size}"] if st.st_size != self.size else []
        for what, old, new in (
            ("mtime", self.mtime_ns, st.st_mtime_ns),
            ("ctime", self.ctime_ns, st.st_ctime_ns),
            ("inode", self.inode, st.st_ino),
            ("device", self.device, st.st_dev),
        ):
            if old is not None and old != new:
                changes.append(f"{what} changed")
        return changes


class Point(Record):
    """The digest of bytes [0, offset) of the copy: where a resume may restart once re-verified."""

    __slots__ = ("offset", "digest")

    def __init__(self, offset: int, digest: str) -> None:
        self.offset = offset
        self.digest = digest


class Owner(Record):
    """The process writing a transfer, precise enough that a reused pid is not taken for it."""

    __slots__ = ("pid", "host", "started")

    def __init__(self, pid: int, host: str, started: float) -> None:
        self.pid = pid
        self.host = host
        self.started = started  # psutil's create_time() of that process

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


class Checkpoint(Record):
    """Everything a resume must check before it trusts a single byte of the partial file."""

    __slots__ = (
        "id",
        "source",
        "dest",
        "partial",
        "algo",
        "size",
        "bytes_done",
        "points",
        "attempts",
        "retries",
        "last_error",
        "owner",
        "options",
        "created",
        "updated",
    )

    def __init__(
        self,
        id: str,
        source: Fingerprint,
        dest: str,
        partial: str,
        algo: str,
        size: int,
        bytes_done: int = 0,
        points: list[Point] | None = None,
        attempts: int = 1,
        retries: list[dict[str, Any]] | None = None,
        last_error: str | None = None,
        owner: Owner | None = None,
        options: dict[str, Any] | None = None,
        created: float | None = None,
        updated: float | None = None,
    ) -> None:
        self.id = id
        self.source = source
        self.dest = dest  # absolute final path
        self.partial = partial  # absolute partial path: partial_path(dest, id)
        self.algo = algo
        self.size = size  # source size at start
        self.bytes_done = bytes_done  # committed (written) bytes
        self.points: list[Point] = points if points is not None else []  # ascending offsets
        self.attempts = attempts
        #: errno, message, offset, at
        self.retries: list[dict[str, Any]] = retries if retries is not None else []
        self.last_error = last_error
        self.owner = owner
        self.options: dict[str, Any] = options if options is not None else {}
        now = time.time()
        self.created = created if created is not None else now
        self.updated = updated if updated is not None else now

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
        data: dict[str, Any] = {"version": SCHEMA_VERSION, **self.as_dict()}
        data["source"] = self.source.as_dict()
        data["points"] = [point.as_dict() for point in self.points]
        data["retries"] = self.retries[-MAX_RETRIES:]
        data["owner"] = None if self.owner is None else self.owner.as_dict()
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_json(cls, data: object, origin: str) -> Checkpoint:
        """Validate stored data; CheckpointError names ``origin`` and how to get rid of it."""
        try:
            return _parse(data)
        except _Invalid as err:
            raise _unreadable(_id_of(origin, data), origin, err.reason) from None


class BrokenCheckpoint(Record):
    """A checkpoint file that cannot be used, listed so that the user can remove it."""

    __slots__ = ("id", "path", "reason")

    def __init__(self, id: str, path: str, reason: str) -> None:
        self.id = id
        self.path = path
        self.reason = reason


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
    "int?": (lambda v: v is None or type(v) is int, "is not an integer or null"),
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
_SOURCE = {
    "path": "path", "size": "size", "mtime_ns": "int", "inode": "u64", "device": "u64",
    "ctime_ns": "int?",
}  # fmt: skip
#: Fields later versions of the schema added; older files may lack them (they read as None).
_ADDED = {"ctime_ns"}
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
            if key in _ADDED:
                continue
            raise _Invalid(f"{where}{key} is missing")
        if not test(value[key]):
            raise _Invalid(f"{where}{key} {_show(value[key])} {phrase}")
    return {key: value[key] for key in spec if key in value}


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
