"""Batch reruns of the book's notebooks: a sweep file, papermill for each run, Dask distributed to spread them.

A sweep file (YAML) names a notebook and the parameter sets to run it with::

    notebook: notebooks/szt_binning.ipynb   # relative to the sweep file's folder
    output: results/szt_activations         # relative to the sweep file's folder (default: results/<file stem>)
    params_file: params/szt_binning_paper.yaml  # optional: base values, overridden by the rest
    parameters: {n_seeds: 1}                # optional: fixed values for every run
    grid:                                   # optional: every combination of these
      activation: [tanh, relu]
    runs:                                   # optional: explicit parameter sets (each combined with the grid)
      - {epochs: 500}
    repeats: 3                              # optional: each set run with seed = 0, 1, 2 ...
    seed_parameter: seed                    # ... under this parameter name (default "seed")

Every run goes into its own folder ``<output>/<run id>/``: the executed notebook (``notebook.ipynb``) and
``result.json`` with the parameters, the status (``"ok"`` or ``"failed"`` with the error), the wall time and the
numbers the notebook glues into the book (``numbers``). Both are written atomically (a temporary file, then a
rename), so a killed sweep leaves finished runs complete and unfinished ones absent; running the same sweep again
skips the runs whose ``result.json`` says ``"ok"`` and redoes the rest. The run id is a hash of the notebook and the
parameters, so reordering the sweep file changes nothing. A notebook that declares a ``checkpoint_dir`` parameter
is given ``<run folder>/checkpoints``, or the run's own ``checkpoints`` folder (unless the run sets the parameter):
its training runs are checkpointed there, a run redone after a kill continues from its checkpoints
(:func:`ibcore.training.fit`), and the folder is deleted once the run has succeeded. A run given its own ``checkpoints`` folder (the scorecard's, which may be committed) has it
moved into the run folder instead: deleting that run's ``result.json`` and running again then redoes the notebook's
analysis on the finished training runs in seconds (after a change to the notebook's figures or numbers).

Parameter names and types are checked against the notebook's ``parameters`` cell before anything runs.

Runs execute on Dask distributed: a local cluster by default (one worker per CPU core, or per GPU when there are
GPUs, each pinned to its GPU; one thread per worker and the kernel's BLAS/OpenMP threads limited to
``threads``), or an existing scheduler (``scheduler="tcp://host:8786"`` or a scheduler file). See the README for a
SLURM cluster through dask-jobqueue.

Command line::

    python -m ibcore.batch run sweep.yaml [--workers N] [--threads T] [--scheduler ADDRESS]
    python -m ibcore.batch collect results/szt_activations [--csv table.csv]
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ._io import write_atomic

__all__ = ["Run", "load_sweep", "check_parameters", "run_one", "run_sweep", "collect", "summarise", "main"]

_KEYS = {"notebook", "output", "params_file", "parameters", "grid", "runs", "repeats", "seed_parameter", "kernel"}
# papermill's inferred type names, and the Python types a value of that type may have
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}
RESULT = "result.json"
NOTEBOOK = "notebook.ipynb"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Run:
    """One notebook execution: the notebook, its parameters, where it writes, and the kernel to use."""

    notebook: str
    parameters: dict
    folder: str
    kernel: str = "python3"
    checkpoints: str | None = None  # checkpoint folder, for notebooks that declare checkpoint_dir (default:
    # <folder>/checkpoints, deleted when the run succeeds; a given folder is moved into <folder> instead)

    @property
    def run_id(self) -> str:
        return Path(self.folder).name


def _run_id(notebook: Path, parameters: dict) -> str:
    blob = json.dumps({"notebook": notebook.name, "parameters": parameters}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _as_list(name: str, values) -> list:
    if not isinstance(values, list) or not values:
        raise ValueError(f"grid entry {name!r} must be a non-empty list of values, got {values!r}")
    return values


@functools.lru_cache(maxsize=32)
def _declared(notebook: str, mtime_ns: int) -> dict:
    # the notebook's parameters cell, read once per version of the file (a sweep checks every run against it)
    import papermill as pm

    return pm.inspect_notebook(notebook)


def check_parameters(notebook: str | os.PathLike, parameters: dict) -> None:
    """Raise ``ValueError`` if a name is not in the notebook's ``parameters`` cell or a value's type does not fit
    the declared one (``int`` where ``float`` is declared is accepted; ``None`` only where the default is None)."""
    declared = _declared(str(notebook), Path(notebook).stat().st_mtime_ns)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"{Path(notebook).name}: unknown parameters {unknown}; the notebook declares {sorted(declared)}")
    for name, value in parameters.items():
        kind = declared[name]["inferred_type_name"]
        if value is None:
            if declared[name].get("default") != "None" and "None" not in kind:
                raise ValueError(f"{Path(notebook).name}: parameter {name}={value!r}, but it is declared {kind}")
            continue
        base = kind.split("|")[0].strip()
        if base.startswith("Optional[") and base.endswith("]"):  # a quoted "Optional[float]": papermill's parser
            base = base[len("Optional["):-1].strip()  # reads no "float | None" annotation
        ok = _TYPES.get(base, (object,))
        if not isinstance(value, ok) or (base in ("int", "float") and isinstance(value, bool)):
            raise ValueError(f"{Path(notebook).name}: parameter {name}={value!r} is not a {kind}")


def load_sweep(path: str | os.PathLike) -> tuple[list[Run], Path]:
    """Read and check a sweep file; return its runs (in file order, duplicates removed) and the output folder."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "notebook" not in spec:
        raise ValueError(f"{path}: a sweep file is a mapping with at least 'notebook', got {spec!r}")
    extra = sorted(set(spec) - _KEYS)
    if extra:
        raise ValueError(f"{path}: unknown keys {extra}; allowed: {sorted(_KEYS)}")
    base_dir = path.parent
    notebook = (base_dir / spec["notebook"]).resolve()
    if not notebook.is_file():
        raise ValueError(f"{path}: notebook {spec['notebook']!r} not found at {notebook}")
    output = (base_dir / spec.get("output", f"results/{path.stem}")).resolve()
    fixed: dict = {}
    if spec.get("params_file"):
        fixed.update(yaml.safe_load((base_dir / spec["params_file"]).read_text()) or {})
    fixed.update(spec.get("parameters") or {})
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: 'grid' must map parameter names to lists of values, got {grid!r}")
    runs_list = spec.get("runs") or [{}]
    if not isinstance(runs_list, list) or not all(isinstance(r, dict) for r in runs_list):
        raise ValueError(f"{path}: 'runs' must be a list of parameter mappings, got {runs_list!r}")
    repeats = spec.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{path}: 'repeats' must be a positive integer, got {repeats!r}")
    seed_name = spec.get("seed_parameter", "seed")
    names = list(grid)
    combos = list(itertools.product(*(_as_list(n, grid[n]) for n in names)))
    sets: list[dict] = []
    for explicit in runs_list:
        for combo in combos:
            for rep in range(repeats):
                params = {**fixed, **explicit, **dict(zip(names, combo))}
                if repeats > 1:  # repeats count up from the set's own seed (0 if it has none)
                    params[seed_name] = params.get(seed_name, 0) + rep
                sets.append(params)
    for params in sets:  # everything checked before anything runs
        check_parameters(notebook, params)
    runs, seen = [], set()
    for params in sets:
        rid = _run_id(notebook, params)
        if rid not in seen:
            seen.add(rid)
            runs.append(Run(str(notebook), params, str(output / rid), spec.get("kernel", "python3")))
    return runs, output


