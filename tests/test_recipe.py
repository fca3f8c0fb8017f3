"""The automatic recipe: splits resolved from the data, selection on rolling validation, guard
rails, and every kind of candidate exported as one ONNX graph that matches torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from service.bundle.manifest import Manifest
from service.bundle.predictor import OnnxPredictor
from training import bases, recipe
from training.config import Config
from training.data import DataError, load_dataset
from training.export import check_parity, to_onnx
from training.pipeline import export_run, train_run
from training.windows import make_windows

QUICK_TRAIN = {"epochs": 20, "patience": 5}


def _csv(tmp_path: Path, name: str, values: np.ndarray, monthly: bool = False) -> Path:
    stamps = (
        pd.date_range("1990-01-01", periods=len(values), freq="MS") if monthly else np.arange(len(values))
    )
    path = tmp_path / f"{name}.csv"
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)
    return path


def _config(path: Path, horizon: int, **sections: dict) -> Config:
    return Config.model_validate(
        {"data": {"path": path}, "window": {"horizon": horizon}, "machine": {"progress": False}, **sections}
    )


def _random_walk(n: int = 300, seed: int = 0) -> np.ndarray:
    return 100 + np.cumsum(np.random.default_rng(seed).normal(size=n))


def _seasonal(n: int = 240, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * t / 12) + 0.05 * t + np.random.default_rng(seed).normal(size=n)


def _logistic_map(n: int = 400) -> np.ndarray:
    """Deterministic chaos: x' = 3.9 x (1 - x). No linear forecast follows it; a small network can."""
    x = np.empty(n)
    x[0] = 0.3
    for t in range(1, n):
        x[t] = 3.9 * x[t - 1] * (1 - x[t - 1])
    return 10 + 5 * x


# --- what follows from the data -------------------------------------------------------------


def test_a_config_with_only_data_and_horizon_resolves_splits_and_window(tmp_path):
    cfg = _config(_csv(tmp_path, "s", _seasonal(), monthly=True), 6)
    assert cfg.model is None and cfg.split.test is None and cfg.window.length is None
    ds = load_dataset(cfg.data)
    resolved = recipe.resolve(cfg, ds, 12)
    assert resolved.split.test == 6  # one horizon, as in the M4 protocol
    assert resolved.split.val == 6 + recipe.VAL_ORIGINS - 1  # VAL_ORIGINS rolling origins
    assert resolved.window.length == 60  # five seasons: the linear candidates try 24, 36 and 60
    windows = make_windows(ds, resolved.split, resolved.window)
    assert len(windows["val"]) == recipe.VAL_ORIGINS
    assert len(windows["test"]) == 1


def test_short_series_get_a_shorter_validation_and_window_but_still_train(tmp_path):
    # 60 quarters with a 2-year horizon: fewer validation origins, nothing overlaps the test split
    cfg = _config(_csv(tmp_path, "q", _seasonal(60), monthly=True), 8)
    ds = load_dataset(cfg.data)
    resolved = recipe.resolve(cfg, ds, 4)
    test, val, length = resolved.split.test, resolved.split.val, resolved.window.length
    assert test == 8 and length is not None and val is not None
    assert 16 <= val < 8 + recipe.VAL_ORIGINS - 1 and 5 <= length <= 16
    assert 60 - test - val - length - 8 + 1 >= recipe.MIN_TRAIN_WINDOWS


def test_a_series_too_short_for_the_horizon_is_a_clear_error(tmp_path):
    cfg = _config(_csv(tmp_path, "tiny", _random_walk(20)), 8)
    with pytest.raises(DataError, match="20 points: too short for horizon 8"):
        recipe.resolve(cfg, load_dataset(cfg.data), 1)


# --- selection ---------------------------------------------------------------------------------


