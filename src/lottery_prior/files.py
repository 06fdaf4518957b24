"""Small file helpers shared by the run folders and the reports.

* :func:`atomic_path`: every file is written under a temporary name unique to the writing
  process, in the same folder, and renamed over its final name only once complete, so no
  reader (nor a resumed run, nor a second process writing the same file) ever sees half a file.
  Every output of the library goes through it, directly (``with atomic_path(p) as tmp``, the
  write targeting ``tmp``) or through :func:`write_text`, :func:`write_bytes`,
  :func:`write_json`, :func:`save_figure` and :func:`copy_file`; nothing opens a final name
  for writing (``tests/test_hostile.py`` checks the source). A write that fails (disk full,
  file-size limit, permissions) leaves the old file as it was and raises a one-line
  ``LipError``.
* :class:`RunLock`: one process at a time in a run folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from lottery_prior.errors import LipError

TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; on success it replaces ``path``.

    The temporary file is in the same folder (so the rename is atomic), named uniquely per
    process and call (two processes writing the same file never collide), gets ordinary
    permissions (0666 less the umask, whatever the writer used), and is removed if the
    writing fails or is interrupted.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(path, err) from err
    tmp = temporary_name(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        written = tmp.stat().st_size if tmp.exists() else 0
        with contextlib.suppress(OSError):
            tmp.unlink()
        if disk_full(err):
            raise LipError(
                f"cannot write {path} (No space left on device: {_size(_free(path))} free "
                f"there, and the file needs more than the {_size(written)} written before the "
                "disk filled); free some space and run again: any earlier file of that name "
                "is left whole, and finished work is kept") from err
        if isinstance(err, OSError):
            raise _write_error(path, err, tmp) from err
        raise


def disk_full(err: BaseException) -> bool:
    """Whether a failed write ran out of disk space (an OSError, or a safetensors error
    wrapping one)."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(err)
    return type(err).__name__ == "SafetensorError" and (
        "No space left" in text or "StorageFull" in text or "code: 28" in text)


def _free(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 0


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} TiB"


def _write_error(path: Path, err: OSError, tmp: Path | None = None) -> LipError:
    """A failed write as one line: the file, why, and what to do."""
    why = err.strerror or str(err).splitlines()[0] if str(err) else type(err).__name__
    other = getattr(err, "filename", None)
    if other and tmp is not None and Path(other) not in (tmp, path):
        why = f"{why}: {other}"
    return LipError(f"cannot write {path} ({why}); any earlier file of that name is left "
                    "whole: free some space, raise the file-size limit or give another --out, "
                    "then run again")


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Text, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Bytes, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json(path: str | Path, data: dict) -> Path:
    """Pretty JSON, written atomically (a reader, or a resumed run, never sees half a file)."""
    return write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """A matplotlib figure, written atomically (the format follows the final name's suffix,
    not the temporary's, unless ``format`` is given); ``kwargs`` go to ``savefig``."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def copy_file(source: str | Path, path: str | Path) -> Path:
    """A copy of ``source`` at ``path``, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
    return path


def remove_temporaries(folder: str | Path) -> int:
    """Delete leftover temporaries (of writers that were killed) under ``folder``; only safe
    while no other process writes there (hold its :class:`RunLock`). Returns how many."""
    removed = 0
    for tmp in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class RunLock:
    """Exclusive use of a run folder by one process, refused at once if another holds it.

    The lock is a file (``run.lock``) created with O_CREAT|O_EXCL that names the holder's pid
    and host. A lock left by a dead process on this host (killed, power cut) is taken over; a
    live holder, or one on another host (whose liveness cannot be checked), makes
    :meth:`acquire` raise a one-line :class:`LipError`. Released on exit, also on exceptions.
    """

    NAME = "run.lock"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.host = socket.gethostname()
        self._content: str | None = None

    @property
    def held(self) -> bool:
        return self._content is not None

    def acquire(self) -> RunLock:
        if self.held:
            raise LipError(f"run folder {self.folder} is already locked by this RunLock")
        self.folder.mkdir(parents=True, exist_ok=True)
        content = json.dumps({"pid": os.getpid(), "host": self.host,
                              "token": secrets.token_hex(8)})
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(content + "\n")
            self._content = content
            return self
        raise LipError(f"could not lock run folder {self.folder}: its lock file {self.path} "
                       f"keeps changing")

    def _take_over_if_stale(self) -> None:
        """Remove the lock file if its holder is a dead process on this host; else refuse."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return  # released meanwhile: try again
        try:
            holder = json.loads(text)
            pid, host = int(holder["pid"]), str(holder["host"])
        except (ValueError, KeyError, TypeError):
            # being written this very moment, or damaged: never guess
            raise LipError(f"run folder {self.folder} is in use (its lock file {self.path} "
                           f"names no holder yet); if no run is using it, delete that file"
                           ) from None
        if host != self.host:
            raise LipError(f"run folder {self.folder} is in use by process {pid} on host "
                           f"{host}; wait for it or stop it (if it is gone, delete {self.path})")
        if _pid_alive(pid):
            raise LipError(f"run folder {self.folder} is in use by process {pid}; wait for it "
                           f"or stop it")
        # Stale. Move it aside under a unique name (atomic: of several processes taking over
        # at once only one moves it) and check that what was moved is the stale lock.
        aside = temporary_name(self.path)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_text() != text:  # a live holder's fresh lock: put it back
                with contextlib.suppress(OSError):
                    os.link(aside, self.path)
        finally:
            with contextlib.suppress(OSError):
                aside.unlink()

    def release(self) -> None:
        """Remove the lock file if it is still this lock's."""
        if self._content is None:
            return
        content, self._content = self._content, None
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == content:
                self.path.unlink()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
