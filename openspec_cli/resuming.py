"""What ``openspec resume`` lists: one row per interrupted transfer, as text or JSON."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from openspec_cli import checkpoint as ckpt
from openspec_cli.errors import ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from openspec_cli.unfinished import TreeCopy


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def row(entry: ckpt.Checkpoint | ckpt.BrokenCheckpoint, now: float) -> dict[str, Any]:
    """The facts about one transfer that the list shows (and ``--json`` prints)."""
    if isinstance(entry, ckpt.BrokenCheckpoint):
        return {
            "id": entry.id,
            "state": f"unreadable: {entry.reason}",
            "source": None,
            "dest": None,
            "partial": None,
            "bytes_done": 0,
            "size": 0,
            "percent": 0.0,
            "age_seconds": None,
            "attempts": 0,
            "last_error": None,
            "checkpoint": entry.path,
        }
    size = entry.size
    return {
        "id": entry.id,
        "state": ckpt.state_of(entry),
        "source": entry.source.path,
        "dest": entry.dest,
        "partial": entry.partial,
        "bytes_done": entry.bytes_done,
        "size": size,
        "percent": round(100.0 * entry.bytes_done / size, 1) if size else 100.0,
        "age_seconds": round(now - entry.updated, 1),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "checkpoint": ckpt.path_for(entry.id),
    }


def print_list(
    entries: list[ckpt.Checkpoint | ckpt.BrokenCheckpoint],
    as_json: bool,
    trees: Sequence[TreeCopy] = (),
) -> None:
    """A table on stdout (or a JSON list), in the order the transfers started, then the
    unfinished copies of trees or several files (text only: the JSON list is of transfers)."""
    from openspec_cli.ui import human_bytes

    now = time.time()
    rows = [row(e, now) for e in entries]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows and not trees:
        sys.stdout.write("no interrupted transfers\n")
        return
    for r in rows:
        if r["source"] is None:
            sys.stdout.write(
                f"{r['id']}  {r['state']}  (remove: openspec resume --discard {r['id']})\n"
            )
            continue
        done = f"{human_bytes(r['bytes_done'])} / {human_bytes(r['size'])}"
        sys.stdout.write(
            f"{r['id']}  {r['state']:<16} {done:>23} {r['percent']:5.1f}%  "
            f"{_age(r['age_seconds']):>4} ago  {r['source']} -> {r['dest']}\n"
        )
    if trees:
        sys.stdout.write(
            "unfinished copies of trees or several files (to finish one, run the same copy "
            "again):\n"
        )
    for tree in trees:
        sys.stdout.write(f"  {tree_line(tree, now)}\n")


def tree_line(tree: TreeCopy, now: float) -> str:
    """One unfinished copy of a tree or of several files, and what can be done about it."""
    if tree.source is None:
        return f"unreadable journal '{tree.journal}' (remove: openspec resume --prune)"
    where = f"'{tree.source}' -> '{tree.dest}'"
    if not tree.in_place:
        return f"{where}: '{tree.dest}' no longer holds it (forget it: openspec resume --prune)"
    files = "1 file" if tree.files_done == 1 else f"{tree.files_done} files"
    if tree.running:
        return f"{where}: running, {files} done"
    return f"{where}: {files} done, last {_age(now - tree.updated)} ago"


def resumable_ids(entries: list[ckpt.Checkpoint | ckpt.BrokenCheckpoint]) -> list[str]:
    """Transfers that ``resume --all`` can take up: not running, source unchanged."""
    return [
        e.id
        for e in entries
        if isinstance(e, ckpt.Checkpoint) and ckpt.state_of(e) in ("resumable", "partial missing")
    ]


def left_out(
    entries: list[ckpt.Checkpoint | ckpt.BrokenCheckpoint], trees: Sequence[TreeCopy] = ()
) -> list[str]:
    """What ``resume --all`` does not take up, and why, one line each (it must not be silent)."""
    lines = [
        f"not finishing the copy of '{t.source}' -> '{t.dest}': run the same copy again"
        for t in trees
        if t.source is not None and t.in_place
    ]
    for e in entries:
        if isinstance(e, ckpt.BrokenCheckpoint):
            lines.append(
                f"not resuming {e.id}: unreadable (remove: openspec resume --discard {e.id})"
            )
            continue
        state = ckpt.state_of(e)
        if state == "source changed":
            lines.append(
                f"not resuming {e.id}: its source changed (copy it again: "
                f"openspec resume --restart {e.id})"
            )
        elif state.startswith("running"):
            lines.append(f"not resuming {e.id}: {state}")
    return lines


def left_out_status(entries: list[ckpt.Checkpoint | ckpt.BrokenCheckpoint]) -> int:
    """The exit status ``resume --all`` owes the transfers it left out that wait for the user,
    as ``resume ID`` would fail them: unreadable (2), source changed (3). A running one is
    someone else's work, and no failure."""
    codes = [
        ExitCode.USAGE
        if isinstance(e, ckpt.BrokenCheckpoint)
        else ExitCode.IO_ERROR
        if ckpt.state_of(e) == "source changed"
        else ExitCode.OK
        for e in entries
    ]
    return int(max(codes, default=ExitCode.OK))
