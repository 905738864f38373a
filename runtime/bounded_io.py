"""Reading a file whose size is capped before it is read: whoever supplies the file cannot make the
device read (or hold in memory) more than the format can legitimately need.

The size is taken from the open descriptor (``fstat``), not from the path, so the file checked is
the file read; at most ``limit + 1`` bytes are read in any case (a file that grows meanwhile is
still refused).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hyperverify.runtime.errors import HyperverifyError


def read_bounded(path: str | Path, limit: int, error: type[HyperverifyError], what: str = "file",
                 too_large: type[HyperverifyError] | None = None) -> bytes:
    """The bytes of regular file ``path``, or ``error`` naming the path when it is missing, not a
    regular file, or (``too_large`` if given) larger than ``limit`` bytes."""
    path = Path(path)
    too_large = too_large or error
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file")
        if info.st_size > limit:
            raise too_large(f"{path}: {info.st_size} bytes, more than the {limit} a {what} may have")
        try:
            data = fh.read(limit + 1)
        except OSError as err:
            raise error(f"{path}: cannot read ({err.strerror})") from None
    if len(data) > limit:
        raise too_large(f"{path}: more than the {limit} bytes a {what} may have")
    return data
