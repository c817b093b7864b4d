"""The reproduction scorecard: claim files are checked, verdicts follow the cited ranges, stale or failed records are
never used, and the committed claims and records fit together."""

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from ibcore.scorecard import SCALES, evaluate, load_claims, load_records, notebook_digest, to_html, to_markdown, verdict

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "fixtures" / "sweep_probe.ipynb"


_IDS = iter(range(10**6))


def _claim(**kw):
    return {"id": f"c{next(_IDS)}", "kind": "finding", "where": "Fig. 1", "paper": "P", "claim": "c",
            "paper_value": "v", "notebook": "probe", "number": "square", "reproduced": [1.0, 2.0], "source": "s",
            **kw}  # fmt: skip


@pytest.mark.parametrize("value, partly, expected", [
    (1.5, None, "reproduced"), (1.0, None, "reproduced"), (2.0, None, "reproduced"), (2.5, None, "not"),
    (2.5, [0.0, 3.0], "partly"), (3.5, [0.0, 3.0], "not"), (None, None, "not recorded"),
    (math.nan, None, "not recorded"), (True, None, "not recorded"), (math.inf, [0.0, math.inf], "partly"),
])  # fmt: skip
def test_verdicts_follow_the_ranges(value, partly, expected):
    claim = _claim(**({"partly": partly} if partly else {}))
    assert verdict(claim, value) == expected


def _repo(tmp_path, claims, records=None):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(PROBE, tmp_path / "notebooks" / "probe.ipynb")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "scorecard.yaml").write_text(yaml.safe_dump(claims))
    for scale, rec in (records or {}).items():
        (tmp_path / "book" / "records" / scale).mkdir(parents=True)
        (tmp_path / "book" / "records" / scale / "probe.json").write_text(json.dumps(rec))
    return tmp_path


@pytest.mark.parametrize("claim, message", [
    ({"claim": "c"}, "missing keys"),
    (_claim(colour=1), r"unknown keys \['colour'\]"),
    (_claim(reproduced=[2.0, 1.0]), "low <= high"),
    (_claim(partly=[1.5, 3.0]), "must contain the reproduced range"),
    (_claim(notebook="nowhere"), "no notebook"),
    (_claim(kind="idea"), "kind must be one of"),
    (_claim(where=""), "says where the paper prints it"),
    (_claim(number=None), "says why it is not run"),
])  # fmt: skip
def test_bad_claims_are_refused(tmp_path, claim, message):
    with pytest.raises(ValueError, match=message):
        load_claims(_repo(tmp_path, [claim]))


def test_records_give_verdicts_and_stale_or_failed_ones_are_not_used(tmp_path):
    digest = notebook_digest(PROBE)
    ok = {"status": "ok", "numbers": {"square": 1.5}, "notebook_digest": digest}
    root = _repo(tmp_path, [_claim(), _claim(number="absent"), _claim(number="square - other"),
                            _claim(number="3 - other", kind="check", why="other is {other:.2f}"),
                            _claim(number=None, why="not run yet")],
                 {"default": {**ok, "numbers": {"square": 1.5, "other": 0.25}},
                  "paper": {**ok, "numbers": {"square": 9.0}}})  # fmt: skip
    rows = evaluate(load_claims(root), {s: load_records(s, root) for s in SCALES})
    assert rows[2]["ours"] == {"default": 1.25, "paper": None}
    assert rows[0]["ours"] == {"default": 1.5, "paper": 9.0}
    assert rows[0]["verdict"] == {"default": "reproduced", "paper": "not"}
    # a finding's verdict comes from the paper-scale record where there is one ...
    assert (rows[0]["status"], rows[0]["scale"]) == ("not reproduced", "paper")
    # ... and from the default record alone it only holds at reduced scale; a check passes, never "reproduces"
    assert (rows[2]["status"], rows[2]["scale"]) == ("holds at reduced scale", "default")
    assert rows[3]["ours"]["default"] == 2.75 and rows[3]["status"] == "fails"
    assert "Ours: 2.75 at the default (reduced) scale" in rows[3]["reason"] and "Other is 0.25." in rows[3]["reason"]
    assert rows[4]["status"] == "not run" and rows[4]["reason"] == "Not run yet."
    assert rows[1]["verdict"]["default"] == "not recorded" and rows[1]["note"]["default"] == "number not recorded"
    assert rows[1]["status"] == "not recorded" and "number not recorded" in rows[1]["reason"]
    table = to_markdown(rows)
    assert "**not reproduced**" in table and "1.5" in table and "## Checks of the code" in table
    page = to_html(rows, "finding")
    assert page.count("<tr>") == 1 + 4 and "<summary><b>not reproduced</b></summary>" in page
    assert "<b>holds at reduced scale</b>" in page and "fails" not in page
    assert "<b>fails</b>" in to_html(rows, "check")
    # the notebook changes: its records are stale and are not used
    (root / "book" / "records" / "default" / "probe.json").write_text(json.dumps({**ok, "notebook_digest": "x"}))
    row = evaluate(load_claims(root), {"default": load_records("default", root)})[0]
    assert row["ours"]["default"] is None and row["note"]["default"] == "stale record"
    (root / "book" / "records" / "default" / "probe.json").write_text(json.dumps({**ok, "status": "failed"}))
    row = evaluate(load_claims(root), {"default": load_records("default", root)})[0]
    assert row["note"]["default"] == "run failed"


