"""An ExecuTorch program's method (``forward`` unless named), loaded once: the one way every part of hyperverify runs one.

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
    """One method of one program (bytes, or a file the runtime maps itself)."""

    def __init__(self, data: bytes | bytearray | memoryview | Path, what: str = "program",
                 error: type[Exception] = BundleError, methods: tuple[str, ...] = ("forward",)) -> None:
        """``what`` names the program in the error (the verifier program, the enrollment program...);
        ``methods``: those ``run`` may call, loaded now (the first is what a call runs)."""
        from executorch.runtime import Runtime

        try:
            self._program = Runtime.get().load_program(data if isinstance(data, Path) else bytes(data))
            self._methods = {name: self._program.load_method(name) for name in methods}
        except Exception as err:  # the bindings raise RuntimeError/ValueError for a bad program
            raise error(f"the {what} cannot be loaded ({type(err).__name__}: {err})") from None

        self._first = methods[0]

    def __call__(self, *inputs: Any) -> list[np.ndarray]:
        """Run the first method on torch tensors; its outputs as numpy arrays the caller owns."""
        return self.run(self._first, *inputs)

    def run(self, method: str, *inputs: Any) -> list:
        """Run ``method``: its tensor outputs as numpy arrays the caller owns, other values as they are."""
        return [out.numpy().copy() if hasattr(out, "numpy") else out for out in self._methods[method].execute(list(inputs))]
