"""The reproduction scorecard: every headline claim of every reproduced paper, the paper's number or statement, ours
at default and at paper scale, and a verdict computed from recorded numbers.

Claims live in ``book/scorecard.yaml``, one entry each::

    - paper: Goldfeld et al. (ICML 2019)
      claim: the last hidden layer compresses
      paper_value: L5 peaks at 4.92 nats and ends at 2.30
      notebook: noisy_szt                 # notebooks/<name>.ipynb
      number: noisy_szt_plain_l5_peak - noisy_szt_plain_l5_final   # a glued value, or a difference of two
      format: ".2f"
      reproduced: [1.0, .inf]             # the verdict is "reproduced" inside this closed range ...
      partly: [0.3, .inf]                 # ... "partly" inside this one (optional), "not" outside both
      source: papers.md section 3, range checks     # where the range comes from
      reason: why a "partly" or "not" verdict is expected, shown beside it

Recorded numbers are the ``result.json`` files of :mod:`ibcore.batch` runs of the notebooks, copied to
``book/records/<scale>/<notebook>.json`` by ``python -m ibcore.scorecard record`` (``--scale paper`` runs each
notebook with ``params/<notebook>_paper.yaml``). A record whose notebook has changed since it was made is reported
as stale rather than silently used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["load_claims", "load_records", "verdict", "evaluate", "to_markdown", "to_html", "notebook_digest", "record",
           "drift"]

ROOT = Path(__file__).resolve().parents[1]
CLAIM_KEYS = {"paper", "claim", "paper_value", "notebook", "number", "format", "reproduced", "partly", "source", "reason"}
REQUIRED = {"paper", "claim", "paper_value", "notebook", "number", "reproduced", "source"}
SCALES = ("default", "paper")


def notebook_digest(path: str | os.PathLike) -> str:
    """A digest of a notebook's code and parameters (outputs and metadata ignored): what a record was made from."""
    nb = json.loads(Path(path).read_text())
    code = [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]  # fmt: skip
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
        _range(c["reproduced"], "reproduced", where)
        if "partly" in c:
            lo, hi = _range(c["partly"], "partly", where)
            r_lo, r_hi = _range(c["reproduced"], "reproduced", where)
            if not (lo <= r_lo and r_hi <= hi):
                raise ValueError(f"{where}: the partly range {c['partly']} must contain the reproduced range")
        if not (Path(root) / "notebooks" / f"{c['notebook']}.ipynb").is_file():
            raise ValueError(f"{where}: no notebook notebooks/{c['notebook']}.ipynb")
    return claims


