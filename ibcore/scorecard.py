"""The scorecard: every headline finding of the reproduced papers, and the checks of our code, with the paper's
value, ours at the default (reduced) scale and at paper scale, and a verdict computed from recorded numbers.

Claims live in ``book/scorecard.yaml``, one entry each::

    - id: goldfeld-l5-compression          # how chapters cite it: {verdict}`goldfeld-l5-compression`
      kind: finding                        # finding (a result the paper reports) or check (an identity, a bound)
      paper: Goldfeld et al. (ICML 2019)
      claim: the last hidden layer compresses
      paper_value: L5 peaks at 4.92 nats and ends at 2.30
      paper_number: 2.62                   # optional: the paper's value as a number, for the figure
      where: Fig. 5a                       # where the paper prints it (findings)
      notebook: noisy_szt                  # notebooks/<name>.ipynb
      paper_record: noisy_szt              # optional: which paper-scale record (params/<it>_paper.yaml; default the
                                           # notebook's), where a notebook has several paper files
      number: noisy_szt_plain_l5_peak - noisy_szt_plain_l5_final   # glued names and constants, "a - b - ..."
      format: ".2f"                        # null number: the finding has not been run (say why)
      reproduced: [1.62, 3.62]             # the number reproduces the finding inside this closed range ...
      partly: [1.0, .inf]                  # ... partly inside this one (optional), not outside both
      source: papers.md section 3          # where the range comes from
      why: "L4 falls to {noisy_szt_plain_l4_final:.2f} nats"   # optional; numbers only from the record

Recorded numbers are the ``result.json`` files of :mod:`ibcore.batch` runs of the notebooks, copied to
``book/records/<scale>/<notebook>.json`` by ``python -m ibcore.scorecard record`` (``--scale paper`` runs each
notebook with ``params/<notebook>_paper.yaml``). A record whose notebook has changed since it was made is reported
as stale rather than silently used. A paper file that runs the paper's architecture, data and schedule with fewer
networks or seeds than the paper (a run that would take days on two CPU cores) says so in a ``# Reduced: <why>``
header line; its record is shown as a reduced run, with that reason.

The verdict says at which scale it was obtained: a finding is *reproduced* only from a paper-scale record; from the
default record alone it *holds at reduced scale*. A check *passes* or *fails*; it is never counted as a
reproduction. The reason shown with each verdict is generated from the record and the claim's range.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import string
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["load_claims", "load_records", "verdict", "status", "evaluate", "to_markdown", "to_html", "figure",
           "notebook_digest", "record", "drift", "machine", "reduced_reason"]

ROOT = Path(__file__).resolve().parents[1]
CLAIM_KEYS = {"id", "kind", "paper", "claim", "paper_value", "paper_number", "where", "notebook", "paper_record",
              "number", "format", "reproduced", "partly", "source", "why"}
REQUIRED = {"id", "kind", "paper", "claim", "paper_value", "notebook", "number", "reproduced", "source"}
KINDS = ("finding", "check")
SCALES = ("default", "paper")
LIBRARY = "library_digest"  # in a run's work folder: library_digest() of the code it ran with
#: What a range verdict means, per kind of claim and scale.
WORDS = {
    ("finding", "paper"): {"reproduced": "reproduced", "partly": "partly reproduced", "not": "not reproduced"},
    ("finding", "default"): {"reproduced": "holds at reduced scale", "partly": "partly, at reduced scale",
                             "not": "missed at reduced scale"},
    ("check", "paper"): {"reproduced": "passes", "partly": "partly passes", "not": "fails"},
    ("check", "default"): {"reproduced": "passes", "partly": "partly passes", "not": "fails"},
}  # fmt: skip


def notebook_digest(path: str | os.PathLike) -> str:
    """A digest of a notebook's code and parameters (outputs and metadata ignored): what a record was made from.
    The cell papermill injects is left out, so that an executed copy has the digest of the notebook it ran."""
    nb = json.loads(Path(path).read_text())
    code = [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in nb.get("cells", []) if c.get("cell_type") == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]  # fmt: skip
    return hashlib.sha256("\n\x00".join(code).encode()).hexdigest()[:16]


def _range(value, name: str, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
            and value[0] <= value[1]):  # fmt: skip
        raise ValueError(f"{where}: {name} must be [low, high] with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def load_claims(root: str | os.PathLike = ROOT) -> list[dict]:
    """Read and check ``<root>/book/scorecard.yaml`` (module docstring); ``root`` is the repository."""
    path = Path(root) / "book" / "scorecard.yaml"
    claims = yaml.safe_load(path.read_text())
    if not isinstance(claims, list) or not claims:
        raise ValueError(f"{path}: expected a non-empty list of claims")
    for i, c in enumerate(claims):
        where = f"{path}: claim {i + 1}"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: expected a mapping, got {c!r}")
        missing, extra = sorted(REQUIRED - set(c)), sorted(set(c) - CLAIM_KEYS)
        if missing or extra:
            raise ValueError(f"{where} ({c.get('claim')!r}): missing keys {missing}, unknown keys {extra}")
        if c["kind"] not in KINDS:
            raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got {c['kind']!r}")
        if c["kind"] == "finding" and not c.get("where"):
            raise ValueError(f"{where} ({c['id']!r}): a finding says where the paper prints it ('where')")
        if c["number"] is None and not c.get("why"):
            raise ValueError(f"{where} ({c['id']!r}): a claim without a number says why it is not run ('why')")
        _range(c["reproduced"], "reproduced", where)
        if "partly" in c:
            lo, hi = _range(c["partly"], "partly", where)
            r_lo, r_hi = _range(c["reproduced"], "reproduced", where)
            if not (lo <= r_lo and r_hi <= hi):
                raise ValueError(f"{where}: the partly range {c['partly']} must contain the reproduced range")
        if not (Path(root) / "notebooks" / f"{c['notebook']}.ipynb").is_file():
            raise ValueError(f"{where}: no notebook notebooks/{c['notebook']}.ipynb")
    ids = [c["id"] for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: claim ids must be unique, repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
    return claims


def paper_notebook(name: str, root: str | os.PathLike = ROOT) -> Path:
    """The notebook a paper file ``params/<name>_paper.yaml`` runs: ``notebooks/<name>.ipynb``, else the notebook whose
    name is the longest prefix of ``name`` followed by ``_`` (``quantized_szt`` runs ``quantized.ipynb``)."""
    stems = [p.stem for p in (Path(root) / "notebooks").glob("*.ipynb")
             if name == p.stem or name.startswith(p.stem + "_")]  # fmt: skip
    if not stems:
        raise ValueError(f"params/{name}_paper.yaml names no notebook (notebooks/<prefix of {name!r}>.ipynb)")
    return Path(root) / "notebooks" / f"{max(stems, key=len)}.ipynb"


def load_records(scale: str, root: str | os.PathLike = ROOT) -> dict[str, dict]:
    """The recorded results of one scale (``<root>/book/records/<scale>/*.json``), by record name (the notebook's,
    or at paper scale the parameter file's, e.g. ``quantized_szt``), each with ``stale`` set when the notebook it ran
    has changed since."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    out = {}
    for path in sorted((Path(root) / "book" / "records" / scale).glob("*.json")):
        rec = json.loads(path.read_text())
        nb = Path(root) / "notebooks" / (rec.get("notebook") or f"{path.stem}.ipynb")
        rec["stale"] = not nb.is_file() or rec.get("notebook_digest") != notebook_digest(nb)
        rec["reduced"] = reduced_reason(((rec.get("params_file") or {}).get("text")) or "")
        out[path.stem] = rec
    return out


def verdict(claim: dict, value) -> str:
    """``reproduced``, ``partly`` or ``not`` for a recorded value; ``not recorded`` without one."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "not recorded"
    lo, hi = claim["reproduced"]
    if lo <= value <= hi:
        return "reproduced"
    if "partly" in claim and claim["partly"][0] <= value <= claim["partly"][1]:
        return "partly"
    return "not"


def _constant(term: str) -> float | None:
    try:
        return float(term)
    except ValueError:
        return None


def _value(records: dict[str, dict], claim: dict, scale: str = "default"):
    rec = records.get(claim.get("paper_record", claim["notebook"]) if scale == "paper" else claim["notebook"])
    if claim["number"] is None or rec is None or rec.get("status") != "ok" or rec.get("stale"):
        return None, rec
    numbers = rec.get("numbers", {})
    terms = [t.strip() for t in claim["number"].split(" - ")]  # "a" or a difference "a - b", constants allowed
    values = []
    for term in terms:
        value = _constant(term)
        if value is None:
            value = numbers.get(term)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, rec
        values.append(value)
    return values[0] - sum(values[1:]) if len(values) > 1 else values[0], rec


def evaluate(claims: Sequence[dict], records: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per claim: the claim's fields, and for each scale in ``records`` (``{"default": ..., "paper": ...}``
    as from :func:`load_records`) our value (``ours``), the range ``verdict`` and a ``note`` when there is no usable
    record (stale or failed); then the row's :func:`status` (``status``, ``scale``) and the generated ``reason``."""
    rows = []
    for c in claims:
        row = {k: c.get(k, "") for k in ("id", "kind", "paper", "claim", "paper_value", "where", "source", "why")}
        row.update(format=c.get("format", ".3g"), paper_number=c.get("paper_number"), reproduced=c["reproduced"],
                   partly=c.get("partly"), number=c["number"], ours={}, verdict={}, note={}, numbers={},
                   reduced={})  # fmt: skip
        for scale in SCALES:
            value, rec = _value(records.get(scale, {}), c, scale)
            row["ours"][scale] = value
            row["verdict"][scale] = verdict(c, value)
            if rec is not None and rec.get("status") == "ok" and not rec.get("stale"):
                row["numbers"][scale] = rec.get("numbers", {})
                if value is not None and rec.get("reduced"):
                    row["reduced"][scale] = rec["reduced"]
            if value is None and rec is not None and c["number"] is not None:
                row["note"][scale] = ("stale record" if rec.get("stale") else f"run {rec.get('status')}"
                                      if rec.get("status") != "ok" else "number not recorded")  # fmt: skip
        row["status"], row["scale"] = status(row)
        row["reason"] = _reason(row)
        rows.append(row)
    return rows


def status(row: dict) -> tuple[str, str | None]:
    """The verdict a reader sees and the scale it comes from: from the paper-scale record where there is one, else
    from the default record (a finding then only "holds at reduced scale"); "not run" for a finding without a
    number, "not recorded" without a usable record."""
    if row["number"] is None:
        return "not run", None
    for scale in ("paper", "default"):
        v = row["verdict"][scale]
        if v != "not recorded":
            return WORDS[(row["kind"], scale)][v], scale
    return "not recorded", None


def _range_text(r) -> str:
    lo, hi = (("−∞" if v == -math.inf else "∞" if v == math.inf else f"{v:g}") for v in r)
    return f"[{lo}, {hi}]"


class _Numbers(dict):
    # format_map source: a glued number by name; a missing one shows as "?" (no usable record)
    def __missing__(self, key):
        return _Unknown()


class _Unknown:
    def __format__(self, spec):
        return "?"


def _why(row: dict) -> str:
    if not row["why"]:
        return ""
    numbers = row["numbers"].get(row["scale"] or "default") or row["numbers"].get("default") or {}
    return string.Formatter().vformat(row["why"], (), _Numbers({k: _numeric(v) for k, v in numbers.items()}))


def _reason(row: dict) -> str:
    """Generated from the record: our number at the scale of the verdict against the claim's range and source."""
    if row["number"] is not None and row["scale"] is None:
        notes = sorted(set(row["note"].values()))
        return "No usable record" + (f" ({', '.join(notes)})" if notes else "") + "."
    why = _why(row)
    if row["scale"] is None:
        return why[:1].upper() + why[1:] + "."
    value = format(row["ours"][row["scale"]], row["format"])
    reduced = row["reduced"].get(row["scale"])
    at = ("paper scale" + (f" (a reduced run: {reduced.rstrip('.')})" if reduced else "") if row["scale"] == "paper"
          else "the default (reduced) scale")  # fmt: skip
    text = (f"Ours: {value} at {at}; the range "
            f"for {'reproduced' if row['kind'] == 'finding' else 'a pass'} is {_range_text(row['reproduced'])}"
            + (f" (partly: {_range_text(row['partly'])})" if row["partly"] else "")
            + f", from {row['source']}.")  # fmt: skip
    return text + (f" {why[:1].upper() + why[1:]}." if why else "")


def _fmt(row: dict, scale: str) -> str:
    value = row["ours"][scale]
    if row["number"] is None:
        return "not run"
    text = "–" if value is None else format(value, row["format"])
    note = row["note"].get(scale) or ("reduced run" if row["reduced"].get(scale) else None)
    return text + (f" ({note})" if note else "")


def to_markdown(rows: Sequence[dict]) -> str:
    """The scorecard as Markdown: the findings, then the checks of the code, each with its verdict and reason."""
    out = []
    for kind, title in (("finding", "Findings of the papers"), ("check", "Checks of the code")):
        out += [f"## {title}", "", "| paper | claim | the paper | ours, default scale | ours, paper scale | verdict |",
                "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            if r["kind"] != kind:
                continue
            cells = [r["paper"], r["claim"], r["paper_value"], _fmt(r, "default"), _fmt(r, "paper"),
                     f"**{r['status']}**: {r['reason']}"]  # fmt: skip
            out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def to_html(rows: Sequence[dict], kind: str = "finding") -> str:
    """One table of the scorecard page as HTML: the rows of ``kind``, each verdict with its reason folded below it
    (a ``<details>`` element)."""
    from html import escape

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    first = "finding" if kind == "finding" else "check"
    head = (first, "the paper", "ours, default scale", "ours, paper scale", "verdict")
    out = [f'<table class="table scorecard scorecard-{kind}" style="width:100%">',
           "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>", "<tbody>"]  # fmt: skip
    for r in rows:
        if r["kind"] != kind:
            continue
        where = f", {escape(r['where'])}" if r["where"] else ""
        claim = f"<b>{escape(r['paper'])}</b>{where}: {escape(r['claim'])}"
        shown = (f'<details id="verdict-{escape(r["id"])}"><summary><b>{escape(r["status"])}</b></summary>'
                 f"{escape(r['reason'])}</details>")  # fmt: skip
        cells = [claim, escape(str(r["paper_value"])), escape(_fmt(r, "default")), escape(_fmt(r, "paper")), shown]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def figure(rows: Sequence[dict]):
    """For every finding with a number: its range (band), the paper's value (star, where it has one) and ours at both
    scales on one axis per finding, so that a reader takes in the whole scorecard at a glance."""
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["kind"] == "finding" and r["number"] is not None]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 0.62 * len(shown) + 0.8), squeeze=False)
    for ax, r in zip(axes[:, 0], shown):
        values = [v for v in (r["ours"]["default"], r["ours"]["paper"], r["paper_number"]) if v is not None]
        lo, hi = r["reproduced"]
        finite = [v for v in (lo, hi) if math.isfinite(v)] + values
        a, b = min(finite), max(finite)
        pad = 0.25 * (b - a) if b > a else max(abs(a), 1.0) * 0.25
        view = (a - pad, b + pad)
        ax.axvspan(max(lo, view[0]), min(hi, view[1]), color="tab:green", alpha=0.18, lw=0)
        if r["paper_number"] is not None:
            ax.plot([r["paper_number"]], [0], "k*", ms=11, label="the paper")
        for scale, marker, colour in (("default", "o", "tab:blue"), ("paper", "s", "tab:orange")):
            if r["ours"][scale] is not None:
                ax.plot([r["ours"][scale]], [0], marker, color=colour, ms=7, label=f"ours, {scale} scale")
        ax.set(xlim=view, yticks=[])
        ax.tick_params(axis="x", labelsize=7, pad=1)
        ax.set_ylabel(r["id"], rotation=0, ha="right", va="center", fontsize=8)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    handles = {}
    for ax in axes[:, 0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    handles["reproduced range"] = plt.Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.18)
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (0.62 * len(shown) + 0.8)))
    return fig


def record(notebooks: Sequence[str], scale: str = "default", *, root: str | os.PathLike = ROOT,
           workers: int | None = None, threads: int | None = None) -> list[dict]:  # fmt: skip
    """Run ``notebooks`` (names under ``<root>/notebooks/``) at ``scale`` through :mod:`ibcore.batch` (work folders
    under ``<root>/results/scorecard``) and copy each successful ``result.json``, with the notebook's digest, the
    parameter file, the commit it ran at and the machine, to ``<root>/book/records/<scale>/<notebook>.json``.

    Training is checkpointed in ``<root>/book/records/<scale>/checkpoints/<notebook>/`` (notebooks that declare
    ``checkpoint_dir``), a folder that may be committed while a long run is in progress: the same command, on this
    machine or the next, continues from it; when the run has succeeded it moves to the run's work folder
    (``results/``, not committed), from which a record made stale by an edit of the notebook is remade in seconds:
    a finished run whose executed notebook is another version than the one in ``notebooks/`` runs again, and at
    the default scale so does one that ran with other library code (:func:`library_digest`: the notebook unchanged,
    an estimator changed). A finished paper-scale run is kept across library changes (it took hours; its
    checkpoints are gone): remaking it is a decision, made by deleting its work folder."""
    root = Path(root)
    from ._io import write_atomic
    from .batch import CHECKPOINTS, NOTEBOOK, RESULT, Run, _run_id, check_parameters, run_sweep

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    runs, files, digests = [], {}, {}
    for name in notebooks:
        nb_name, params, pfile = name, {}, None
        if scale == "paper":  # a notebook with one paper file, or a paper file's name (quantized_szt)
            pfile = root / "params" / f"{name}_paper.yaml"
            if not pfile.is_file():
                known = sorted(p.name for p in (root / "params").glob("*_paper.yaml"))
                raise ValueError(f"no paper-scale parameter file params/{name}_paper.yaml (there are {known})")
            params = yaml.safe_load(pfile.read_text()) or {}
            nb_name = paper_notebook(name, root).stem
        nb = root / "notebooks" / f"{nb_name}.ipynb"
        if not nb.is_file():
            raise ValueError(f"no notebook notebooks/{nb_name}.ipynb")
        check_parameters(nb, params)
        runs.append(Run(str(nb), params, str(root / "results" / "scorecard" / scale / name / _run_id(nb, params)),
                        checkpoints=str(root / "book" / "records" / scale / "checkpoints" / name)))  # fmt: skip
        files[run_key(runs[-1])] = None if pfile is None else {"path": str(pfile.relative_to(root)),
                                                               "text": pfile.read_text()}  # fmt: skip
        digests[run_key(runs[-1])] = notebook_digest(nb)  # of the version that runs: an edit makes it stale
    library = library_digest(root)
    for run in runs:  # a finished run of an earlier version of its notebook runs again (from its checkpoints)
        done, executed, code = Path(run.folder) / RESULT, Path(run.folder) / NOTEBOOK, Path(run.folder) / LIBRARY
        other_code = scale == "default" and (not code.is_file() or code.read_text() != library)
        if done.is_file() and (other_code or not executed.is_file()
                               or notebook_digest(executed) != digests[run_key(run)]):  # fmt: skip
            done.unlink()
            if other_code:  # what it kept (trained networks, finished estimates) was made by the other code too
                shutil.rmtree(Path(run.folder) / CHECKPOINTS, ignore_errors=True)
    provenance = {"commit": _commit(root), "machine": machine()}
    target = root / "book" / "records" / scale
    results = []
    # at paper scale one notebook at a time, each record written as soon as its run has finished
    for batch in [[r] for r in runs] if scale == "paper" else [runs]:
        for run, res in zip(batch, run_sweep(batch, workers=workers, threads=threads)):
            results.append(res)
            if res and res["status"] == "ok":
                write_atomic(Path(run.folder) / LIBRARY, library)  # the code this result was made with
                res = {**res, "notebook_digest": digests[run_key(run)], "scale": scale, **provenance,
                       "params_file": files[run_key(run)]}  # fmt: skip
                write_atomic(target / f"{run_key(run)}.json", json.dumps(res, indent=1, default=str))
    return results


def library_digest(root: str | os.PathLike = ROOT) -> str:
    """Digest of the library's code (every ``ibcore/**/*.py`` under ``root``, names and bytes): a default-scale run
    made with other code is not reused as a record."""
    h = hashlib.sha256()
    for path in sorted((Path(root) / "ibcore").rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def reduced_reason(text: str) -> str | None:
    """The reason a paper-scale parameter file gives for running less than the paper (fewer networks or seeds, at
    the paper's architecture, data and schedule): its ``# Reduced:`` comment line with the comment lines indented
    under it, joined; None for a file that runs the paper's full scale."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# Reduced:"):
            words = [line[len("# Reduced:"):].strip()]
            for more in lines[i + 1:]:
                if not more.startswith("#  "):
                    break
                words.append(more[1:].strip())
            return " ".join(words)
    return None


def run_key(run) -> str:
    """The record name of a scorecard run: the name of its checkpoint folder (a notebook's or a paper file's)."""
    return Path(run.checkpoints).name


def _commit(root: Path) -> str | None:
    """The commit ``root`` is at, with ``+dirty`` when tracked files differ from it (None outside a git checkout)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine() -> dict:
    """The machine a record was made on: host, CPU model and cores, memory, GPU, Python and torch versions."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": None if mem is None else round(mem, 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip


def _numeric(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def drift(executed: str | os.PathLike, scale: str = "default", *, root: str | os.PathLike = ROOT,
          rel: float = 1e-6, abs_tol: float = 1e-9, every: bool = False) -> list[dict]:  # fmt: skip
    """Where the committed records of ``scale`` and fresh executions disagree: for every executed notebook
    ``<executed>/<name>.ipynb`` (as ``make test`` leaves them in ``_build/executed``) with a record, each glued number
    that moved by more than ``rel`` (relative) and ``abs_tol``, or that one side lacks, and the record itself when its
    notebook has changed since (stale). Returns ``[{"notebook", "name", "recorded", "now", "why"}]``; empty when the
    book's numbers are the ones the code gives. Runs at the same settings reproduce to float rounding on one
    machine (one thread per kernel, as ``make test`` and ``record --threads 1`` run them). Wall times (names with
    ``seconds``) are left out. With ``every``, a record whose notebook has no execution in ``executed`` is listed too
    (``"not executed"``): CI checks every record, not only those it happened to run."""
    import nbformat

    from .batch import _glued

    records = load_records(scale, root)
    out = []
    if every:
        ran = {p.stem for p in Path(executed).glob("*.ipynb")}
        out += [{"notebook": name, "name": None, "recorded": None, "now": None, "why": f"not executed in {executed}"}
                for name in sorted(set(records) - ran)]  # fmt: skip
    for path in sorted(Path(executed).glob("*.ipynb")):
        rec = records.get(path.stem)
        if rec is None:
            continue
        if rec.get("stale"):
            out.append({"notebook": path.stem, "name": None, "recorded": None, "now": None,
                        "why": "stale: the notebook changed after its record was made"})  # fmt: skip
            continue
        now = {k: _numeric(v) for k, v in _glued(nbformat.read(path, as_version=4)).items()}
        then = {k: _numeric(v) for k, v in rec.get("numbers", {}).items()}
        for name in sorted(set(now) | set(then)):
            if "seconds" in name:  # wall times differ from run to run; they are not results
                continue
            a, b = then.get(name), now.get(name)
            if name not in now or name not in then:
                why = "only recorded" if name not in now else "not recorded"
            elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
                if math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol) or (a != a and b != b):
                    continue
                why = f"moved by {b - a:+.3g}"
            elif a == b:
                continue
            else:
                why = "changed"
            out.append({"notebook": path.stem, "name": name, "recorded": a, "now": b, "why": why})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ibcore.scorecard", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run notebooks and record their numbers for the scorecard")
    rec.add_argument("notebooks", nargs="*", help="notebook names, or at paper scale the names of paper files "
                     "(quantized_szt for params/quantized_szt_paper.yaml); default: every notebook in a claim")
    rec.add_argument("--scale", choices=SCALES, default="default")
    rec.add_argument("--workers", type=int)
    rec.add_argument("--threads", type=int)
    sub.add_parser("show", help="print the scorecard as Markdown")
    dr = sub.add_parser("drift", help="compare the committed records with executed notebooks (exit 1 if they differ)")
    dr.add_argument("executed", nargs="?", default=str(ROOT / "_build" / "executed"))
    dr.add_argument("--scale", choices=SCALES, default="default")
    dr.add_argument("--every", action="store_true", help="also fail on a record whose notebook was not executed")
    args = parser.parse_args(argv)
    if args.command == "drift":
        rows = drift(args.executed, args.scale, every=args.every)
        for r in rows:
            print(f"{r['notebook']}: {r['name']}: recorded {r['recorded']!r}, now {r['now']!r} ({r['why']})")
        print(f"{len(rows)} numbers differ from book/records/{args.scale}" if rows else
              f"every executed notebook's numbers equal book/records/{args.scale}")  # fmt: skip
        return 1 if rows else 0
    claims = load_claims()
    if args.command == "record":
        names = args.notebooks or sorted({c.get("paper_record", c["notebook"]) if args.scale == "paper" else
                                          c["notebook"] for c in claims})  # fmt: skip
        results = record(names, args.scale, workers=args.workers, threads=args.threads)
        bad = [r for r in results if not r or r["status"] != "ok"]
        for r in bad:
            print(f"failed: {r and r['notebook']}: {r and r['error']}", file=sys.stderr)
        return 1 if bad else 0
    print(to_markdown(evaluate(claims, {s: load_records(s) for s in SCALES})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
