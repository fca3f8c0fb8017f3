"""Every cell x head: shapes, a short training run whose loss falls, and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.bundle.manifest import DAMPING_GRID, NetworkSpec
from service.bundle.predictor import OnnxPredictor
from training.bases import damped_seasonal
from training.config import Config, MachineConfig, TrainConfig
from training.data import load_dataset
from training.export import ExportError, check_parity, to_onnx
from training.models import Model, build_model, make_cell, model_spec, rebuild
from training.train import LOSSES, evaluate_loss, fit
from training.windows import make_windows, train_statistics

REPO = Path(__file__).resolve().parents[1]
CPU = MachineConfig(device="cpu", progress=False)


def make(network: NetworkSpec, n_features: int = 1, n_targets: int = 1, length: int = 24, horizon: int = 6,
         mean=None, std=None):  # fmt: skip
    """A Forecaster with features f0, f1, ... (the first ``n_targets`` are the targets)."""
    names = [f"f{i}" for i in range(n_features)]
    return build_model(model_spec(network, names, names[:n_targets], length, horizon), mean, std)


def parity(model: Model, onnx_bytes: bytes, windows: np.ndarray, scale: float):
    """check_parity through the serving predictor, as the trainer runs it."""
    return check_parity(model, OnnxPredictor.from_bytes(onnx_bytes, model.spec), windows, scale)


COMBOS = [
    ("rnn", "direct", "steps"),
    ("lstm", "direct", "steps"),
    ("gru", "direct", "steps"),
    ("lstm", "direct", "last"),
    ("rnn", "seq2seq", "steps"),
    ("lstm", "seq2seq", "steps"),
    ("gru", "seq2seq", "steps"),
    ("rnn", "shift", "steps"),
    ("lstm", "shift", "steps"),
    ("gru", "shift", "steps"),
    ("lstm", "mlp", "steps"),
]
IDS = [f"{c}-{h}-{r}" for c, h, r in COMBOS]


def tiny_config(cell: str = "lstm", head: str = "direct", readout: str = "steps", **model) -> Config:
    return Config.model_validate(
        {
            "data": {"path": str(REPO / "data" / "airline.csv")},
            "split": {"test": 12, "val": 12},
            "window": {"length": 24, "horizon": 6},
            "model": {"cell": cell, "head": head, "readout": readout, "hidden": 16, **model},
            "train": {"epochs": 2, "batch_size": 16, "lr": 0.01, "patience": 5},
            "machine": {"device": "cpu", "progress": False},
        }
    )


@pytest.fixture(scope="module")
def airline():
    cfg = tiny_config()
    ds = load_dataset(cfg.data)
    return ds, make_windows(ds, cfg.split, cfg.window)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("cell", "head", "readout"), COMBOS, ids=IDS)
def test_output_shape_for_any_batch_and_longer_history(cell, head, readout, layers):
    cfg = NetworkSpec(cell=cell, head=head, readout=readout, hidden=8, layers=layers, dropout=0.1)
    features = 2 if head == "shift" else 3  # the shift head reads its targets only
    model = make(cfg, n_features=features, n_targets=2, length=20, horizon=5).eval()
    for batch, time in [(1, 20), (9, 20)] + ([(4, 31)] if head != "mlp" else []):
        y = model(torch.randn(batch, time, features) * 50 + 10)
        assert y.shape == (batch, 5, 2)
        assert torch.isfinite(y).all()


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"unknown cell 'transformer'; choose one of \['gru', 'lstm', 'rnn'\]"
    ):
        make_cell("transformer", 1, 8, 1, 0.0)


def test_window_scaling_is_invariant_to_the_series_level():
    model = make(NetworkSpec(hidden=8), length=12, horizon=3).eval()
    x = torch.randn(4, 12, 1)
    with torch.no_grad():
        # shifting and scaling the input shifts and scales the forecast the same way
        torch.testing.assert_close(model(x * 1000 + 5000), model(x) * 1000 + 5000, rtol=1e-4, atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "head", "readout"), COMBOS, ids=IDS)
def test_two_epochs_reduce_the_loss_and_export_matches_torch(airline, cell, head, readout):
    ds, windows = airline
    cfg = tiny_config(cell, head, readout)
    mean, std = train_statistics(ds, cfg.split)
    model = make(cfg.model, 1, 1, cfg.window.length, cfg.window.horizon, mean, std)
    train = windows["train"]
    loss_fn = LOSSES[cfg.train.loss]
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    before = evaluate_loss(model, loss_fn, x, y)
    result = fit(model, train, windows["val"], cfg.train, CPU)
    after = evaluate_loss(model, loss_fn, x, y)
    assert len(result.history) == 2 and result.steps == 2 * int(np.ceil(len(train) / 16))
    assert after < before, f"training loss did not fall: {before:.4f} -> {after:.4f}"

    onnx_bytes = to_onnx(model, windows["test"].x)
    graph = onnx.load_from_string(onnx_bytes).graph
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["y"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert (dims[1].dim_param == "time") == (head != "mlp")
    checked = parity(model, onnx_bytes, windows["test"].x, float(np.std(train.y)))
    assert checked.max_abs_diff <= checked.allowed
    assert [c.split(":")[0] for c in checked.checks][:3] == [
        "batch 1 x time 24",
        "batch 7 x time 24",
        "batch 256 x time 24",
    ]


@pytest.mark.slow
def test_standard_scaling_round_trips_through_a_checkpoint(airline, tmp_path):
    ds, windows = airline
    cfg = tiny_config(scaling="standard")
    mean, std = train_statistics(ds, cfg.split)
    model = make(cfg.model, 1, 1, 24, 6, mean, std)
    fit(model, windows["train"], windows["val"], cfg.train, CPU)
    torch.save({"spec": model.spec.model_dump(mode="json"), "state": model.state_dict()}, tmp_path / "c.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    again = rebuild(payload["spec"], payload["state"]).eval()
    x = torch.from_numpy(windows["test"].x)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    np.testing.assert_allclose(again.scaler.mean.flatten().numpy(), mean)


@pytest.mark.slow
def test_parity_failure_refuses_the_export(airline):
    ds, windows = airline
    cfg = tiny_config()
    model = make(cfg.model, 1, 1, 24, 6).eval()
    onnx_bytes = to_onnx(model, windows["test"].x)
    with torch.no_grad():  # the torch model drifts after export: parity must fail loudly
        model.head.proj.bias.add_(1.0)
    with pytest.raises(ExportError, match=r"ONNX differs from PyTorch by .* at batch 1"):
        parity(model, onnx_bytes, windows["test"].x, 100.0)


@pytest.mark.slow
def test_dynamo_exporter_also_passes_parity(airline):
    ds, windows = airline
    model = make(tiny_config(head="mlp").model, 1, 1, 24, 6).eval()
    onnx_bytes = to_onnx(model, windows["test"].x, exporter="dynamo")
    parity(model, onnx_bytes, windows["test"].x, float(np.std(windows["train"].y)))
    out = OnnxPredictor.from_bytes(onnx_bytes, model.spec).predict(windows["test"].x[:3])
    assert out.shape == (3, 6, 1)


def test_train_config_defaults_clip_gradients():
    assert TrainConfig().clip_norm is not None


def test_scaling_none_is_the_identity_even_when_statistics_are_given():
    cfg = NetworkSpec(hidden=4, scaling="none")
    model = make(cfg, 1, 1, 6, 2, mean=[280.0], std=[120.0])
    x = torch.randn(3, 6, 1)
    xn, loc, scale = model.scaler(x)
    torch.testing.assert_close(xn, x)
    assert float(loc.abs().max()) == 0.0 and float(scale.min()) == 1.0


@pytest.mark.parametrize("head", ["direct", "mlp"])
@pytest.mark.parametrize("gate", [False, True])
def test_seasonal_base_starts_as_the_seasonal_naive(head, gate):
    cfg = NetworkSpec(head=head, hidden=8, base_lag=7, correction_gate=gate)
    model = make(cfg, n_features=2, n_targets=1, length=10, horizon=9).eval()
    x = torch.randn(3, 10, 2) * 50 + 10
    with torch.no_grad():
        y = model(x)
    steps = torch.arange(9) % 7  # step h repeats the value 7 - h % 7 steps before the end
    torch.testing.assert_close(y, x[:, -7:, :1][:, steps], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"head": "seq2seq", "base_lag": 7}, "not seq2seq"),  # its decoder would feed back corrections
        ({"correction_gate": True}, "correction_gate needs base_lag"),
    ],
)
def test_seasonal_base_options_that_cannot_work_are_refused(fields, reason):
    with pytest.raises(ValueError, match=reason):
        NetworkSpec(**fields)


def test_seasonal_base_needs_a_window_as_long_as_the_lag():
    with pytest.raises(ValueError, match="base_lag 48 needs window.length >= 48"):
        tiny_config(base_lag=48)


def _seasonal_arima_forecast(history: np.ndarray, lag: int, horizon: int, phi: float) -> np.ndarray:
    """The SARIMA(1,0,0)(0,1,0)[lag] forecast by its recursion: y^[t+k] = y^[t+k-lag] + phi^k e."""
    y = list(history)
    t = len(y) - 1
    error = y[t] - y[t - lag]
    for k in range(1, horizon + 1):
        y.append(y[t + k - lag] + phi**k * error)
    return np.array(y[t + 1 :])


@pytest.mark.parametrize("head", ["direct", "mlp"])
@pytest.mark.parametrize("scaling", ["window", "standard", "none"])
@pytest.mark.parametrize("horizon", [5, 16])  # within one season of 7, and beyond two
def test_damped_seasonal_base_starts_as_the_seasonal_arima_forecast(head, scaling, horizon):
    cfg = NetworkSpec(head=head, hidden=8, base_lag=7, base_damping=0.8, scaling=scaling)
    length = max(10, horizon)
    model = make(cfg, 2, 1, length=length, horizon=horizon, mean=[10.0, 0.0], std=[50.0, 1.0]).eval()
    x = torch.randn(3, length, 2, dtype=torch.float64).float() * 50 + 10
    with torch.no_grad():
        y = model(x)[..., 0].numpy()
    expected = np.stack([_seasonal_arima_forecast(row[:, 0].numpy(), 7, horizon, 0.8) for row in x])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-3)
    # phi = 0 is the plain seasonal naive
    model.set_base_damping(0.0)
    with torch.no_grad():
        steps = torch.arange(horizon) % 7
        torch.testing.assert_close(model(x), x[:, -7:, :1][:, steps], rtol=1e-5, atol=1e-3)


@pytest.mark.slow
def test_damped_base_exports_with_the_dynamo_exporter_too():
    windows = _seasonal_ar_windows(0.9, 200, seed=3)
    cfg = NetworkSpec(head="direct", hidden=8, base_lag=7, base_damping=0.9)
    model = make(cfg, 1, 1, length=15, horizon=6).eval()
    onnx_bytes = to_onnx(model, windows.x, exporter="dynamo")
    checked = parity(model, onnx_bytes, windows.x, float(np.std(windows.y)))  # incl. a longer history
    assert checked.max_abs_diff <= checked.allowed


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"base_damping": 0.9}, "base_damping needs base_lag"),
        ({"base_lag": 7, "base_damping": 1.5}, r"must lie in \[0, 1\]"),
        ({"base_lag": 7, "base_damping": -0.1}, r"must lie in \[0, 1\]"),
        ({"base_lag": 7, "base_damping": True}, "not a boolean"),
        ({"base_lag": 7, "base_damping": "fit"}, "base_damping"),
    ],
)
def test_base_damping_values_that_cannot_work_are_refused(fields, reason):
    with pytest.raises(ValueError, match=reason):
        NetworkSpec(**fields)


def test_base_damping_needs_one_step_more_than_the_lag():
    with pytest.raises(ValueError, match="base_lag \\+ 1 = 25"):
        tiny_config(base_lag=24, base_damping=0.9)  # window.length is 24
    tiny_config(base_lag=23, base_damping=0.9)
    with pytest.raises(ValueError, match="base_lag \\+ 1 = 8"):  # the spec checks it too
        make(NetworkSpec(base_lag=7, base_damping=0.9), 1, 1, length=7, horizon=3)


def _seasonal_ar_windows(phi: float, n: int, seed: int, length: int = 15, horizon: int = 6):
    """Windows of y[t] = y[t-7] + e[t], e an AR(1) with coefficient ``phi``: the series
    for which the damped seasonal base with that phi is the best forecast."""
    from training.windows import Windows

    rng = np.random.default_rng(seed)
    e = np.zeros(n + 300)
    for t in range(1, len(e)):
        e[t] = phi * e[t - 1] + rng.normal()
    y = np.tile(np.array([20.0, 25, 30, 28, 22, 10, 8]), len(e) // 7 + 1)[: len(e)] * 3
    for t in range(7, len(y)):
        y[t] = y[t - 7] + e[t]
    y = y[300:]
    origins = np.arange(length, n - horizon + 1)
    x = np.stack([y[o - length : o] for o in origins])[..., None].astype(np.float32)
    target = np.stack([y[o : o + horizon] for o in origins])[..., None].astype(np.float32)
    return Windows(x=x, y=target, series=np.zeros(len(origins), dtype=np.int64), origin=origins)


@pytest.mark.slow
def test_base_damping_auto_picks_the_damping_of_the_data_and_keeps_it():
    train = _seasonal_ar_windows(0.9, 400, seed=0)
    val = _seasonal_ar_windows(0.9, 300, seed=1)
    cfg = NetworkSpec(head="mlp", hidden=8, base_lag=7, base_damping="auto")
    model = make(cfg, 1, 1, length=15, horizon=6)
    # lr 1e-12: no epoch can beat epoch 0, so fit must return the base with the phi it chose
    train_cfg = TrainConfig(epochs=2, lr=1e-12, validate_initial=True, loss="mse")
    result = fit(model, train, val, train_cfg, CPU)
    chosen = model.spec.network.base_damping  # what fit left in the model's spec
    assert chosen in (0.8, 0.9, 0.93, 0.95)
    expected = damped_seasonal(15, 6, 7, chosen)
    np.testing.assert_allclose(model.base_matrix.numpy(), expected, atol=1e-6)  # the graph's base too
    assert result.best_epoch == 0
    # the choice is the grid's best on validation, and far better than the plain seasonal naive
    losses = {}
    for phi in DAMPING_GRID:
        model.set_base_damping(phi)
        losses[phi] = evaluate_loss(model, LOSSES["mse"], torch.from_numpy(val.x), torch.from_numpy(val.y))
    assert min(losses, key=losses.__getitem__) == chosen
    assert losses[chosen] < 0.8 * losses[0.0]


@pytest.mark.slow
def test_damped_base_exports_with_parity_and_round_trips(tmp_path):
    windows = _seasonal_ar_windows(0.9, 300, seed=2)
    cfg = NetworkSpec(head="direct", hidden=8, base_lag=7, base_damping="auto")
    model = make(cfg, 1, 1, length=15, horizon=6)
    model.set_base_damping(0.93)  # as "auto" would set it
    torch.nn.init.normal_(model.head.last_layer().weight, std=0.1)  # a non-zero correction too
    model.eval()
    onnx_bytes = to_onnx(model, windows.x)
    checked = parity(model, onnx_bytes, windows.x, float(np.std(windows.y)))
    assert checked.max_abs_diff <= checked.allowed
    torch.save({"spec": model.spec.model_dump(mode="json"), "state": model.state_dict()}, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    again = rebuild(payload["spec"], payload["state"]).eval()
    torch.testing.assert_close(again.base_matrix, model.base_matrix)  # phi 0.93, not the config's "auto"
    assert again.spec == model.spec and again.spec.network.base_damping == 0.93
    x = torch.from_numpy(windows.x)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


@pytest.mark.slow
def test_validate_initial_keeps_untrained_weights_when_no_epoch_improves(airline):
    ds, windows = airline
    cfg = tiny_config(base_lag=12)
    train_cfg = cfg.train.model_copy(update={"validate_initial": True, "lr": 1e-12})
    model = make(cfg.model, 1, 1, cfg.window.length, cfg.window.horizon)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, windows["train"], windows["val"], train_cfg, CPU)
    assert result.best_epoch == 0 and len(result.history) == 2
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


@pytest.mark.slow
@pytest.mark.parametrize(("lag", "damping"), [(None, None), (12, None), (12, "auto")])
def test_seed_ensemble_averages_members_exports_and_round_trips(airline, tmp_path, lag, damping):
    from training.pipeline import train_run

    cfg = tiny_config(base_lag=lag, base_damping=damping).model_copy(deep=True)
    cfg.train.ensemble = 3
    run = train_run(cfg)
    model = run.model
    assert len(model.members) == 3 and model.spec.ensemble == 3
    x = torch.from_numpy(windows_x := run.windows["test"].x)
    with torch.no_grad():
        mean = torch.stack([m(x) for m in model.members]).mean(dim=0)
        torch.testing.assert_close(model(x), mean)
        # members differ: they were trained from seeds 0, 1, 2
        assert not torch.allclose(model.members[0](x), model.members[1](x))
    onnx_bytes = to_onnx(model, windows_x)
    checked = parity(model, onnx_bytes, windows_x, float(np.std(run.windows["train"].y)))
    assert checked.max_abs_diff <= checked.allowed
    torch.save({"spec": model.spec.model_dump(mode="json"), "state": model.state_dict()}, tmp_path / "e.pt")
    payload = torch.load(tmp_path / "e.pt", weights_only=True)
    again = rebuild(payload["spec"], payload["state"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    # Published, it says what it is, and the service's predictor serves the average.
    from service.bundle import store
    from service.bundle.predictor import OnnxPredictor
    from training.pipeline import publish_run

    bundle = publish_run(run, tmp_path / "models")
    spec = store.load_manifest(bundle).spec
    assert spec == model.spec
    assert (spec.ensemble, spec.network.base_lag) == (3, lag)
    if damping is None:
        assert spec.network.base_damping is None
    else:  # the phi the members chose (all the same: the choice precedes training)
        phis = {m.spec.network.base_damping for m in model.members}
        assert len(phis) == 1 and spec.network.base_damping == phis.pop() != "auto"
    served = OnnxPredictor.load(bundle).predict(windows_x)
    with torch.no_grad():
        np.testing.assert_allclose(served, model(x).numpy(), rtol=1e-4, atol=1e-3)


def test_a_hand_written_base_alone_trains_without_weights():
    # head "none" with base_lag: nothing to learn but the damping, and fit must say so, not crash
    train = _seasonal_ar_windows(0.9, 200, seed=0)
    val = _seasonal_ar_windows(0.9, 120, seed=1)
    model = make(NetworkSpec(head="none", base_lag=7, base_damping="auto"), 1, 1, length=15, horizon=6)
    result = fit(model, train, val, TrainConfig(epochs=5), CPU)
    assert result.history == [] and np.isfinite(result.best_val)
    assert model.spec.network.base_damping in DAMPING_GRID


@pytest.mark.slow
def test_parity_allows_float32_rounding_at_the_values_magnitude():
    """A series that sits far from zero (a lake level at 10,000 +- 0.3): onnxruntime and PyTorch
    round differently in float32, by an ulp of the values' magnitude (0.001 here), which is more than
    1e-4 of their spread: such a model could never be exported. An export bug is off by a share of
    the spread itself, and is still refused."""
    rng = np.random.default_rng(0)
    level = 10_000 + np.cumsum(rng.normal(0, 0.05, size=(64, 24 + 6)), axis=1)  # (windows, time)
    x = level[:, :24, None].astype(np.float32)
    torch.manual_seed(0)
    model = make(NetworkSpec(cell="gru", head="direct", hidden=32, scaling="window"), 1, 1, 24, 6).eval()
    with torch.no_grad():  # trained-looking weights: larger than at initialisation
        for p in model.parameters():
            p.mul_(4.0)
    onnx_bytes = to_onnx(model, x)
    spread = float(np.std(level[:, 24:]))
    result = parity(model, onnx_bytes, x, spread)
    assert result.max_abs_diff <= result.allowed
    with torch.no_grad():  # a real mismatch, the size of the spread: still refused
        model.head.proj.bias.add_(1.0)
    with pytest.raises(ExportError, match="ONNX differs from PyTorch"):
        parity(model, onnx_bytes, x, spread)
