"""Checkpoints: schema and validation, atomic saves under kill -9, locks, states, pruning.

Real processes where the property is about processes (kill -9, flock, pid reuse); hypothesis for
the pure parts (round trip, corruption never escapes as anything but CheckpointError, thinning).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openspec_cli import checkpoint as ckpt
from openspec_cli import hashing
from openspec_cli.checkpoint import (
    BrokenCheckpoint,
    Checkpoint,
    CheckpointError,
    Fingerprint,
    Owner,
    Point,
)
from openspec_cli.errors import ExitCode

TID = "0123abcd"
DAY = 86400.0
OLD = time.time() - 3600  # older than every grace period


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(path))
    return path


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real second process that stays alive during the test."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def make(tmp_path: Path, tid: str = TID, name: str = "dst.bin", size: int = 100) -> Checkpoint:
    """A checkpoint for a real source file in tmp_path (partial not created)."""
    src = tmp_path / f"src-{tid}"
    src.write_bytes(b"x" * size)
    dest = str(tmp_path / name)
    return Checkpoint(
        id=tid, source=Fingerprint.of(str(src), src.stat()), dest=dest,
        partial=ckpt.partial_path(dest, tid), algo="xxh128", size=size,
    )  # fmt: skip


def owner_of(proc: subprocess.Popen[bytes]) -> Owner:
    return Owner(proc.pid, os.uname().nodename, psutil.Process(proc.pid).create_time())


def write_raw(cp: Checkpoint, **changes: Any) -> Path:
    """Store ``cp`` as is (``save`` would stamp ``updated``), with top-level keys changed."""
    path = Path(ckpt.path_for(cp.id))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**cp.to_json(), **changes}))
    return path


def age(path: str | Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# ---------------------------------------------------------------------------- where state lives


def test_state_dir_honours_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(tmp_path / "mine"))
    assert Path(ckpt.state_dir()) == tmp_path / "mine"
    assert Path(ckpt.path_for(TID)) == tmp_path / "mine" / "transfers" / f"{TID}.json"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG is a Linux convention")
def test_state_dir_follows_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSPEC_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Path(ckpt.state_dir()) == tmp_path / "xdg" / "openspec"


def _platformdirs_or_error() -> str:
    try:
        return ckpt._platformdirs_state_dir()
    except Exception as err:  # noqa: BLE001 - compared, whatever it is
        return f"error: {type(err).__name__}"


def _ours_or_error() -> str:
    try:
        return ckpt.state_dir()
    except Exception as err:  # noqa: BLE001 - compared, whatever it is
        return f"error: {type(err).__name__}"


#: (XDG_STATE_HOME, HOME, whether openspec answers without platformdirs); None = unset.
STATE_ENVIRONMENTS = [
    ("{tmp}/xdg", "{tmp}/home", True),
    ("{tmp}/xdg/", "{tmp}/home", True),
    (None, "{tmp}/home", True),
    (None, "{tmp}/home/", True),
    (None, "/", True),
    ("", "{tmp}/home", True),
    ("   ", "{tmp}/home", False),
    ("relative/xdg", "{tmp}/home", False),
    ("~/xdg", "{tmp}/home", False),
    (None, "relative/home", False),
    (None, None, False),
    ("{tmp}/xdg", None, True),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the shortcut is Linux's")
@pytest.mark.parametrize(("xdg", "home", "shortcut"), STATE_ENVIRONMENTS)
def test_state_dir_is_platformdirs_answer_with_or_without_importing_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    xdg: str | None,
    home: str | None,
    shortcut: bool,
) -> None:
    monkeypatch.delenv("OPENSPEC_STATE_DIR", raising=False)
    for name, value in (("XDG_STATE_HOME", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert (ckpt._linux_state_dir() is not None) == shortcut
    assert _ours_or_error() == _platformdirs_or_error()


def test_transfers_dir_is_created_private_only_when_asked(state: Path) -> None:
    assert not Path(ckpt.transfers_dir()).exists()
    made = Path(ckpt.transfers_dir(create=True))
    assert made == state / "transfers"
    assert made.stat().st_mode & 0o777 == 0o700
    assert state.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("bad", ["", "0123ABCD", "0123abc", "0123abcde", "../../etc", "0123abcg"])
def test_ids_are_eight_lowercase_hex_digits(state: Path, bad: str) -> None:
    with pytest.raises(CheckpointError, match="not a transfer id") as info:
        Path(ckpt.path_for(bad))
    assert info.value.exit_code == ExitCode.USAGE


def test_partial_names() -> None:
    part = ckpt.partial_path("/d/my.file.iso", TID)
    assert part == f"/d/.my.file.iso.{TID}.openspec-part"
    assert ckpt.partial_id(part) == TID
    assert ckpt.partial_id(os.path.basename(part)) == TID
    assert ckpt.partial_id(f".a\nb.{TID}.openspec-part") == TID
    for name in ["x.openspec-part", f".{TID}.openspec-part", f"a.{TID}.openspec-part",
                 f".a.{TID}.openspec-part.tmp", ".a.0123ABCD.openspec-part"]:  # fmt: skip
        assert ckpt.partial_id(name) is None
    assert ckpt.PARTIAL_SUFFIX == ".openspec-part"


@pytest.mark.parametrize("name", ["n" * 255, "é" * 127, "日本" * 42, "a" * 230 + "é"])
def test_partial_names_of_the_longest_legal_names_are_legal(tmp_path: Path, name: str) -> None:
    assert len(os.fsencode(name)) <= 255
    part = ckpt.partial_path(str(tmp_path / name), TID)
    assert os.path.dirname(part) == str(tmp_path)
    assert len(os.fsencode(os.path.basename(part))) <= 255
    assert ckpt.partial_id(part) == TID
    assert ckpt.partial_owner(part) == ckpt.owner_of_partials_for(str(tmp_path / name))
    assert ckpt.partial_owner(part) != ckpt.owner_of_partials_for(str(tmp_path / "other"))
    Path(part).write_bytes(b"ok")  # the filesystem takes it


# ---------------------------------------------------------------------------- the record


def test_fingerprint_names_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fp = Fingerprint.of(os.path.relpath(path), path.stat())
    assert fp.path == str(path)
    assert fp.differences(path.stat()) == []
    os.utime(path, ns=(1, fp.mtime_ns + 1))  # also moves ctime, which cannot be set
    assert fp.differences(path.stat()) == ["mtime changed", "ctime changed"]
    path.write_bytes(b"abcde")
    assert fp.differences(path.stat())[0] == "size 3 -> 5"
    other = tmp_path / "g"
    other.write_bytes(b"abc")
    os.utime(other, ns=(1, fp.mtime_ns))
    other.replace(path)
    assert "inode changed" in fp.differences(path.stat())


def test_a_rewrite_in_place_with_mtime_set_back_is_seen(tmp_path: Path) -> None:
    """Same size, same mtime (``touch -d``, ``rsync -t``), other bytes: only ctime tells."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    before = path.stat()
    fp = Fingerprint.of(str(path), before)
    time.sleep(0.01)  # ctime has the kernel clock's granularity
    with open(path, "r+b") as fh:
        fh.write(b"X")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fp.differences(path.stat()) == ["ctime changed"]


