"""Regenerate docs/img/report.png: a real report of a real analysis, photographed in Chromium.

    python docs/img/make_report_png.py                  # analyses examples/synthetic_session.flac
    python docs/img/make_report_png.py out/session.json # or renders a saved result

Needs the ``playwright`` Python package and a Chromium binary (``/usr/bin/chromium`` or
``$VOCALFUSION_CHROMIUM``); no browser download. The picture shows the top of the page
(header, summary cards, score timeline) at 1280 px width.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img" / "report.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    from fusion.report import render_session
    from fusion.report.trend import load_result

    if argv:
        result = load_result(argv[0])
    else:
        from fusion.engine.analyzer import analyze

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        result = analyze(ROOT / "examples" / "synthetic_session.flac")
    html = render_session(result)
    chromium = os.environ.get("VOCALFUSION_CHROMIUM", "/usr/bin/chromium")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        page_path = Path(tmp) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        ctx = pw.chromium.launch_persistent_context(
            str(Path(tmp) / "profile"), executable_path=chromium, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900}, offline=True)
        page = ctx.new_page()
        page.goto(page_path.as_uri())
        bottom = page.evaluate(
            "document.getElementById('timeline').getBoundingClientRect().bottom + 16")
        page.screenshot(path=str(OUT), clip={"x": 0, "y": 0, "width": 1280,
                                             "height": int(bottom)}, full_page=True)
        ctx.close()
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
