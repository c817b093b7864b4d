"""Checkpointed training: a run killed at any point and started again ends with the numbers of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ibcore import checkpoint as ckpt
from ibcore.data import szt_dataset, szt_split
from ibcore.estimators import Binning
from ibcore.infoplane import InformationPlane, train_and_track
from ibcore.nets import MLP, SZT_WIDTHS
from ibcore.training import Callback, Metrics, RecordLayers, fit

ROOT = Path(__file__).resolve().parents[1]


def _without_times(obj):
    # wall times differ between any two runs; everything else must be equal
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def _run(tmp, *, noise=0.0, stop_at=None, checkpoint=True, every=3, epochs=10):
    d = szt_dataset()
    tr, te = szt_split()
    net = MLP(SZT_WIDTHS, "tanh", seeds=[3, 4], noise_std=noise)
    plane = InformationPlane(d.x, d.y, {"bins": Binning(n_bins=30)}, epochs=[0, 2, 5, 9, 10],
                             keep=[5])  # fmt: skip
    metrics = Metrics({"test": (d.x[te], d.y[te])})

    class Stop(Callback):  # a KeyboardInterrupt in the middle of the run, after a checkpoint
        def on_epoch_end(self, state):
            if state.epoch == stop_at:
                raise KeyboardInterrupt

    state = fit(net, (d.x[tr], d.y[tr]), epochs=epochs, batch_size=256, lr=1e-2, seed=5,
                callbacks=[metrics, plane, Stop()], checkpoint=tmp / "run.ckpt" if checkpoint else None,
                checkpoint_every=every, reraise_interrupt=False)  # fmt: skip
    return state, net, plane, metrics


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_resumed_run_equals_uninterrupted(tmp_path, noise):
    ref_state, ref_net, ref_plane, ref_metrics = _run(tmp_path / "ref", noise=noise, checkpoint=False)
    state, *_ = _run(tmp_path, noise=noise, stop_at=8)
    assert state.interrupted and state.epoch == 8 and (tmp_path / "run.ckpt").is_file()
    state, net, plane, metrics = _run(tmp_path, noise=noise)
    assert state.resumed_from == 6 and not state.interrupted and state.epoch == 10
    assert state.losses == ref_state.losses
    for a, b in zip(net.state_dict().values(), ref_net.state_dict().values()):
        assert torch.equal(a, b)
    assert _without_times(plane.records) == _without_times(ref_plane.records)
    assert metrics.records == ref_metrics.records
    assert torch.equal(plane.kept[5][3], ref_plane.kept[5][3])
    # started once more, the finished run returns at once with everything restored
    state, net, plane, metrics = _run(tmp_path, noise=noise)
    assert state.resumed_from == 10 and state.losses == ref_state.losses
    assert _without_times(plane.records) == _without_times(ref_plane.records)


def test_other_run_refused(tmp_path):
    _run(tmp_path, epochs=4)
    with pytest.raises(ValueError, match=r"different run .*epochs: checkpoint 4, this run 10"):
        _run(tmp_path, epochs=10)


def test_unreadable_checkpoint_and_bad_arguments(tmp_path):
    (tmp_path / "run.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint=.*not a readable"):
        _run(tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1 or None, got 0"):
        _run(tmp_path, every=0)
    d = szt_dataset()
    rec = RecordLayers(d.x, lambda e, layers: None)
    with pytest.raises(ValueError, match="RecordLayers calls a function"):
        fit(MLP(SZT_WIDTHS), (d.x, d.y), epochs=1, batch_size=512, lr=1e-3, callbacks=[rec],
            checkpoint=tmp_path / "x.ckpt")  # fmt: skip


def test_checkpoint_loads_no_code(tmp_path):
    # a checkpoint is read with weights_only=True: a pickle that would run code is refused
    import gzip
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    torch.save({"version": 1, "x": Evil()}, buf, pickle_module=pickle)
    (tmp_path / "evil.ckpt").write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(ValueError, match="not a readable"):
        ckpt.load(tmp_path / "evil.ckpt")


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from ibcore.data import szt_dataset, szt_split
    from ibcore.estimators import Binning
    from ibcore.infoplane import train_and_track
    from ibcore.nets import MLP, SZT_WIDTHS
    import torch
    torch.set_num_threads(1)
    folder = Path(sys.argv[1])
    d = szt_dataset(); tr, te = szt_split()
    net = MLP(SZT_WIDTHS, "relu", seeds=[0, 1, 2], noise_std=0.05)
    run = train_and_track(net, (d.x[tr], d.y[tr]), {"bins": Binning(n_bins=30)}, measure_on=(d.x, d.y),
                          at=range(0, 61, 3), splits={"test": (d.x[te], d.y[te])}, epochs=60, batch_size=256,
                          lr=1e-3, seed=1, checkpoint=sys.argv[2] or None, checkpoint_every=2, name="k")
    out = {"plane": run["plane"], "metrics": run["metrics"], "losses": run["state"].losses,
           "resumed_from": run["state"].resumed_from,
           "weights": [v.tolist() for v in net.state_dict().values()]}
    (folder / "out.json").write_text(json.dumps(out))
""")