def _glued(nb) -> dict:
    """The values a notebook glues (myst_nb.glue / scrapbook records), figures left out."""
    numbers = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get("scrapbook")
            if not record:
                continue
            prefix = record.get("mime_prefix", "")
            data = out.get("data", {})
            if any(k.startswith(prefix + "image/") for k in data):
                continue
            text = data.get(prefix + "text/plain")
            if text is None:
                continue
            try:
                numbers[record["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                numbers[record["name"]] = text
    return numbers


def _finite(value):
    # JSON has no NaN or infinity: write them as strings a reader can parse back with float()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_result(folder: str | os.PathLike) -> dict | None:
    """A run's ``result.json``, or None if it has none (never run, or interrupted)."""
    path = Path(folder) / RESULT
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def run_one(run: Run, threads: int | None = None) -> dict:
    """Execute one run with papermill and write its notebook and ``result.json`` atomically; a failing notebook is
    recorded (status ``"failed"``, the error) rather than raised. Returns the result."""
    import nbformat
    import papermill as pm

    if threads:  # the kernel inherits the environment
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
    folder = Path(run.folder)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = {"run_id": run.run_id, "notebook": Path(run.notebook).name, "parameters": run.parameters,
              "host": platform.node(), "started": started}  # fmt: skip
    parameters, checkpoints = dict(run.parameters), None
    declared = _declared(str(run.notebook), Path(run.notebook).stat().st_mtime_ns)
    if "checkpoint_dir" in declared and not parameters.get("checkpoint_dir"):
        checkpoints = Path(run.checkpoints) if run.checkpoints else folder / CHECKPOINTS
        parameters["checkpoint_dir"] = str(checkpoints)
        kept = folder / CHECKPOINTS
        if run.checkpoints and not checkpoints.is_dir() and kept.is_dir():  # a finished run redone (see below)
            checkpoints.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(kept), str(checkpoints))
        if checkpoints.is_dir():
            result["resumed"] = sorted(p.name for p in checkpoints.glob("*.ckpt"))
    # the time ledger travels with checkpoints kept outside the run's folder (committed ones), else stays in it
    beside = checkpoints is not None and bool(run.checkpoints)
    ledger = _TimeLedger(checkpoints if beside else folder)
    earlier, clock = ledger.start(started, older=folder / ".seconds" if beside else None)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{NOTEBOOK}.", suffix=".ipynb")
    os.close(fd)
    try:
        try:
            pm.execute_notebook(run.notebook, tmp, parameters=parameters, kernel_name=run.kernel,
                                cwd=str(Path(run.notebook).parent), progress_bar=False, log_output=False)  # fmt: skip
            result.update(status="ok", error=None)
        except Exception as exc:  # a failing notebook is a result, not a crash of the sweep
            result.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000])
        if Path(tmp).stat().st_size:
            executed = nbformat.read(tmp, as_version=4)
            result["numbers"] = _glued(executed)
            os.replace(tmp, folder / NOTEBOOK)
        else:
            result["numbers"] = {}
    except Exception:
        result.update(status="failed", error=traceback.format_exc()[-4000:], numbers={})
    finally:
        Path(tmp).unlink(missing_ok=True)
    result["seconds"] = time.time() - started
    # wall time over every attempt of this run, a killed one included (to within its last tick)
    result["seconds_all_attempts"] = clock.stop(result["seconds"]) + earlier
    write_atomic(folder / RESULT, json.dumps(_finite(result), indent=1, default=str))
    if checkpoints is not None and result["status"] == "ok":
        if run.checkpoints:  # out of the given folder (which may be committed) into the run's own, ignored one
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
            shutil.move(str(checkpoints), str(folder / CHECKPOINTS))
        else:
            shutil.rmtree(checkpoints, ignore_errors=True)  # finished: the records hold everything
    return result