def test_the_digest_ignores_outputs_but_not_code(tmp_path):
    nb = json.loads(PROBE.read_text())
    nb["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hello"}]
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    assert notebook_digest(tmp_path / "a.ipynb") == notebook_digest(PROBE)
    nb["cells"][2]["source"] = "x = 2"
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    assert notebook_digest(tmp_path / "a.ipynb") != notebook_digest(PROBE)


def test_the_committed_claims_load_and_their_numbers_are_recorded():
    # a number the notebook computes only with its paper file's parameters (the rectangles of lossy_synthetic) is
    # in the paper-scale record instead
    claims = load_claims(ROOT)
    records, paper = load_records("default", ROOT), load_records("paper", ROOT)
    for c in claims:
        rec = records.get(c["notebook"])
        assert rec is not None, f"no default-scale record for {c['notebook']} (python -m ibcore.scorecard record)"
        if rec["stale"]:
            continue  # the scorecard page shows it as stale; recording again is a separate step
        at_paper = (paper.get(c.get("paper_record", c["notebook"])) or {}).get("numbers", {})
        for term in (c["number"] or "").split(" - "):
            if term.strip() and not term.strip().replace(".", "").isdigit():
                assert term.strip() in rec["numbers"] or term.strip() in at_paper, \
                    f"{c['notebook']} records no number {term.strip()!r} at either scale"


def _glued_notebook(path, numbers):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": repr(v)},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": ""}})
                    for k, v in numbers.items()]  # fmt: skip
    nb.cells.append(cell)
    nbformat.write(nb, path)


def test_drift_lists_every_number_that_moved_and_stale_records(tmp_path):
    from ibcore.scorecard import drift

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book" / "records" / "default").mkdir(parents=True)
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in ("a", "b"):
        _glued_notebook(tmp_path / "notebooks" / f"{name}.ipynb", {})
        digest = notebook_digest(tmp_path / "notebooks" / f"{name}.ipynb")
        rec = {"status": "ok", "notebook_digest": digest,
               "numbers": {"kept": 1.0, "moved": 2.0, "gone": 3.0, "run_seconds": 5.0, "label": "x"}}
        (tmp_path / "book" / "records" / "default" / f"{name}.json").write_text(json.dumps(rec))
    _glued_notebook(executed / "a.ipynb", {"kept": 1.0 + 1e-12, "moved": 2.5, "new": 4.0, "run_seconds": 9.0,
                                           "label": "x"})
    got = {(r["name"], r["why"]) for r in drift(executed, root=tmp_path)}
    assert got == {("moved", "moved by +0.5"), ("gone", "only recorded"), ("new", "not recorded")}
    _glued_notebook(executed / "a.ipynb", {"kept": 1.0, "moved": 2.0, "gone": 3.0, "label": "x"})
    assert drift(executed, root=tmp_path) == []  # the same numbers (wall times aside): nothing to report
    assert [(r["notebook"], r["why"].split(" in ")[0]) for r in drift(executed, root=tmp_path, every=True)] == [
        ("b", "not executed")]  # b has a record but no execution
    nb = json.loads((tmp_path / "notebooks" / "b.ipynb").read_text())
    nb["cells"][0]["source"] = "x = 2"
    (tmp_path / "notebooks" / "b.ipynb").write_text(json.dumps(nb))
    _glued_notebook(executed / "b.ipynb", {})
    assert [r["why"].split(":")[0] for r in drift(executed, root=tmp_path)] == ["stale"]