def load_records(scale: str, root: str | os.PathLike = ROOT) -> dict[str, dict]:
    """The recorded results of one scale (``<root>/book/records/<scale>/*.json``), by notebook name, each with
    ``stale`` set when its notebook has changed since."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    out = {}
    for path in sorted((Path(root) / "book" / "records" / scale).glob("*.json")):
        rec = json.loads(path.read_text())
        nb = Path(root) / "notebooks" / f"{path.stem}.ipynb"
        rec["stale"] = not nb.is_file() or rec.get("notebook_digest") != notebook_digest(nb)
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


def _value(records: dict[str, dict], claim: dict):
    rec = records.get(claim["notebook"])
    if rec is None or rec.get("status") != "ok" or rec.get("stale"):
        return None, rec
    numbers = rec.get("numbers", {})
    terms = [t.strip() for t in claim["number"].split(" - ")]  # "a" or a difference "a - b"
    values = []
    for term in terms:
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
    """One row per claim: the claim and the paper's value, and for each scale in ``records``
    (``{"default": ..., "paper": ...}`` as from :func:`load_records`) our value (``ours``), its ``verdict`` and a
    ``note`` when there is no usable record (stale or failed)."""
    rows = []
    for c in claims:
        row = {k: c.get(k, "") for k in ("paper", "claim", "paper_value", "source", "reason")}
        row.update(format=c.get("format", ".3g"), ours={}, verdict={}, note={})
        for scale in SCALES:
            value, rec = _value(records.get(scale, {}), c)
            row["ours"][scale] = value
            row["verdict"][scale] = verdict(c, value)
            if value is None and rec is not None:
                row["note"][scale] = ("stale record" if rec.get("stale") else f"run {rec.get('status')}"
                                      if rec.get("status") != "ok" else "number not recorded")  # fmt: skip
        rows.append(row)
    return rows


def _fmt(row: dict, scale: str) -> str:
    value = row["ours"][scale]
    text = "–" if value is None else format(value, row["format"])
    return text + (f" ({row['note'][scale]})" if row["note"].get(scale) else "")


def to_markdown(rows: Sequence[dict]) -> str:
    """The scorecard as a Markdown table; the verdict is the paper-scale one where a paper-scale record exists."""
    lines = ["| paper | claim | the paper | ours, default scale | ours, paper scale | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        scale = "paper" if r["ours"]["paper"] is not None else "default"
        shown = f"**{r['verdict'][scale]}**" + (" (paper scale)" if scale == "paper" else "")
        if r["verdict"][scale] != "reproduced" and r["reason"]:
            shown += f": {r['reason']}"
        cells = [r["paper"], r["claim"], r["paper_value"], _fmt(r, "default"), _fmt(r, "paper"), shown]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def to_html(rows: Sequence[dict]) -> str:
    """The scorecard as an HTML table (for the book page: its notebook outputs render Markdown without tables)."""
    from html import escape

    head = ("paper", "claim", "the paper", "ours, default scale", "ours, paper scale", "verdict")
    out = ['<table class="table scorecard">', "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
           "<tbody>"]  # fmt: skip
    for r in rows:
        scale = "paper" if r["ours"]["paper"] is not None else "default"
        shown = f"<b>{escape(r['verdict'][scale])}</b>" + (" (paper scale)" if scale == "paper" else "")
        if r["verdict"][scale] != "reproduced" and r["reason"]:
            shown += ": " + escape(r["reason"])
        cells = [escape(str(c)) for c in (r["paper"], r["claim"], r["paper_value"], _fmt(r, "default"), _fmt(r, "paper"))]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells + [shown]) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def record(notebooks: Sequence[str], scale: str = "default", *, root: str | os.PathLike = ROOT,
           workers: int | None = None, threads: int | None = None) -> list[dict]:  # fmt: skip
    """Run ``notebooks`` (names under ``<root>/notebooks/``) at ``scale`` through :mod:`ibcore.batch` (work folders
    under ``<root>/results/scorecard``) and copy each successful ``result.json``, with the notebook's digest, the
    parameter file, the commit it ran at and the machine, to ``<root>/book/records/<scale>/<notebook>.json``.

    Training is checkpointed in ``<root>/book/records/<scale>/checkpoints/<notebook>/`` (notebooks that declare
    ``checkpoint_dir``), a folder that may be committed while a long run is in progress: the same command, on this
    machine or the next, continues from it, and it is deleted when the run has succeeded."""
    root = Path(root)
    from ._io import write_atomic
    from .batch import Run, _run_id, check_parameters, run_sweep

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    runs, files = [], {}
    for name in notebooks:
        nb = root / "notebooks" / f"{name}.ipynb"
        if not nb.is_file():
            raise ValueError(f"no notebook notebooks/{name}.ipynb")
        params, pfile = {}, None
        if scale == "paper":
            pfile = root / "params" / f"{name}_paper.yaml"
            if not pfile.is_file():
                raise ValueError(f"no paper-scale parameter file params/{name}_paper.yaml")
            params = yaml.safe_load(pfile.read_text()) or {}
        check_parameters(nb, params)
        runs.append(Run(str(nb), params, str(root / "results" / "scorecard" / scale / name / _run_id(nb, params)),
                        checkpoints=str(root / "book" / "records" / scale / "checkpoints" / name)))  # fmt: skip
        files[name] = None if pfile is None else {"path": str(pfile.relative_to(root)), "text": pfile.read_text()}
    provenance = {"commit": _commit(root), "machine": machine()}
    target = root / "book" / "records" / scale
    results = []
    # at paper scale one notebook at a time, each record written as soon as its run has finished
    for batch in [[r] for r in runs] if scale == "paper" else [runs]:
        for run, res in zip(batch, run_sweep(batch, workers=workers, threads=threads)):
            results.append(res)
            if res and res["status"] == "ok":
                res = {**res, "notebook_digest": notebook_digest(run.notebook), "scale": scale, **provenance,
                       "params_file": files[Path(run.notebook).stem]}  # fmt: skip
                write_atomic(target / f"{Path(run.notebook).stem}.json", json.dumps(res, indent=1, default=str))
    return results


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
    rec.add_argument("notebooks", nargs="*", help="notebook names (default: every notebook in a claim)")
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
        names = args.notebooks or sorted({c["notebook"] for c in claims})
        results = record(names, args.scale, workers=args.workers, threads=args.threads)
        bad = [r for r in results if not r or r["status"] != "ok"]
        for r in bad:
            print(f"failed: {r and r['notebook']}: {r and r['error']}", file=sys.stderr)
        return 1 if bad else 0
    print(to_markdown(evaluate(claims, {s: load_records(s) for s in SCALES})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
