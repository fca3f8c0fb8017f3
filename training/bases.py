"""The simple forecasts as linear maps of the input window: one ``(horizon, length)`` matrix each.

Naive, seasonal naive, damped seasonal, drift, simple exponential smoothing,
its seasonal form, Theta and a ridge regression on the window are all linear
in the last ``length`` values, and in each of them every row of the matrix
sums to one. A map with rows summing to one commutes with any affine
rescaling of the window (``B (a x + b) = a B x + b``), so a base reads the
per-window-normalised input of the graph and returns a normalised forecast
exactly as it would on raw values. A combination of bases is the mean of
their matrices: still one matrix, still one ``Linear``-like step in the ONNX
graph, exact to float32 in the parity check.

Every function returns float64 ``(horizon, length)``; ``window[-1]`` is the
newest value, column ``length - 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Base:
    """A named linear forecast: ``forecast = matrix @ window`` per target."""

    name: str
    matrix: np.ndarray  # (horizon, length), rows sum to 1


# (alpha, beta, phi) of the Holt and Holt-Winters bases: slow and fast levels, a trend that
# adapts little or much, damped (phi 0.9) or nearly linear (0.98), as ETS's usual ranges.
HOLT_GRID = [(a, b, p) for a in (0.2, 0.5, 0.8) for b in (0.05, 0.2) for p in (0.9, 0.98)]


def naive(length: int, horizon: int) -> np.ndarray:
    """The last value, repeated."""
    m = np.zeros((horizon, length))
    m[:, -1] = 1.0
    return m


def seasonal_naive(length: int, horizon: int, lag: int) -> np.ndarray:
    """The value ``lag`` steps before each forecast step; beyond one season, the last season repeated."""
    if not 1 <= lag <= length:
        raise ValueError(f"a seasonal lag of {lag} needs a window of at least {lag}, got {length}")
    m = np.zeros((horizon, length))
    m[np.arange(horizon), length - lag + np.arange(horizon) % lag] = 1.0
    return m


def damped_seasonal(length: int, horizon: int, lag: int, phi: float) -> np.ndarray:
    """Seasonal naive plus the last seasonal error carried forward, damped by ``phi`` per step.

    The seasonal ARIMA(1,0,0)(0,1,0)[lag] forecast: step ``k`` (1-based) adds
    ``e * sum_i phi^(k - i*lag)`` over the seasons it lies beyond the window,
    ``e = y[t] - y[t-lag]``.
    """
    if length <= lag:
        raise ValueError(f"a damped seasonal base needs a window of at least lag + 1 = {lag + 1}")
    m = seasonal_naive(length, horizon, lag)
    k = np.arange(1, horizon + 1)
    weight = np.zeros(horizon)
    for i in range(-(-horizon // lag)):
        shift = k - i * lag
        weight += np.where(shift >= 1, phi ** np.maximum(shift, 1), 0.0)
    m[:, -1] += weight
    m[:, -1 - lag] -= weight
    return m


def drift(length: int, horizon: int) -> np.ndarray:
    """The last value plus the window's average step, per forecast step (a random walk with drift)."""
    m = naive(length, horizon)
    slope = np.arange(1, horizon + 1) / (length - 1)
    m[:, -1] += slope
    m[:, 0] -= slope
    return m


def _level_weights(length: int, alpha: float) -> np.ndarray:
    """``(length,)`` weights of simple exponential smoothing's final level, started at the oldest value."""
    ages = np.arange(length)[::-1]  # newest has age 0
    w = alpha * (1 - alpha) ** ages
    w[0] = (1 - alpha) ** (length - 1)  # the start value keeps what the recursion never gave away
    return w


def _seasonal_profile(length: int, lag: int) -> np.ndarray:
    """``(lag, length)``: row ``j`` maps the window to the mean deviation of phase ``j`` (phase of
    column ``c`` is ``(c - length) % lag``, so phase 0 is the step after the window's end)."""
    phase = (np.arange(length) - length) % lag
    profile = np.zeros((lag, length))
    for j in range(lag):
        members = phase == j
        profile[j, members] = 1.0 / members.sum()
    return profile - profile.mean(axis=0, keepdims=True)  # deviations sum to zero over a season


