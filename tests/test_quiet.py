"""The CLI's noise filters hide the known third-party chatter and nothing else."""

import subprocess
import sys

from hyperverify.sdk.quiet import NATIVE_PREFIXES, _NativeLineFilter

NATIVE = b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n"


def test_native_lines_dropped_even_when_split_across_reads() -> None:
    f = _NativeLineFilter(NATIVE_PREFIXES)
    assert f.feed(b"before\n" + NATIVE[:5]) == b"before\n"
    assert f.feed(NATIVE[5:20]) == b""
    assert f.feed(NATIVE[20:] + b"after\n") == b"after\n"
    assert f.flush() == b""


def test_progress_bars_pass_at_once() -> None:
    """A tqdm bar is a '\\r...' write with no newline: it must reach the terminal without waiting."""
    f = _NativeLineFilter(NATIVE_PREFIXES)
    assert f.feed(b"\rtrain:  42%|####      |") == b"\rtrain:  42%|####      |"
    assert f.feed(b"[") == b""  # could be the start of a native line
    assert f.feed(b"x] ours\n") == b"[x] ours\n"


def test_real_chatter_hidden_and_our_messages_kept() -> None:
    """torchao's import really prints 'Failed to load' and a _pytree log line on this CPU build."""
    code = (
        "import os, warnings\n"
        "from hyperverify.sdk.quiet import silence_third_party\n"
        "silence_third_party()\n"
        "import torchao\n"
        f"os.write(2, {NATIVE!r})\n"
        "warnings.warn('our own warning')\n"
        "raise SystemExit('our own error')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "our own warning" in result.stderr and "our own error" in result.stderr
    for noise in ("Failed to load", "KernelPreference", "cpuinfo_utils"):
        assert noise not in result.stderr, result.stderr
