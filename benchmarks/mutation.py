"""Mutation testing of the runtime's decision path (issue 13): how many deliberate bugs the tests catch.

    pip install -e '.[test,mutation]'
    python benchmarks/mutation.py                      # all five modules; results in runs/results/
    python benchmarks/mutation.py --module lockout     # one module (a shorter, bounded run)
    python benchmarks/mutation.py --publish            # writes benchmarks/results/mutation.{json,md}

Each run replaces the rows of the modules it mutated in the results; ``seconds`` is the whole run's.

mutmut 3 rewrites each function of ``MODULES`` into many variants (``<`` for ``<=``, ``and`` for
``or``, a constant changed, a call's argument dropped, ...) and runs, for each variant, only the
tests in ``TESTS[module]`` that call the mutated function (``-x``, one thread, no cache): a variant is
*killed* when a test fails, *survived* when all pass. Score = (killed + timeout) / mutants, a
mutant that no test reaches counting as survived. Not in CI. Bound: on a shared 2-core machine (load
about 5) the full lockout run took 9 min, while the verifier's mutants take 10-30 s each (real
faces, a real program), so ``--sample`` runs a systematic sample (mutants numbered ...0 or ...5 of
every function): user_file 20 % in 18 min, verifier 10 % in 14 min, trust 20 % in 10 min.

mutmut names modules after their file path and this repository maps ``hyperverify.runtime`` to
``runtime/`` (pyproject's package-dir), so the run happens in a staged copy with a src layout
(``build/mutation-stage/MODULE/src/hyperverify/...`` plus ``tests/``), where the mutated copy is the one the
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
STAGE = ROOT / "build" / "mutation-stage"  # one folder per module below it: runs of different modules may overlap
BUNDLE_CACHE = ROOT / "build" / "mutation-bundles"
HYGIENE = RESULTS / "hygiene.json"
PACKAGES = ("runtime", "sdk", "converters", "docs")  # what the selected tests import (a bundle ships docs/)
MODULES = ("user_file", "verifier", "lockout", "trust", "cascade", "spec")
TESTS = {
    "user_file": ("tests/test_user_file.py", "tests/test_trust.py"),
    "verifier": ("tests/test_runtime.py", "tests/test_trust.py"),
    "lockout": ("tests/test_lockout.py",),
    "trust": ("tests/test_trust.py",),
    "cascade": ("tests/test_cascade.py", "tests/test_trust.py"),
    "spec": ("tests/test_verifier.py", "tests/test_distill.py", "tests/test_trust.py"),
}
"""Per module, the fast tests of the decision path that exercise it (mutmut then runs, for each
mutant, only those of them that call the mutated function); one mutmut run per module."""
DESELECT = ("tests/test_trust.py::test_enroll_signs_by_default_with_a_private_key_outside_the_repo",
            "tests/test_trust.py::test_stale_staging_folders_are_removed_by_the_next_build",
            "tests/test_runtime.py::test_owner_and_strangers_the_model_never_saw",
            "tests/test_runtime.py::test_program_matches_eager_pytorch")
"""Slow tests left out of the mutation run: the CLI (30 s) and bundle-builder (20 s) tests run the
installed package in a subprocess or build a bundle, so they cannot see a staged mutant anyway; the
unseen-people bounds (7 s, 240 frames) and the eager-torch parity (6 s) judge the model and the
exported program, and every decision they make is also made by faster tests."""
TIMEOUT_SECONDS = 30
"""Added to mutmut's timeout (15 x the tests' own durations): module fixtures (enrollment, loading
the program) are not in those durations, and a mutant stopped by the timeout counts as killed."""
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 34: "skipped"}
"""mutmut's exit codes (mutmut.stats.status_by_exit_code), anything else being "suspicious"."""