def ses(length: int, horizon: int, alpha: float, lag: int = 1) -> np.ndarray:
    """Simple exponential smoothing's level, flat; with ``lag > 1`` on the deseasonalised window,
    the window's seasonal profile added back."""
    if lag <= 1:
        return np.tile(_level_weights(length, alpha), (horizon, 1))
    profile = _seasonal_profile(length, lag)  # (lag, length)
    phase = (np.arange(length) - length) % lag
    deseason = np.eye(length) - profile[phase]  # (length, length): x - s[phase]
    level = _level_weights(length, alpha) @ deseason  # (length,)
    return level[None, :] + profile[np.arange(horizon) % lag]


def theta(length: int, horizon: int, alpha: float, lag: int = 1) -> np.ndarray:
    """The Theta method (M3's winner): exponential smoothing plus half the linear trend of the
    (deseasonalised) window, ``b/2 * (k - 1 + 1/alpha)`` at step ``k``."""
    m = ses(length, horizon, alpha, lag)
    t = np.arange(length) - (length - 1) / 2
    slope = t / (t @ t)  # least-squares slope of the window
    if lag > 1:
        profile = _seasonal_profile(length, lag)
        phase = (np.arange(length) - length) % lag
        slope = slope @ (np.eye(length) - profile[phase])
    steps = np.arange(1, horizon + 1) - 1 + 1 / alpha
    return m + 0.5 * steps[:, None] * slope[None, :]


def seasonal_drift(length: int, horizon: int, lag: int) -> np.ndarray:
    """Seasonal naive plus the window's mean change from one season to the next, once per season
    ahead (a seasonal random walk with drift)."""
    if length < 2 * lag:
        raise ValueError(f"a seasonal drift needs two seasons in the window, {2 * lag}, got {length}")
    m = seasonal_naive(length, horizon, lag)
    change = np.zeros(length)  # mean of x[i] - x[i - lag] over the window
    change[-lag:] += 1.0 / (length - lag)
    change[:lag] -= 1.0 / (length - lag)
    seasons_ahead = np.arange(horizon) // lag + 1
    return m + seasons_ahead[:, None] * change[None, :]


