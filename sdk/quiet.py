"""Keep third-party chatter out of the CLI's output, so that a command's own result is what a user reads.

Each filter names one known message of one library; nothing else is hidden, so a real warning of ours
(or a new one of theirs) still shows. The known messages, all harmless on these machines:

- torch's ``_pytree`` FutureWarning about ``LeafSpec`` (raised while ExecuTorch (de)serialises graphs)
  and its log line about ``register_constant`` on Enum subclasses (torchao's import);
- torchao's "Failed to load ... .so" for CUDA kernels a CPU build cannot use;
- coremltools' version notices and "Failed to load _ML...Proxy" (prediction needs macOS);
- ExecuTorch's native ``[cpuinfo_utils.cpp:...]`` lines, written to file descriptor 2 from C++ when
  XNNPACK starts, which no Python filter can reach: a pipe on fd 2 drops those lines and forwards
  every other byte at once (progress bars stay live).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import warnings

NATIVE_PREFIXES = (b"[cpuinfo_utils.cpp:",)
QUIET_LOGGERS = ("torchao", "coremltools", "torch.utils._pytree")


def silence_third_party() -> None:
    """Install the filters for this process (idempotent); call once at the CLI entry."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _filter_native_stderr()


class _NativeLineFilter:
    """Drops whole lines that start with a known native prefix; passes everything else through."""

    def __init__(self, prefixes: tuple[bytes, ...]) -> None:
        self.prefixes = prefixes
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data, out = self.pending + chunk, []
        self.pending = b""
        while data:
            end = data.find(b"\n")
            line, data = (data, b"") if end < 0 else (data[:end + 1], data[end + 1:])
            if any(line.startswith(p) for p in self.prefixes):
                if end < 0:
                    self.pending = line  # the rest of this native line is still coming
                continue
            if end < 0 and any(p.startswith(line) for p in self.prefixes):
                self.pending = line  # too short to tell yet
                continue
            out.append(line)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return b"" if any(rest.startswith(p) for p in self.prefixes) else rest


_installed = False


def _filter_native_stderr() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    line_filter = _NativeLineFilter(NATIVE_PREFIXES)

    def pump() -> None:
        while chunk := os.read(read_end, 65536):
            os.write(original, line_filter.feed(chunk))
        os.write(original, line_filter.flush())

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:
        """At exit, give the pipe's last bytes (a traceback, a final message) to the terminal."""
        sys.stderr.flush()
        os.dup2(original, 2)  # closes our last write end of the pipe: the pump sees end of file
        thread.join(timeout=5)

    atexit.register(drain)
