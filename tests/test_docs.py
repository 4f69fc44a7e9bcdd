"""The docs site and the front door cannot rot: the site builds with `mkdocs build --strict` (a
broken link or anchor, or a docs page missing from the nav, fails), it loads nothing from the
network, the README stays a front door (at most 200 lines) whose links resolve and whose index
names every docs page."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Material's notice about MkDocs 2 is printed on every build; it says nothing about our pages.
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=QUIET, timeout=300)


def config_with_docs(tmp_path: Path, docs: Path) -> Path:
    """mkdocs.yml as committed, pointed at another docs folder (a copy to plant faults in)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_site_builds_strict_and_loads_nothing_from_the_network(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    pages = list((tmp_path / "site").glob("*.html"))
    assert {p.stem for p in pages} >= {d.stem for d in DOCS.glob("*.md")}
    # Fonts, scripts, styles or images from another host would need a network (Google Fonts is
    # material's default: theme.font is false). Plain links to other sites are fine.
    fetched = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"')
    for page in pages:
        assert not fetched.findall(page.read_text()), page.name


@pytest.mark.parametrize("fault, expected", [
    ("[a planted link](tuning.md#no-such-heading)", "does not contain an anchor '#no-such-heading'"),
    ("[a planted link](no-such-page.md)", "no-such-page.md"),
    (None, "not included in the \"nav\""),
])
def test_the_strict_build_fails_on_a_broken_anchor_link_or_a_page_left_out(tmp_path, fault, expected):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    if fault:
        (docs / "index.md").write_text((docs / "index.md").read_text() + f"\n{fault}\n")
    else:
        (docs / "orphan.md").write_text("# A page nobody listed\n")
    done = build(config_with_docs(tmp_path, docs), tmp_path / "site")
    assert done.returncode != 0
    assert expected in done.stderr


def test_every_docs_page_is_in_the_nav_and_in_the_readme_index():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def files(entries) -> set[str]:
        found = set()
        for entry in entries:
            for value in entry.values():
                found |= files(value) if isinstance(value, list) else {value}
        return found

    pages = {p.name for p in DOCS.glob("*.md")}
    assert files(nav) == pages
    listed = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", README.read_text()))
    assert pages - {"index.md"} <= listed, f"README's index lacks {sorted(pages - {'index.md'} - listed)}"


def test_the_readme_is_a_front_door_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