def test_checkpoints_from_before_ctime_was_recorded_still_load(tmp_path: Path) -> None:
    cp = make(tmp_path, size=1000)
    data = cp.to_json()
    del data["source"]["ctime_ns"]
    again = Checkpoint.from_json(data, "old.json")
    assert again.source.ctime_ns is None
    assert again.source.differences(os.stat(cp.source.path)) == []


def test_add_point_commits_and_drops_what_lies_beyond(tmp_path: Path) -> None:
    cp = make(tmp_path, size=1000)
    digest = "0" * 32
    for offset in (0, 100, 200, 300):
        cp.add_point(offset, digest)
    assert cp.bytes_done == 300
    cp.add_point(150, "1" * 32)  # a rewind: 200 and 300 can no longer be trusted
    assert [p.offset for p in cp.points] == [0, 100, 150]
    assert cp.bytes_done == 300  # committed bytes only grow here; resume sets them itself
    cp.add_point(150, "2" * 32)
    assert cp.points[-1] == Point(150, "2" * 32)
    with pytest.raises(ValueError, match="outside"):
        cp.add_point(1001, digest)


def test_saved_size_does_not_grow_with_the_file(state: Path, tmp_path: Path) -> None:
    cp = make(tmp_path)
    cp.size = 1 << 50
    sizes = []
    for n in range(1, 20001):
        cp.add_point(n << 20, f"{n:032x}")
        if n % 7 == 0:
            cp.retries.append({"errno": "EIO", "message": "I/O error", "offset": n, "at": 1.0})
        if n in (1000, 20000):
            sizes.append(len(json.dumps(cp.to_json())))
    assert len(cp.points) == 12
    assert sizes[1] - sizes[0] < 100  # only the digits of bigger numbers
    assert sizes[1] < 8192
    ckpt.save(cp)
    assert len(ckpt.load(TID).retries) == ckpt.MAX_RETRIES


