"""One-way layering: runtime <- converters <- sdk. The runtime imports no training code and no
torch of its own at import time; converters never import the sdk."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return names


def test_runtime_imports_only_itself_among_our_packages() -> None:
    ours = {n for n in _imports("runtime") if n.startswith("hyperverify")}
    assert all(n.startswith("hyperverify.runtime") for n in ours), ours


def test_converters_never_import_the_sdk() -> None:
    assert not any(n.startswith("hyperverify.sdk") for n in _imports("converters"))


def test_importing_the_runtime_loads_no_torch_and_no_training_code() -> None:
    code = ("import sys, hyperverify.runtime; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('hyperverify.sdk', 'hyperverify.converters'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_copy_of_the_alignment_template_or_input_constants() -> None:
    """The template's first coordinate and the input scaling constant live in one file each."""
    for needle, home in (("38.2946", "runtime/faces.py"), ("127.5", "runtime/spec.py")):
        holders = [p.relative_to(ROOT).as_posix() for folder in ("runtime", "sdk", "converters", "sample_app")
                   for p in (ROOT / folder).rglob("*.py") if needle in p.read_text()]
        assert holders == [home], (needle, holders)
