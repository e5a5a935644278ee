"""Files written atomically, read back verified, and never left behind half-written.

* ``atomic_write`` / ``atomic_directory``: a reader (or a killed job) never sees a half-written
  file or folder, and the partial files a killed writer left beside the target are removed by
  the next successful write of the same target.
* ``read_json``: a record that cannot be read is an ``ArtefactError`` naming the file and the
  command that rebuilds it, never a bare library traceback.
* ``save_verified`` / ``load_verified``: torch files (model weights, checkpoints) carry a sha256
  of their bytes, checked on every load, so a flipped bit or a truncated file is detected instead
  of resumed from or evaluated.
* ``exclusive_lock``: one process at a time per run, the holder named in the lock file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterator


class ArtefactError(ValueError):
    """A file the workflow wrote cannot be used (unreadable, corrupt, stale, of another run);
    the message names it and says how to rebuild it."""


class LockedError(RuntimeError):
    """Another live process holds the lock; the message names it (pid, host, since when)."""


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to rebuild a workflow output (and everything made from it)."""
    return f"rebuild it with `snakemake --forcerun {path}`"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (main thread): os.umask can only be read by setting it.
UMASK = _current_umask()
# A partial file beside a target counts as a killed writer's only if unchanged this long.
STALE_AFTER_SECONDS = 60.0


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the mode open() would (0666 less the umask),
        # so that the rest of a lab can read results on a shared file system.
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        # A margin: file times may lag the clock by a tick (or come from an NFS server's clock).
        _remove_stale(path, older_than=started - STALE_AFTER_SECONDS)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden folder beside ``path`` to fill. On success it replaces ``path`` as a whole
    (an existing folder is moved aside, then removed); on failure it is removed and ``path``
    stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Staging folders of killed writers of this target: one writer per target at a time (for
    # the workflow's caches, Snakemake's lock on the working directory ensures it).
    _remove_stale(path)
    # Not tempfile.mkdtemp: its mode 0700 would outlive the rename; mkdir honours the umask.
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.mkdir()
    try:
        yield staged
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(staged, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def stale_partials(path: str | os.PathLike) -> list[Path]:
    """Partial files and staging folders that writers of ``path`` left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # mkstemp's 8 random characters (atomic_write) or a pid (atomic_directory); exact, so that a
    # sibling whose name extends this one (dataset "x.v2" beside "x") is never matched.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([a-z0-9_]{{8}}|\d+)\.(tmp|old)")
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def _remove_stale(path: Path, older_than: float | None = None) -> None:
    """Remove ``stale_partials(path)``; with ``older_than``, only those not modified since then
    (a concurrent writer's file stays; a killed writer's file stops changing)."""
    for partial in stale_partials(path):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: never fail a write
            if older_than is not None and partial.stat().st_mtime >= older_than:
                continue
            if partial.is_dir() and not partial.is_symlink():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink()


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, allow_nan=True)
        handle.write("\n")


def save_arrays(path: str | os.PathLike, **arrays) -> None:
    """Named numpy arrays as one compressed .npz, atomically (compact per-sample records)."""
    import numpy as np  # here: the rest of this module is used by jobs that never load numpy arrays

    with atomic_write(path) as handle:
        np.savez_compressed(handle, **{name: np.asarray(value) for name, value in arrays.items()})


def read_json(path: str | os.PathLike, required: tuple[str, ...] = (), rebuild: str | os.PathLike | None = None
              ) -> dict:
    """A JSON object written by ``write_json``; ``required`` keys must be present. Errors name the
    file and how to rebuild ``rebuild`` (default: the file itself; e.g. the cache folder of a
    cache's meta.json)."""
    hint = rebuild_hint(path if rebuild is None else rebuild)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtefactError(f"{path}: cannot read it as JSON ({error}); {hint}") from None
    if not isinstance(data, dict):
        raise ArtefactError(f"{path}: expected a JSON object, found {type(data).__name__}; {hint}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ArtefactError(f"{path}: missing {', '.join(map(repr, missing))}; {hint}")
    return data


# ----------------------------------------------------------------------------------------------
# Verified torch files: MAGIC, then torch.save's bytes, then the sha256 of those bytes (32 bytes).

VERIFIED_MAGIC = b"intrinsic verified torch file v1\n"
_DIGEST_SIZE = 32


class _HashingWriter:
    """A write-only file object that hashes what passes through it (torch.save writes to it)."""

    def __init__(self, handle: IO[bytes]):
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def save_verified(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` atomically, followed by the sha256 of the saved bytes."""
    import torch  # here, not at the top: the table and figure scripts import this module too

    with atomic_write(path) as handle:
        handle.write(VERIFIED_MAGIC)
        hashing = _HashingWriter(handle)
        torch.save(obj, hashing)
        handle.write(hashing.sha256.digest())


class _Window(io.RawIOBase):
    """A read-only view of bytes ``start`` .. ``start + length`` of an open file, as a file of its
    own: torch.load reads the zip archive inside a verified file in place, without copying it."""

    def __init__(self, handle: IO[bytes], start: int, length: int):
        self.handle, self.start, self.length, self.position = handle, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = min(max(base + offset, 0), self.length)
        return self.position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")[: self.length - self.position]
        self.handle.seek(self.start + self.position)
        count = self.handle.readinto(view)
        self.position += count
        return count


def load_verified(path: str | os.PathLike) -> Any:
    """What ``save_verified`` saved, on the CPU, after checking its digest; an unreadable,
    truncated or altered file is an ``ArtefactError`` naming it."""
    import torch

    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            body = size - len(VERIFIED_MAGIC) - _DIGEST_SIZE
            if handle.read(len(VERIFIED_MAGIC)) != VERIFIED_MAGIC or body < 0:
                raise ArtefactError(f"{path}: not a complete verified torch file (truncated, or written by an "
                                    f"older version of this workflow; {size} bytes)")
            sha256, chunk, remaining = hashlib.sha256(), bytearray(1 << 22), body
            while remaining:  # hashlib.file_digest would do this, but needs python 3.11
                count = handle.readinto(memoryview(chunk)[: min(remaining, len(chunk))])
                if not count:
                    break
                sha256.update(memoryview(chunk)[:count])
                remaining -= count
            digest = sha256.digest()
            handle.seek(len(VERIFIED_MAGIC) + body)
            if digest != handle.read(_DIGEST_SIZE):
                raise ArtefactError(f"{path}: checksum mismatch, the file is corrupt")
            try:
                return torch.load(io.BufferedReader(_Window(handle, len(VERIFIED_MAGIC), body)),
                                  map_location="cpu", weights_only=True)
            except Exception as error:  # a digest-valid file torch cannot read: name it, whatever the cause
                raise ArtefactError(f"{path}: verified but unreadable by torch.load ({error})") from None
    except OSError as error:
        raise ArtefactError(f"{path}: cannot read it ({error})") from None


# ----------------------------------------------------------------------------------------------
# Locks.


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise ``LockedError`` naming
    the holder (pid, host, since when) without waiting. The kernel releases the lock when its
    holder dies, so a killed job never leaves a lock that blocks the next one (the file itself
    may stay; it is only a name to lock)."""
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "an unknown process"
            os.close(fd)
            raise LockedError(f"{what} is in progress elsewhere: lock {path} is held by {holder}. Wait for "
                              "that process to finish or stop it (e.g. a trainer left running by a Snakemake "
                              "process that died), then rerun.") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the file was removed (a finished run's clean-up) after we opened it: again
    try:
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
