"""ibcore: information-bottleneck analysis of deep networks.

Estimators of mutual information and entropy behind one interface (:mod:`ibcore.estimators`), samplers with
closed-form MI (:mod:`ibcore.tasks`), the data sets of the reproduced papers (:mod:`ibcore.data`), networks and the
one training loop (:mod:`ibcore.nets`, :mod:`ibcore.training`), information-plane tracking
(:mod:`ibcore.infoplane`), layer taps and the probe for any ``torch.nn.Module`` (:mod:`ibcore.taps`,
:mod:`ibcore.probe`), quantized and noisy networks (:mod:`ibcore.quantization`, :mod:`ibcore.nets`), the IB and
dualIB solvers (:mod:`ibcore.ib`), infinitely wide networks and their ensembles (:mod:`ibcore.ntk`,
:mod:`ibcore.ensembles`), clustering measures (:mod:`ibcore.clustering`), estimator comparisons on known-MI tasks (:mod:`ibcore.comparison`), tidy tables (:mod:`ibcore.tables`) and figures (:mod:`ibcore.plotting`). Importing has no side effects.
"""

__version__ = "0.1.0"

from . import (clustering, comparison, data, ensembles, estimators, ib, infoplane, nets, ntk, probe, quantization, tables,
               taps, tasks, training)  # fmt: skip

__all__ = ["clustering", "comparison", "data", "ensembles", "estimators", "ib", "infoplane", "nets", "ntk", "probe",
           "quantization", "tables", "taps", "tasks", "training", "__version__"]
