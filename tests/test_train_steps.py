"""The training step's options (``training.steps``): bf16 autocast, static batches for a CUDA
graph, and the whole step captured in a CUDA graph.

bf16 and the batching rules run here on the CPU. The CUDA graph itself needs a GPU: those tests
run on one (``bench/gpu_check.sh`` runs them) and are skipped, not passed, on a CPU machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from service.bundle import store
from service.bundle.manifest import NetworkSpec
from training import steps
from training import train as train_mod
from training.cli import main
from training.config import MachineConfig, TrainConfig
from training.models import build_model, model_spec
from training.train import LOSSES, fit, use_graph
from training.windows import Windows

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.toml"
FAST = ["--epochs", "3", "--set", "model.hidden=8", "--set", "machine.progress=false"]
L, H = 8, 4  # input window and horizon of the tiny windows


def _tiny(n: int, seed: int) -> Windows:
    """``n`` windows of noise, x: ``(n, L, 1)``; y: ``(n, H, 1)``, half the last H inputs."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, L, 1)).astype(np.float32)
    y = (0.5 * x[:, -H:]).astype(np.float32)
    return Windows(x=x, y=y, series=np.zeros(n, dtype=np.int64), origin=np.arange(n, dtype=np.int64))


def _fit(
    train: Windows, val: Windows, network: dict[str, Any], options: dict[str, Any], machine: MachineConfig
):
    torch.manual_seed(0)  # the same initial weights for every run
    spec = model_spec(NetworkSpec.model_validate({"scaling": "none", **network}), ["x"], ["x"], L, H)
    model = build_model(spec)
    cfg = TrainConfig.model_validate({"loss": "mse", **options})
    return model, fit(model, train, val, cfg, machine)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bench/gpu_check.sh)")


