"""Failed fits among repeated runs (ibcore.repeats), on runs whose answer is known."""

import pytest

from ibcore.repeats import drop_failed, failed_models, restart_failed


def _run(accuracies, epoch=10, seconds=1.0):
    # one network per seed: its plane records at epochs 0 and `epoch`, its train/test accuracy at `epoch`
    plane = [{"model": s, "epoch": e, "layer": 1, "i_xt": 1.0 + s, "i_ty": 0.5} for s in accuracies for e in (0, epoch)]
    metrics = [{"model": s, "epoch": epoch, "split": split, "accuracy": a}
               for s, a in accuracies.items() for split in ("train", "test")]
    return {"plane": plane, "metrics": metrics, "seconds": seconds}


def test_failed_models_are_those_below_the_threshold_at_that_epoch():
    run = _run({1000: 0.9, 1001: 0.5, 1002: 0.549, 1003: 0.55})
    assert failed_models(run["metrics"], epoch=10, min_accuracy=0.55) == [1001, 1002]
    assert failed_models(run["metrics"], epoch=10, min_accuracy=0.0) == []
    with pytest.raises(ValueError, match="no 'train' accuracy recorded at epoch=9"):
        failed_models(run["metrics"], epoch=9, min_accuracy=0.55)
    with pytest.raises(ValueError, match="min_accuracy must be a number in \\[0, 1\\], got min_accuracy=1.5"):
        failed_models(run["metrics"], epoch=10, min_accuracy=1.5)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got epoch=-1"):
        failed_models(run["metrics"], epoch=-1, min_accuracy=0.5)


def test_drop_failed_leaves_them_out_and_keeps_every_plane():
    run = _run({1000: 0.9, 1001: 0.3, 1002: 0.8})
    out = drop_failed(run, epoch=10, min_accuracy=0.55)
    assert out["failed"] == [1001]
    assert {r["model"] for r in out["plane"]} == {r["model"] for r in out["metrics"]} == {1000, 1002}
    assert out["all_plane"] == run["plane"]
    with pytest.raises(RuntimeError, match="every network ended below min_accuracy=0.95"):
        drop_failed(run, epoch=10, min_accuracy=0.95)


def test_restart_replaces_failed_networks_from_new_seeds_until_they_learn():
    calls = []

    def retrain(seeds, round_):
        calls.append((list(seeds), round_))
        # seed 2000 fails again, the others learn
        return _run({s: 0.1 if s == 2000 else 0.7 for s in seeds}, seconds=2.0)

    run = _run({1000: 0.9, 1001: 0.3, 1002: 0.2})
    out = restart_failed(run, retrain, epoch=10, min_accuracy=0.55, next_seed=2000)
    assert calls == [([2000, 2001], 0), ([2002], 1)]
    assert out["restarted"] == [1001, 1002, 2000]
    assert {r["model"] for r in out["metrics"]} == {1000, 2001, 2002}
    assert len(out["plane"]) == 2 * 3 and out["seconds"] == 1.0 + 2.0 + 2.0
    assert drop_failed(out, epoch=10, min_accuracy=0.55)["failed"] == []


def test_restart_stops_after_max_rounds_and_leaves_the_rest_to_drop():
    run = _run({1000: 0.9, 1001: 0.3})
    out = restart_failed(run, lambda seeds, r: _run({s: 0.1 for s in seeds}), epoch=10, min_accuracy=0.55,
                         next_seed=5000, max_rounds=2)
    assert out["restarted"] == [1001, 5000]
    assert drop_failed(out, epoch=10, min_accuracy=0.55)["failed"] == [5001]
    assert restart_failed(run, None, epoch=10, min_accuracy=0.55, next_seed=0, max_rounds=0)["restarted"] == []
    with pytest.raises(ValueError, match="max_rounds must be an int >= 0, got max_rounds=-1"):
        restart_failed(run, None, epoch=10, min_accuracy=0.55, next_seed=0, max_rounds=-1)
