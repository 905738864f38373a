"""Mutation testing of the runtime's decision path (issue 13): how many deliberate bugs the tests catch.

    pip install -e '.[test,mutation]'
    python benchmarks/mutation.py                      # all four modules; results in runs/results/
    python benchmarks/mutation.py --module lockout     # one module (a shorter, bounded run)
    python benchmarks/mutation.py --publish            # writes benchmarks/results/mutation.{json,md}

mutmut 3 rewrites each function of ``MODULES`` into many variants (``<`` for ``<=``, ``and`` for
``or``, a constant changed, a call's argument dropped, ...) and runs, for each variant, only the
tests in ``TESTS`` that call the mutated function (``-x``, one thread, no cache): a variant is
*killed* when a test fails, *survived* when all pass. Score = (killed + timeout) / mutants, a
mutant that no test reaches counting as survived. Not in CI: a full run takes tens of minutes.

mutmut names modules after their file path and this repository maps ``hyperverify.runtime`` to
``runtime/`` (pyproject's package-dir), so the run happens in a staged copy with a src layout
(``build/mutation/src/hyperverify/...`` plus ``tests/``), where the mutated copy is the one the
tests import. The tests' default-model bundle is built once into ``build/mutation-bundles`` (see
``tests/conftest.py``'s ``bundle``) instead of once per mutant.

Survivors judged harmless (equivalent to the original, or unobservable by design) are listed in
``HARMLESS`` with the reason; every other survivor is reported as a gap in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from hyperverify.runtime.atomic import atomic_write_text
from hyperverify.sdk.datasets import data_root

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGE = ROOT / "build" / "mutation"
BUNDLE_CACHE = ROOT / "build" / "mutation-bundles"
PACKAGES = ("runtime", "sdk", "converters", "docs")  # what the selected tests import (a bundle ships docs/)
MODULES = ("user_file", "verifier", "lockout", "trust")
TESTS = ("tests/test_user_file.py", "tests/test_lockout.py", "tests/test_trust.py", "tests/test_runtime.py")
"""The fast tests of the decision path (each mutant's run takes seconds once the bundle is cached)."""
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 34: "skipped"}
"""mutmut's exit codes (mutmut.stats.status_by_exit_code), anything else being "suspicious"."""

HARMLESS: dict[str, str] = {}
"""Surviving mutant name -> why it cannot change a decision (filled in after reading each survivor)."""


def stage(modules: tuple[str, ...]) -> Path:
    """A fresh src-layout copy of the packages and tests, configured for mutmut."""
    shutil.rmtree(STAGE, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "cpp", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, STAGE / "src" / "hyperverify" / package, ignore=ignore)
    (STAGE / "src" / "hyperverify" / "__init__.py").write_text('"""Staged copy for mutation testing."""\n')
    shutil.copytree(ROOT / "tests", STAGE / "tests", ignore=ignore)
    only = ", ".join(f'"src/hyperverify/runtime/{name}.py"' for name in modules)
    tests = ", ".join(f'"{test}"' for test in TESTS)
    (STAGE / "pyproject.toml").write_text(f"""[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"
markers = ["data: needs the real face data", "slow: takes more than a few seconds"]

[tool.mutmut]
source_paths = ["src"]
only_mutate = [{only}]
pytest_add_cli_args = ["-x", "-q", "-p", "no:cacheprovider"]
pytest_add_cli_args_test_selection = [{tests}]
process_isolation = "forkserver"
use_git_change_detection = false
debug = true  # without it the stats run fails with no message (mutmut 3.8.1 capturing the tests' output)
""")
    # Tests import ``tests.conftest``; mutmut drops its working folder (mutants/) from sys.path, so
    # ``tests`` is found through a folder of its own that points at mutmut's copy.
    (STAGE / "path").mkdir()
    (STAGE / "path" / "tests").symlink_to(STAGE / "mutants" / "tests")
    return STAGE


