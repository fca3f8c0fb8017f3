"""The linear bases forecast what their textbook recursions forecast, and stay scale-free."""

from __future__ import annotations

import numpy as np
import pytest

from training import bases

RNG = np.random.default_rng(7)
LENGTH, HORIZON = 30, 9


def _window(length: int = LENGTH) -> np.ndarray:
    return np.cumsum(RNG.normal(size=length)) + 50.0


def _every_base(length: int = LENGTH, horizon: int = HORIZON, season: int = 4) -> list[bases.Base]:
    return list(bases.fixed(length, horizon, season))


def test_every_fixed_base_has_rows_summing_to_one_and_commutes_with_rescaling():
    x = _window()
    found = _every_base()
    assert {"naive", "drift", "seasonal_naive[4]"} <= {b.name for b in found}
    for b in found:
        assert b.matrix.shape == (HORIZON, LENGTH), b.name
        np.testing.assert_allclose(b.matrix.sum(axis=1), 1.0, atol=1e-9, err_msg=b.name)
        # B (a x + c) = a B x + c: what lets a base read the graph's normalised window
        np.testing.assert_allclose(
            b.matrix @ (3.0 * x - 7.0), 3.0 * (b.matrix @ x) - 7.0, rtol=1e-9, atol=1e-7
        )


def test_naive_seasonal_naive_and_drift_are_their_definitions():
    x = _window()
    np.testing.assert_array_equal(bases.naive(LENGTH, HORIZON) @ x, np.full(HORIZON, x[-1]))
    lag = 4
    expected = np.array([x[LENGTH - lag + k % lag] for k in range(HORIZON)])
    np.testing.assert_allclose(bases.seasonal_naive(LENGTH, HORIZON, lag) @ x, expected)
    step = (x[-1] - x[0]) / (LENGTH - 1)
    np.testing.assert_allclose(bases.drift(LENGTH, HORIZON) @ x, x[-1] + step * np.arange(1, HORIZON + 1))


def test_damped_seasonal_is_the_seasonal_arima_recursion():
    x, lag, phi = _window(), 4, 0.8
    history, error = list(x), x[-1] - x[-1 - lag]
    for k in range(1, HORIZON + 1):  # y[t+k] = y[t+k-lag] + phi^k e, e carried by the seasonal difference
        history.append(history[-lag] + phi**k * error)
    np.testing.assert_allclose(
        bases.damped_seasonal(LENGTH, HORIZON, lag, phi) @ x, history[LENGTH:], rtol=1e-9
    )


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_ses_is_the_exponential_smoothing_recursion(alpha):
    x = _window()
    level = x[0]
    for value in x[1:]:
        level = alpha * value + (1 - alpha) * level
    np.testing.assert_allclose(bases.ses(LENGTH, HORIZON, alpha) @ x, np.full(HORIZON, level), rtol=1e-9)


def test_theta_adds_half_the_window_trend_to_the_smoothed_level():
    t = np.arange(LENGTH, dtype=float)
    x = 2.0 * t + 5.0  # a line: the level lags it, theta's half-slope drift points along it
    alpha = 0.5
    ses = bases.ses(LENGTH, HORIZON, alpha) @ x
    theta = bases.theta(LENGTH, HORIZON, alpha) @ x
    steps = np.arange(1, HORIZON + 1) - 1 + 1 / alpha
    np.testing.assert_allclose(theta - ses, 0.5 * 2.0 * steps, rtol=1e-9)


def test_seasonal_ses_restores_a_pure_season_exactly():
    lag = 6
    season = np.sin(2 * np.pi * np.arange(LENGTH) / lag) * 10 + 100
    forecast = bases.ses(LENGTH, HORIZON, 0.3, lag) @ season
    expected = season[LENGTH - lag + np.arange(HORIZON) % lag]
    np.testing.assert_allclose(forecast, expected, atol=1e-9)


@pytest.mark.parametrize("alpha,beta,gamma", [(0.2, 0.05, 0.1), (0.8, 0.2, 0.3)])
def test_holt_winters_continues_a_line_plus_a_season_exactly(alpha, beta, gamma):
    # Started from a fit to the whole window, the undamped recursion has nothing to correct on
    # a line plus a season: every smoothing setting forecasts it exactly.
    lag, length = 6, 27  # not a whole number of seasons: the phases still line up
    t = np.arange(length + HORIZON)
    series = 50 + 0.7 * t + 10 * np.sin(2 * np.pi * t / lag) + 3 * np.cos(4 * np.pi * t / lag)
    m = bases.holt_winters(length, HORIZON, lag, alpha, beta, gamma, phi=1.0)
    np.testing.assert_allclose(m @ series[:length], series[length:], atol=1e-8)


def test_holt_winters_smooths_what_a_first_season_start_would_copy():
    # Noise in the first season used to become the season forever (gamma small): started from
    # the whole window it is averaged with every other season's.
    rng = np.random.default_rng(3)
    lag, length, horizon = 12, 60, 12
    t = np.arange(length + horizon)
    clean = 100 + 10 * np.sin(2 * np.pi * t / lag)
    errors = []
    for _ in range(200):
        noisy = clean[:length] + rng.normal(0, 3, length)
        m = bases.holt_winters(length, horizon, lag, 0.2, 0.05, 0.1, 0.98)
        errors.append(np.abs(m @ noisy - clean[length:]).mean())
    assert np.mean(errors) < 1.75  # measured: 1.49; started from the first season, 2.05


def test_ridge_learns_a_linear_rule_and_keeps_rows_summing_to_one():
    # y[t+k] = last + k * (last - previous): a rule ridge can represent exactly
    n = 400
    windows = RNG.normal(size=(n, LENGTH)).cumsum(axis=1)
    step = windows[:, -1:] - windows[:, -2:-1]
    targets = windows[:, -1:] + step * np.arange(1, HORIZON + 1)
    m = bases.ridge(windows, targets, penalty=1e-6)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(windows @ m.T, targets, atol=1e-3)


def test_apply_maps_every_target_of_every_window():
    m = bases.drift(LENGTH, HORIZON)
    x = RNG.normal(size=(5, LENGTH + 3, 2))  # a longer history: the base reads the last LENGTH steps
    out = bases.apply(m, x)
    assert out.shape == (5, HORIZON, 2)
    np.testing.assert_allclose(out[3, :, 1], m @ x[3, -LENGTH:, 1])


def test_a_lag_longer_than_the_window_is_refused():
    with pytest.raises(ValueError, match="window of at least"):
        bases.seasonal_naive(5, 3, 6)
    assert not any(b.name.startswith("seasonal") for b in bases.fixed(5, 3, 6))
