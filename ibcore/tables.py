"""Tidy tables: the one group-by of the project, summaries over repeats, units, and tables for the book.

Records everywhere in :mod:`ibcore` are lists of flat dicts (information-plane records, estimator comparisons,
sweep results). :func:`group_by` groups them, :func:`describe` summarises a group's values, :func:`to_bits`
converts nats, and :func:`html_table` renders rows for a book page (MyST-NB renders notebook Markdown output without
tables, so the notebooks glue HTML).

Example:
    >>> rows = [{"layer": 1, "v": 1.0}, {"layer": 2, "v": 4.0}, {"layer": 1, "v": 3.0}]
    >>> {k: describe([r["v"] for r in g])["mean"] for k, g in group_by(rows, ("layer",)).items()}
    {(1,): 2.0, (2,): 4.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape

import numpy as np

__all__ = ["group_by", "describe", "to_bits", "NATS_PER_BIT", "html_table"]

NATS_PER_BIT = math.log(2.0)


def group_by(rows: Iterable[Mapping], by: Sequence[str], *, key: Callable | None = None,
             sort: bool = True) -> dict[tuple, list]:  # fmt: skip
    """The rows grouped by the values of the fields ``by``: ``{(value, ...): [row, ...]}``, rows in their order.

    Arguments:
        rows: Dicts (a missing field groups as ``None``).
        by: Field names; the key is the tuple of their values.
        key: Optional function of the key tuple to sort the groups by (default: the tuples themselves, falling back
            to their string forms when values of different types cannot be compared).
        sort: Sort the groups (``False``: first-seen order).
    """
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(b) for b in by), []).append(row)
    if not sort:
        return groups
    try:
        order = sorted(groups, key=key)
    except TypeError:
        order = sorted(groups, key=lambda k: tuple(str(v) for v in k))
    return {k: groups[k] for k in order}


def describe(values: Iterable[float], *, single_std: float = math.nan) -> dict[str, float | int]:
    """``{"mean", "std", "n"}`` of numbers, in float64; ``std`` is the sample standard deviation (ddof 1), and
    ``single_std`` for a single value (NaN by default; the information-plane aggregates use 0)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("describe needs at least one value, got none")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else float(single_std),
            "n": int(v.size)}  # fmt: skip


def to_bits(nats):
    """Nats to bits: a number, an array, or a record's ``i_xt``/``i_ty``-style fields are divided by ln 2.

    Example:
        >>> to_bits(math.log(4))
        2.0
    """
    if isinstance(nats, Mapping):
        raise ValueError("to_bits takes numbers or arrays; convert a record's fields one by one")
    if isinstance(nats, (list, tuple)):
        return type(nats)(to_bits(v) for v in nats)
    return nats / NATS_PER_BIT


def html_table(header: Sequence[str], rows: Iterable[Sequence], *, cls: str = "table") -> str:
    """An HTML table (cells escaped; use it for a glued ``IPython.display.HTML`` on a book page).

    Example:
        >>> html_table(["a", "b"], [[1, "<x>"]])
        '<table class="table"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody></table>'
    """
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
