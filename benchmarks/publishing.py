"""Where a benchmark writes its results: ``runs/results`` (or ``--out``) by default, the committed
``benchmarks/results`` only with ``--publish``, so that an ordinary run never rewrites a figure the
README quotes. One helper for every benchmark script (``method.py``, ``accuracy.py``, ``converters.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
"""The committed results the README and docs quote."""
RUNS_RESULTS = Path("runs") / "results"
"""The default for ordinary runs (not committed)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--publish``."""
    parser.add_argument("--out", type=Path, default=RUNS_RESULTS,
                        help=f"folder for the results (default: {RUNS_RESULTS}, not committed)")
    parser.add_argument("--publish", action="store_true",
                        help=f"write into the committed {RESULTS} instead of --out")


def results_dir(args: argparse.Namespace) -> Path:
    """The folder chosen by ``--publish`` / ``--out``, created when missing."""
    path = RESULTS if args.publish else Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path
