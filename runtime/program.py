"""An ExecuTorch program's ``forward``, loaded once: the one way every part of hyperverify runs one.

ExecuTorch's Python ``Method`` points into its ``Program``: the Program must outlive the Method and
the tensors it returns (DESIGN section 2), or a call reads freed memory. ``LoadedProgram`` keeps
both for its own lifetime and returns copies of the outputs, so no caller can drop the Program too
early, and the bindings' load errors become one typed error: ``BundleError`` where a shipped program
is read (the runtimes), ``RuntimeError`` where a program was just exported (the converters' checks,
whose failure is a toolchain fault, not something a user can fix in a bundle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hyperverify.runtime.manifest import BundleError


class LoadedProgram:
    """``forward`` of one program (bytes, or a file the runtime maps itself)."""

    def __init__(self, data: bytes | bytearray | memoryview | Path, what: str = "program",
                 error: type[Exception] = BundleError) -> None:
        """``what`` names the program in the error (the verifier program, the enrollment program...)."""
        from executorch.runtime import Runtime

        try:
            self._program = Runtime.get().load_program(data if isinstance(data, Path) else bytes(data))
            self._method = self._program.load_method("forward")
        except Exception as err:  # the bindings raise RuntimeError/ValueError for a bad program
            raise error(f"the {what} cannot be loaded ({type(err).__name__}: {err})") from None

    def __call__(self, *inputs: Any) -> list[np.ndarray]:
        """Run ``forward`` on torch tensors; its outputs as numpy arrays the caller owns."""
        return [out.numpy().copy() for out in self._method.execute(list(inputs))]