def _python(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, cwd=ROOT)


def test_killed_process_resumes_to_identical_numbers(tmp_path):
    (tmp_path / "ref").mkdir()
    assert _python(tmp_path / "ref", "").wait(timeout=300) == 0
    ref = json.loads((tmp_path / "ref" / "out.json").read_text())
    ck = tmp_path / "ck"
    proc = _python(tmp_path, ck)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once a checkpoint past the first few epochs exists
        if (ck / "k.ckpt").is_file() and ckpt.load(ck / "k.ckpt")["epoch"] >= 10:
            break
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed_at = ckpt.load(ck / "k.ckpt")["epoch"]
    assert 10 <= killed_at < 60 and not (tmp_path / "out.json").exists()
    assert _python(tmp_path, ck).wait(timeout=300) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["resumed_from"] >= killed_at
    assert out["losses"] == ref["losses"]
    assert out["weights"] == ref["weights"]
    assert out["metrics"] == ref["metrics"]
    assert _without_times(out["plane"]) == _without_times(ref["plane"])


def test_learning_rate_decays_geometrically(monkeypatch):
    d = szt_dataset()
    rates, step = [], torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    fit(MLP(SZT_WIDTHS, "tanh", seeds=[0]), (d.x, d.y), epochs=5, batch_size=4096, lr=1e-2, lr_final=1e-4)
    assert rates == pytest.approx([1e-2, 10**-2.5, 1e-3, 10**-3.5, 1e-4])  # one step per epoch
    with pytest.raises(ValueError, match="lr_final must be None or a positive finite number, got 0"):
        fit(MLP(SZT_WIDTHS), (d.x, d.y), epochs=1, batch_size=512, lr=1e-3, lr_final=0)


def test_a_checkpoint_resumed_with_other_lenses_is_refused(tmp_path):
    # The information plane's records are part of the checkpoint: resuming them with another estimator (or other
    # hyperparameters) would leave the epochs already measured without it, so it is refused; the same lenses resume.
    from ibcore.estimators import KDEBound
    from ibcore.infoplane import train_and_track

    d = szt_dataset()
    tr, _ = szt_split()

    def run(lenses):
        return train_and_track(MLP(SZT_WIDTHS, "tanh", seeds=[0]), (d.x[tr], d.y[tr]), lenses, measure_on=(d.x, d.y),
                               at=[0, 2, 4], epochs=4, batch_size=512, lr=1e-3, checkpoint=tmp_path,
                               checkpoint_every=1, name="lens")  # fmt: skip

    first = run({"bins": Binning(n_bins=30)})
    for other in ({"bins": Binning(n_bins=30), "kde": KDEBound()}, {"bins": Binning(n_bins=20)}):
        with pytest.raises(ValueError, match=r"measured other things \(estimators that differ: \['"):
            run(other)
    resumed = run({"bins": Binning(n_bins=30, device="cpu")})  # another device is the same measurement
    assert resumed["state"].resumed_from == 4 and resumed["plane"] == first["plane"]