def test_static_batches_are_all_full_and_a_short_order_is_one_batch() -> None:
    order = torch.arange(10)
    assert [b.tolist() for b in steps.batches(order, 4, static=False)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.tolist() for b in steps.batches(order, 4, static=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [len(b) for b in steps.batches(order, 32, static=True)] == [10]
    assert [len(b) for b in steps.batches(order, 5, static=True)] == [5, 5]


def test_a_graph_is_used_only_on_a_gpu_in_one_process_with_one_window_length() -> None:
    on = MachineConfig(cuda_graph=True)
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert use_graph(gpu, on, ranks=1, ragged=False)
    assert not use_graph(cpu, on, ranks=1, ragged=False)
    assert not use_graph(gpu, MachineConfig(cuda_graph=False), ranks=1, ragged=False)
    assert not use_graph(gpu, on, ranks=2, ragged=False)
    assert not use_graph(gpu, on, ranks=1, ragged=True)


def _autocast_spy(monkeypatch: pytest.MonkeyPatch, device_type: str) -> list[bool]:
    """Records, for each loss computed, whether autocast was on for ``device_type``."""
    seen: list[bool] = []
    scaled = train_mod._scaled_loss

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(torch.is_autocast_enabled(device_type))
        return scaled(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_scaled_loss", spy)
    return seen


@pytest.mark.parametrize("replaces", [False, True], ids=["torch fills in place", "older torch assigns"])
def test_a_new_learning_rate_lands_in_the_tensor_a_graph_reads(monkeypatch, replaces: bool) -> None:
    """A replayed graph reads the capturable Adam's rate tensor: the plateau schedule must leave
    that same tensor, holding the new rate, whichever way this torch's scheduler writes it."""
    p = nn.Parameter(torch.zeros(2))
    rate = torch.tensor(0.01)
    opt = torch.optim.Adam([p], lr=rate, foreach=False)  # a tensor rate, as steps.adam gives a graph
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
    if replaces:  # what older torch's _reduce_lr did (2.8 at least): a float in place of the tensor

        def reduce(epoch) -> None:
            for group in opt.param_groups:
                group["lr"] = float(group["lr"]) * 0.1

        monkeypatch.setattr(sched, "_reduce_lr", reduce)
    assert steps.schedule(sched, 1.0) == pytest.approx(0.01)
    assert steps.schedule(sched, 2.0) == pytest.approx(0.001)  # worse: the rate drops
    assert opt.param_groups[0]["lr"] is rate
    assert float(rate) == pytest.approx(0.001)


def test_the_schedule_of_a_float_learning_rate_is_a_float() -> None:
    """Eager steps keep Adam's rate a float, and the history records floats (JSON)."""
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=0.01)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
    steps.schedule(sched, 1.0)
    lr = steps.schedule(sched, 2.0)
    assert type(lr) is float and lr == pytest.approx(0.001)
    assert type(opt.param_groups[0]["lr"]) is float


def test_bf16_on_the_cpu_trains_in_float32_and_says_so(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """oneDNN's LSTM refuses bfloat16 on CPUs without bf16 instructions (this machine's): the
    setting is for GPUs, and a config shared with a CPU machine still trains there."""
    _assert_bf16_trains_in_float32(monkeypatch, caplog, "cpu", "bf16 is for GPUs")


def _assert_bf16_trains_in_float32(monkeypatch, caplog, device: str, warning: str) -> None:
    """bf16 asked where it cannot run: ``warning`` logged, no step autocast, float32 weights."""
    seen = _autocast_spy(monkeypatch, device)
    network, options = {"cell": "lstm", "hidden": 8}, {"epochs": 2, "batch_size": 16}
    machine = MachineConfig(device=device, progress=False, precision="bf16")
    with caplog.at_level("WARNING", "seqcast.train"):
        model, _ = _fit(_tiny(64, 0), _tiny(16, 1), network, options, machine)
    assert warning in caplog.text
    assert seen and not any(seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@cuda
def test_bf16_autocasts_the_training_steps_only_and_keeps_float32_weights(monkeypatch, caplog) -> None:
    """Where this torch's cuDNN recurrent cells autocast to float16 (its AutocastRNN wrapper has
    cast to half whatever dtype was asked), bf16 must fall back to float32 and say so."""
    if steps.rnn_autocast_dtype(torch.device("cuda")) != torch.bfloat16:
        _assert_bf16_trains_in_float32(monkeypatch, caplog, "cuda", "not bfloat16: training in float32")
        return
    seen = _autocast_spy(monkeypatch, "cuda")
    network, options = {"cell": "lstm", "hidden": 16}, {"epochs": 5, "batch_size": 32, "lr": 0.01}
    train, val = _tiny(256, 0), _tiny(64, 1)
    for graph in (False, True):
        machine = MachineConfig(device="cuda", progress=False, cuda_graph=graph)
        model, result = _fit(train, val, network, options, machine)
        seen.clear()
        half, bf16 = _fit(train, val, network, options, machine.model_copy(update={"precision": "bf16"}))
        autocast = [s for s in seen if s]
        # every eager step and the capture itself (a replay runs no Python)
        assert len(autocast) == (4 if graph else bf16.steps)
        assert len(seen) > len(autocast)  # validation is float32
        assert all(p.dtype == torch.float32 for p in half.parameters())
        # bfloat16 has 8 bits of mantissa: near the float32 run, not equal to it
        assert abs(bf16.best_val - result.best_val) < 0.25 * result.best_val
        assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), half.parameters(), strict=True))


@cuda
def test_a_gpu_bf16_trained_model_exports_with_parity_on_the_cpu(tmp_path) -> None:
    """The pipeline refuses to publish a bundle whose ONNX graph disagrees with PyTorch on the CPU."""
    args = ["train", "--config", str(DEMO), "--model-dir", str(tmp_path), "-q", *FAST]
    assert main([*args, "--device", "cuda", "--set", "machine.precision=bf16"]) == 0
    assert store.read_current(tmp_path, "demo") is not None


def _fit_on(device: str, graph: bool, network: dict[str, Any] | None = None):
    """An LSTM 16 on 256 windows, batch 32: no ragged batch, so a graph takes the same steps."""
    return _fit(
        _tiny(256, 0),
        _tiny(64, 1),
        {"cell": "lstm", "hidden": 16, **(network or {})},
        {"epochs": 4, "batch_size": 32, "lr": 0.01, "patience": 100, "lr_patience": 1},
        MachineConfig(device=device, progress=False, cuda_graph=graph),
    )


@cuda
@pytest.mark.parametrize("network", [{}, {"quantiles": [80.0]}, {"cell": "gru"}])
def test_a_captured_step_trains_as_the_eager_step_does(network, caplog) -> None:
    """256 windows, batch 32: no ragged batch, so both runs take the same steps on the same batches."""
    with caplog.at_level("INFO", "seqcast.train"):
        graph_model, graph = _fit_on("cuda", True, network)
    assert "captured in a CUDA graph" in caplog.text and "cannot capture" not in caplog.text
    eager_model, eager = _fit_on("cuda", False, network)
    assert graph.steps == eager.steps
    lrs = [h["lr"] for h in graph.history]
    assert lrs == pytest.approx([h["lr"] for h in eager.history], rel=1e-6)
    assert all(type(lr) is float for lr in lrs)  # not the optimiser's device tensor (the report writes JSON)
    for a, b in zip(graph.history, eager.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3, abs=1e-5)
    assert all(p.device.type == "cpu" for p in graph_model.parameters())  # back on the CPU to export


@cuda
def test_the_replayed_step_follows_a_new_learning_rate() -> None:
    """The plateau schedule, through ``steps.schedule`` as ``fit`` calls it, changes the
    capturable Adam's device learning rate in place: the graph, recorded before, must step with
    the new rate, as an eager step does."""
    device = torch.device("cuda")
    train = _tiny(256, 0)
    x, y = torch.from_numpy(train.x).to(device), torch.from_numpy(train.y).to(device)
    runs = []
    for graph in (False, True):
        torch.manual_seed(0)
        spec = model_spec(NetworkSpec(cell="lstm", hidden=16, scaling="none"), ["x"], ["x"], L, H)
        model = build_model(spec).to(device).train()
        params = list(model.parameters())
        opt = steps.adam(params, 0.01, 0.0, device, graph)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
        kind = steps.GraphStep if graph else steps.EagerStep
        step = kind(train_mod._TrainStep(model, LOSSES["mse"]), params, opt, 1.0, "fp32", device)
        for i in range(12):
            if i == 6:  # no improvement on a worse loss: the rate drops to a tenth
                steps.schedule(sched, 0.0)
                assert steps.schedule(sched, 1.0) == pytest.approx(0.001)
            step(x[i * 16 : i * 16 + 16], y[i * 16 : i * 16 + 16])
        if graph:
            assert step.captured
        runs.append([p.detach().cpu() for p in params])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@cuda
def test_a_failed_capture_falls_back_to_eager_steps(monkeypatch, caplog) -> None:
    def broken(*args: Any, **kwargs: Any):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda.CUDAGraph, "capture_begin", broken)
    with caplog.at_level("INFO", "seqcast.train"):
        _, fell_back = _fit_on("cuda", True)
    assert "cannot capture" in caplog.text and "not permitted" in caplog.text
    assert torch.cuda.current_stream() == torch.cuda.default_stream()  # not left on the side stream
    monkeypatch.undo()
    _, eager = _fit_on("cuda", False)
    assert fell_back.best_val == pytest.approx(eager.best_val, rel=1e-3, abs=1e-5)


@cuda
def test_a_step_that_waits_on_the_host_is_found_in_warm_up_and_trains_eagerly(monkeypatch, caplog) -> None:
    """``.item()`` in the loss cannot be captured: the last warm-up step runs with host syncs an
    error, so it shows there, and the run goes on eagerly with the same result."""
    scaled = train_mod._scaled_loss

    def syncing(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = scaled(*args, **kwargs)
        return loss * (1.0 + 0.0 * loss.item())  # the same value, read on the host

    monkeypatch.setattr(train_mod, "_scaled_loss", syncing)
    with caplog.at_level("INFO", "seqcast.train"):
        _, synced = _fit_on("cuda", True)
    assert "cannot capture" in caplog.text and "captured in a CUDA graph" not in caplog.text
    _, eager = _fit_on("cuda", False)
    assert synced.best_val == pytest.approx(eager.best_val, rel=1e-3, abs=1e-5)
