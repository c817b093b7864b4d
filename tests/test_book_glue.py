"""Every glue reference in the book's pages names a notebook that exists and a key that notebook glues.

The book build (`jupyter-book build -W`) finds these too, but only after every notebook has executed (25 minutes of
CI); this reads the sources in a second. myst-nb splits a `{glue:text}` role at its last colon into key and format,
so `path::key` without a format is read as key `path:` -- the mistake that failed a CI run.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE = re.compile(r"\{glue(?::(\w+))?\}`([^`]+)`")
DIRECTIVE = re.compile(r"^```\{glue(?::\w+)?\}\s+(\S+)\s*\n((?::\w+:.*\n)*)", re.M)
NAME = re.compile(r"^[A-Za-z_]\w*$")


def _glued_in(notebook: Path) -> list[str]:
    """The keys a notebook may glue, as regular expressions: every name-like string literal of its code (keys are
    also passed through variables and tuples), and every f-string with its fields as wildcards."""
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    patterns = [re.escape(k) for k in re.findall(r"(?<![\w{])\"([A-Za-z_]\w*)\"", source)]
    for key in re.findall(r"\bf\"([^\"]+)\"", source):
        patterns.append(r"\w*".join(re.escape(p) for p in re.split(r"\{[^}]*\}", key)))
    # ibcore.lenses.verdict_glue(table, "prefix", ...) names its values "<prefix>_<setting>_<lens>_T<layer>" and so on
    for prefix in re.findall(r"\bverdict_glue\([^,]+,\s*\"(\w+)\"", source):
        patterns.append(re.escape(prefix) + r"_\w+")
    return patterns


def _references(page: Path, text: str):
    """(line, notebook the key lives in, key) for every glue role and directive in a page's text."""
    for m in ROLE.finditer(text):
        kind, body = m.group(1) or "any", m.group(2)
        if kind in ("text", "md"):  # myst-nb: rsplit(":", 1) into key and format, then split("::", 1) into doc, key
            body = body.rsplit(":", 1)[0]
        doc, _, key = body.rpartition("::")
        yield text[: m.start()].count("\n") + 1, (page.parent / doc).resolve() if doc else page, key
    for m in DIRECTIVE.finditer(text):
        doc = re.search(r":doc:\s*(\S+)", m.group(2))
        yield text[: m.start()].count("\n") + 1, (page.parent / doc.group(1)).resolve() if doc else page, m.group(1)


def _pages():
    pages = sorted((ROOT / "book").glob("*.md"))
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        pages.append((notebook, text))
    return [(p, p.read_text()) if isinstance(p, Path) else p for p in pages]


@pytest.mark.parametrize("page,text", _pages(), ids=lambda p: p.name if isinstance(p, Path) else "")
def test_glue_references_resolve(page, text):
    problems = []
    for line, notebook, key in _references(page, text):
        where = f"{page.relative_to(ROOT)}:{line}"
        if not NAME.match(key):
            problems.append(f"{where}: key {key!r} is not a name (a path::key text role needs a format, e.g. ':s')")
        elif notebook.suffix != ".ipynb" or not notebook.exists():
            problems.append(f"{where}: {key!r} refers to {notebook.name}, which is not a notebook of the book")
        elif not any(re.fullmatch(p, key) for p in _glued_in(notebook)):
            problems.append(f"{where}: {notebook.name} glues no key {key!r}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_text_role_without_format(tmp_path):
    page = ROOT / "book" / "x.md"
    refs = list(_references(page, "see {glue:text}`../notebooks/dualib.ipynb::dualib_gamma`.\n"))
    assert not NAME.match(refs[0][2])
    refs = list(_references(page, "see {glue:text}`../notebooks/dualib.ipynb::dualib_gamma:g`.\n"))
    assert refs[0][1].name == "dualib.ipynb" and refs[0][2] == "dualib_gamma"
