"""Tree copies that did not finish, so that running the same ``copy -r SRC NEW`` again works.

The first run of ``copy -r src backup`` creates ``backup``. Run again after an interruption,
cp's rule (an existing directory receives SRC inside it) would start a second copy in
``backup/src`` and leave the first one half done. So a copy that creates its destination tree
records that here (``<state dir>/trees/<key>.json``) until it has finished; a later run of the
same source and destination continues into ``backup`` instead. Files already complete are
copied again (they are not trusted unverified); interrupted ones resume from their checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from openspec_cli.checkpoint import state_dir


def _marker(source: str, dest: str) -> tuple[str, str, str]:
    import hashlib  # here: most copies are not of trees, and start-up counts

    src, dst = os.path.abspath(source), os.path.abspath(dest)
    key = hashlib.sha256(f"{src}\0{dst}".encode(errors="surrogateescape")).hexdigest()[:16]
    return str(state_dir() / "trees" / f"{key}.json"), src, dst


def started(source: str, dest: str) -> None:
    """Record that copying the tree ``source`` to the new directory ``dest`` has begun."""
    path, src, dst = _marker(source, dest)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    record = {"version": 1, "source": src, "dest": dst, "created": time.time()}
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="utf-8", errors="surrogateescape") as fh:
        json.dump(record, fh)
    os.replace(temp, path)


def unfinished(source: str, dest: str) -> bool:
    """True when an earlier copy of the tree ``source`` into ``dest`` did not finish."""
    path, src, dst = _marker(source, dest)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return False  # none, or unreadable: cp's rule applies
    return isinstance(record, dict) and (record.get("source"), record.get("dest")) == (src, dst)


def finished(source: str, dest: str) -> None:
    """Forget the record: the tree is complete."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_marker(source, dest)[0])