# ---------------------------------------------------------------------------- round trip


def _paths() -> st.SearchStrategy[str]:
    chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\0/")
    escaped = st.sampled_from(["\udc80", "\udcff", "\udce9"])  # undecodable bytes, as os gives them
    part = st.lists(chars | escaped, min_size=1, max_size=12).map("".join)
    return st.lists(part, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


_times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip


@st.composite
def checkpoints(draw: st.DrawFn) -> Checkpoint:
    tid = draw(st.text("0123456789abcdef", min_size=8, max_size=8))
    algo = draw(st.sampled_from(hashing.ALGORITHMS))
    size = draw(st.integers(0, 2**63 - 1))
    done = draw(st.integers(0, size))
    offsets = sorted(draw(st.sets(st.integers(0, done), max_size=14)))
    hexes = st.text("0123456789abcdef", min_size=hashing.hex_length(algo),
                    max_size=hashing.hex_length(algo))  # fmt: skip
    dest = draw(_paths())
    retry = st.fixed_dictionaries({"errno": st.text(max_size=8), "message": st.text(max_size=30),
                                   "offset": st.integers(0, 2**63 - 1), "at": _times})  # fmt: skip
    owner = st.builds(Owner, st.integers(1, 2**31 - 1), st.text(max_size=20), _times)
    return Checkpoint(
        id=tid,
        source=Fingerprint(draw(_paths()), draw(st.integers(0, 2**63 - 1)),
                           draw(st.integers(-(2**80), 2**80)), draw(st.integers(0, 2**64 - 1)),
                           draw(st.integers(0, 2**64 - 1))),
        dest=dest, partial=ckpt.partial_path(dest, tid), algo=algo, size=size, bytes_done=done,
        points=[Point(o, draw(hexes)) for o in offsets], attempts=draw(st.integers(0, 1000)),
        retries=draw(st.lists(retry, max_size=ckpt.MAX_RETRIES)),
        last_error=draw(st.none() | st.text(max_size=40)), owner=draw(st.none() | owner),
        options=draw(st.dictionaries(st.text(max_size=10), _json, max_size=4)),
        created=draw(_times), updated=draw(_times),
    )  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(cp=checkpoints())
def test_json_round_trip(cp: Checkpoint) -> None:
    stored = json.dumps(cp.to_json())
    assert json.loads(stored)["version"] == ckpt.SCHEMA_VERSION
    assert Checkpoint.from_json(json.loads(stored), "x.json") == cp


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cp=checkpoints())
def test_save_then_load_round_trip(state: Path, cp: Checkpoint) -> None:
    ckpt.save(cp)
    loaded = ckpt.load(cp.id)
    assert loaded.updated == cp.updated
    assert loaded == cp


# ---------------------------------------------------------------------------- corruption


