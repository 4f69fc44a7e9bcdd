"""Open a comparison report in headless Chromium: a screenshot of the page, and the decoded size
of every figure (a figure the browser cannot decode has size 0x0).

  python tests/report_browser.py reports/RUN.html [--png shot.png]

Needs Debian's `chromium` (`apt-get install chromium`); tests/test_report.py uses it when present.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FIGURE = re.compile(r'<img alt="([^"]*)" src="(data:image/png;base64,[^"]+)"')
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--virtual-time-budget=10000"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def figure_sizes(report: Path) -> list[tuple[str, int, int]]:
    """(caption, width, height) of every figure as the browser decoded it."""
    figures = FIGURE.findall(report.read_text())
    imgs = "".join(f'<img alt="{alt}" src="{src}">' for alt, src in figures)
    page = ("<!doctype html><html><body>" + imgs + "<script>window.addEventListener('load', () => "
            "document.body.setAttribute('data-sizes', [...document.images].map(i => i.naturalWidth + 'x' + "
            "i.naturalHeight).join(',')));</script></body></html>")
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / "check.html"
        check.write_text(page)
        dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, "--dump-dom", check.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-sizes="([^"]*)"', dom)
    sizes = [tuple(map(int, s.split("x"))) for s in found.group(1).split(",")] if found and found.group(1) else []
    return [(html.unescape(alt), w, h) for (alt, _), (w, h) in zip(figures, sizes)]


def screenshot(report: Path, png: Path, width: int = 1280, height: int = 7000) -> Path:
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--window-size={width},{height}",
                    f"--screenshot={png.resolve()}", report.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--png", type=Path, default=None, help="screenshot file (default: REPORT.png)")
    args = parser.parse_args()
    sizes = figure_sizes(args.report)
    for caption, w, h in sizes:
        print(f"{'ok ' if w and h else 'BAD'} {w:5d}x{h:<5d} {caption}")
    png = screenshot(args.report, args.png or args.report.with_suffix(".png"))
    print(f"{len(sizes)} figures; screenshot: {png} ({png.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
