"""The rendered book as a reader sees it: every page opened in headless Chromium.

Fails (exit status 1, one line per problem) on

- a page that did not render: no ``<main>`` with a heading and some text after the browser ran the page's scripts;
- a broken image: an ``<img>`` whose file is missing, empty or does not decode, or that points off the machine;
- an unresolved glue reference: ``{glue`` role or directive text left in the page, or myst-nb's placeholder;
- a missing figure: a chapter with fewer images than its source has ``{glue}`` figure directives;
- math that did not typeset: a page on which Sphinx put formulas (elements of class ``math``) but that shows fewer
  MathJax outputs (``<mjx-container>``) once the browser ran its scripts, or a MathJax error (``<mjx-merror>``);
- raw TeX left in the page's prose (``\\(``, ``\\[``, ``\\begin{``, ``$...$`` or ``$$...$$``; text in ``<pre>``,
  ``<code>``, ``<script>`` and ``<style>`` does not count, so ``$HOME`` in a shell snippet is fine), on any page;
- a script that points off the machine (``http``, ``https`` or ``//``: the book must work offline) or whose local
  file is missing. MathJax 3 is served from the book itself (``_static/mathjax/tex-chtml.js``, copied there by the
  ``sphinx-mathjax-offline`` extension enabled in ``_config.yml``).

Saves one screenshot (the top 1280 x 2400 pixels) per chapter of ``_toc.yml`` for review.

Usage: ``python tests/browser/check_book.py _build/html --screenshots _build/screenshots`` (``make browser-check``
builds the book first). Needs Debian's ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import html.parser
import queue
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"genindex.html", "search.html"}
WORKERS = 4  # Chromium processes at a time
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip


class _Page(html.parser.HTMLParser):
    """Images, headings, the visible text and the prose inside ``<main>``; scripts, formulas and MathJax output."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.scripts: list[str] = []  # the src of every <script src=...> in the page
        self.math = 0  # elements Sphinx marked as formulas (class "math")
        self.mjx = 0  # MathJax output: <mjx-container> elements
        self.mjx_errors: list[str] = []  # MathJax's error messages (<mjx-merror data-mjx-error=...>)
        self.in_main = 0
        self.headings = 0
        self.text: list[str] = []  # visible text in <main> (all but <script> and <style>)
        self.prose: list[str] = []  # the same without <pre> and <code>: where TeX must not be left raw
        self._skip = 0
        self._code = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "main":
            self.in_main += 1
        if tag in ("script", "style"):
            self._skip += 1
        if tag in ("pre", "code"):
            self._code += 1
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if "math" in (attrs.get("class") or "").split():
            self.math += 1
        if tag == "mjx-container":
            self.mjx += 1
        if tag == "mjx-merror":
            self.mjx_errors.append(attrs.get("data-mjx-error") or "error")
        if self.in_main and tag == "h1":
            self.headings += 1
        if self.in_main and tag == "img":
            self.images.append(attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "main":
            self.in_main -= 1
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if tag in ("pre", "code"):
            self._code = max(0, self._code - 1)

    def handle_data(self, data):
        if self.in_main and not self._skip:
            self.text.append(data)
            if not self._code:
                self.prose.append(data)


# TeX that MathJax would have replaced: \( \[ \begin{ anywhere, $$...$$, and $...$ by pandoc's rule (no space after
# the opening or before the closing dollar, no digit after the closing one: "$5 and $10" is not a formula)
_RAW_TEX = re.compile(r"\\\(|\\\[|\\begin\{|\$\$[^$]+?\$\$|(?<![\\$])\$(?![\s$])[^$\n]{1,300}?(?<![\s\\])\$(?![\d$])")


def _script_problem(src: str, page: Path) -> str | None:
    parts = urlparse(src)
    if parts.scheme in ("http", "https") or (not parts.scheme and parts.netloc) or src.startswith("//"):
        return "points off the machine"
    if parts.scheme in ("data", "blob"):
        return None
    if parts.scheme == "file":
        target = Path(unquote(parts.path))
    elif not parts.scheme:
        target = (page.parent / unquote(parts.path)).resolve()
    else:
        return f"has an unexpected scheme {parts.scheme!r}"
    return None if target.is_file() else "is missing"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_book: no Chromium found; install Debian's chromium package (apt-get install chromium)")


def _browser(exe: str, profile: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _image_ok(path: Path) -> str | None:
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    suffix = path.suffix.lower()
    try:
        if suffix in (".png", ".jpg", ".jpeg", ".gif"):
            import matplotlib.image

            array = matplotlib.image.imread(path)
            if array.size == 0:
                return "decodes to nothing"
        elif suffix == ".svg":
            import xml.etree.ElementTree as ET

            ET.parse(path)
    except Exception as exc:  # any decoding error is a broken image
        return f"does not decode ({type(exc).__name__}: {exc})"
    return None


def _glue_figures(page: Path, html_root: Path) -> int:
    """The number of ``{glue}`` directives in the page's markdown source that glue a figure (0 for notebooks).

    What a key holds is read from the glue files myst-nb writes beside the executed notebooks
    (``_build/jupyter_execute/<doc>.glue.json``): a key that glues a table or a sentence is not a figure. Without that
    file every directive counts."""
    import json

    source = ROOT / page.relative_to(html_root).with_suffix(".md")
    if not source.is_file():
        return 0
    count = 0
    for key, doc in re.findall(r"^```\{glue\}\s*(\S+)\s*\n(?::doc:\s*(\S+))?", source.read_text(), flags=re.M):
        target = (source.parent / doc).resolve() if doc else source
        glue = html_root.parent / "jupyter_execute" / target.relative_to(ROOT).with_suffix(".glue.json")
        if not glue.is_file():
            count += 1
            continue
        data = json.loads(glue.read_text()).get(key, {}).get("data", {})
        count += any(mime.startswith("image/") for mime in data) or not data
    return count


def _chapters() -> set[str]:
    """The root and the chapter files of _toc.yml (sections are pages, not chapters), without extension."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {toc["root"]} | {c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])}


def _check_page(page: Path, html_root: Path, exe: str, profile: str, chapters: set[str],
                screenshots: Path | None) -> tuple[list[str], str | None]:
    """The problems of one page, and "page (MathJax outputs/formulas)" where it has formulas."""
    problems: list[str] = []
    math = None
    name = page.relative_to(html_root).as_posix()
    url = page.resolve().as_uri()
    done = _browser(exe, profile, "--virtual-time-budget=5000", "--dump-dom", url)
    if done.returncode != 0 or "<main" not in done.stdout:
        problems.append(f"{name}: did not render (chromium exit {done.returncode}: {done.stderr[-300:]!r})")
        return problems, None
    parsed = _Page()
    parsed.feed(done.stdout)
    text = " ".join(" ".join(parsed.text).split())
    if parsed.headings == 0 or len(text) < 200:
        problems.append(f"{name}: did not render (headings {parsed.headings}, {len(text)} characters of text)")
    source = _Page()
    source.feed(page.read_text(errors="replace"))
    if source.math:
        math = f"{name} ({parsed.mjx}/{source.math})"
        if parsed.mjx < source.math:  # MathJax typesets every formula or, without its script, none
            problems.append(f"{name}: formulas not typeset ({source.math} math elements, "
                            f"{parsed.mjx} MathJax outputs)")
    for err in sorted(set(parsed.mjx_errors)):
        problems.append(f"{name}: MathJax error in a formula ({err})")
    prose = " ".join(" ".join(parsed.prose).split())
    raw = _RAW_TEX.search(prose)
    if raw:
        problems.append(f"{name}: raw TeX left in the text ({prose[raw.start() : raw.start() + 60]!r})")
    for src in dict.fromkeys(source.scripts + parsed.scripts):  # the file's and those added by scripts
        err = _script_problem(src, page)
        if err:
            problems.append(f"{name}: script {src} {err}")
    for marker in ("{glue:", "{glue}", "Could not find glue", "glue key"):
        if marker in text:
            problems.append(f"{name}: unresolved glue reference ({marker!r} in the page)")
    for src in parsed.images:
        parts = urlparse(src)
        if parts.scheme in ("http", "https"):
            problems.append(f"{name}: image {src} points off the machine")
            continue
        if parts.scheme == "data":
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        err = _image_ok(target)
        if err:
            problems.append(f"{name}: broken image {src} ({err})")
    expected = _glue_figures(page, html_root)
    if len(parsed.images) < expected:
        problems.append(f"{name}: {len(parsed.images)} images for {expected} glued figures")
    if screenshots is not None and name[: -len(".html")] in chapters:
        screenshots.mkdir(parents=True, exist_ok=True)
        shot = screenshots / f"{page.stem}.png"
        _browser(exe, profile, "--virtual-time-budget=5000", "--window-size=1280,2400",
                 f"--screenshot={shot}", url)  # fmt: skip
        if not shot.is_file() or shot.stat().st_size == 0:
            problems.append(f"{name}: no screenshot")
    return problems, math


def check(html_root: Path, screenshots: Path | None) -> list[str]:
    exe = _chromium()
    chapters = _chapters()
    with_math: list[str] = []  # "page (MathJax outputs/formulas)" for each page with formulas
    problems: list[str] = []
    pages = sorted(p for p in html_root.rglob("*.html")
                   if p.name not in SKIP and not any(part.startswith("_") for part in p.relative_to(html_root).parts)
                   and not re.search(r'http-equiv="?refresh', p.read_text(errors="replace")[:2000], re.I))  # fmt: skip
    # (redirect pages such as index.html are skipped: the page they lead to is checked itself)
    if not pages:
        return [f"{html_root}: no pages (was the book built?)"]
    # Chromium mostly waits (page scripts, virtual time): pages are checked WORKERS at a time, each worker with a
    # profile of its own (two Chromium processes cannot share one); results are reported in page order.
    profiles = queue.Queue()
    with tempfile.TemporaryDirectory() as root:
        for i in range(WORKERS):
            profiles.put(str(Path(root) / f"profile{i}"))

        def one(page):
            profile = profiles.get()
            try:
                return _check_page(page, html_root, exe, profile, chapters, screenshots)
            finally:
                profiles.put(profile)

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for page_problems, math in pool.map(one, pages):
                problems += page_problems
                if math:
                    with_math.append(math)
    print(f"check_book: formulas typeset (MathJax outputs/formulas) on {', '.join(with_math) or 'no page'}")
    print(f"check_book: {len(pages)} pages checked ({len(with_math)} with formulas), {len(problems)} problems")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"), help="the built book")
    parser.add_argument("--screenshots", default=None, help="folder for one screenshot per chapter")
    args = parser.parse_args(argv)
    problems = check(Path(args.html), Path(args.screenshots) if args.screenshots else None)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