def _val_forecast_scores_as_chosen(run) -> None:
    """The validation forecasts kept are those the choice was made on, and the interval
    calibration forecasts every window before the test split with the same model."""
    choice = run.choice
    val = recipe.Validation(run.windows["val"], recipe._scales(run.dataset, run.config.split, run.season))
    assert choice.val_forecast.shape == run.windows["val"].y.shape
    chosen = next(c for c in choice.candidates if c.name == choice.chosen)
    assert val.score(choice.chosen, choice.val_forecast) == pytest.approx(chosen.score, rel=1e-5)
    cal = choice.calibration
    train, valid = run.windows["train"], run.windows["val"]
    assert len(cal.windows) == len(train) + len(valid)  # every origin before the test split
    np.testing.assert_array_equal(cal.windows.x, np.concatenate([train.x, valid.x]))
    np.testing.assert_array_equal(cal.windows.y, np.concatenate([train.y, valid.y]))
    assert cal.forecast.shape == cal.windows.y.shape
    # its validation rows are the forecasts the choice was made on
    np.testing.assert_allclose(cal.forecast[len(train) :], choice.val_forecast, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_random_walk_keeps_the_last_value_and_train_says_so(tmp_path):
    run = train_run(_config(_csv(tmp_path, "rw", _random_walk()), 3, train=QUICK_TRAIN))
    assert run.choice is not None
    assert run.choice.chosen == "naive"
    assert run.choice.baseline_won
    assert "kept a baseline, naive" in recipe.verdict(run.choice)
    # the published forecast is the last value, repeated
    x = run.windows["test"].x
    np.testing.assert_allclose(
        run.model(torch.from_numpy(x)).detach().numpy()[0, :, 0], x[0, -1, 0], rtol=1e-5
    )


@pytest.mark.slow
def test_a_seasonal_series_gets_a_seasonal_model_better_than_the_baselines(tmp_path):
    run = train_run(_config(_csv(tmp_path, "season", _seasonal(), monthly=True), 6, train=QUICK_TRAIN))
    choice = run.choice
    assert choice is not None and not choice.baseline_won
    assert "[12" in choice.chosen  # a seasonal base (lag 12) is, or is part of, the winner
    chosen = next(c for c in choice.candidates if c.name == choice.chosen)
    assert chosen.score < choice.baseline * (1 - recipe.BASELINE_MARGIN)
    assert choice.candidates[0].score <= chosen.score  # ranked best first
    assert {"naive", "seasonal_naive[12]"} <= {c.name for c in choice.candidates}
    _val_forecast_scores_as_chosen(run)


@pytest.mark.slow
def test_a_strongly_nonlinear_series_gets_a_network(tmp_path):
    run = train_run(
        _config(_csv(tmp_path, "chaos", _logistic_map()), 1, train={"epochs": 60, "patience": 15})
    )
    choice = run.choice
    assert choice is not None
    kinds = {c.name: c.kind for c in choice.candidates}
    assert kinds[choice.chosen] == "network", recipe.table(choice)
    best_linear = min(c.score for c in choice.candidates if c.kind != "network")
    assert next(c.score for c in choice.candidates if c.name == choice.chosen) < 0.7 * best_linear
    _val_forecast_scores_as_chosen(run)


def _scored(val: recipe.Validation, name: str, pred: np.ndarray) -> recipe.Scored:
    return recipe.Scored(name, "base", val.score(name, pred))


def test_a_candidate_ahead_by_less_than_its_noise_is_not_clearly_better():
    from training.windows import Windows

    n, horizon = 48, 3
    windows = Windows(
        x=np.zeros((n, 4, 1), np.float32),
        y=np.zeros((n, horizon, 1), np.float32),
        series=np.zeros(n, np.int64),
        origin=np.arange(n, dtype=np.int64),
    )
    val = recipe.Validation(windows, np.ones((1, 1)))
    ones = np.ones((n, horizon, 1))
    baseline = _scored(val, "baseline", ones)  # error 1 in every window
    # 3 % ahead on average, but +-50 % from one block of windows to the next: noise
    swing = np.repeat(np.where(np.arange(n // horizon) % 2 == 0, 0.47, -0.53), horizon)[:, None, None]
    lucky = _scored(val, "lucky", ones * (1 + swing))
    assert lucky.score < baseline.score * 0.98
    assert val.standard_error("lucky", "baseline") > baseline.score - lucky.score
    assert not val.clearly_better(lucky, baseline, recipe.BASELINE_MARGIN)
    steady = _scored(val, "steady", ones * 0.97)  # 3 % ahead in every window
    assert val.clearly_better(steady, baseline, recipe.BASELINE_MARGIN)
    assert not val.clearly_better(_scored(val, "close", ones * 0.995), baseline, recipe.BASELINE_MARGIN)


def test_a_network_ahead_in_one_half_of_validation_only_is_not_better_in_both():
    from training.windows import Windows

    n, horizon = 24, 6  # two series, 12 origins each; their older halves come first in time
    windows = Windows(
        x=np.zeros((n, 4, 1), np.float32),
        y=np.zeros((n, horizon, 1), np.float32),
        series=np.repeat([0, 1], n // 2),
        origin=np.tile(np.arange(n // 2), 2),
    )
    val = recipe.Validation(windows, np.ones((2, 1)))
    older = np.tile(np.arange(n // 2) < n // 4, 2)[:, None, None]
    ones = np.ones((n, horizon, 1))
    base = _scored(val, "base", ones)
    one_half = _scored(val, "one_half", np.where(older, 0.5, 1.02) * ones)  # 24 % ahead on average
    steady = _scored(val, "steady", 0.9 * ones)
    assert one_half.score < steady.score < base.score
    assert not val.better_in_both_halves("one_half", "base")
    assert val.better_in_both_halves("steady", "base")


def test_halving_the_correction_publishes_the_mean_of_network_and_base():
    from service.bundle.manifest import NetworkSpec
    from training.models import build_model, model_spec

    network = NetworkSpec(cell="gru", head="direct", hidden=8, base="drift")
    spec = model_spec(network, ["value"], ["value"], 12, 3, None)
    model = build_model(spec, np.zeros(1), np.ones(1))
    model.set_base("drift", bases.drift(12, 3))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.from_numpy(_seasonal(60)[None, -12:, None].astype(np.float32))
    with torch.no_grad():
        full = model(x).numpy()
        base = bases.apply(bases.drift(12, 3), x.numpy())
        recipe.halve_correction(model)
        half = model(x).numpy()
    assert not np.allclose(full, base, atol=1e-2)
    np.testing.assert_allclose(half, (full + base) / 2, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_a_window_too_long_for_a_network_gets_the_linear_candidates_and_says_why(tmp_path):
    length = recipe.NETWORK_MAX_LENGTH + 4
    path = _csv(tmp_path, "long", _seasonal(length + 200))
    run = train_run(_config(path, 4, window={"length": length, "horizon": 4}))
    choice = run.choice
    assert choice is not None
    assert not any(c.kind == "network" for c in choice.candidates)
    assert any(f"a window of {length} steps" in note for note in choice.notes), choice.notes


def _parts(name: str) -> list[str]:
    """``"mean(a[1, 2], log b)"`` -> ``["a[1, 2]", "log b"]``: split at the top level only."""
    parts, depth, current = [], 0, ""
    for ch in name[len("mean(") : -1]:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


@pytest.mark.slow
def test_swings_that_grow_with_the_level_get_a_combination_on_the_logarithms(tmp_path, monkeypatch):
    # airline-like: a trend and a season multiplied together, noise in proportion
    t = np.arange(180)
    rng = np.random.default_rng(1)
    values = np.exp(4.5 + 0.012 * t + 0.2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.03, len(t)))
    monkeypatch.setattr(recipe, "NETWORK_CELLS", ())  # the linear choice is what is tested here
    run = train_run(_config(_csv(tmp_path, "growing", values, monthly=True), 12))
    choice = run.choice
    assert choice is not None and not choice.baseline_won
    combinations = [c for c in choice.candidates if c.kind == "combination"]
    spaces = {tuple(sorted({p.startswith("log ") for p in _parts(c.name)})) for c in combinations}
    assert spaces == {(False,), (True,), (False, True)}  # raw only, logs only, mixed: all scored
    raw_only = next(c for c in combinations if not any(p.startswith("log ") for p in _parts(c.name)))
    assert raw_only.score == max(c.score for c in combinations)  # additive swings fit worst
    assert run.model.spec.network.log_share > 0.5  # the published base leans on the logarithms


# --- export of every candidate kind ------------------------------------------------------------


@pytest.mark.slow
def test_the_manifest_and_report_record_every_candidate(tmp_path):
    run = train_run(_config(_csv(tmp_path, "season", _seasonal(), monthly=True), 6, train=QUICK_TRAIN))
    exported = export_run(run)
    manifest = Manifest.model_validate_json(exported.manifest.model_dump_json())
    assert manifest.selection is not None and run.choice is not None
    assert manifest.selection.chosen == run.choice.chosen
    assert len(manifest.selection.candidates) == len(run.choice.candidates)
    assert manifest.spec.network.base is not None and manifest.spec.network.base in run.choice.chosen
    text = exported.files["report/selection.txt"].decode()
    assert run.choice.chosen in text and "validation windows" in text
    # intervals calibrated on every window before the test split, for every step
    windows = len(run.windows["train"]) + len(run.windows["val"])
    assert manifest.intervals is not None and manifest.intervals.windows == windows
    assert manifest.intervals.errors == windows * 6
    assert manifest.intervals.shape == (6, 1) and manifest.intervals.positive


@pytest.mark.parametrize("kind", ["base", "combination", "ridge", "network", "log"])
def test_every_candidate_kind_exports_with_parity(tmp_path, kind):
    from service.bundle.manifest import NetworkSpec
    from training.models import build_model, model_spec
    from training.windows import train_statistics

    cfg = _config(_csv(tmp_path, "season", _seasonal(), monthly=True), 6)
    cfg = recipe.resolve(cfg, load_dataset(cfg.data), 12)
    ds = load_dataset(cfg.data)
    windows = make_windows(ds, cfg.split, cfg.window)
    length, horizon = cfg.window.length, cfg.window.horizon
    assert length is not None
    every = recipe.linear_candidates(windows["train"], length, horizon, [12])
    name = {
        "base": "damped_seasonal[12, 0.9]",
        "combination": "mean(seasonal_theta[12, 0.3], drift)",
        "ridge": "ridge[1]",
        "network": "seasonal_naive[12]",
        "log": "holt_winters[12, 0.5, 0.05, 0.1, 0.98]",
    }[kind]
    matrix = (
        np.mean([every["seasonal_theta[12, 0.3]"], every["drift"]], axis=0)
        if kind == "combination"
        else every[name]
    )
    if kind == "network":
        network = NetworkSpec(cell="gru", head="direct", hidden=8, base=name)
    elif kind == "log":  # half the base forecasts the logarithms; the graph takes and returns raw values
        network = NetworkSpec(head="none", base=f"mean({name}, log {name})", log_share=0.5)
    else:
        network = NetworkSpec(head="none", base=name)
    mean, std = train_statistics(ds, cfg.split)
    model = build_model(
        model_spec(network, ds.features, ds.targets, length, horizon, ds.frequency), mean, std
    )
    if kind == "log":
        model.set_base(f"mean({name}, log {name})", matrix, log_matrix=matrix)
    else:
        model.set_base(name, matrix)
    if kind == "network":  # a trained-looking correction: weights that are not zero
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    x = windows["test"].x
    onnx_bytes = to_onnx(model, x)
    predictor = OnnxPredictor.from_bytes(onnx_bytes, model.spec)
    real = np.concatenate([x, windows["val"].x])
    check_parity(model, predictor, real, float(np.std(windows["train"].y)))
    if kind == "log":
        expected = 0.5 * bases.apply(matrix, real[..., :1]) + 0.5 * np.exp(
            bases.apply(matrix, np.log(real[..., :1]))
        )
    else:
        expected = bases.apply(matrix, real[..., :1])
    got = predictor.predict(real)
    if kind == "network":
        assert not np.allclose(got, expected, atol=1e-3)  # the correction is in the graph
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)  # the base is the forecast


# --- backtest -------------------------------------------------------------------------------


@pytest.mark.slow
def test_backtest_trains_at_each_earlier_origin_and_forecasts_what_came_next(tmp_path, capsys):
    from training import backtest
    from training.cli import main

    path = _csv(tmp_path, "season", _seasonal(), monthly=True)
    cfg = _config(path, 6, train=QUICK_TRAIN)
    results = backtest.run_backtest(cfg, origins=2)
    assert [r.dropped for r in results] == [0, 6]
    full = load_dataset(cfg.data).series[0]
    stamps = [str(t) for t in full.timestamps]
    # origin 0 forecasts the last 6 points; origin 1 the 6 before them, from 6 points less
    assert results[0].stamps == stamps[-6:] and results[1].stamps == stamps[-12:-6]
    assert results[1].last == stamps[-13]
    for r in results:
        assert r.metrics.windows == 1 and r.metrics.model.mase is not None
        assert (
            r.metrics.model.mase < r.metrics.naive.mase
        )  # a seasonal series: the recipe beats the last value
    text = backtest.table(results)
    assert "mean of 2 origins" in text and results[1].last[:10] in text

    toml = tmp_path / "bt.toml"
    toml.write_text(f'[data]\npath = "{path.name}"\n[window]\nhorizon = 6\n[train]\nepochs = 5\n')
    assert (
        main(["backtest", "--config", str(toml), "--origins", "1", "--out", str(tmp_path / "bt"), "-q"]) == 0
    )
    assert "mean of 1 origins" in capsys.readouterr().out
    assert (tmp_path / "bt" / "forecasts.png").stat().st_size > 1000
    assert (tmp_path / "bt" / "table.txt").read_text().startswith("last seen")


def test_a_panel_report_scores_every_series(tmp_path):
    from service.bundle.manifest import NetworkSpec
    from training.evaluate import per_series_table
    from training.models import model_spec

    frames = []
    for k in range(3):  # long layout: three series, the last one shorter
        values = _seasonal(120 - 20 * (k == 2), seed=k)
        stamps = pd.date_range("2000-01-01", periods=len(values), freq="MS")
        frames.append(pd.DataFrame({"timestamp": stamps, "series_id": f"s{k}", "value": values}))
    path = tmp_path / "panel.csv"
    pd.concat(frames).to_csv(path, index=False)
    cfg = _config(path, 6)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"layout": "long"})})
    ds = load_dataset(cfg.data)
    cfg = recipe.resolve(cfg, ds, 12)
    spec = model_spec(NetworkSpec(head="none", base="naive"), ds.features, ds.targets, 24, 6, ds.frequency)

    class LastValue:  # the model: the last value, so its column must equal naive's
        def __init__(self) -> None:
            self.spec = spec

        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.repeat(x[:, -1:, :1], 6, axis=1)

    text = per_series_table(LastValue(), ds, cfg.split, 12)
    rows = [line.split() for line in text.splitlines()[1:4]]
    assert [r[0] for r in rows] == ["s0", "s1", "s2"]
    for r in rows:
        assert r[1] == r[2] and float(r[3]) < float(r[1])  # = naive; the seasonal naive is better
    assert "on 0 of 3 series" in text