class _TimeLedger:
    """The wall time of every attempt of one run, kept beside its checkpoints (a committed checkpoint folder carries
    it to the next machine) or in the run's folder. ``.seconds`` holds the seconds of the attempts that ended;
    ``.seconds_running`` the running attempt's, rewritten every ``tick`` seconds, so that an attempt killed without
    warning (a session's end) is counted by the next one, to within a tick."""

    def __init__(self, folder: Path, tick: float | None = None):
        self.done, self.running = folder / ".seconds", folder / ".seconds_running"
        self.tick = float(os.environ.get("IBCORE_LEDGER_TICK", "30")) if tick is None else tick
        self._stop = threading.Event()
        self._thread = None

    @staticmethod
    def _read(path: Path) -> float:
        try:
            return float(path.read_text())
        except (OSError, ValueError):
            return 0.0

    def start(self, started: float, older: Path | None = None) -> tuple[float, _TimeLedger]:
        """Fold a killed attempt's running time (and ``older``, a ledger of an earlier layout) into the ended ones;
        start ticking. Returns (the earlier attempts' seconds, self)."""
        self.done.parent.mkdir(parents=True, exist_ok=True)
        earlier = self._read(self.done) + self._read(self.running) + (self._read(older) if older else 0.0)
        write_atomic(self.done, repr(earlier))
        self.running.unlink(missing_ok=True)
        if older:
            older.unlink(missing_ok=True)

        def tick():
            while not self._stop.wait(self.tick):
                write_atomic(self.running, repr(time.time() - started))

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()
        return earlier, self

    def stop(self, seconds: float) -> float:
        """This attempt ended after ``seconds``: add them to the ended ones. Returns this attempt's seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        write_atomic(self.done, repr(self._read(self.done) + seconds))
        self.running.unlink(missing_ok=True)
        return seconds


def _local_cluster(workers: int | None):
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    gpus = _gpu_count()
    if gpus and workers is None:
        # one worker per GPU, each seeing only its own device
        spec = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
                for i in range(gpus)}  # fmt: skip
        return SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})
    n = workers or os.cpu_count() or 1
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _client(scheduler: str | None, workers: int | None):
    from distributed import Client

    if scheduler is None:
        cluster = _local_cluster(workers)
        return Client(cluster), cluster
    if scheduler.endswith(".json") and Path(scheduler).is_file():
        return Client(scheduler_file=scheduler), None
    return Client(scheduler), None


def run_sweep(runs: Sequence[Run], *, scheduler: str | None = None, workers: int | None = None,
              threads: int | None = None, progress: bool = True) -> list[dict]:  # fmt: skip
    """Run every run without an ``"ok"`` result on Dask (module docstring); return the results of all runs in order.

    Arguments:
        runs: From :func:`load_sweep`.
        scheduler: An existing scheduler's address or scheduler file; ``None`` starts a local cluster.
        workers: Local workers (default: one per GPU if there are GPUs, else one per CPU core).
        threads: BLAS/OpenMP threads per run (default: cores divided by workers, at least 1).
        progress: Show a progress bar.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    todo = [r for r in runs if (read_result(r.folder) or {}).get("status") != "ok"]
    if todo:
        n_workers = workers or _gpu_count() or os.cpu_count() or 1
        threads = threads or max(1, (os.cpu_count() or 1) // n_workers)
        client, cluster = _client(scheduler, workers)
        try:
            futures = [client.submit(run_one, r, threads, key=f"ibcore-run-{r.run_id}", pure=False) for r in todo]
            bar = tqdm(total=len(runs), initial=len(runs) - len(todo), disable=not progress, desc="sweep")
            for fut in as_completed(futures):
                res = fut.result()
                bar.update(1)
                bar.set_postfix_str(f"{res['run_id']} {res['status']}")
            bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [read_result(r.folder) for r in runs]


def collect(output: str | os.PathLike) -> list[dict]:
    """A tidy table of a sweep's recorded numbers: one row per run and number, with the run's parameters as
    columns (``run_id``, ``status``, the parameters, ``name``, ``value``). Failed runs give one row with
    ``name = None`` and their error."""
    rows = []
    for path in sorted(Path(output).glob(f"*/{RESULT}")):
        res = json.loads(path.read_text())
        base = {"run_id": res["run_id"], "status": res["status"], **res["parameters"]}
        if res["status"] != "ok":
            rows.append({**base, "name": None, "value": None, "error": res.get("error")})
            continue
        for name, value in res.get("numbers", {}).items():
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
            rows.append({**base, "name": name, "value": value})
    return rows


def summarise(rows: Iterable[dict], by: Sequence[str]) -> list[dict]:
    """Mean, standard deviation (ddof 1) and count of every numeric value over the runs that agree on the parameters
    ``by`` (e.g. all but the seed), one row per group and number name."""
    from .tables import describe, group_by

    numeric = [{**{b: json.dumps(row.get(b), sort_keys=True) for b in by}, "name": row["name"], "value": row["value"]}
               for row in rows if row.get("name") is not None and not isinstance(row.get("value"), bool)
               and isinstance(row.get("value"), (int, float))]  # fmt: skip
    return [{**{b: json.loads(k) for b, k in zip(by, key[:-1])}, "name": key[-1],
             **describe(float(r["value"]) for r in group)}
            for key, group in group_by(numeric, (*by, "name"), sort=False).items()]  # fmt: skip


def _write_csv(rows: list[dict], path: str) -> None:
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ibcore.batch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run a sweep (skipping finished runs)")
    run_p.add_argument("sweep", help="the sweep file (YAML)")
    run_p.add_argument("--scheduler", help="address or scheduler file of a running Dask scheduler")
    run_p.add_argument("--workers", type=int, help="local workers (default: one per GPU, else one per core)")
    run_p.add_argument("--threads", type=int, help="BLAS/OpenMP threads per run")
    run_p.add_argument("--no-progress", action="store_true")
    col_p = sub.add_parser("collect", help="tabulate a sweep's recorded numbers")
    col_p.add_argument("output", help="the sweep's output folder")
    col_p.add_argument("--csv", help="write the tidy table here (default: print a summary)")
    col_p.add_argument("--by", nargs="*", help="parameters to group by in the summary (default: all but 'seed')")
    col_p.add_argument("--plot", nargs=2, metavar=("NAME", "X"), help="plot a number's mean +- sd against parameter X")
    col_p.add_argument("--png", default="sweep.png", help="where --plot writes its figure")
    args = parser.parse_args(argv)
    if args.command == "run":
        runs, output = load_sweep(args.sweep)
        results = run_sweep(runs, scheduler=args.scheduler, workers=args.workers, threads=args.threads,
                            progress=not args.no_progress)  # fmt: skip
        failed = [r for r in results if r is None or r["status"] != "ok"]
        print(f"{len(results) - len(failed)} of {len(results)} runs ok; results in {output}")
        for r in failed:
            if r is not None:
                print(f"  failed {r['run_id']} {r['parameters']}: {r['error'].splitlines()[-1] if r['error'] else ''}")
        return 1 if failed else 0
    rows = collect(args.output)
    if args.csv:
        _write_csv(rows, args.csv)
        print(f"{len(rows)} rows -> {args.csv}")
        return 0
    params = sorted({k for r in rows for k in r} - {"run_id", "status", "name", "value", "error"})
    by = args.by if args.by is not None else [p for p in params if p != "seed"]
    summary = summarise(rows, by)
    for row in summary:
        print(json.dumps(row, default=str))
    if args.plot:
        from .plotting import sweep_summary

        name, x = args.plot
        others = [b for b in by if b != x]
        sweep_summary(summary, name=name, x=x, by=others[0] if len(others) == 1 else None).savefig(args.png, dpi=120)
        print(f"figure -> {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