def _recursion(length: int, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The matrix of a linear forecasting recursion: ``run`` maps windows ``(length, n)`` (one per
    column) to forecasts ``(horizon, n)`` linearly, so its answers on the unit windows are the
    columns of the matrix."""
    return run(np.eye(length))


def holt(length: int, horizon: int, alpha: float, beta: float, phi: float) -> np.ndarray:
    """Holt's linear trend, damped by ``phi`` (ETS(A,Ad,N) with fixed smoothing), started from the
    window's first two values."""

    def run(x: np.ndarray) -> np.ndarray:
        level, trend = x[0], x[1] - x[0]
        for t in range(1, length):
            previous = level
            level = alpha * x[t] + (1 - alpha) * (level + phi * trend)
            trend = beta * (level - previous) + (1 - beta) * phi * trend
        damped = np.cumsum(phi ** np.arange(1, horizon + 1))
        return level[None, :] + damped[:, None] * trend[None, :]

    return _recursion(length, run)


def holt_winters(
    length: int, horizon: int, lag: int, alpha: float, beta: float, gamma: float, phi: float
) -> np.ndarray:
    """Additive Holt-Winters with a damped trend (ETS(A,Ad,A) with fixed smoothing), started
    from a line plus a season fitted to the whole window and run from its second season on."""
    if length < 2 * lag:
        raise ValueError(f"Holt-Winters needs two seasons in the window, {2 * lag}, got {length}")

    # Started from the whole window, not its first season: a least-squares fit of a line plus
    # one mean per phase gives the trend, the level at the end of the first season and the
    # season (the first season alone is one noisy sample of it). Exact for a line plus a season.
    steps = np.arange(length)
    design = np.zeros((length, 1 + lag))
    design[:, 0] = steps
    design[steps, 1 + steps % lag] = 1.0
    fit = np.linalg.pinv(design)  # (1 + lag, length): slope, then the mean of each phase t % lag

    def run(x: np.ndarray) -> np.ndarray:
        coef = fit @ x  # (1 + lag, n)
        trend, phases = coef[0], coef[1:]
        centre = phases.mean(axis=0)
        season = list(phases - centre)  # season[t % lag] for t in the window
        level = centre + trend * (lag - 1)
        for t in range(lag, length):
            previous = level
            s = season[t % lag]
            level = alpha * (x[t] - s) + (1 - alpha) * (level + phi * trend)
            trend = beta * (level - previous) + (1 - beta) * phi * trend
            season[t % lag] = gamma * (x[t] - level) + (1 - gamma) * s
        damped = np.cumsum(phi ** np.arange(1, horizon + 1))
        ahead = [season[(length + k) % lag] for k in range(horizon)]
        return level[None, :] + damped[:, None] * trend[None, :] + np.stack(ahead)

    return _recursion(length, run)


def ridge(windows: np.ndarray, targets: np.ndarray, penalty: float) -> np.ndarray:
    """A linear forecast fitted by ridge regression on training windows (NLinear: relative to the
    last value, each window divided by its own spread).

    ``windows``: ``(n, length)``, ``targets``: ``(n, horizon)`` raw. Returns ``(horizon, length)``
    with rows summing to one, so it is scale-free like every other base.
    """
    n, length = windows.shape
    last = windows[:, -1:]
    spread = windows.std(axis=1, keepdims=True) + 1e-8
    x = (windows - last) / spread  # (n, length), last column zero
    y = (targets - last) / spread  # (n, horizon)
    gram = x.T @ x + penalty * n * np.eye(length) / length
    w = np.linalg.solve(gram, x.T @ y)  # (length, horizon)
    m = w.T.copy()
    m[:, -1] += 1.0 - m.sum(axis=1)  # forecast = last + W (x - last): rows sum to one
    return m


def fixed(length: int, horizon: int, season: int) -> Iterator[Base]:
    """The parameter-free and grid bases that fit this window and season."""
    yield Base("naive", naive(length, horizon))
    if length >= 3:
        yield Base("drift", drift(length, horizon))
    lags = [season] if 1 < season <= length else []
    for lag in lags:
        yield Base(f"seasonal_naive[{lag}]", seasonal_naive(length, horizon, lag))
        if length > lag:
            for phi in (0.5, 0.8, 0.9, 0.95, 0.99):
                yield Base(f"damped_seasonal[{lag}, {phi:g}]", damped_seasonal(length, horizon, lag, phi))
    for lag in lags:
        if length >= 2 * lag:
            yield Base(f"seasonal_drift[{lag}]", seasonal_drift(length, horizon, lag))
    for alpha, beta, phi in HOLT_GRID:
        yield Base(f"holt[{alpha:g}, {beta:g}, {phi:g}]", holt(length, horizon, alpha, beta, phi))
        for lag in lags:
            if length >= 2 * lag:
                for gamma in (0.1, 0.3):
                    name = f"holt_winters[{lag}, {alpha:g}, {beta:g}, {gamma:g}, {phi:g}]"
                    yield Base(name, holt_winters(length, horizon, lag, alpha, beta, gamma, phi))
    for alpha in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
        yield Base(f"ses[{alpha:g}]", ses(length, horizon, alpha))
        yield Base(f"theta[{alpha:g}]", theta(length, horizon, alpha))
        for lag in lags:
            if length >= 2 * lag:
                yield Base(f"seasonal_ses[{lag}, {alpha:g}]", ses(length, horizon, alpha, lag))
                yield Base(f"seasonal_theta[{lag}, {alpha:g}]", theta(length, horizon, alpha, lag))


def apply(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``matrix (horizon, length)`` on windows ``x (n, time >= length, targets)``
    -> ``(n, horizon, targets)``."""
    length = matrix.shape[1]
    return np.einsum("hl,nlt->nht", matrix, x[:, -length:].astype(np.float64))