def run_mutmut(folder: Path, timeout: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYPERVERIFY_DATA": str(data_root()),
           "HYPERVERIFY_TEST_BUNDLE_CACHE": str(BUNDLE_CACHE), "PYTHONPATH": str(folder / "path"),
           "CI": "true"}  # a missing dataset fails the baseline run instead of skipping every data test
    start = time.perf_counter()
    mutmut = Path(sys.executable).parent / "mutmut"
    with open(folder / "mutmut.log", "w") as log:  # debug output: pytest's, per mutant
        done = subprocess.run([str(mutmut), "run", "--max-children", "1"], cwd=folder, env=env, timeout=timeout,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed (exit {done.returncode}); see {folder / 'mutmut.log'}")
    return time.perf_counter() - start


def diff_of(folder: Path, name: str) -> str:
    """The mutant's change, as mutmut shows it (only the -/+ lines)."""
    mutmut = Path(sys.executable).parent / "mutmut"
    shown = subprocess.run([str(mutmut), "show", name], cwd=folder, capture_output=True, text=True).stdout
    return "\n".join(line for line in shown.splitlines()
                     if line[:1] in "+-" and not line.startswith(("+++", "---")))


def collect(folder: Path, modules: tuple[str, ...]) -> dict:
    per_module, survivors = {}, []
    for module in modules:
        meta = json.loads((folder / "mutants" / "src" / "hyperverify" / "runtime" / f"{module}.py.meta").read_text())
        statuses = {name: STATUS.get(code, "suspicious") for name, code in meta["exit_code_by_key"].items()}
        counts = Counter(statuses.values())
        total = len(statuses)
        killed = counts["killed"] + counts["timeout"]
        per_module[module] = {"mutants": total, "killed": counts["killed"], "timeout": counts["timeout"],
                              "survived": counts["survived"], "no_tests": counts["no_tests"],
                              "other": total - sum(counts[k] for k in ("killed", "timeout", "survived", "no_tests")),
                              "score": killed / total if total else None}
        for name, status in sorted(statuses.items()):
            if status not in ("killed", "timeout"):
                survivors.append({"module": module, "mutant": name, "status": status, "diff": diff_of(folder, name),
                                  "harmless": HARMLESS.get(name)})
    return {"modules": per_module, "survivors": survivors}


def markdown(result: dict) -> str:
    lines = ["# Mutation testing of the runtime's decision path", "",
             f"`{result['command']}`; mutmut {result['mutmut']}, {result['seconds'] / 60:.1f} min on one core. "
             "Score = (killed + timeout) / mutants; a mutant no test reaches counts as survived.", "",
             "| module | mutants | killed | timeout | survived | no tests | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for module, row in result["modules"].items():
        lines.append(f"| runtime/{module}.py | {row['mutants']} | {row['killed']} | {row['timeout']} | "
                     f"{row['survived']} | {row['no_tests']} | {row['score']:.1%} |")
    harmless = [s for s in result["survivors"] if s["harmless"]]
    gaps = [s for s in result["survivors"] if not s["harmless"]]
    lines += ["", f"## Surviving mutants judged harmless ({len(harmless)})", ""]
    lines += [f"- `{s['mutant']}`: {s['harmless']}" for s in harmless] or ["none"]
    lines += ["", f"## Other surviving mutants ({len(gaps)})", ""]
    for s in gaps:
        diff = s["diff"].replace("\n", " / ").replace("`", "'")
        lines.append(f"- `{s['mutant']}` ({s['status']}): `{diff[:300]}`")
    if not gaps:
        lines.append("none")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=MODULES,
                        help="mutate only this module (repeatable); default: all four")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--publish", action="store_true",
                        help="write benchmarks/results/mutation.{json,md} instead of runs/results/")
    args = parser.parse_args()
    modules = tuple(args.module or MODULES)
    if not (data_root() / "lfw").is_dir():
        raise SystemExit(f"the real face data is not at {data_root()} (set HYPERVERIFY_DATA): the tests need it")
    import mutmut

    folder = stage(modules)
    seconds = run_mutmut(folder, args.timeout)
    result = {"command": "python benchmarks/mutation.py " + " ".join(sys.argv[1:]), "mutmut": mutmut.__version__,
              "tests": list(TESTS), "seconds": seconds, **collect(folder, modules)}
    out = RESULTS if args.publish else ROOT / "runs" / "results"
    name = "mutation" if args.publish or not args.module else "mutation-" + "-".join(modules)
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"{name}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
