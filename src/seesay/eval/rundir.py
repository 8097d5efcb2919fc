"""An evaluation output folder: one writer at a time (a lock), and no resume of another run's results.

``RunLock`` holds an ``flock`` on ``OUT/.seesay.lock`` (pid, host, start time, command) while a run writes.
A second run on the same folder refuses with one line naming the holder; the lock of a killed run is gone
with its process. ``manifest_differences`` lists what separates the run asked for from the run
recorded in ``manifest.json``, so that a resume never mixes the two.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

LOCK_NAME = ".seesay.lock"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLock:
    """Exclusive right to write in ``folder``; a context manager (released on exit, also on Ctrl-C).

    An ``flock`` on ``OUT/.seesay.lock``: the kernel drops it when the holder exits or is killed, so a
    lock left by a killed run is simply taken; the file names the holder (pid, host, start, command) for
    the message a second run gets. After locking, the file is checked to still be the one at the path (a
    release unlinks it), so two runs can never both hold it. Needs a file system with working ``flock``
    (local disks; on NFS, use a local ``--out`` or one job per folder).
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _payload(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }

    def holder(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def _refuse(self) -> DataError:
        info = self.holder() or {}
        return DataError(
            f"{self.path.parent} is in use by another seesay run (pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, started {info.get('started', '?')}); wait for it or stop it"
        )

    def acquire(self) -> None:
        if self.fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._refuse() from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released (unlinked) between our open and our lock: try the new file
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self._payload()).encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise DataError(f"cannot take the lock {self.path}: it keeps being replaced")

    def check(self) -> None:
        """Refuse now (one line) if another run holds the folder; takes nothing."""
        if not self.path.exists():
            return
        self.acquire()
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: no one can hold the old file after
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), value[k])
    else:
        yield prefix, value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(record: dict[str, Any], key: str) -> Any:
    """``record["a"]["b"]`` for ``key="a.b"`` (None where a level is missing)."""
    value: Any = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def differences(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> list[str]:
    """``key: old -> new`` for each of ``keys`` (``a.b`` reads nested dicts) whose values differ."""
    out = []
    for key in keys:
        va, vb = _get(old, key), _get(new, key)
        a = dict(_flatten(key, va)) if isinstance(va, dict) else {key: va}
        b = dict(_flatten(key, vb)) if isinstance(vb, dict) else {key: vb}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}")
    return out
