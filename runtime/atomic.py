"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one.

Write to a temporary file in the same folder, flush and fsync, then ``os.replace`` (atomic on POSIX
within one filesystem). An interrupted run leaves at most a ``.tmp-*`` file that nothing reads;
folders staged by ``staging_dir`` carry their builder's process id, so the next build removes the
ones whose builder is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", permissions: int | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only if the block succeeds.

    ``permissions``: the file's mode bits (for example 0o600 for a private key), set before any byte
    is written; default: what the umask allows (mkstemp's 0600 would make every artifact private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    if permissions is None:
        umask = os.umask(0)
        os.umask(umask)
        permissions = 0o666 & ~umask
    os.chmod(tmp, permissions)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, permissions: int | None = None) -> None:
    with atomic_open(path, "wb", permissions) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, permissions: int | None = None) -> None:
    with atomic_open(path, "w", permissions) as fh:
        fh.write(text)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(target: str | Path) -> list[Path]:
    """Remove ``.tmp-<name>-<pid>-*`` and ``.old-<name>-<pid>`` siblings of ``target`` whose process
    is no longer running (a build that crashed or was killed). Returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"\.(?:tmp|old)-{re.escape(target.name)}-(\d+)(?:-.*)?")
    removed = []
    if not target.parent.is_dir():
        return removed
    for sibling in target.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def staging_dir(target: str | Path) -> Path:
    """A fresh folder beside ``target`` to build it in (then ``replace_dir``), after removing the
    staging folders that dead builds of the same target left behind."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-{os.getpid()}-", dir=target.parent))


def replace_dir(staging: str | Path, target: str | Path) -> None:
    """Move a finished folder into place. A folder cannot be swapped in one rename, so an existing
    target is first renamed aside, then removed: a reader sees the old folder, briefly none, or the
    new one, never a half-written one. ``staging`` must be on the target's filesystem."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if old is not None:
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old)
