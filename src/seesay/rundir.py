"""An evaluation output folder: one writer at a time (a lock), and no resume of another run's results.

``RunLock`` holds ``OUT/.seesay.lock`` (pid, host, start time, command) while a run writes. A second run
on the same folder refuses with one line naming the holder; a lock whose process is gone (a killed run on
this host) is taken over. ``manifest_differences`` lists what separates the run asked for from the run
recorded in ``manifest.json``, so that a resume never mixes the two.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataError

LOCK_NAME = ".seesay.lock"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    """Is a process with ``pid`` running on this host (and, where /proc says, a seesay/python one)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc here: the signal test is all there is
    try:
        if (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False  # a zombie: killed, not yet reaped
        raw = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return True
    # A recycled pid of an unrelated program does not hold the lock (empty: the process is exec'ing).
    return not raw.strip() or "seesay" in raw or "python" in raw


class RunLock:
    """Exclusive right to write in ``folder``; a context manager (released on exit, also on Ctrl-C)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _payload(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        }

    def _read(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return holder if isinstance(holder, dict) else None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    # Unreadable: a run killed between creating and writing it, or one writing it now.
                    if time.time() - self._mtime() < 2.0:
                        time.sleep(0.2)
                        continue
                    self._take_over()
                    return
                if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
                    self._take_over()  # left by a killed run
                    return
                where = f"pid {holder.get('pid')} on {holder.get('host')}"
                raise DataError(
                    f"{self.path.parent} is in use by another seesay run ({where}, started "
                    f"{holder.get('started')}); wait for it or stop it"
                    + (
                        f" (if it is gone, delete {self.path})"
                        if holder.get("host") != socket.gethostname()
                        else ""
                    )
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(self._payload(), f)
            self.held = True
            return
        raise DataError(f"cannot take the lock {self.path}: another process keeps rewriting it")

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _take_over(self) -> None:
        atomic_write_text(self.path, json.dumps(self._payload()))
        holder = self._read()
        if not holder or holder.get("pid") != os.getpid():
            raise DataError(f"{self.path.parent} was taken by another seesay run at the same moment")
        self.held = True

    def release(self) -> None:
        if self.held:
            holder = self._read()
            if holder is None or holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

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


def differences(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> list[str]:
    """``key: old -> new`` for each of ``keys`` (dotted into nested dicts) whose values differ."""
    out = []
    for key in keys:
        a = dict(_flatten(key, old.get(key))) if isinstance(old.get(key), dict) else {key: old.get(key)}
        b = dict(_flatten(key, new.get(key))) if isinstance(new.get(key), dict) else {key: new.get(key)}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}")
    return out