def _valid(tmp_path: Path) -> dict[str, Any]:
    cp = make(tmp_path, size=1000)
    cp.owner = Owner(123, "host", 1.5)
    cp.add_point(0, hashing.digest_bytes(b""))
    cp.add_point(500, "a" * 32)
    cp.retries.append({"errno": "EIO", "message": "m", "offset": 3, "at": 1.0})
    return cp.to_json()


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with ..., delete) a dotted path such as ``points.1.offset``."""
    *parents, last = path.split(".")
    target: Any = data
    for step in parents:
        target = target[int(step)] if isinstance(target, list) else target[step]
    key: Any = int(last) if isinstance(target, list) else last
    if value is ...:
        del target[key]
    else:
        target[key] = value


CORRUPTIONS: list[tuple[str, Any, str]] = [
    ("version", 99, "newer openspec"),
    ("version", 0, "unknown schema version 0"),
    ("version", "1", "schema version '1' is not a number"),
    ("version", ..., "no schema version"),
    ("version", True, "not a number"),
    ("id", "0123ABCD", "not 8 lowercase hex"),
    ("id", 12345678, "not 8 lowercase hex"),
    ("algo", "crc32", "not a known algorithm"),
    ("size", -1, "size -1 is not a size"),
    ("size", 2**63, "is not a size"),
    ("size", 1.0, "is not a size"),
    ("size", "100", "is not a size"),
    ("size", True, "is not a size"),
    ("size", 499, "bytes_done 500 is beyond size 499"),
    ("bytes_done", -5, "bytes_done -5"),
    ("bytes_done", 499, "points[1].offset 500 is out of order or beyond bytes_done"),
    ("source", [], "source [] is not an object"),
    ("source.size", -1, "source.size -1"),
    ("source.inode", -1, "source.inode"),
    ("source.mtime_ns", 1.5, "source.mtime_ns"),
    ("source.path", "relative/path", "not an absolute path"),
    ("source.path", "/a\x00b", "not an absolute path"),
    ("source.path", "/\ud800", "not an absolute path"),
    ("source.device", ..., "source.device is missing"),
    ("dest", None, "dest None is not an absolute path"),
    ("partial", "/etc/passwd", "not named after dest and id"),
    ("points", {}, "points {} is not a short list"),
    ("points", [{"offset": 0, "digest": "0" * 32}] * 1001, "not a short list"),
    ("points.1", 5, "points[1] is not an object"),
    ("points.1.offset", 0, "points[1].offset 0 is out of order"),
    ("points.1.offset", 600, "points[1].offset 600 is out of order or beyond bytes_done"),
    ("points.1.offset", -3, "points[1].offset -3 is not a size"),
    ("points.1.digest", "A" * 32, "not lowercase hex"),
    ("points.1.digest", "ab", "not a xxh128 digest"),
    ("points.1.digest", "g" * 32, "not lowercase hex"),
    ("points.1.digest", ..., "points[1].digest is missing"),
    ("attempts", -1, "attempts -1"),
    ("retries.0.at", "yesterday", "retries[0].at 'yesterday' is not a time"),
    ("retries.0.errno", 5, "retries[0].errno 5 is not a string"),
    ("last_error", 3, "last_error 3 is not a string or null"),
    ("owner", "me", "owner 'me' is not an object or null"),
    ("owner.pid", 0, "owner.pid 0 is not a process id"),
    ("owner.started", float("nan"), "owner.started nan is not a time"),
    ("options", {"x": float("inf")}, "options"),
    ("options", [], "options [] is not a plain JSON object"),
    ("created", -1.0, "created -1.0 is not a time"),
    ("updated", 10**5000, "updated <int> is not a time"),
    ("updated", ..., "updated is missing"),
]


@pytest.mark.parametrize(
    ("path", "value", "reason"), CORRUPTIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CORRUPTIONS)]
)
def test_from_json_rejects_corruption_with_a_way_forward(
    tmp_path: Path, path: str, value: Any, reason: str
) -> None:
    data = _valid(tmp_path)
    Checkpoint.from_json(json.loads(json.dumps(data)), "ok.json")  # the base is valid
    _set(data, path, value)
    origin = f"/state/transfers/{TID}.json"
    with pytest.raises(CheckpointError) as info:
        Checkpoint.from_json(data, origin)
    message = info.value.message
    assert reason in message
    assert origin in message
    assert message.endswith(f"remove it with: openspec resume --discard {TID}")
    assert "\n" not in message
    assert info.value.exit_code == ExitCode.USAGE


def test_from_json_without_an_id_in_the_file_name_uses_the_stored_one(tmp_path: Path) -> None:
    data = _valid(tmp_path) | {"size": -1}
    with pytest.raises(CheckpointError, match=f"--discard {TID}$"):
        Checkpoint.from_json(data, "<memory>")
    with pytest.raises(CheckpointError, match="remove that file$"):
        Checkpoint.from_json([1, 2], "<memory>")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"\0" * 64, "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"version": 99}', "newer openspec"),
        (b'{"version": 1}', "id is missing"),
        (b"[" * 100000, "nesting too deep"),
        (b"1" * 5000, "number too long"),
        (b" " * (2 << 20), "larger than"),
    ],
)
def test_load_reports_unreadable_files(state: Path, raw: bytes, reason: str) -> None:
    path = Path(ckpt.path_for(TID))
    path.parent.mkdir(parents=True)
    path.write_bytes(raw)
    with pytest.raises(CheckpointError) as info:
        ckpt.load(TID)
    assert reason in info.value.message
    assert f"checkpoint {TID} ('{path}') is unreadable (" in info.value.message
    assert info.value.message.endswith(f"openspec resume --discard {TID}")


def test_every_truncation_of_a_real_checkpoint_is_refused(state: Path, tmp_path: Path) -> None:
    cp = Checkpoint.from_json(_valid(tmp_path), "x")
    ckpt.save(cp)
    path = Path(ckpt.path_for(TID))
    whole = path.read_bytes()
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        with pytest.raises(CheckpointError, match="unreadable"):
            ckpt.load(TID)


def test_load_refuses_a_file_that_records_another_id(state: Path, tmp_path: Path) -> None:
    cp = make(tmp_path)
    ckpt.save(cp)
    os.rename(Path(ckpt.path_for(TID)), Path(ckpt.path_for("ffffffff")))
    with pytest.raises(CheckpointError, match=f"records id {TID}.*--discard ffffffff"):
        ckpt.load("ffffffff")


def test_load_of_an_unknown_id_says_so(state: Path) -> None:
    with pytest.raises(CheckpointError, match="no interrupted transfer with id deadbeef"):
        ckpt.load("deadbeef")


@settings(max_examples=100, deadline=None)
@given(data=_json)
def test_arbitrary_json_raises_only_checkpoint_error(data: object) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_json(data, f"{TID}.json")


@settings(max_examples=100, deadline=None)
@given(path=st.sampled_from([c[0] for c in CORRUPTIONS if c[1] is not ...]), value=_json)
def test_any_field_replaced_by_anything_is_valid_or_checkpoint_error(
    tmp_path_factory: pytest.TempPathFactory, path: str, value: object
) -> None:
    data = _valid(tmp_path_factory.getbasetemp())
    _set(data, path, value)
    with contextlib.suppress(CheckpointError):
        Checkpoint.from_json(data, f"{TID}.json")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=300)
    | st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_random_or_damaged_bytes_raise_only_checkpoint_error(
    state: Path, tmp_path: Path, raw: bytes | list[tuple[int, int]]
) -> None:
    path = Path(ckpt.path_for(TID))
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(raw, list):  # flip bytes of a valid checkpoint
        data = bytearray(json.dumps(_valid(tmp_path)).encode())
        for where, byte in raw:
            data[where % len(data)] = byte
        raw = bytes(data)
    path.write_bytes(raw)
    try:
        ckpt.load(TID)
    except CheckpointError as err:
        message = err.message
    else:
        return
    assert "\n" not in message


# ---------------------------------------------------------------------------- thinning


@st.composite
def ascending(draw: st.DrawFn) -> list[Point]:
    offsets = sorted(draw(st.sets(st.integers(0, 2**63 - 1), max_size=80)))
    return [Point(o, f"{i:x}") for i, o in enumerate(offsets)]


@settings(max_examples=120, deadline=None)
@given(points=ascending(), keep=st.integers(4, 20))
def test_thin_points_keeps_a_bounded_subsequence(points: list[Point], keep: int) -> None:
    out = ckpt.thin_points(points, keep)
    assert len(out) == min(len(points), keep)
    offsets = [p.offset for p in out]
    assert offsets == sorted(set(offsets))
    it = iter(points)
    assert all(p in it for p in out)  # a subsequence
    if points:
        assert out[0] == points[0]
        assert out[-3:] == points[-3:]


@settings(max_examples=120, deadline=None)
@given(points=ascending(), keep=st.integers(4, 20))
def test_thin_points_bounds_every_new_gap_in_log_distance(points: list[Point], keep: int) -> None:
    """Each removal merges the smallest log-gap among n-4 >= keep-3 candidates, whose merged
    gaps sum to at most twice the log-span from the oldest to the third newest point. So every
    gap that thinning creates is at most 2 / (keep - 3) of that span, in log(distance to the
    newest point): the spacing is geometric, never one huge hole."""
    if len(points) <= keep:
        return
    out = ckpt.thin_points(points, keep)
    newest, third = points[-1].offset, points[-3].offset
    before = {(a.offset, b.offset) for a, b in pairwise(points)}
    span_far, span_near = newest - points[0].offset, newest - third
    for a, b in pairwise(out):
        if b.offset > third or (a.offset, b.offset) in before:
            continue
        # (far/near)^(keep-3) <= (span_far/span_near)^2, in exact integers
        far, near = newest - a.offset, newest - b.offset
        assert far ** (keep - 3) * span_near**2 <= span_far**2 * near ** (keep - 3)


@pytest.mark.parametrize("keep", [4, 6, 12])
@pytest.mark.parametrize("steps", ["even", "uneven"])
def test_a_long_copy_keeps_points_near_the_tail(keep: int, steps: str) -> None:
    """A copy checkpointed n times (steps of 1..3): damage of any depth d at the tail falls back
    at most R times further than d, with R = max(2.5, (n / 2) ** (2 / (keep - 3))) by the gap
    bound above (12 points, 3000 checkpoints: R ~ 5). Even spacing would give R ~ n / keep."""
    rng, points, offset, n = random.Random(keep), [Point(0, "0")], 0, 3000
    for _ in range(n):
        offset += 1 if steps == "even" else rng.randint(1, 3)
        points = ckpt.thin_points([*points, Point(offset, "0")], keep)
    ages = [offset - p.offset for p in points]
    bound = max(2.5, (offset / 2) ** (2 / (keep - 3)))
    for far, near in pairwise(ages):
        if near >= ages[-3]:
            assert far / near <= bound, (ages, bound)
    assert len(points) == keep
    assert ages[-3] <= (2 if steps == "even" else 6)  # the newest three are always there


def test_thin_points_needs_room_for_its_protected_points() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        ckpt.thin_points([Point(i, "0") for i in range(10)], 3)


# ---------------------------------------------------------------------------- atomic saves

_SAVER = textwrap.dedent(
    """
    import sys
    from openspec_cli import checkpoint as c
    tid, src = sys.argv[1], sys.argv[2]
    cp = c.Checkpoint(id=tid, source=c.Fingerprint(src, 1 << 40, 1, 2, 3), dest=src + ".out",
                      partial=c.partial_path(src + ".out", tid), algo="xxh128", size=1 << 40,
                      owner=c.Owner.current())
    n = 0
    while True:
        n += 1
        cp.add_point(n * 4096, format(n, "032x"))
        cp.retries.append({"errno": "EIO", "message": "m" * (n % 97), "offset": n, "at": 1.0})
        cp.last_error = "e" * (n * 7919 % 40000)  # the file's length changes with every save
        c.save(cp)
        if n == 50:
            print("saving", flush=True)
    """
)


def test_kill_9_never_leaves_a_torn_checkpoint(state: Path, tmp_path: Path) -> None:
    rng = random.Random(9)
    env = {**os.environ, "OPENSPEC_STATE_DIR": str(state)}
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, TID, str(tmp_path / "s")],
                                env=env, stdout=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"saving\n"
        time.sleep(rng.uniform(0, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cp = ckpt.load(TID)  # never raises: every version on disk is complete
        assert cp.bytes_done == cp.points[-1].offset >= 50 * 4096
        assert len(cp.last_error or "") == cp.bytes_done // 4096 * 7919 % 40000
        entries = ckpt.list_all()
        assert [e.id for e in entries] == [TID]
        assert isinstance(entries[0], Checkpoint)
    assert {p.name for p in Path(ckpt.transfers_dir()).iterdir() if not p.name.startswith(".")} == {
        f"{TID}.json"
    }


def test_save_reports_an_unwritable_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("OPENSPEC_STATE_DIR", str(blocker))
    with pytest.raises(CheckpointError, match="cannot write checkpoint") as info:
        ckpt.save(make(tmp_path))
    assert info.value.exit_code == ExitCode.IO_ERROR


def test_save_is_fast_and_does_not_fsync(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sync(fd: int) -> None:
        raise AssertionError("save must not wait for the disk")

    monkeypatch.setattr(os, "fsync", no_sync)
    monkeypatch.setattr(os, "fdatasync", no_sync)
    cp = make(tmp_path)
    cp.size = 1 << 40
    cp.owner = Owner.current()
    for n in range(1, 100):
        cp.add_point(n << 24, f"{n:032x}")
    assert len(cp.points) == 12
    ckpt.save(cp)
    times = []
    for _ in range(300):
        start = time.perf_counter()
        ckpt.save(cp)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005  # typically ~0.05 ms; generous for slow CI disks


# ---------------------------------------------------------------------------- listing and finding


def test_list_all_reports_garbage_and_ignores_other_files(state: Path, tmp_path: Path) -> None:
    first, second = make(tmp_path, "11111111"), make(tmp_path, "22222222")
    second.created = first.created - 10
    ckpt.save(first)
    ckpt.save(second)
    folder = Path(ckpt.transfers_dir())
    (folder / "33333333.json").write_bytes(b'{"version": 1, "id": "333')
    (folder / f".11111111.json.{os.getpid()}.1.tmp").write_bytes(b"{")
    (folder / "notes.txt").write_text("hello")
    (folder / "ABCDEF12.json").write_text("{}")
    entries = ckpt.list_all()
    assert [e.id for e in entries if isinstance(e, Checkpoint)] == ["22222222", "11111111"]
    (broken,) = [e for e in entries if isinstance(e, BrokenCheckpoint)]
    assert broken.id == "33333333"
    assert broken.path == str(folder / "33333333.json")
    assert "invalid JSON" in broken.reason


def test_list_all_without_a_state_dir_is_empty(state: Path) -> None:
    assert ckpt.list_all() == []


def test_find_for_matches_absolute_paths_newest_first(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older, newer, other = (
        make(tmp_path, "11111111"),
        make(tmp_path, "22222222"),
        make(tmp_path, "33333333"),
    )
    newer.source = older.source
    newer.created = older.created + 5
    other.dest = other.dest + ".x"
    other.partial = ckpt.partial_path(other.dest, other.id)
    for cp in (newer, older, other):
        ckpt.save(cp)
    monkeypatch.chdir(tmp_path)
    found = ckpt.find_for(os.path.relpath(older.source.path), "dst.bin")
    assert found is not None
    assert found.id == "22222222"
    assert ckpt.find_for(older.source.path, str(tmp_path / "elsewhere")) is None


# ---------------------------------------------------------------------------- owners and states


def test_owner_of_this_process_is_alive() -> None:
    me = Owner.current()
    assert me.pid == os.getpid()
    assert me.alive()


def test_owner_is_dead_once_the_process_is_gone() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    owner = owner_of(proc)
    assert owner.alive()
    proc.kill()
    time.sleep(0.05)
    assert not owner.alive()  # a zombie, not yet reaped, is not running
    proc.wait()
    assert not owner.alive()


def test_a_reused_pid_is_not_the_owner(sleeper: subprocess.Popen[bytes]) -> None:
    real = owner_of(sleeper)
    for shift in (-100.0, -0.5, 0.3, 7.0):
        assert not Owner(real.pid, real.host, real.started + shift).alive()
    for shift in (0.0, 0.005, 1.0, -2.0):  # btime moves in whole seconds on clock steps
        assert Owner(real.pid, real.host, real.started + shift).alive()


def test_owner_on_another_host_is_assumed_alive() -> None:
    assert Owner(999_999, "some-other-host.example", 0.0).alive()


def test_state_of_each_state(state: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    cp = make(tmp_path)
    cp.owner = owner_of(sleeper)
    assert ckpt.state_of(cp) == f"running (pid {sleeper.pid})"
    cp.owner = Owner(sleeper.pid, "elsewhere", 0.0)
    assert ckpt.state_of(cp) == f"running (pid {sleeper.pid} on elsewhere)"
    cp.owner = Owner.current()  # our own transfer is not "running elsewhere"
    assert ckpt.state_of(cp) == "partial missing"
    Path(cp.partial).write_bytes(b"x" * 10)
    assert ckpt.state_of(cp) == "resumable"
    cp.owner = None
    assert ckpt.state_of(cp) == "resumable"
    Path(cp.source.path).write_bytes(b"y" * 101)
    assert ckpt.state_of(cp) == "source changed"
    os.unlink(cp.source.path)
    assert ckpt.state_of(cp) == "source changed"


# ---------------------------------------------------------------------------- locks

_LOCKER = textwrap.dedent(
    """
    import os, sys, time
    from openspec_cli.checkpoint import try_lock
    fd = os.open(sys.argv[1], os.O_RDWR)
    print(try_lock(fd), flush=True)
    time.sleep(60)
    """
)


def test_try_lock_across_processes_and_after_kill_9(tmp_path: Path) -> None:
    part = tmp_path / f".f.{TID}.openspec-part"
    part.write_bytes(b"data")
    holder = subprocess.Popen([sys.executable, "-c", _LOCKER, str(part)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"True\n"
        fd = os.open(part, os.O_RDWR)
        try:
            assert not ckpt.try_lock(fd)
            assert ckpt.partial_locked(str(part))
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            assert ckpt.try_lock(fd)
            assert ckpt.try_lock(fd)  # taking it again on the same open file is fine
            other = os.open(part, os.O_RDONLY)
            assert not ckpt.try_lock(other)  # a second open, even in this process, is refused
            os.close(other)
        finally:
            os.close(fd)
        assert not ckpt.partial_locked(str(part))  # closing released it
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------------- orphans and pruning


def test_orphan_partials(state: Path, tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    orphan, known, fresh, locked, nested = (
        d / ".a.11111111.openspec-part", d / ".b.22222222.openspec-part",
        d / ".c.33333333.openspec-part", d / ".e.44444444.openspec-part",
        d / "sub" / ".f.55555555.openspec-part",
    )  # fmt: skip
    for path in (orphan, known, fresh, locked, nested, d / "plain.txt", d / ".x.openspec-part"):
        path.write_bytes(b"x")
        if path is not fresh:
            age(path)
    ckpt.save(make(tmp_path, "22222222"))
    fd = os.open(locked, os.O_RDONLY)
    try:
        assert ckpt.try_lock(fd)
        assert ckpt.orphan_partials([str(d), str(d), str(tmp_path / "missing")]) == [str(orphan)]
    finally:
        os.close(fd)
    assert ckpt.orphan_partials([str(d)]) == sorted([str(orphan), str(locked)])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_partial_is_no_orphan_of_ours(state: Path, tmp_path: Path) -> None:
    """Their checkpoint is in their state directory: pruning ours must not remove their work."""
    theirs, ours = tmp_path / ".a.11111111.openspec-part", tmp_path / ".b.22222222.openspec-part"
    for path in (theirs, ours):
        path.write_bytes(b"x")
        age(path)
    os.chown(theirs, 65534, 65534)

    assert ckpt.orphan_partials([str(tmp_path)]) == [str(ours)]
    ckpt.prune(dirs=[str(tmp_path)])
    assert theirs.exists()
    assert not ours.exists()


def test_prune(state: Path, tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    gone = make(tmp_path, "11111111", "gone.bin")  # partial removed: checkpoint is useless
    running = make(tmp_path, "22222222", "running.bin")  # partial gone too, but owner alive
    running.owner = owner_of(sleeper)
    stale = make(tmp_path, "33333333", "stale.bin")  # idle for two days
    stale.updated = time.time() - 2 * DAY
    recent = make(tmp_path, "44444444", "recent.bin")
    for cp in (stale, recent):
        Path(cp.partial).write_bytes(b"x")
    for cp in (gone, running, stale, recent):
        write_raw(cp)
    broken = Path(ckpt.path_for("55555555"))
    broken.write_text("{")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    orphans = [tmp_path / ".lost.66666666.openspec-part", elsewhere / ".x.77777777.openspec-part"]
    temp_old = Path(ckpt.transfers_dir()) / ".11111111.json.1.2.tmp"
    temp_new = Path(ckpt.transfers_dir()) / ".44444444.json.1.2.tmp"
    for path in (*orphans, temp_old, temp_new):
        path.write_bytes(b"x")
    for path in (*orphans, temp_old):
        age(path)

    first = ckpt.prune()  # the dest dir of known transfers is searched, "other" is not
    assert any("11111111" in line and "is gone" in line for line in first)
    assert any(str(orphans[0]) in line for line in first)
    assert any(str(temp_old) in line for line in first)
    assert len(first) == 3
    assert orphans[1].exists()
    assert temp_new.exists()
    assert sorted(e.id for e in ckpt.list_all()) == ["22222222", "33333333", "44444444", "55555555"]

    second = ckpt.prune(older_than=DAY, dirs=[str(elsewhere)])
    assert not Path(stale.partial).exists()
    assert any(stale.partial in line and "idle for 48.0 h" in line for line in second)
    assert any(str(orphans[1]) in line for line in second)
    assert len(second) == 3
    assert sorted(e.id for e in ckpt.list_all()) == ["22222222", "44444444", "55555555"]
    assert Path(recent.partial).exists()
    assert broken.exists()
    assert ckpt.prune(older_than=DAY) == []


def test_prune_keeps_a_transfer_whose_partial_is_locked(state: Path, tmp_path: Path) -> None:
    cp = make(tmp_path)
    cp.updated = time.time() - 2 * DAY
    Path(cp.partial).write_bytes(b"x")
    write_raw(cp)
    fd = os.open(cp.partial, os.O_RDWR)
    try:
        assert ckpt.try_lock(fd)
        assert ckpt.prune(older_than=1.0) == []
    finally:
        os.close(fd)
    assert len(ckpt.prune(older_than=1.0)) == 2


def test_checkpoint_error_is_an_openspec_error() -> None:
    err = CheckpointError("x")
    assert err.exit_code == ExitCode.USAGE


def test_prune_in_a_folder_looks_below_it_too(state: Path, tmp_path: Path) -> None:
    """A killed tree copy leaves small files' partials in its subfolders, and once the tree
    is forgotten nothing else would ever find them."""
    deep = tmp_path / "tree" / "d0" / "d1"
    deep.mkdir(parents=True)
    orphans = [tmp_path / "tree" / ".a.11111111.openspec-part", deep / ".b.22222222.openspec-part"]
    for path in orphans:
        path.write_bytes(b"x")
        age(path)

    removed = ckpt.prune(dirs=[str(tmp_path / "tree")])

    assert sorted(removed) == sorted(f"orphan partial file '{p}'" for p in orphans)
    assert not any(p.exists() for p in orphans)
