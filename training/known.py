"""The effect of inputs known in advance on a linear base's forecast, fitted by ridge regression.

A linear base (``training.bases``) forecasts the target from its own past. If
the target moves with a known input ``z`` (demand with the workday flag and
the temperature), ``y = a z + s``, the same base applied to ``z``'s past
forecasts ``a`` times what it forecasts for ``z``: the base misses exactly
``a (z_h - base(z)_h)`` at step ``h``. So the error of the base is regressed
on each known input's distance from the base's forecast of it, and on the
same for its square (an effect that bends, heating and cooling), like
regression with ARIMA errors, with the base in ARIMA's place.

Everything is in the model's units (``Forecaster.known_effect`` computes the
same in the graph): the target normalised by its window (``Scaler``), the
known inputs by their training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.bundle.manifest import ModelSpec
from training import bases
from training.models import Scaler, known_columns

PENALTIES = (0.01, 0.1, 1.0, 10.0)  # ridge penalty per forecast step, chosen on validation
# The size (root mean square, in training standard deviations) below which a delta carries nothing
# a float32 graph can use: its weight stays 0.
SIGNAL_FLOOR = 1e-3
MAX_WINDOWS = 4096  # training windows the effect is fitted on at most (a random subset of more)


@dataclass
class KnownEffect:
    """Fitted ``Forecaster.known_weight`` ``(2 * known, targets)`` for a model of ``spec`` with
    training statistics ``mean`` and ``std`` ``(features,)``."""

    spec: ModelSpec
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    penalty: float

    def part(self, x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Its part of the forecast of raw windows ``x`` on a base ``matrix``, in the data's units."""
        d = deltas(x, self.spec, matrix, self.mean, self.std)
        return effect(d, self.weight, window_scale(x, len(self.spec.targets)))


def window_scale(x: np.ndarray, nt: int) -> np.ndarray:
    """``Scaler``'s window scale of the targets, ``(n, 1, nt)``, in numpy."""
    targets = x[..., :nt].astype(np.float64)
    loc = targets.mean(axis=1, keepdims=True)
    size = np.abs(targets).max(axis=1, keepdims=True)
    zero = size == 0
    size = np.where(zero, 1.0, size)
    unit = (targets - loc) / size
    scale = size * np.sqrt((unit * unit).mean(axis=1, keepdims=True) + Scaler.REL_EPS**2)
    return np.where(zero, 1.0, scale)


def deltas(
    x: np.ndarray, spec: ModelSpec, matrix: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """``(n, horizon, 2 * known)``: each known input's value at each forecast step minus the base
    ``matrix``'s forecast of it, then the same for its square (``Forecaster.known_effect``)."""
    now, lead = known_columns(spec)
    z = (x.astype(np.float64) - mean) / std  # (n, length, features); only the known columns are used
    past = z[:, -matrix.shape[1] :, now]
    ahead = z[:, -spec.horizon :, lead]
    return np.concatenate(
        [ahead - bases.apply(matrix, past), ahead**2 - bases.apply(matrix, past**2)], axis=2
    )


def fit(d: np.ndarray, error: np.ndarray, penalty: float) -> np.ndarray:
    """Ridge weights ``(2 * known, targets)`` of ``error`` ``(n, horizon, targets)`` (the base's,
    normalised) on ``d`` (``deltas``); ``penalty`` per window step."""
    flat = d.reshape(-1, d.shape[2])
    # each delta by its own size, so the penalty does not silence a rare one (a holiday's workday
    # flag is 0 a few days a year, and the base forecasts the weekends' zeros itself)
    size = np.sqrt((flat * flat).mean(axis=0))
    # A delta that is rounding noise on these windows (a holiday flag that is 0 in all of the newest
    # ones: the base's forecast of zeros, ~1e-17) gets no weight: divided by its size it would earn
    # a weight of 1e14, which the float32 graph multiplies by its own, different, rounding noise.
    usable = size > SIGNAL_FLOOR
    size = np.where(usable, size, 1.0)
    flat = np.where(usable, flat / size, 0.0)
    gram = flat.T @ flat + penalty * len(flat) * np.eye(flat.shape[1])
    return np.linalg.solve(gram, flat.T @ error.reshape(-1, error.shape[2])) / size[:, None]


def effect(d: np.ndarray, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The known inputs' part of a forecast in the data's units, ``(n, horizon, targets)``."""
    return np.einsum("nhk,kt->nht", d, weight) * scale