def test_chapters_quote_the_scorecard_instead_of_restating_it():
    # A verdict in the book's prose comes from the scorecard ({verdict}`id`), never typed: the word "reproduced"
    # appears only on the scorecard page and in the book's title, and every role names a claim that exists.
    import re

    ids = {c["id"] for c in load_claims(ROOT)}
    texts = {p.name: p.read_text() for p in (ROOT / "book").glob("*.md")}
    for p in (ROOT / "notebooks").glob("*.ipynb"):
        if p.stem != "scorecard":
            texts[p.name] = "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"]
                                      if c["cell_type"] == "markdown")  # fmt: skip
    cited = set()
    for name, text in texts.items():
        roles = re.findall(r"\{verdict\}`([^`]*)`", text)
        assert set(roles) <= ids, (name, sorted(set(roles) - ids))
        cited |= set(roles)
        prose = re.sub(r"\{verdict\}`[^`]*`", "", text)
        if name == "intro.md":
            prose = prose.split("\n", 1)[1]  # the title: "... deep networks, reproduced"
        typed = [m.group(0) for m in re.finditer(r"(?i)\b(?:not |partly )?reproduced\b", prose)]
        assert not typed, f"{name} types a verdict ({typed}); quote the scorecard with {{verdict}}`claim-id`"
    findings = {c["id"] for c in load_claims(ROOT) if c["kind"] == "finding"}
    assert findings - cited == set(), f"findings no chapter quotes: {sorted(findings - cited)}"


def test_the_verdict_role_renders_the_scorecards_verdict(tmp_path):
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles

    from ibcore import _sphinx

    roles.register_local_role("verdict", _sphinx.verdict_role)
    rows = _sphinx._verdicts()
    some = next(iter(rows))
    tree = publish_doctree(f"See :verdict:`{some}` and :verdict:`no-such-claim`.",
                           settings_overrides={"report_level": 5})  # fmt: skip
    text = tree.astext()
    assert rows[some]["status"] in text
    refs = [n for n in tree.findall() if n.tagname == "reference"]
    assert refs and refs[0]["refuri"].endswith(f"scorecard.html#verdict-{some}")
    assert any(n.tagname == "problematic" for n in tree.findall())  # an unknown id is an error, not blank text


def test_the_figure_has_one_axis_per_finding_with_a_number():
    import matplotlib

    matplotlib.use("Agg")
    from ibcore.scorecard import figure

    rows = evaluate(load_claims(ROOT), {s: load_records(s, ROOT) for s in SCALES})
    fig = figure(rows)
    shown = [r for r in rows if r["kind"] == "finding" and r["number"] is not None]
    assert [ax.get_ylabel() for ax in fig.axes] == [r["id"] for r in shown]
    for ax, r in zip(fig.axes, shown):  # ours is drawn inside the axis wherever it is recorded
        for value in (r["ours"]["default"], r["ours"]["paper"]):
            if value is not None:
                lo, hi = ax.get_xlim()
                assert lo <= value <= hi, (r["id"], value)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "reproduced range" in labels and "ours, default scale" in labels


def test_a_notebook_with_several_paper_files_has_a_paper_record_per_file(tmp_path):
    # params/quantized_szt_paper.yaml runs notebooks/quantized.ipynb into book/records/paper/quantized_szt.json, and a
    # claim names it with paper_record
    digest = notebook_digest(PROBE)
    ok = {"status": "ok", "notebook": "probe.ipynb", "notebook_digest": digest}
    root = _repo(tmp_path, [_claim(paper_record="probe_big")],
                 {"default": {**ok, "numbers": {"square": 1.5}}})  # fmt: skip
    (root / "book" / "records" / "paper").mkdir()
    (root / "book" / "records" / "paper" / "probe_big.json").write_text(json.dumps({**ok, "numbers": {"square": 9}}))
    records = {s: load_records(s, root) for s in SCALES}
    assert not records["paper"]["probe_big"]["stale"]  # checked against notebooks/probe.ipynb, the one it ran
    (row,) = evaluate(load_claims(root), records)
    assert row["ours"] == {"default": 1.5, "paper": 9} and row["status"] == "not reproduced"
    (root / "params").mkdir()
    (root / "params" / "probe_big_paper.yaml").write_text("x: 2.0\n")
    from ibcore.scorecard import record

    with pytest.raises(ValueError, match=r"no paper-scale parameter file params/probe_small_paper.yaml"):
        record(["probe_small"], "paper", root=root)


