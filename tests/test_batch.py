"""The batch runner: sweep files, parameter checks, Dask execution (local cluster and a separately started
scheduler), failures recorded beside successes, and resuming a killed sweep with nothing lost or recomputed.

Every sweep runs tests/fixtures/sweep_probe.ipynb, which squares ``x`` (plus ``seed``), sleeps or fails on request.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ibcore.batch import collect, load_sweep, main, read_result, run_sweep, summarise

pytest.importorskip("distributed")
PROBE = Path(__file__).resolve().parent / "fixtures" / "sweep_probe.ipynb"


def _sweep(tmp_path: Path, **spec) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"notebook": str(PROBE), "output": str(tmp_path / "out"), **spec}))
    return path


def test_sweep_file_expands_grid_runs_and_repeats(tmp_path):
    runs, output = load_sweep(_sweep(tmp_path, parameters={"label": "b"}, grid={"x": [1.0, 2.0]},
                                     runs=[{}, {"sleep": 0.5}], repeats=3))  # fmt: skip
    assert output == tmp_path / "out"
    assert len(runs) == 2 * 2 * 3
    assert sorted({r.parameters["seed"] for r in runs}) == [0, 1, 2]
    assert all(r.parameters["label"] == "b" for r in runs)
    assert len({r.run_id for r in runs}) == len(runs)
    # the run id depends on the parameters only, not on the order of the file
    again, _ = load_sweep(_sweep(tmp_path, grid={"x": [2.0, 1.0]}, runs=[{"sleep": 0.5}, {}], repeats=3,
                                 parameters={"label": "b"}))  # fmt: skip
    assert {r.run_id for r in again} == {r.run_id for r in runs}


@pytest.mark.parametrize("spec, message", [
    ({"grid": {"y": [1.0]}}, r"unknown parameters \['y'\]"),
    ({"parameters": {"x": "one"}}, r"x='one' is not a float"),
    ({"parameters": {"seed": 1.5}}, r"seed=1.5 is not a int"),
    ({"parameters": {"fail": 1}}, r"fail=1 is not a bool"),
    ({"grid": {"x": []}}, r"grid entry 'x' must be a non-empty list"),
    ({"repeats": 0}, r"'repeats' must be a positive integer"),
    ({"colour": "red"}, r"unknown keys \['colour'\]"),
])  # fmt: skip
def test_bad_sweep_files_are_refused_before_anything_runs(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        load_sweep(_sweep(tmp_path, **spec))
    assert not (tmp_path / "out").exists()


def test_two_workers_run_a_sweep_with_a_failure_and_a_rerun_redoes_only_the_failure(tmp_path):
    runs, output = load_sweep(_sweep(tmp_path, grid={"x": [2.0, 3.0]}, runs=[{}, {"fail": True}]))
    results = run_sweep(runs, workers=2, threads=1, progress=False)
    ok = [r for r in results if r["status"] == "ok"]
    failed = [r for r in results if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 2
    assert sorted(r["numbers"]["square"] for r in ok) == [4.0, 9.0]
    assert all(r["numbers"]["threads"] == "1" for r in ok)
    assert len({r["numbers"]["pid"] for r in ok}) == 2  # each run in its own kernel
    assert all("asked to fail" in r["error"] for r in failed)
    assert all((Path(r.folder) / "notebook.ipynb").is_file() for r in runs)  # the failed notebooks too
    # a rerun skips the finished runs and redoes the failed ones
    before = {r["run_id"]: r["started"] for r in results}
    again = run_sweep(runs, workers=2, threads=1, progress=False)
    for r in again:
        same = r["started"] == before[r["run_id"]]
        assert same == (r["status"] == "ok"), r
    rows = collect(output)
    squares = [row for row in rows if row["name"] == "square"]
    assert sorted(row["value"] for row in squares) == [4.0, 9.0]
    assert sum(row["name"] is None for row in rows) == 2
    summary = summarise(rows, by=["x"])
    assert {(s["x"], s["name"]): s["n"] for s in summary if s["name"] == "square"} == {(2.0, "square"): 1,
                                                                                      (3.0, "square"): 1}


def test_repeats_are_summarised_over_seeds(tmp_path):
    runs, output = load_sweep(_sweep(tmp_path, parameters={"x": 1.0}, repeats=3))
    run_sweep(runs, workers=2, threads=1, progress=False)
    (s,) = [s for s in summarise(collect(output), by=["x"]) if s["name"] == "square"]
    assert (s["n"], s["mean"], s["std"]) == (3, 2.0, 1.0)  # 1 + seed for seeds 0, 1, 2
    png = tmp_path / "square.png"
    assert main(["collect", str(output), "--by", "x", "--plot", "square", "x", "--png", str(png)]) == 0
    assert png.stat().st_size > 0


def test_a_killed_sweep_resumes_without_losing_or_recomputing_finished_runs(tmp_path):
    sweep = _sweep(tmp_path, grid={"x": [1.0, 2.0, 3.0, 4.0]}, parameters={"sleep": 2.0})
    runs, _ = load_sweep(sweep)
    cmd = [sys.executable, "-m", "ibcore.batch", "run", str(sweep), "--workers", "1", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not any(read_result(r.folder) for r in runs):
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the cluster and the kernels at once
        proc.wait()
    first = {r.run_id: read_result(r.folder) for r in runs}
    done = {k: v for k, v in first.items() if v is not None}
    assert 1 <= len(done) < len(runs), "the kill should land mid-sweep"
    assert all(v["status"] == "ok" for v in done.values())
    # nothing half-written is left looking finished
    for r in runs:
        if first[r.run_id] is None:
            assert not (Path(r.folder) / "notebook.ipynb").exists()
    assert main(["run", str(sweep), "--workers", "1", "--threads", "1", "--no-progress"]) == 0
    after = {r.run_id: read_result(r.folder) for r in runs}
    assert all(v["status"] == "ok" for v in after.values())
    for run_id, v in done.items():
        assert after[run_id]["started"] == v["started"]  # not recomputed


def test_a_separately_started_scheduler_runs_the_sweep(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(scheduler_file), "--no-dashboard", "--port", "0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]  # fmt: skip
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert scheduler_file.exists(), "the scheduler did not start"
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                       str(scheduler_file), "--nthreads", "1", "--nworkers", "2", "--no-dashboard"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))  # fmt: skip
        runs, _ = load_sweep(_sweep(tmp_path, grid={"x": [5.0, 6.0]}))
        results = run_sweep(runs, scheduler=str(scheduler_file), threads=1, progress=False)
        assert sorted(r["numbers"]["square"] for r in results) == [25.0, 36.0]
        address = json.loads(scheduler_file.read_text())["address"]
        (tmp_path / "out2").mkdir()
        runs2, _ = load_sweep(_sweep(tmp_path, grid={"x": [7.0]}, output=str(tmp_path / "out2")))
        assert run_sweep(runs2, scheduler=address, threads=1, progress=False)[0]["numbers"]["square"] == 49.0
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_a_real_sweep_of_a_book_notebook(tmp_path):
    # notebooks/noisy_neuron.ipynb, one network per run over two seeds, with fewer Monte Carlo points: its range checks
    # run in each kernel and its glued numbers come back in result.json
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "noisy_neuron.ipynb"
    sweep = tmp_path / "neuron.yaml"
    sweep.write_text(yaml.safe_dump({"notebook": str(notebook), "output": str(tmp_path / "out"),
                                     "parameters": {"n_mc": 5000, "n_records": 12},
                                     "grid": {"seeds": [[0], [1]]}}))  # fmt: skip
    runs, output = load_sweep(sweep)
    results = run_sweep(runs, workers=2, threads=1, progress=False)
    assert all(r["status"] == "ok" for r in results), [r["error"] for r in results]
    assert all(r["numbers"]["neuron_n_seeds"] == 1 and r["numbers"]["neuron_noise_std"] == 0.1 for r in results)
    peaks = [r["numbers"]["neuron_peak"] for r in results]
    assert all(0 < p <= math.log(4) + 1e-9 for p in peaks) and peaks[0] != peaks[1]  # two networks, two answers
    rows = collect(output)
    assert {json.dumps(row["seeds"]) for row in rows} == {"[0]", "[1]"}


CHECKPOINT_PROBE = PROBE.parent / "checkpoint_probe.ipynb"


def test_a_killed_run_continues_from_its_checkpoints_to_the_same_numbers(tmp_path):
    # the uninterrupted run
    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump({"notebook": str(CHECKPOINT_PROBE), "output": str(tmp_path / "ref")}))
    assert main(["run", str(ref), "--workers", "1", "--threads", "1", "--no-progress"]) == 0
    (expected,) = [json.loads(p.read_text())["numbers"] for p in (tmp_path / "ref").glob("*/result.json")]
    # the same run, slowed down, killed once a checkpoint exists, then run again at full speed ...
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump({"notebook": str(CHECKPOINT_PROBE), "output": str(tmp_path / "out"),
                                    "parameters": {"epoch_sleep": 0.25}}))  # fmt: skip
    (run,), _ = load_sweep(path)
    ckpt = Path(run.folder) / "checkpoints" / "probe.ckpt"
    cmd = [sys.executable, "-m", "ibcore.batch", "run", str(path), "--workers", "1", "--threads", "1", "--no-progress"]
    env = {**os.environ, "IBCORE_LEDGER_TICK": "0.2"}  # the running attempt's seconds, written every 0.2 s
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    running = Path(run.folder) / ".seconds_running"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (ckpt.is_file() and running.is_file()):
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert ckpt.is_file() and read_result(run.folder) is None
    killed_seconds = float(running.read_text())
    assert killed_seconds > 0
    # ... where it continues from its checkpoint (the sleep is not part of the run's fingerprint)
    assert main(["run", str(path), "--workers", "1", "--threads", "1", "--no-progress"]) == 0
    result = read_result(run.folder)
    assert result["status"] == "ok" and result["resumed"] == ["probe.ckpt"], result
    assert result["numbers"]["resumed_from"] > 0
    # the killed attempt's wall time is counted (to within its last tick), not lost with the process
    assert result["seconds_all_attempts"] == pytest.approx(result["seconds"] + killed_seconds)
    assert not running.exists()
    assert not ckpt.parent.exists()  # deleted once the run succeeded
    for name in ("losses", "i_xt"):
        assert result["numbers"][name] == expected[name], name


def test_a_run_with_its_own_checkpoint_folder_keeps_them_for_a_redo(tmp_path):
    from ibcore.batch import Run, run_one

    outside = tmp_path / "committed" / "probe"
    run = Run(str(CHECKPOINT_PROBE), {"epochs": 6}, str(tmp_path / "run"), checkpoints=str(outside))
    first = run_one(run, threads=1)
    assert first["status"] == "ok" and not outside.exists()  # out of the (committable) folder ...
    assert (tmp_path / "run" / "checkpoints" / "probe.ckpt").is_file()  # ... into the run's own
    (tmp_path / "run" / "result.json").unlink()
    again = run_one(run, threads=1)  # the notebook's analysis again, on the finished training run
    assert again["status"] == "ok" and again["resumed"] == ["probe.ckpt"] and again["numbers"]["resumed_from"] == 6
    assert again["numbers"]["losses"] == first["numbers"]["losses"]
    assert again["seconds_all_attempts"] == pytest.approx(first["seconds"] + again["seconds"])


def test_the_time_ledger_counts_a_killed_attempt_and_an_older_ledger(tmp_path):
    from ibcore.batch import _TimeLedger

    ck, run_folder = tmp_path / "committed", tmp_path / "run"
    run_folder.mkdir()
    (run_folder / ".seconds").write_text("5.0")  # an older layout: the ended attempts' seconds in the run's folder
    ck.mkdir()
    (ck / ".seconds").write_text("100.0")  # ended attempts on an earlier machine
    (ck / ".seconds_running").write_text("40.0")  # an attempt killed there after 40 s
    ledger = _TimeLedger(ck, tick=0.05)
    earlier, clock = ledger.start(time.time(), older=run_folder / ".seconds")
    assert earlier == 145.0 and not (run_folder / ".seconds").exists()
    time.sleep(0.3)
    assert float((ck / ".seconds_running").read_text()) > 0.1  # ticking
    assert clock.stop(7.0) == 7.0
    assert float((ck / ".seconds").read_text()) == 152.0 and not (ck / ".seconds_running").exists()
