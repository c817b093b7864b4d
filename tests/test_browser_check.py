"""tests/browser/check_book.py finds what it promises to find, on a small synthetic site (needs Chromium)."""

import importlib.metadata
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


def _page(body: str, head: str = "") -> str:
    text = "A paragraph long enough to count as a rendered page. " * 6
    return f"<html><head>{head}</head><body><main><h1>Title</h1><p>{text}</p>{body}</main></body></html>"


def _mathjax() -> Path:
    """MathJax 3's tex-chtml.js as the book ships it: from the sphinx-mathjax-offline package (the book extra)."""
    try:
        dist = importlib.metadata.distribution("sphinx-mathjax-offline")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("sphinx-mathjax-offline (the book extra) is not installed")
    return Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax/tex-chtml.js"))


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


# formulas as Sphinx writes them (dollarmath's $...$ and $$...$$), and prose and code that are not formulas
MATH = (r'<p>Inline <span class="math notranslate nohighlight">\(I(X;T) = H(X)\)</span> and displayed:</p>'
        r'<div class="math notranslate nohighlight">\[\beta^2 = \frac{1}{2}\ln 2\]</div>')  # fmt: skip
NOT_MATH = ("<p>It costs $5 and $10.</p><pre>export DATA=$HOME/data; echo $DATA</pre>"
            "<p>Run <code>echo $PATH$</code>.</p>")


def test_the_check_requires_typeset_math_and_a_book_that_works_offline(tmp_path):
    site = tmp_path / "html"
    (site / "_static" / "mathjax").mkdir(parents=True)
    shutil.copy(_mathjax(), site / "_static" / "mathjax" / "tex-chtml.js")
    local = '<script defer src="_static/mathjax/tex-chtml.js"></script>'
    (site / "typeset.html").write_text(_page(MATH + NOT_MATH, head=local))
    (site / "plain.html").write_text(_page(NOT_MATH))  # no formulas: no MathJax needed
    (site / "broken.html").write_text(_page(MATH, head='<script defer src="_static/mathjax/missing.js"></script>'))
    (site / "remote.html").write_text(
        _page(MATH, head='<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'))
    (site / "dollars.html").write_text(_page("<p>The mutual information $I(X;T)$ as dollarmath-less text.</p>"))
    problems = _load().check(site, None)
    assert not [p for p in problems if p.startswith(("typeset.html", "plain.html"))], problems
    assert any(p.startswith("broken.html: formulas not typeset") for p in problems), problems
    assert any(p.startswith("broken.html: script _static/mathjax/missing.js is missing") for p in problems), problems
    assert any(p.startswith("broken.html: raw TeX left") for p in problems), problems
    assert any(p.startswith("remote.html: formulas not typeset") for p in problems), problems
    assert any(p.startswith("remote.html: script https://") and "off the machine" in p for p in problems), problems
    assert any(p.startswith("dollars.html: raw TeX left") and "$I(X;T)$" in p for p in problems), problems
    assert not [p for p in problems if p.startswith("dollars.html") and "not typeset" in p], problems