def test_a_finished_run_of_an_older_notebook_runs_again_when_recorded(tmp_path):
    # the work folder of a run is named by notebook and parameters only: an edit of the notebook must not let its
    # earlier execution pass as a record of the new version
    from ibcore.scorecard import record

    root = _repo(tmp_path, [_claim()])
    (res,) = record(["probe"], "default", root=root, workers=1, threads=1)
    assert res["status"] == "ok" and res["numbers"]["square"] == 1.0
    nb_path = root / "notebooks" / "probe.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][2]["source"] = "".join(nb["cells"][2]["source"]).replace("float(x * x + seed)", "float(x * x + 41)")
    nb_path.write_text(json.dumps(nb))
    (res,) = record(["probe"], "default", root=root, workers=1, threads=1)
    rec = load_records("default", root)["probe"]
    assert res["numbers"]["square"] == 42.0 and rec["numbers"]["square"] == 42.0 and not rec["stale"]
    assert notebook_digest(next((root / "results").rglob("notebook.ipynb"))) == notebook_digest(nb_path)


def test_a_finished_default_run_made_with_other_library_code_runs_again(tmp_path):
    # the notebook unchanged, an estimator changed: the earlier execution is not a record of the new code
    from ibcore.scorecard import library_digest, record

    root = _repo(tmp_path, [_claim()])
    (root / "ibcore").mkdir()
    (root / "ibcore" / "estimator.py").write_text("VALUE = 1\n")
    first = record(["probe"], "default", root=root, workers=1, threads=1)[0]["started"]
    assert record(["probe"], "default", root=root, workers=1, threads=1)[0]["started"] == first  # reused
    before = library_digest(root)
    (root / "ibcore" / "estimator.py").write_text("VALUE = 2\n")
    assert library_digest(root) != before
    kept = next((root / "results").rglob("result.json")).parent / "checkpoints"
    kept.mkdir()
    (kept / "estimates.json").write_text("[]")  # what the finished run kept, made by the old code
    again = record(["probe"], "default", root=root, workers=1, threads=1)[0]
    assert again["status"] == "ok" and again["started"] != first and not kept.exists()


def test_a_reduced_paper_file_is_shown_as_a_reduced_run(tmp_path):
    from ibcore.scorecard import reduced_reason

    header = "# Paper scale for x.\n# Reduced: 3 of the paper's 5 networks;\n#   days on two cores otherwise.\n# Cost: 1 h\n"
    assert reduced_reason(header + "x: 1.0\n") == "3 of the paper's 5 networks; days on two cores otherwise."
    assert reduced_reason("# Paper scale for x.\nx: 1.0\n") is None
    ok = {"status": "ok", "notebook": "probe.ipynb", "notebook_digest": notebook_digest(PROBE)}
    root = _repo(tmp_path, [_claim()], {"default": {**ok, "numbers": {"square": 9}},
                                         "paper": {**ok, "numbers": {"square": 1.5},
                                                   "params_file": {"path": "params/probe_paper.yaml",
                                                                   "text": header + "x: 1.0\n"}}})  # fmt: skip
    (row,) = evaluate(load_claims(root), {s: load_records(s, root) for s in SCALES})
    assert row["status"] == "reproduced" and row["scale"] == "paper"
    assert "a reduced run: 3 of the paper's 5 networks; days on two cores otherwise" in row["reason"]
    assert "1.5 (reduced run)" in to_markdown([row]) and "(reduced run)" in to_html([row])
    full = json.loads((root / "book" / "records" / "paper" / "probe.json").read_text())
    full["params_file"]["text"] = "# Paper scale for x.\nx: 1.0\n"
    (root / "book" / "records" / "paper" / "probe.json").write_text(json.dumps(full))
    (row,) = evaluate(load_claims(root), {s: load_records(s, root) for s in SCALES})
    assert "reduced" not in row["reason"] and "(reduced run)" not in to_markdown([row])
