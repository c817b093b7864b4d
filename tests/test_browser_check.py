"""tests/browser/check_book.py finds what it promises to find, on a small synthetic site (needs Chromium)."""

import importlib.util
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "browser" / "check_book.py"
pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")


def _load():
    spec = importlib.util.spec_from_file_location("check_book", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page(body: str) -> str:
    text = "A paragraph long enough to count as a rendered page. " * 6
    return f"<html><body><main><h1>Title</h1><p>{text}</p>{body}</main></body></html>"


def test_the_check_reports_broken_images_unresolved_glue_and_empty_pages(tmp_path):
    site = tmp_path / "html"
    (site / "_images").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(site / "_images" / "ok.png")
    (site / "_images" / "empty.png").write_bytes(b"")
    (site / "good.html").write_text(_page('<img src="_images/ok.png">'))
    (site / "broken.html").write_text(_page('<img src="_images/missing.png"><img src="_images/empty.png">'))
    (site / "glue.html").write_text(_page("<p>{glue:text}`nb.ipynb::key`</p>"))
    (site / "blank.html").write_text("<html><body><main></main></body></html>")
    (site / "remote.html").write_text(_page('<img src="https://example.org/a.png">'))
    problems = _load().check(site, None)
    assert not [p for p in problems if p.startswith("good.html")], problems
    assert any("broken.html" in p and "missing.png (missing)" in p for p in problems)
    assert any("broken.html" in p and "empty.png (empty)" in p for p in problems)
    assert any(p.startswith("glue.html: unresolved glue") for p in problems)
    assert any(p.startswith("blank.html: did not render") for p in problems)
    assert any(p.startswith("remote.html") and "off the machine" in p for p in problems)
