"""One job at a time in a run directory: an exclusive ``flock`` on ``runs/<mix>/.lock``.

:func:`run_lock` wraps every job that writes a run (clean, build, mixture, quality training). The lock file holds
the holder's pid, host, job and command line, so a second job can say who is in the way; the lock itself is the
kernel's ``flock``, which is released when its holder exits or is killed, so a lock file left behind by a dead
process never blocks anyone. The lock is reentrant within one process (``mixture`` holds it while ``clean`` and
``build`` take it again); a sub-run in another directory (the quality classifier's ``quality/train_docs``) takes
its own lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filters.errors import UserError
from mixtures.layout import RunLayout


class RunLocked(UserError):
    """Another job holds the run directory's lock."""


@dataclass
class _Held:
    fd: int
    pid: int
    depth: int = 1


_HELD: dict[Path, _Held] = {}  # resolved lock file -> this process's hold on it


def holder(layout: RunLayout) -> dict | None:
    """What the lock file says about its (last) holder, or ``None`` when it is missing or empty."""
    try:
        text = layout.lock_file.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict | None) -> str:
    if not info:
        return "holder unknown: it has not written its details yet"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')}, {info.get('job')} since {since}: "
            f"{info.get('command')}")


@contextmanager
def run_lock(layout: RunLayout, job: str) -> Iterator[None]:
    """Hold the run directory's exclusive lock for the ``with`` block; raise :class:`RunLocked` if it is taken.

    Creates the run directory (and its ``.lock``) when missing; a job that fails before writing anything else
    removes them again, so a spec error leaves no trace. Never waits: a second job fails at once with the
    first one's pid, host, job and command.
    """
    created = [p for p in (layout.root, *layout.root.parents) if not p.exists()]  # deepest first
    layout.root.mkdir(parents=True, exist_ok=True)
    path = layout.inside(layout.lock_file)
    mine = _HELD.get(path)
    if mine is not None and mine.pid == os.getpid():
        mine.depth += 1
        try:
            yield
        finally:
            mine.depth -= 1
        return
    # O_NOFOLLOW: a .lock that is a symlink is never followed (nothing outside the run is opened for writing)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise RunLocked(f"{path}: cannot open the run's lock file ({err.strerror}); remove it if it is a symlink "
                        "or not a file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(f"{layout.root} is locked by another Mixlab job ({_describe(holder(layout))}); wait for it "
                        f"to finish or stop it (a lock left by a process that died does not block)") from None
    except BaseException:
        os.close(fd)
        raise
    info = {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "command": shlex.join(sys.argv),
            "since": round(time.time(), 3)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    _HELD[path] = held = _Held(fd, os.getpid())
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _HELD[path]
            os.ftruncate(fd, 0)
            if failed and created:
                _undo(path, created)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _undo(lock: Path, created: list[Path]) -> None:
    """Remove the lock file and the folders this job created for it, if the job left nothing else there."""
    if [p.name for p in lock.parent.iterdir()] != [lock.name]:
        return
    lock.unlink()
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else lives there
            return
