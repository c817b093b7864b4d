"""ibcore.comparison: estimators over known-MI tasks as tidy records, resumable, and their figure."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ibcore import plotting  # noqa: E402
from ibcore.comparison import compare, rmse, summarise  # noqa: E402
from ibcore.tasks import sample_task  # noqa: E402

SPECS = {"gauss": ("gaussian", {}), "ksg5": ("ksg", {"k": 5})}


def test_records_cover_every_task_level_seed_and_estimator():
    recs = compare(SPECS, ["gaussian", "uniform"], [0.0, 1.0], n=1500, seeds=[0, 1])
    assert len(recs) == 2 * 2 * 2 * 2
    assert {r["estimator"] for r in recs} == {"gauss", "ksg5"}
    for r in recs:
        assert r["true_mi"] == r["level"] and math.isfinite(r["value"])
        assert r["seconds"] >= 0 and r["cpu_seconds"] >= 0
    # the Gaussian estimator is exact in distribution on the Gaussian task (N = 1500: within 0.1 nats)
    for r in recs:
        if r["estimator"] == "gauss" and r["task"] == "gaussian":
            assert abs(r["value"] - r["true_mi"]) < 0.1, r


def test_student_truth_includes_the_shared_scale_term():
    recs = compare({"gauss": ("gaussian", {})}, ["student"], [1.0], n=200, dim=2)
    truth = sample_task("student", 10, 1.0, dim=2, seed=0)[2]
    assert recs[0]["true_mi"] == pytest.approx(truth) and truth > 1.0


def test_a_records_list_resumes_without_recomputing():
    recs = compare(SPECS, ["gaussian"], [0.5], n=500)
    first = [dict(r) for r in recs]
    compare(SPECS, ["gaussian"], [0.5, 1.5], n=500, records=recs)
    assert recs[:2] == first  # untouched, not recomputed
    assert len(recs) == 4 and {r["level"] for r in recs[2:]} == {1.5}


def test_a_checkpoint_file_keeps_finished_runs_across_a_kill(tmp_path):
    import json

    ckpt = tmp_path / "runs" / "vector.json"
    whole = compare(SPECS, ["gaussian"], [0.5, 1.5], n=500, seeds=[0, 1])
    compare(SPECS, ["gaussian"], [0.5, 1.5], n=500, seeds=[0, 1], checkpoint=ckpt)
    saved = json.loads(ckpt.read_text())
    assert [(r["level"], r["seed"], r["estimator"], r["value"]) for r in saved] == \
        [(r["level"], r["seed"], r["estimator"], r["value"]) for r in whole]
    ckpt.write_text(json.dumps(saved[:3]))  # killed during the fourth run
    resumed = compare(SPECS, ["gaussian"], [0.5, 1.5], n=500, seeds=[0, 1], checkpoint=ckpt)
    assert resumed[:3] == saved[:3]  # read back, not recomputed (their timings are the stored ones)
    assert [r["value"] for r in resumed] == [r["value"] for r in whole]  # the same numbers as one uninterrupted run
    assert json.loads(ckpt.read_text()) == json.loads(json.dumps(resumed))


def test_images_are_flattened_for_vector_estimators():
    recs = compare({"ksg": ("ksg", {})}, ["bumps"], [1.0], n=300, size=8)
    assert math.isfinite(recs[0]["value"])


def test_estimator_objects_are_cloned_never_changed_and_results_kept_whole():
    from ibcore.estimators import KSG

    mine = KSG(k=5, seed=123)
    recs = compare({"ksg": mine}, ["gaussian"], [1.0], n=400, seeds=[4])
    assert mine.seed == 123  # the run used a clone with the run's seed
    r = recs[0]
    assert r["result"]["params"]["seed"] == 4 and r["result"]["estimator"] == "ksg"
    assert r["value"] == KSG(k=5, seed=4).estimate(*sample_task("gaussian", 400, 1.0, seed=4)[:2]).value
    assert {"warnings", "bound"} <= set(r) and r["result"]["unit"] == "nats"


def test_summary_gives_bias_mae_and_variance_over_seeds():
    recs = [
        {"task": "t", "estimator": "e", "level": 2.0, "true_mi": 2.0, "value": v, "seconds": 1.0}
        for v in (1.5, 2.5, 2.0)
    ]  # fmt: skip
    (s,) = summarise(recs)
    assert s["mean"] == pytest.approx(2.0) and s["bias"] == pytest.approx(0.0)
    assert s["mae"] == pytest.approx(1 / 3) and s["var"] == pytest.approx(0.25) and s["runs"] == 3


def test_rmse_is_the_root_mean_square_error_per_estimator_and_dimension():
    recs = [{"estimator": e, "dim": d, "value": v, "true_mi": t}
            for e, d, v, t in (("a", 1, 1.0, 1.0), ("a", 1, 3.0, 5.0), ("a", 4, 0.0, 3.0), ("b", 1, 2.5, 2.0))]
    rows = {(r["estimator"], r["dim"]): r for r in rmse(recs)}
    assert list(rows) == [("a", 1), ("a", 4), ("b", 1)]  # first-seen order
    assert rows["a", 1]["rmse"] == pytest.approx(math.sqrt((0 + 4) / 2)) and rows["a", 1]["max_error"] == 2.0
    assert rows["a", 4]["rmse"] == pytest.approx(3.0) and rows["b", 1]["runs"] == 1
    assert [r["rmse"] for r in rmse(recs, by=("estimator",))] == pytest.approx([math.sqrt(13 / 3), 0.5])
    with pytest.raises(ValueError, match=r"records must have the keys \['estimator', 'dim', 'value', 'true_mi'\]; "
                                         r"missing \['dim'\]"):
        rmse([{"estimator": "a", "value": 1.0, "true_mi": 1.0}])


def test_rmse_by_dimension_draws_one_line_per_estimator_on_the_dimensions():
    recs = [r for d in (1, 2, 4) for r in compare(SPECS, ["gaussian"], [0.0, 2.0], n=400, dim=d)]
    ax = plotting.rmse_by_dimension(recs).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"gauss", "ksg5"} and ax.get_xscale() == "log"
    assert np.allclose(lines["ksg5"].get_xdata(), [1, 2, 4])
    expected = [r["rmse"] for r in rmse(recs) if r["estimator"] == "ksg5"]
    assert np.allclose(lines["ksg5"].get_ydata(), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": ["nope"]}, r"tasks must be names from .*got 'nope'"),
        ({"estimators": {"a": ("nope", {})}}, r"estimators\['a'\] must be an MI estimator or \(registered MI estimator name"),
        ({"levels": [1.0, -1.0]}, r"levels must be finite MI values >= 0, got \[1.0, -1.0\]"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, message):
    args = {"estimators": SPECS, "tasks": ["gaussian"], "levels": [1.0]} | kwargs
    with pytest.raises(ValueError, match=message):
        compare(args["estimators"], args["tasks"], args["levels"], n=100)
    with pytest.raises(ValueError, match="task must be one of"):
        sample_task("nope", 10, 1.0, seed=0)


def test_estimated_vs_true_draws_a_line_and_band_per_estimator():
    recs = compare(SPECS, ["gaussian"], [0.0, 1.0, 2.0], n=400)
    fig = plotting.estimated_vs_true(recs, task="gaussian", ceiling=math.log(128))
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"gauss", "ksg5", "true MI"} <= set(labels) and any(lbl.startswith("ln B") for lbl in labels)
    gauss = next(line for line in ax.get_lines() if line.get_label() == "gauss")
    assert np.allclose(gauss.get_xdata(), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="no records for task='uniform'"):
        plotting.estimated_vs_true(recs, task="uniform")


# ---- the benchmark suite -------------------------------------------------------------------------------------


def test_the_suite_runs_resumes_and_counts_solved_tasks(tmp_path):
    from ibcore.comparison import run_suite, solved, suite_counts

    tasks = ["normal-dense-2x2", "swiss-roll-2x1", "normal-dense-50x50", "normal-dense-10x10"]
    specs = {"gauss": ("gaussian", {}), "ksg": ("ksg", {}), "wkl": ("entropy-mi", {})}
    ck = tmp_path / "suite.json"
    rs = run_suite(specs, tasks, n=1500, seeds=[0, 1], checkpoint=ck)
    assert len(rs) == 4 * 2 * 3 and {r["family"] for r in rs} == {"normal-dense", "swiss-roll"}
    by = {(r["task"], r["estimator"], r["seed"]): r for r in rs}
    # KSG is meant for at most 32 dimensions per side: the 50 + 50 task is recorded as not run, not solved
    skip = by["normal-dense-50x50", "ksg", 0]
    assert math.isnan(skip["value"]) and "max_dim" in skip["skipped"] and not solved(skip["value"], 5.0)
    # the weighted KL needs k > d/4: 20 joint dimensions with k = 5 are refused, and said so
    assert "refused" in by["normal-dense-10x10", "wkl", 1]["skipped"]
    assert by["normal-dense-2x2", "gauss", 0]["true_mi"] == 1.0 and by["swiss-roll-2x1", "ksg", 1]["n"] == 1500
    counts = suite_counts(rs)
    expect = sum(solved(r["value"], r["true_mi"]) for r in rs if r["estimator"] == "gauss")
    assert counts[("all", "gauss")]["solved"] == expect and counts[("all", "gauss")]["runs"] == 8
    assert sum(counts[("all", "gauss")]["per_seed"].values()) == expect
    assert counts[("swiss-roll", "gauss")]["solved"] == 0  # blind to the roll (closed form: truth 1 nat)
    again = run_suite(specs, tasks, n=1500, seeds=[0, 1], checkpoint=ck)  # read back, nothing recomputed
    assert [r["value"] for r in again] == pytest.approx([r["value"] for r in rs], nan_ok=True)
    with pytest.raises(ValueError, match="SUITE"):
        run_suite(specs, ["gaussian"], n=100)


def test_a_comparison_can_carry_intervals():
    rs = compare({"ksg": ("ksg", {})}, ["gaussian"], [1.0], n=1000, dim=2, ci=0.9, resamples=4)
    lo, hi = rs[0]["ci"]
    assert lo <= rs[0]["value"] <= hi and rs[0]["n"] == 1000 and rs[0]["dim"] == 2
