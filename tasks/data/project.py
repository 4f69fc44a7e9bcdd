"""`adaptflow init [DIR]`: a project folder of the user's own, where adaptflow runs from its
installed package. It gets the shipped params.yaml (every comment and profile, smoke included;
project.experiment and registered_model become `auto`: named after the data), dvc.yaml (its
stages run `python -m tasks.data.stages` of the installed adaptflow), a .gitignore, and
`git init` / `dvc init` where missing. Files already there are kept, never overwritten."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from tasks.data.dvc import DataPipelineError, dvc

TEMPLATE = ("tasks.config", "project_template")
# The demo's names in the shipped params.yaml (project: section, two-space indent) -> auto, so a
# project's runs are named after its own data (profiles keep theirs: they name their own data).
_AUTO_NAMES = re.compile(r"^(  (?:experiment|registered_model):) [^\n#]*?(\s*#.*)?$", re.MULTILINE)


@dataclass
class InitReport:
    root: Path
    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"{self.root}:"] + [f"  + {d}" for d in self.done] + [f"  = {k} (already there, kept)" for k in self.kept])


def template(name: str) -> str:
    package, folder = TEMPLATE
    # Stored as NAME.in: a dvc.yaml anywhere in a repository (or a virtualenv inside it) is a pipeline to DVC.
    return files(package).joinpath(folder, f"{name}.in" if name.endswith(".yaml") else name).read_text()


# The project: section: from its line to the next top-level key (review: has an experiment too).
_PROJECT_SECTION = re.compile(r"^project:.*?(?=^\S)", re.MULTILINE | re.DOTALL)


def project_params() -> str:
    """The shipped params.yaml with the project's names set to auto."""
    text = template("params.yaml")
    section = _PROJECT_SECTION.search(text)
    renamed, count = _AUTO_NAMES.subn(lambda m: f"{m.group(1)} auto{m.group(2) or ''}", section.group(0)) \
        if section else ("", 0)
    if count != 2:   # the shipped file changed shape: refuse rather than write a half-renamed copy
        raise ValueError(f"project template: expected project.experiment and project.registered_model, found {count}")
    return text[:section.start()] + renamed + text[section.end():]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise DataPipelineError("adaptflow init needs git (DVC versions data beside it); install git") from None


def init_project(root: Path) -> InitReport:
    root.mkdir(parents=True, exist_ok=True)
    report = InitReport(root.resolve())
    for name, text in (("params.yaml", project_params), ("dvc.yaml", lambda: template("dvc.yaml"))):
        if (root / name).exists():
            report.kept.append(name)
        else:
            (root / name).write_text(text())
            report.done.append(name)
    _gitignore(root, report)
    if _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        proc = _git(root, "init", "--quiet")
        if proc.returncode != 0:
            raise DataPipelineError(f"`git init` failed in {root} (exit {proc.returncode}): "
                                    f"{(proc.stdout + proc.stderr).strip() or '(git printed nothing)'}")
        report.done.append("git init")
    else:
        report.kept.append("git repository")
    if (root / ".dvc").is_dir():
        report.kept.append("DVC (.dvc/)")
    else:
        dvc(root, "init")
        report.done.append("dvc init")
    return report


def _gitignore(root: Path, report: InitReport) -> None:
    """The template's lines a .gitignore lacks are appended (an existing one is kept)."""
    path, wanted = root / ".gitignore", template("gitignore")
    if not path.exists():
        path.write_text(wanted)
        report.done.append(".gitignore")
        return
    have = set(path.read_text().splitlines())
    missing = [line for line in wanted.splitlines() if line and not line.startswith("#") and line not in have]
    if missing:
        with path.open("a") as fh:
            fh.write("\n# added by adaptflow init\n" + "\n".join(missing) + "\n")
        report.done.append(f".gitignore (+{len(missing)} line(s))")
    else:
        report.kept.append(".gitignore")
