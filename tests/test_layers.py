"""The house as built: the layers contract holds, and no module imports another's private name.

``lint-imports`` (import-linter) checks the contract in ``pyproject.toml``: cli, reports,
engine, store, api, leads, base, each importing only the layers below it. The second test
reads every module's imports (``ast``) and refuses ``from dialer.x import _name`` (dunder
names such as ``__version__`` are public).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_each_layer_imports_only_the_layers_below_it():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in sorted((ROOT / "dialer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dialer"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                found += [f"{path.relative_to(ROOT)}: {node.module}.{name}"
                          for name in private if not name.startswith("__")]  # fmt: skip
    assert found == []
