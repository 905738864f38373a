"""Exported programs kept between builds: exporting one takes a minute or more on two cores, and
depends only on its inputs, so its bytes are kept in ``$HYPERVERIFY_CACHE`` under a key of those
(the exporter's versions, the converter's source, and what the caller adds: a model version, a
pinned file's hash). A cached program is re-checked before it is used and exported again when it
fails; the checks are numerical, so the cache is trusted as the build machine's installed packages
are, not more.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from hyperverify.runtime.atomic import atomic_write_bytes
from hyperverify.sdk.prepare import cache_root

CONVERTERS = Path(__file__).parents[1] / "converters"


def cached_program(name: str, key: list[bytes], export: Callable[[], bytes], check: Callable[[bytes], object]) -> bytes:
    """The checked program ``name``: from the cache when its entry passes ``check`` (which raises
    RuntimeError or ValueError), else ``export()``-ed (checked by the exporter) and cached."""
    parts = [version("executorch").encode(), version("torch").encode(), *key]
    path = cache_root() / "programs" / f"{name}-{hashlib.sha256(b'|'.join(parts)).hexdigest()[:16]}.pte"
    if path.is_file():
        data = path.read_bytes()
        try:
            check(data)
            return data
        except (RuntimeError, ValueError):  # a cached program that fails its check is exported again
            path.unlink(missing_ok=True)
    data = export()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return data


def source(*modules: str) -> bytes:
    """The source of converter modules (``converters/<name>.py``), for a key."""
    return b"".join((CONVERTERS / f"{module}.py").read_bytes() for module in modules)
