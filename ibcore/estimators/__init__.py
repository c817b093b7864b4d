"""Mutual-information and entropy estimators behind one interface.

Every MI estimator has ``estimate(x, y) -> MIEstimate`` (x the representation side, y the other side) and every
entropy estimator ``estimate(x) -> EntropyEstimate``; values are in nats. ``available()`` lists the registered names
(filtered by declared capabilities), ``capabilities(name)`` says what one takes and ``make(name, **params)`` builds
one. The whole contract is in :mod:`ibcore.estimators.interface`.

Example:
    >>> import ibcore.estimators as est
    >>> "ksg" in est.available("mi") and "kl" in est.available("entropy")
    True
"""

from .interface import (
    EntropyEstimate,
    EntropyEstimator,
    Estimate,
    MIEstimate,
    MIEstimator,
    DIAGNOSTICS,
    ROLES,
    available,
    capabilities,
    capability_table,
    make,
    register,
)
from .discrete import DiscreteEntropy, DiscreteMI
from .binning import Binning, BinnedEntropy, bin_codes
from .knn import KSG, KozachenkoLeonenko, WeightedKozachenkoLeonenko
from .gaussian import GaussianMI
from .exact import ExactEntropy, ExactMI
from .sp import GaussianMixtureEntropy, SamplePropagation
from .kde import KDEBound
from .noisy_layer import NoisyLayerMI
from .neural import MINE, NWJ, SMILE, InfoNCE
from .flows import MIENF, FlowEntropy, TridiagMIENF
from .copula import CopulaMI, normal_scores, uniform_ranks
from .auto import AutoMI
from .lossy import PCA, Autoencoder, ClassMI, EntropyMI, IncrementalPCA, LossyMI, NoisyCodes, is_fitted

__all__ = [
    "Estimate",
    "MIEstimate",
    "EntropyEstimate",
    "MIEstimator",
    "EntropyEstimator",
    "available",
    "capabilities",
    "capability_table",
    "DIAGNOSTICS",
    "ROLES",
    "make",
    "register",
    "DiscreteEntropy",
    "DiscreteMI",
    "Binning",
    "BinnedEntropy",
    "bin_codes",
    "KSG",
    "KozachenkoLeonenko",
    "WeightedKozachenkoLeonenko",
    "GaussianMI",
    "CopulaMI",
    "AutoMI",
    "normal_scores",
    "uniform_ranks",
    "ExactMI",
    "ExactEntropy",
    "SamplePropagation",
    "KDEBound",
    "NoisyLayerMI",
    "GaussianMixtureEntropy",
    "MINE",
    "NWJ",
    "InfoNCE",
    "SMILE",
    "MIENF",
    "FlowEntropy",
    "TridiagMIENF",
    "PCA",
    "IncrementalPCA",
    "Autoencoder",
    "EntropyMI",
    "ClassMI",
    "LossyMI",
    "NoisyCodes",
    "is_fitted",
]