HARMLESS: dict[str, str] = {
    "hyperverify.runtime.lockout.xǁLockoutStateǁfrom_json__mutmut_5":
        'decode("UTF-8") is decode("utf-8"): codec names are case-insensitive',
    "hyperverify.runtime.lockout.xǁFileStoreǁload__mutmut_7":
        "reads MAX_STATE_BYTES + 2 bytes instead of + 1: any read past the cap gives the same verdict (fail closed)",
    "hyperverify.runtime.lockout.xǁLockoutRulesǁlock_seconds__mutmut_9":
        "caps the doublings at 65 instead of 64: the cap only keeps 2.0 ** n finite, min() with max_lock_seconds "
        "gives the same lock",
    "hyperverify.runtime.cascade.x_band_for__mutmut_5":
        "table.get(kind) for table.get(kind, {}): a missing kind is None instead of {}, refused by the same "
        "`if not bands` with the same error",
    "hyperverify.runtime.lockout.xǁLockoutǁblocked__mutmut_8":
        "remaining() re-reads the state blocked() just read: the same state unless another process writes in between",
    "hyperverify.runtime.user_file.x__text__mutmut_10":
        'decode("UTF-8") is decode("utf-8"): codec names are case-insensitive',
    "hyperverify.runtime.user_file.x_decode__mutmut_65":
        'decode("ASCII") is decode("ascii"): codec names are case-insensitive',
    "hyperverify.runtime.user_file.x_encode__mutmut_15":
        "theta is cast to the stored dtype on the next lines anyway: the same bytes, only a refusal's wording for "
        "values beyond float32 differs",
    "hyperverify.runtime.user_file.x_read_user_file__mutmut_15":
        "the file's label in the message of an oversized user file ('USER FILE'): wording only; the refusal is tested",
    "hyperverify.runtime.verifier.xǁVerifierǁ_decide__mutmut_110":
        "lockout.record(None) for record(False): record() tests the argument's truth, and None is false",
}
"""Surviving mutant name -> why it cannot change a decision (judged by reading each survivor);
``--render`` re-applies this table to the published results without re-running."""


