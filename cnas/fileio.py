"""Atomic file writes (temp file in the same folder, fsync, rename), JSON reading with clear errors, and the
lock file that keeps a second process out of a folder.

Files are created as ``open()`` creates them: mode 0666 less the process's umask (the temporary file is opened
with that mode, so the renamed result has it too), so that a group or the other nodes of a cluster can read
results on shared storage. A killed write leaves only a hidden ``.<name>.<random>.tmp`` beside its target
(:func:`remove_temp_files` clears them)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Callable

from cnas.errors import UsageError

TEMP_SUFFIX = ".tmp"


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside ``path``, created with mode 0666 (the umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path))  # pragma: no cover


def temp_files(folder: str | os.PathLike) -> list[Path]:
    """The temporary files that killed atomic writes left in ``folder`` (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()) if folder.is_dir() else []


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete what killed atomic writes left in ``folder``; returns the deleted paths."""
    gone = []
    for p in temp_files(folder):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            gone.append(p)
    return gone


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data), "wb")


def _to_jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(_to_jsonable(obj), indent=indent) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return _atomic(path, lambda fh: torch.save(obj, fh), "wb")


def read_json(path: str | os.PathLike, what: str = "file", error: type[UsageError] = UsageError) -> Any:
    """Read a JSON file; a missing or unparsable file raises ``error`` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON ({exc})") from None


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)``; a missing or unreadable file raises
    :class:`~cnas.errors.CheckpointError` naming the path."""
    import pickle
    import zipfile

    import torch

    from cnas.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        import re  # torch's first sentence, without its advice to load unsafely (weights_only=False)

        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        glob = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        plain = [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s and not re.search(
            r"weights.only|still be loaded|two options", s, re.I)]
        first = (f"it holds a Python object that loading with weights only refuses: {glob.group(1)}" if glob
                 else plain[0] if plain else type(exc).__name__)
        raise CheckpointError(f"{what} {path} cannot be read as a torch file ({first[:200]})") from None


# ---------------------------------------------------------------- folder lock
LOCK_NAME = ".lock"


class LockedError(UsageError):
    """The folder is held by another live process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


class FolderLock:
    """``<folder>/.lock`` holding the holder's pid and host, kept while a process works in the folder.

    Taken atomically: with ``fcntl`` the file is locked with ``flock`` (released by the kernel when the holder
    dies, so a stale file of a dead process is simply taken over); without it, the file is created exclusively
    and a file whose pid no longer runs on this host is taken over. ``release`` deletes the file."""

    def __init__(self, folder: str | os.PathLike, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            text = self.path.read_text().split()
        except OSError:
            return "another process"
        return f"process {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "") if text else "another process"

    def _refuse(self):
        raise LockedError(f"{self.what} {self.folder} is in use by {self.holder()} (lock file {self.path}); wait "
                          f"for it to finish or stop it")

    def acquire(self) -> "FolderLock":
        try:
            return self._acquire()
        except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            raise UsageError(f"{self.what} {self.folder}: cannot write its lock file {self.path} "
                             f"({exc.strerror}); choose a folder you can write to") from None

    def _acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}\n".encode()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_exclusive(me)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse()
            try:  # the file may have been deleted by a holder that released it meanwhile: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, me)
            os.fsync(fd)
            self._fd = fd
            return self
        self._refuse()  # pragma: no cover - a lock file replaced 20 times in a row

    def _acquire_exclusive(self, me: bytes) -> "FolderLock":  # pragma: no cover - not POSIX
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                text = self.path.read_text().split() if self.path.exists() else []
                host = text[1] if len(text) > 1 else socket.gethostname()
                if text and text[0].isdigit() and host == socket.gethostname() and not _pid_alive(int(text[0])):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                self._refuse()
            os.write(fd, me)
            os.fsync(fd)
            self._fd = fd
            return self
        self._refuse()

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
