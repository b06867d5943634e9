"""One runtime at a time per state file: an exclusive lock beside it.

Two stores writing one SQLite file would each keep their own view in
memory and overwrite each other's acknowledged writes, silently. So the
store holds `flock(LOCK_EX)` on `<file>.lock` (mode 0600, holding the
holder's pid) for as long as it has the file open. The kernel drops a
flock when its holder dies, however it dies, so a killed runtime never
blocks the next one. The descriptor is close-on-exec, and agent processes
are forked from the zygote, never from the process holding the lock, so no
child keeps the lock alive after its holder is gone.
"""

from __future__ import annotations

import fcntl
import os

from actors._errors import StateFileInUseError

__all__ = ["StateFileLock"]


class StateFileLock:
    """An exclusive lock on the state file `path`, held until `release()`.

    Raises `StateFileInUseError` (naming the holder's pid) if another
    process holds it, and `OSError` if the lock file can't be made.
    """

    def __init__(self, path: str) -> None:
        self.state_path = path
        self.path = os.path.realpath(path) + ".lock"  # one lock whatever name reaches the file
        while True:
            # O_NOFOLLOW: a symlink planted at the lock's name can't make us
            # truncate the file it points to.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise StateFileInUseError(path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if self._still_linked(fd):
                break
            # The previous holder unlinked the file as it released it, after
            # we opened it: we hold a lock nobody else can see. Start over.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def _still_linked(self, fd: int) -> bool:
        try:
            named = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Give the file up (once); the lock file goes too."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlinked while still held, so whoever opens the name next gets a
        # fresh file; one who opened the old one notices (`_still_linked`).
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    # The holder writes its pid right after locking: it may not be there yet.
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
