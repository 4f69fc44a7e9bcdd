"""The layout's rules, checked on the source (every import, module level or inside a function):
each stage package imports only the packages below it, strategies never import MLflow or
Prefect, nothing under tasks/ imports flows/, and no module imports itself back through others."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Package -> the tasks packages it may import (besides itself). The order is the architecture:
# tasktypes < models < strategies < config < data < evaluation < artifacts < training < registry
# < ops < serving. `tasktypes` (task types and the metric catalogue: declarations), `errors` (the
# user-error family the CLI catches by type), `tracking` (MLflow setup, run tags) and `env`
# (offline settings) are shared modules every stage may import.
SHARED = {"tasktypes", "errors", "env"}
ALLOWED = {
    "tasktypes": set(),
    "errors": set(),
    "env": set(),
    "models": SHARED,
    "strategies": SHARED | {"models"},
    "config": SHARED | {"strategies", "models"},
    "data": SHARED | {"config", "models", "tracking"},
    "evaluation": SHARED | {"config", "models", "tracking"},
    "artifacts": SHARED | {"config", "models", "strategies", "evaluation", "tracking"},
    "training": SHARED | {"config", "models", "strategies", "data", "evaluation", "artifacts", "tracking"},
    "registry": SHARED | {"config", "models", "strategies", "data", "evaluation", "artifacts", "training", "tracking"},
    "ops": SHARED | {"config", "models", "strategies", "data", "evaluation", "artifacts", "training", "registry",
                     "tracking"},
    "outcomes": SHARED | {"config"},
    "serving": SHARED | {"config", "models", "strategies", "evaluation", "artifacts", "registry",
                         "tracking", "outcomes"},
    "release": SHARED | {"config", "outcomes", "registry", "evaluation", "tracking"},
    "review": SHARED | {"config", "models", "strategies", "data", "evaluation", "artifacts", "registry", "outcomes",
                        "tracking"},
    "tracking": SHARED | {"config", "data", "models"},   # type annotations only (TYPE_CHECKING)
}
NEVER = {"strategies": ("mlflow", "prefect"), "models": ("mlflow",), "config": ("mlflow", "prefect")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (`from x import y` also counts x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def sources(folder: str = "tasks") -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "tasks" and len(parts) > 1 else None


def violations(modules: dict[str, set[str]]) -> list[str]:
    """What breaks the rules in a {module: imported modules} map (pure, so a test can feed it a bad map)."""
    out = []
    for module, imported in modules.items():
        pkg = package_of(module)
        for target in sorted(imported):
            other = package_of(target)
            if target.split(".")[0] == "flows" and module.startswith("tasks"):
                out.append(f"{module} imports {target}: nothing under tasks/ imports flows/")
            elif pkg and other and other != pkg and other in ALLOWED and other not in ALLOWED.get(pkg, set()):
                out.append(f"{module} imports {target}: {pkg} may import only {sorted(ALLOWED[pkg]) or 'nothing'}")
            elif pkg in NEVER and target.split(".")[0] in NEVER[pkg]:
                out.append(f"{module} imports {target}: {pkg} never imports {', '.join(NEVER[pkg])}")
    return out


def cycles(modules: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among our own modules (depth-first search over the module graph)."""
    graph = {m: {t for t in imported if t in modules and t != m} for m, imported in modules.items()}
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                found.append(path[path.index(t):] + [t] if t in path else [m, t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def project_modules() -> dict[str, set[str]]:
    files = {**sources("tasks"), **sources("flows")}
    # `from tasks.x import y` names a module when tasks/x/y.py exists; else y is a name in x.
    return {m: {t for t in imports(p) if t in files or not t.startswith(("tasks.", "flows."))
                or t.rsplit(".", 1)[0] not in files}
            for m, p in files.items()}


def test_every_tasks_package_is_in_the_layering_table():
    packages = {p.name for p in (ROOT / "tasks").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(ALLOWED), sorted((packages | modules) - set(ALLOWED))
    assert not any(p in ALLOWED[p] for p in ALLOWED), "a package lists itself"


def test_each_package_imports_only_what_is_below_it():
    assert violations(project_modules()) == []


def test_there_is_no_import_cycle():
    assert cycles(project_modules()) == []


def test_the_checks_catch_a_wrong_import_and_a_cycle():
    """Deliberately wrong maps: the rules are not vacuous."""
    assert violations({"tasks.data.steps": {"tasks.training.run"}}) == \
        ["tasks.data.steps imports tasks.training.run: data may import only "
         "['config', 'env', 'errors', 'models', 'tasktypes', 'tracking']"]
    assert violations({"tasks.strategies.lora": {"mlflow"}})[0].endswith("never imports mlflow, prefect")
    assert violations({"tasks.ops.fanout": {"flows.specialize"}})[0].endswith("nothing under tasks/ imports flows/")
    assert cycles({"tasks.a": {"tasks.b"}, "tasks.b": {"tasks.a"}}) == [["tasks.a", "tasks.b", "tasks.a"]]


def test_every_stage_package_says_what_it_owns_and_may_import():
    for init in (ROOT / "tasks").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc.lower(), f"{init.relative_to(ROOT)}: say what it may and must not import"


# ---- task types: no code outside the task-type declarations branches on a task's name ----
# Each stage registers its part for a task type in its own task_parts.py (a declaration, keyed by
# the name once); everything else asks the task type (tasks/tasktypes).
TASK_NAME_HOMES = ("tasks/tasktypes/", "task_parts.py")


def task_name_branches(source: str, task_names: tuple[str, ...], filename: str = "<source>") -> list[str]:
    """Comparisons with a task's name (`task == "generation"`, `in ("classification", ...)`) and
    tables keyed by it (`{"classification": ...}`), as `line: code` (pure, so a test can feed it
    planted code)."""
    lines, found = source.splitlines(), []

    def named(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in task_names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(named(e) for e in node.elts)

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare) and any(named(x) for x in (node.left, *node.comparators)):
            found.append(node)
        elif isinstance(node, ast.Dict) and any(k is not None and named(k) for k in node.keys):
            found.append(node)
        elif isinstance(node, ast.match_case) and named(getattr(node.pattern, "value", None)):
            found.append(node)
    return [f"{n.lineno}: {lines[n.lineno - 1].strip()}" for n in found]


def test_no_code_outside_the_task_types_branches_on_a_task_name():
    from tasks.tasktypes import names

    found = {}
    for folder in ("tasks", "flows"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or any(home in rel for home in TASK_NAME_HOMES):
                continue
            hits = task_name_branches(path.read_text(), names(), rel)
            if hits:
                found[rel] = hits
    assert found == {}, f"{sum(map(len, found.values()))} task-name branches: ask the task type instead: {found}"


def test_the_run_form_offers_exactly_the_registered_task_types():
    """The Prefect form's (and `--task`'s) choices are a Literal, so the UI shows them; it must
    name the registered task types, no more, no fewer."""
    import typing

    from flows.inputs import SpecializeInput
    from tasks.tasktypes import names

    choices = typing.get_args(typing.get_args(SpecializeInput.model_fields["task"].annotation)[0])
    assert choices == names()


def test_the_task_name_check_catches_a_planted_branch():
    planted = ('def f(settings, task):\n    if settings.task == "generation":\n        return 1\n'
               '    keys = {"classification": 1}\n    return task in ("classification", "other")\n')
    assert task_name_branches(planted, ("classification", "generation")) == [
        '2: if settings.task == "generation":', '4: keys = {"classification": 1}',
        '5: return task in ("classification", "other")']
    assert task_name_branches('x = registry.get(name, "generation")\n', ("generation",)) == []


# ---- underscores: a module's private names stay in its package ----
def private_uses(modules: dict[str, set[str]]) -> list[str]:
    """Imports of an underscore module or name of another package (`tasks.strategies._peft`
    from tasks.training; `from tasks.training.loop import _optimizer` in bench/): rename what is
    really public."""
    out = []
    for module, imported in modules.items():
        for target in sorted(imported):
            parts = target.split(".")
            if parts[0] != "tasks" or not any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                continue
            if package_of(module) is None or package_of(target) != package_of(module):
                out.append(f"{module} imports {target}: a private name of tasks.{package_of(target)}")
    return out


def test_no_package_uses_another_packages_private_names():
    modules = {**project_modules(), **{f"bench.{p.stem}": imports(p) for p in sorted((ROOT / "bench").glob("*.py"))}}
    assert private_uses(modules) == []


def test_the_private_name_check_catches_a_planted_use():
    assert private_uses({"tasks.training.run": {"tasks.strategies._peft"},
                         "tasks.strategies.lora": {"tasks.strategies._peft"},
                         "bench.step_profile": {"tasks.training.loop._optimizer"}}) == [
        "tasks.training.run imports tasks.strategies._peft: a private name of tasks.strategies",
        "bench.step_profile imports tasks.training.loop._optimizer: a private name of tasks.training"]


def test_the_metrics_page_is_the_catalogue():
    from tasks.tasktypes.docs import metrics_markdown

    assert (ROOT / "docs" / "metrics.md").read_text() == metrics_markdown(), \
        "docs/metrics.md is stale: .venv/bin/python -m tasks.tasktypes.docs > docs/metrics.md"



def test_reading_settings_and_the_flow_import_neither_torch_nor_transformers():
    """`adaptflow run`'s own process reads the settings, checks the hardware and runs the flow
    while its strategies train in forked processes: torch and transformers there cost 3.8 s of
    CPU (AMX Xeon) that the strategies' fork server spends again. A strategy module imports them
    where it builds a model; the settings read only its params."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from tasks.env import apply_offline_defaults\n"
            "apply_offline_defaults()\n"
            "from tasks.config import load_settings\n"
            "for profile in (None, 'causal', 'headlines'):\n"
            "    settings = load_settings('params.yaml', profile, strategies=['all'])\n"
            "import flows.specialize, flows.cli\n"
            "from tasks.training.hardware import check_hardware\n"
            "from dataclasses import replace\n"   # not auto: a first run on a machine times bf16 with torch
            "check_hardware(replace(load_settings('params.yaml').train, mixed_precision='no'))\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'adapters', 'accelerate') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
