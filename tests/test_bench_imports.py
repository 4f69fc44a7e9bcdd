"""Every name a benchmark imports from adaptflow exists: bench/ imports inside its functions, so a
moved function (bench/training.py once imported loop_config from where it no longer was) would
only fail when someone runs the benchmark."""
from __future__ import annotations

import ast
import importlib
import importlib.util

import pytest
from conftest import ROOT

BENCH = sorted((ROOT / "bench").glob("*.py"))


def our_imports(path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module and node.module.split(".")[0] in ("tasks", "bench", "flows") for alias in node.names]


@pytest.mark.parametrize("path", BENCH, ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_adaptflow_exists(path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    missing = [f"{module}.{name}" for module, name in our_imports(path)
               if not hasattr(importlib.import_module(module), name)
               and importlib.util.find_spec(f"{module}.{name}") is None]
    assert not missing, f"{path.name} imports names that do not exist: {missing}"
