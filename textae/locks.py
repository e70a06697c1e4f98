"""Locks on run directories and outputs, so two jobs never write the same files.

An advisory `flock` on a small file beside what is written: the operating system releases it
when its process ends, however it ends, so a job killed with SIGKILL never blocks its own
`--resume`. The file holds the owner's pid, for the message a second job prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import TextAEError


class FileLock:
    """Exclusive, non-blocking: a second holder is refused at once with one line saying what to do."""

    def __init__(self, path: str | Path, what: str, advice: str):
        self.path, self.what, self.advice = Path(path), what, advice
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise TextAEError(f"{self.what} is in use by another textae process (pid {owner}); {self.advice}") from None
            try:  # the holder may have removed the file between our open and our lock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
