"""Every command the README and docs/ show runs as written.

The convention (docs/index.md says it too): a fenced block marked ```bash, ```sh, ```shell or
```console holds commands a reader can paste; each line whose command (after `$ `, `VAR=value`
assignments and a `.venv/bin/` prefix) is adaptflow, make, dvc or mlflow is checked here.
Synopses with [optional] parts and placeholders go in ```text blocks, which are not checked;
neither are commands of other programs (curl against a running server).

Each command is checked the cheapest way that still catches a wrong command:
- adaptflow: parsed by adaptflow's own argparse parser (every flag and value); `run` then builds
  its form and its settings (params file, profile, strategies, task, base) and makes the checks
  the CLI makes in its first seconds, before any data is read; `strategies` runs; the others are
  parsed and their --params file must exist. A `--data FILE` that is not in the repository
  stands for the reader's own file: the test writes one with the columns the command names.
  The packaged SmolLM2 is not built for the base check (20 s and 3 GB once): it is a causal LM.
- make: the target is in the Makefile. dvc, mlflow: parsed by their own parsers."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCES = ("bash", "sh", "shell", "console")
PROGRAMS = ("adaptflow", "make", "dvc", "mlflow")
FENCED = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Command:
    where: str       # page:line
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def commands(markdown: str, page: str = "snippet") -> list[Command]:
    """The commands of `markdown`'s runnable fenced blocks, in order (continuation lines joined)."""
    found = []
    for block in FENCED.finditer(markdown):
        if block.group(1) not in FENCES:
            continue
        first = markdown.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).splitlines()
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
            words = shlex.split(line.strip().removeprefix("$ "), comments=True)
            while words and ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words and words[0].removeprefix(".venv/bin/") in PROGRAMS:
                words[0] = words[0].removeprefix(".venv/bin/")
                found.append(Command(f"{page}:{first + start}", tuple(words)))
    return found


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in commands(page.read_text(), str(page.relative_to(ROOT)))]


class Broken(AssertionError):
    pass


def _parse_adaptflow(argv: list[str]):
    from flows.cli import _parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return _parser().parse_args(argv)
        except SystemExit:
            raise Broken(err.getvalue().strip().splitlines()[-1]) from None


def _own_data(args, where: Path) -> None:
    """A --data file that is not in the repository: one of the reader's own, with the columns the
    command names (a few rows: nothing reads past the header before the flow starts)."""
    if not args.path or (ROOT / args.path).is_file():
        return
    columns = [c for c in (args.text_col, args.label_col, args.group_col, args.split_col,
                           getattr(args, "target_col", None)) if c] or ["text", "label"]
    path = where / Path(args.path).name
    if path.suffix == ".jsonl":
        path.write_text("".join('{' + ", ".join(f'"{c}": "x"' for c in columns) + '}\n' for _ in range(3)))
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame({c: ["x"] * 3 for c in columns}).to_parquet(path)
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text(sep.join(columns) + "\n" + (sep.join("x" for _ in columns) + "\n") * 3)
    args.path = str(path)


def _check_run(args, tmp: Path) -> None:
    from flows.cli import _check, run_input
    from tasks.models.packaged import SMOLLM2
    from tasks.training.hardware import check_hardware

    _own_data(args, tmp)
    try:
        run = run_input(args)
        settings = run.settings()
        if settings.model.base == SMOLLM2:
            check_hardware(settings.train)
        else:
            _check(run)
    except (ValueError, OSError) as exc:   # pydantic's and adaptflow's UserErrors are ValueErrors
        raise Broken(str(exc).splitlines()[0]) from None


def check_adaptflow(words: list[str], tmp: Path) -> None:
    args = _parse_adaptflow(words)
    if args.command == "run":
        _check_run(args, tmp)
    elif args.command == "strategies":
        from flows.cli import main

        with contextlib.redirect_stdout(io.StringIO()):
            if main(words) != 0:
                raise Broken("adaptflow strategies failed")
    params = getattr(args, "params", None)
    if params and not (ROOT / params).is_file():
        raise Broken(f"--params {params}: no such file")
    out = getattr(args, "out", None)
    if out and not (ROOT / out).resolve().parent.is_dir():
        raise Broken(f"--out {out}: no such folder")


def check_make(words: list[str]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in [w for w in words[1:] if not w.startswith("-") and "=" not in w] or ["setup"]:
        if not re.search(rf"^{re.escape(target)}\s*:", makefile, re.M):
            raise Broken(f"make {target}: no such target in the Makefile")


def check_mlflow(words: list[str]) -> None:
    import click
    from mlflow.cli import cli

    try:
        ctx = cli.make_context("mlflow", list(words[1:]))
        # Click 8.2+ keeps the subcommand's name apart from ctx.args (protected_args is deprecated).
        name, command, rest = cli.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        command.make_context(name, rest, parent=ctx)
    except click.exceptions.ClickException as exc:
        raise Broken(exc.format_message()) from None


def check_dvc(words: list[str]) -> None:
    from dvc.cli import DvcParserError, parse_args

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parse_args(list(words[1:]))
        except (DvcParserError, SystemExit):
            raise Broken("dvc could not parse it (its log says why)") from None


def check(command: Command, tmp: Path) -> None:
    words = list(command.words)
    {"adaptflow": lambda: check_adaptflow(words[1:], tmp), "make": lambda: check_make(words),
     "mlflow": lambda: check_mlflow(words), "dvc": lambda: check_dvc(words)}[words[0]]()


COMMANDS = all_commands()


def test_the_pages_show_commands():
    """If the extraction broke, every command would pass unseen."""
    assert len(COMMANDS) >= 25
    assert {c.words[0] for c in COMMANDS} >= {"adaptflow", "make", "mlflow"}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_shown_command_works_as_written(command, tmp_path):
    check(command, tmp_path)


@pytest.mark.parametrize("snippet, message", [
    ("adaptflow run --strategy lora", "unrecognized arguments: --strategy lora"),
    ("adaptflow run --strategies lora,loar", "loar"),
    ("adaptflow run --task generation --data notes.jsonl --input-col report", "needs data.target_col"),
    ("adaptflow run --params no-such-params.yaml", "no-such-params.yaml"),
    ("adaptflow promote some-model --form challenger --reason x", "one of the arguments --version --from is required"),
    ("adaptflow report RUN_ID --out no-such-folder/r.html", "no such folder"),
    ("make dmeo", "no such target"),
    ("mlflow ui --bakend-store-uri sqlite:///mlflow/mlflow.db", "No such option"),
    ("dvc repro --no-such-flag", "dvc could not parse it"),
])
def test_a_planted_broken_command_fails(snippet, message, tmp_path):
    """The test of the test: a page with one wrong command in a bash block is caught, naming why."""
    found = commands(f"Some text.\n\n```bash\n$ {snippet}   # a comment\n```\n")
    assert [c.words for c in found] == [tuple(shlex.split(snippet))]
    with pytest.raises(Broken, match=re.escape(message)):
        check(found[0], tmp_path)


def test_text_blocks_and_other_programs_are_not_commands():
    page = ("```text\nadaptflow run [--profile NAME]\n```\n```bash\ncurl -s localhost:8000/health\n"
            "# adaptflow run --nothing\nPREFECT_API_URL=http://x adaptflow run \\\n  --tune\n```\n")
    assert [c.words for c in commands(page)] == [("adaptflow", "run", "--tune")]
