"""A Sphinx extension for the book: the API page's ``capability-table`` and ``parameter-table`` directives, and the
``verdict`` role with which chapters quote the scorecard.

``capability-table`` renders :func:`ibcore.estimators.capability_table` (every registered estimator's declared
capabilities, read from its class attributes) as a table, and ``parameter-table`` their parameters and defaults,
so the page cannot drift from the registry. Enabled in ``_config.yml`` (``sphinx: extra_extensions``) next to
``sphinx.ext.autodoc`` and ``sphinx.ext.napoleon``.
"""

from __future__ import annotations

import functools
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

COLUMNS = (  # (heading, capabilities key)
    ("name", "name"), ("class", "class"), ("kind", "kind"), ("x", "x_role"), ("y", "y_role"), ("images", "images"),
    ("trained", "trained"), ("weighted", "weighted"), ("batched", "batched"), ("bounded by", "bound"),
)  # fmt: skip
PARAMETER_COLUMNS = (("name", "name"), ("class", "class"), ("parameters (defaults)", "params"))


def _cell(key: str, row: dict[str, Any]) -> list[nodes.Node]:
    # the inline nodes of one table cell
    value = row[key]
    if key == "name":
        return [nodes.literal(text=value)]
    if key == "class":
        ref = addnodes.pending_xref("", refdomain="py", reftype="class", reftarget=f"{row['module']}.{value}",
                                    refexplicit=False, refwarn=False)  # fmt: skip
        ref += nodes.literal(text=value, classes=["xref", "py", "py-class"])
        return [ref]
    if key == "params":
        parts: list[nodes.Node] = []
        for i, (k, v) in enumerate(value.items()):
            parts += ([nodes.Text(", ")] if i else []) + [nodes.literal(text=f"{k}={v!r}")]
        return parts or [nodes.Text("none")]
    if isinstance(value, bool):
        return [nodes.Text("yes" if value else "no")]
    return [nodes.Text("--" if value is None else str(value))]


def table_node(rows: list[dict[str, Any]], columns=COLUMNS, kind: str = "capability-table") -> nodes.table:
    """The rows of :func:`~ibcore.estimators.capability_table` (each with its class's ``module``) as a table of
    ``columns`` (``(heading, key)`` pairs)."""
    table = nodes.table(classes=[kind])
    group = nodes.tgroup(cols=len(columns))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in columns]

    def line(cells: list[list[nodes.Node]]) -> nodes.row:
        out = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *cell)
            out += entry
        return out

    head, body = nodes.thead(), nodes.tbody()
    head += line([[nodes.Text(heading)] for heading, _ in columns])
    body += [line([_cell(key, row) for _, key in columns]) for row in rows]
    group += [head, body]
    return table


def _rows() -> list[dict[str, Any]]:
    from ibcore.estimators import capability_table
    from ibcore.estimators.interface import _REGISTRY

    return [dict(row, module=_REGISTRY[row["name"]].__module__) for row in capability_table()]


class CapabilityTable(SphinxDirective):
    """``capability-table``: the declared capabilities of every registered estimator, as a table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return [table_node(_rows())]


class ParameterTable(SphinxDirective):
    """``parameter-table``: every registered estimator's parameters and their defaults, as a table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return [table_node(_rows(), PARAMETER_COLUMNS, "parameter-table")]


@functools.lru_cache(maxsize=1)
def _verdicts() -> dict[str, dict[str, Any]]:
    from ibcore.scorecard import SCALES, evaluate, load_claims, load_records

    return {r["id"]: r for r in evaluate(load_claims(), {s: load_records(s) for s in SCALES})}


def verdict_role(name, rawtext, text, lineno, inliner, options=None, content=()):
    """``{verdict}`claim-id```: the scorecard's verdict of that claim, in bold, linked to its row on the scorecard
    page. Chapters quote verdicts this way instead of typing them, so the text cannot disagree with the scorecard."""
    rows = _verdicts()
    if text not in rows:
        msg = inliner.reporter.error(f"verdict: no claim {text!r} in book/scorecard.yaml (ids: {sorted(rows)})",
                                     line=lineno)  # fmt: skip
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    row = rows[text]
    ref = nodes.reference(rawtext, "", refuri=f"{_SCORECARD_URI}#verdict-{text}", classes=["scorecard-verdict"])
    ref += nodes.strong(text=row["status"])
    return [ref], []


#: The scorecard page relative to a chapter in book/ (the notebook is rendered from notebooks/).
_SCORECARD_URI = "../notebooks/scorecard.html"


def setup(app) -> dict[str, Any]:
    app.add_role("verdict", verdict_role)
    app.add_directive("capability-table", CapabilityTable)
    app.add_directive("parameter-table", ParameterTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