def stage(module: str) -> Path:
    """A fresh src-layout copy of the packages and tests, configured to mutate ``module``."""
    folder = STAGE / module
    shutil.rmtree(folder, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "cpp", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / "src" / "hyperverify" / package, ignore=ignore)
    (folder / "src" / "hyperverify" / "__init__.py").write_text('"""Staged copy for mutation testing."""\n')
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    (folder / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy2(HYGIENE, folder / "benchmarks" / "results")  # tests.conftest.unseen_people reads it
    only = f'"src/hyperverify/runtime/{module}.py"'
    tests = ", ".join(f'"{test}"' for test in TESTS[module])
    deselect = ", ".join(f'"--deselect", "{test}"' for test in DESELECT)
    (folder / "pyproject.toml").write_text(f"""[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"
markers = ["data: needs the real face data", "slow: takes more than a few seconds"]

[tool.mutmut]
source_paths = ["src"]
only_mutate = [{only}]
pytest_add_cli_args = ["-x", "-q", "-p", "no:cacheprovider", {deselect}]
pytest_add_cli_args_test_selection = [{tests}]
process_isolation = "forkserver"
use_git_change_detection = false
also_copy = ["benchmarks"]
timeout_constant = {TIMEOUT_SECONDS}
debug = true  # without it the stats run fails with no message (mutmut 3.8.1 capturing the tests' output)
""")
    # Tests import ``tests.conftest``; mutmut drops its working folder (mutants/) from sys.path, so
    # ``tests`` is found through a folder of its own that points at mutmut's copy.
    (folder / "path").mkdir()
    (folder / "path" / "tests").symlink_to(folder / "mutants" / "tests")
    return folder


def run_mutmut(folder: Path, timeout: float, pattern: str | None) -> float:
    """mutmut on the staged copy; ``pattern`` (fnmatch on mutant names) runs only those mutants."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYPERVERIFY_DATA": str(data_root()),
           "HYPERVERIFY_TEST_BUNDLE_CACHE": str(BUNDLE_CACHE), "PYTHONPATH": str(folder / "path"),
           "CI": "true"}  # a missing dataset fails the baseline run instead of skipping every data test
    start = time.perf_counter()
    mutmut = Path(sys.executable).parent / "mutmut"
    with open(folder / "mutmut.log", "w") as log:  # debug output: pytest's, per mutant
        done = subprocess.run([str(mutmut), "run", "--max-children", "1", *([pattern] if pattern else [])],
                              cwd=folder, env=env, timeout=timeout,
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


def collect(folder: Path, module: str) -> dict:
    """One module's counts and survivors, from mutmut's record of the run."""
    meta = json.loads((folder / "mutants" / "src" / "hyperverify" / "runtime" / f"{module}.py.meta").read_text())
    statuses = {name: STATUS.get(code, "suspicious") for name, code in meta["exit_code_by_key"].items()
                if code is not None}  # None: not run (outside the sample)
    counts = Counter(statuses.values())
    total = len(statuses)
    survivors = [{"mutant": name, "status": status, "diff": diff_of(folder, name), "harmless": HARMLESS.get(name)}
                 for name, status in sorted(statuses.items()) if status not in ("killed", "timeout")]
    return {"generated": len(meta["exit_code_by_key"]), "mutants": total, "killed": counts["killed"], "timeout": counts["timeout"], "survived": counts["survived"],
            "no_tests": counts["no_tests"],
            "other": total - sum(counts[k] for k in ("killed", "timeout", "survived", "no_tests")),
            "score": (counts["killed"] + counts["timeout"]) / total if total else None, "survivors": survivors}


def markdown(result: dict) -> str:
    lines = ["# Mutation testing of the runtime's decision path", "",
             f"mutmut {result['mutmut']}, one core, one run per module on that module's tests (less "
             f"{', '.join(result['deselected'])}). "
             "Score = (killed + timeout) / mutants; a mutant no test reaches counts as survived. "
             "Rewritten by `python benchmarks/mutation.py --publish` (each module's row by its own run).", "",
             "| module | mutants run (of generated) | killed | timeout | survived | no tests | score | minutes | tests | "
             "command, commit |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for module, row in result["modules"].items():
        lines.append(f"| runtime/{module}.py | {row['mutants']} ({row.get('generated', row['mutants'])}, {row.get('sample', 'all')}) | {row['killed']} | "
                     f"{row['timeout']} | "
                     f"{row['survived']} | {row['no_tests']} | {row['score']:.1%} | {row['seconds'] / 60:.1f} | "
                     f"{', '.join(row['tests'])} | `{row['command']}`, {row['commit']} |")
    survivors = [(module, s) for module, row in result["modules"].items() for s in row["survivors"]]
    harmless = [(m, s) for m, s in survivors if s["harmless"]]
    gaps = [(m, s) for m, s in survivors if not s["harmless"]]
    lines += ["", f"## Surviving mutants judged harmless ({len(harmless)})", ""]
    for module, s in harmless:
        lines.append(f"- `{s['mutant'].removeprefix('hyperverify.runtime.')}`: {s['harmless']}")
    lines += ["" if harmless else "none", "", f"## Other surviving mutants ({len(gaps)})", ""]
    for module, s in gaps:
        diff = s["diff"].replace("\n", " / ").replace("`", "'")
        lines.append(f"- `{s['mutant'].removeprefix('hyperverify.runtime.')}` ({s['status']}): `{diff[:300]}`")
    if not gaps:
        lines.append("none")
    return "\n".join(lines) + "\n"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "runtime", "tests"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=MODULES,
                        help="mutate only this module (repeatable); default: all four")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--publish", action="store_true",
                        help="write benchmarks/results/mutation.{json,md} instead of runs/results/")
    parser.add_argument("--sample", metavar="DIGITS",
                        help="run only the mutants whose number ends in one of DIGITS (e.g. 05: a 20 %% systematic "
                             "sample of every function's mutants), to bound the run")
    parser.add_argument("--render", action="store_true",
                        help="only re-apply HARMLESS to the existing results and rewrite them (no mutmut run)")
    args = parser.parse_args()
    modules = tuple(args.module or MODULES)
    out = RESULTS if args.publish else ROOT / "runs" / "results"
    path = out / "mutation.json"
    if args.render:
        result = json.loads(path.read_text())
        for row in result["modules"].values():
            for survivor in row["survivors"]:
                survivor["harmless"] = HARMLESS.get(survivor["mutant"])
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        atomic_write_text(out / "mutation.md", markdown(result))
        return
    if not (data_root() / "lfw").is_dir():
        raise SystemExit(f"the real face data is not at {data_root()} (set HYPERVERIFY_DATA): the tests need it")
    import mutmut

    command = "python benchmarks/mutation.py " + " ".join(sys.argv[1:])
    for module in modules:  # each run replaces its module's row, so that a module can be re-run alone
        folder = stage(module)
        pattern = f"*__mutmut_*[{args.sample}]" if args.sample else None
        seconds = run_mutmut(folder, args.timeout, pattern)
        result = json.loads(path.read_text()) if path.exists() else {"modules": {}}
        result.update(mutmut=mutmut.__version__, deselected=list(DESELECT))
        result["modules"][module] = {"command": command, "commit": commit(), "tests": list(TESTS[module]),
                                     "sample": pattern or "all",
                                     "seconds": seconds, **collect(folder, module)}
        result["modules"] = {name: result["modules"][name] for name in MODULES if name in result["modules"]}
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        atomic_write_text(out / "mutation.md", markdown(result))
        print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
