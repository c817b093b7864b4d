"""Failed fits among repeated training runs: the rule of Lorenzen, Igel & Nielsen (ICLR 2022).

A network of a stacked run (:func:`~ibcore.infoplane.train_and_track`) whose training accuracy ends below a threshold
did not learn the task. The authors leave such runs out of their averages and train them again from new seeds
(``IB/experiment.py``: training accuracy below 0.55 from epoch 1000 on; ``papers.md`` section 2). Both halves are
here: :func:`drop_failed` leaves them out and says which, :func:`restart_failed` trains replacements. Restarting
biases the averages towards networks that learn; the seeds restarted are listed so that a reader can see how many.

A run is the dict that :func:`~ibcore.infoplane.train_and_track` returns: ``"plane"`` and ``"metrics"`` records, each
with the network's seed as ``"model"``, and ``"seconds"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from .infoplane import select

__all__ = ["failed_models", "drop_failed", "restart_failed"]


def _check(epoch, min_accuracy):
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got epoch={epoch!r}")
    if not (isinstance(min_accuracy, (int, float)) and math.isfinite(min_accuracy) and 0 <= min_accuracy <= 1):
        raise ValueError(f"min_accuracy must be a number in [0, 1], got min_accuracy={min_accuracy!r}")


def failed_models(metrics: Iterable[dict], *, epoch: int, min_accuracy: float, split: str = "train") -> list:
    """The networks (``"model"``) whose accuracy on ``split`` at ``epoch`` is below ``min_accuracy``, sorted.

    Raises ``ValueError`` when no metric of that split was recorded at that epoch (a run measured at other epochs
    would otherwise pass as having no failures).
    """
    _check(epoch, min_accuracy)
    final = select(metrics, epoch=epoch, split=split)
    if not final:
        raise ValueError(f"no {split!r} accuracy recorded at epoch={epoch}: the metrics must include that epoch")
    return sorted(r["model"] for r in final if r["accuracy"] < min_accuracy)


def drop_failed(run: dict, *, epoch: int, min_accuracy: float) -> dict:
    """The run without its failed networks: ``"plane"`` and ``"metrics"`` keep only the others, ``"failed"`` lists
    the networks left out and ``"all_plane"`` keeps every network's records (identities such as the data-processing
    inequality hold for every network, learned or not). Raises ``RuntimeError`` when every network failed."""
    failed = failed_models(run["metrics"], epoch=epoch, min_accuracy=min_accuracy)
    n = len({r["model"] for r in select(run["metrics"], epoch=epoch, split="train")})
    if len(failed) == n:
        raise RuntimeError(f"every network ended below min_accuracy={min_accuracy} at epoch {epoch}: {failed}")
    out = {**run, "failed": failed, "all_plane": run["plane"]}
    for part in ("plane", "metrics"):
        out[part] = [r for r in run[part] if r["model"] not in failed]
    return out


def restart_failed(run: dict, retrain: Callable[[range, int], dict], *, epoch: int, min_accuracy: float,
                   next_seed: int, max_rounds: int = 5) -> dict:  # fmt: skip
    """The authors' rule: every failed network is replaced by one trained from a new seed, up to ``max_rounds``
    rounds (a replacement may fail too).

    Arguments:
        run: A run of :func:`~ibcore.infoplane.train_and_track`.
        retrain: ``retrain(seeds, round)`` trains networks from ``seeds`` (a ``range``) and returns their run; the
            round (0, 1, ...) is there to name its records or checkpoints.
        epoch, min_accuracy: A network failed when its training accuracy at ``epoch`` is below ``min_accuracy``.
        next_seed: The first new seed; the replacements take the seeds after it in order.
        max_rounds: At most this many rounds of retraining.

    Returns:
        The run with the failed networks' records replaced by their replacements', ``"restarted"`` (the seeds that
        failed and were replaced, in order) and ``"seconds"`` summed over every training. Networks still failing
        after ``max_rounds`` stay in the run (:func:`drop_failed` leaves them out).
    """
    if not isinstance(max_rounds, int) or max_rounds < 0:
        raise ValueError(f"max_rounds must be an int >= 0, got max_rounds={max_rounds!r}")
    restarted = []
    for round_ in range(max_rounds):
        failed = failed_models(run["metrics"], epoch=epoch, min_accuracy=min_accuracy)
        if not failed:
            break
        new = retrain(range(next_seed, next_seed + len(failed)), round_)
        next_seed += len(failed)
        restarted += failed
        run = {**run, **{part: [r for r in run[part] if r["model"] not in failed] + new[part]
                         for part in ("plane", "metrics")}, "seconds": run["seconds"] + new["seconds"]}  # fmt: skip
    return {**run, "restarted": restarted}
