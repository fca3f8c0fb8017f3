"""Training speed: Seqcast's ``training.train.fit`` against a plain PyTorch loop.

Both sides train the same Forecaster (built by ``training.models.build_model``,
same seed, so the same initial weights) on the same windows with the same batch
size, Adam settings, loss (in normalised units, via ``forward_scaled``) and
gradient clipping. Runs are interleaved (a, b, b, a, a, b, ...) so machine load
hits both sides alike; the table shows the median over repeats of each side's
ms per optimiser step and the median of the per-pair ratios.

Per step both sides do: slice a batch from a shuffled index, forward, loss,
zero_grad, backward, clip_grad_norm_ (when train.clip_norm is set), Adam step.

Extras only ``fit`` does: the running train loss (summed on the device, read per epoch), one
validation pass per epoch, ReduceLROnPlateau, a ``deepcopy`` of the state_dict
on every improving epoch, one log line per epoch, and restoring the best
weights at the end. The "fit excl. val" column subtracts the measured time of
the validation passes (legitimately extra work: early stopping needs it).

    .venv/bin/python bench/train_speed.py                 # co2_monthly, window 48, horizon 12
    .venv/bin/python bench/train_speed.py --repeats 9 --threads 1 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import training.train as seq_train  # noqa: E402
from training.config import Config  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.models import build_model, model_spec  # noqa: E402
from training.train import LOSSES, fit  # noqa: E402
from training.windows import make_windows, train_statistics  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def plain_loop(model, x, y, cfg, args_device: str = "cpu") -> int:
    """The bare PyTorch loop seqcast is measured against; returns the number of steps."""
    device = torch.device(args_device)
    model.to(device)
    x, y = x.to(device), y.to(device)
    torch.manual_seed(cfg.seed)
    loss_fn = LOSSES[cfg.loss]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = 0
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen).to(device)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            yb = y[idx]
            yn, loc, scale = model.forward_scaled(x[idx])
            loss = loss_fn(yn, (yb - loc) / scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:  # 0 or None: off, as in fit
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            steps += 1
    model.to("cpu").eval()  # as fit() ends (this waits for a GPU to finish, too)
    return steps


def plain_graph_loop(model, x, y, cfg, args_device: str = "cuda") -> int:
    """The bare whole-step CUDA graph loop of PyTorch's docs ("whole network capture"): full
    batches only, 3 warm-up steps on a side stream, then forward, loss, backward, clipping and a
    capturable Adam step replayed as one graph. The reference for ``fit`` with
    ``machine.cuda_graph`` on a GPU; returns the number of steps."""
    device = torch.device(args_device)
    model.to(device)
    x, y = x.to(device), y.to(device)
    torch.manual_seed(cfg.seed)
    loss_fn = LOSSES[cfg.loss]
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(x))
    static_x, static_y = x[:batch].clone(), y[:batch].clone()

    def step():
        yn, loc, scale = model.forward_scaled(static_x)
        loss = loss_fn(yn, (static_y - loc) / scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_norm:  # 0 or None: off, as in fit
            nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        opt.step()
        return loss

    model.train()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    steps = 3
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen).to(device)
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i : i + batch]
            static_x.copy_(x[idx])
            static_y.copy_(y[idx])
            graph.replay()
            steps += 1
    model.to("cpu").eval()
    return steps


class Timers:
    """Wall time spent inside the patched helpers of ``training.train`` during one fit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        return timed


@contextlib.contextmanager
def instrumented(timers: Timers, profile: bool):
    """Time fit()'s validation passes (always) and, with ``profile``, its other extras."""
    saved = {"evaluate_loss": seq_train.evaluate_loss, "copy": seq_train.copy}
    seq_train.evaluate_loss = timers.wrap("validation", saved["evaluate_loss"])
    if profile:
        seq_train.copy = SimpleNamespace(deepcopy=timers.wrap("deepcopy state_dict", copy.deepcopy))
    try:
        yield
    finally:
        seq_train.evaluate_loss = saved["evaluate_loss"]
        seq_train.copy = saved["copy"]


def profile_step_parts(model, x, y, cfg, steps: int = 200) -> dict[str, float]:
    """Mean ms of each part of one training step (and of loss.item()), torch.profiler-free."""
    loss_fn = LOSSES[cfg.loss]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    parts = {"index+forward+loss": 0.0, "backward": 0.0, "clip_grad_norm_": 0.0, "adam step": 0.0}
    parts["loss.item()"] = 0.0
    gen = torch.Generator().manual_seed(0)
    model.train()
    done = 0
    while done < steps:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            if done >= steps:
                break
            idx = order[i : i + cfg.batch_size]
            t0 = time.perf_counter()
            yn, loc, scale = model.forward_scaled(x[idx])
            loss = loss_fn(yn, (y[idx] - loc) / scale)
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            t3 = time.perf_counter()
            opt.step()
            t4 = time.perf_counter()
            loss.item()
            t5 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                parts[key] += dt
            done += 1
    return {k: 1000 * v / done for k, v in parts.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATASETS / "co2_monthly.csv"), help="univariate CSV")
    p.add_argument("--length", type=int, default=48)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--val", type=int, default=24)
    p.add_argument("--test", type=int, default=24)
    p.add_argument("--target", help="the column to forecast (default: every numeric column)")
    p.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=7, help="runs of each side, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both sides")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="train.device for both sides")
    p.add_argument("--no-clip", action="store_true", help="train.clip_norm=None on both sides")
    p.add_argument(
        "--reference",
        default="plain",
        choices=["plain", "graph"],
        help="the loop fit is "
        "measured against: plain (eager) or graph (the whole step in a CUDA graph, GPU only)",
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="fit's machine.precision")
    p.add_argument("--no-graph", action="store_true", help="fit with machine.cuda_graph=false")
    p.add_argument(
        "--goal",
        type=float,
        default=1.10,
        help="the largest fit / reference time per step "
        "that meets the goal (1.25: at least 0.8 x the reference's speed)",
    )
    p.add_argument("--profile", action="store_true", help="also time fit()'s extras and a step's parts")
    args = p.parse_args(argv)
    if args.reference == "graph" and args.device != "cuda":
        p.error("--reference graph needs --device cuda (a CUDA graph)")

    torch.set_num_threads(args.threads)
    cfg = Config.model_validate(
        {
            "data": {"path": args.data} | ({"targets": [args.target]} if args.target else {}),
            "split": {"val": args.val, "test": args.test},
            "window": {"length": args.length, "horizon": args.horizon},
            "model": {
                "cell": args.cell,
                "head": "direct",
                "readout": "steps",
                "hidden": args.hidden,
                "layers": args.layers,
            },
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": 3e-3,
                "loss": "mae",
                "patience": args.epochs + 1,  # never stop early: both sides run every epoch
                "lr_patience": args.epochs + 1,  # keep lr fixed, as the plain loop does
                "clip_norm": None if args.no_clip else 1.0,
            },
            "machine": {
                "progress": False,
                "threads": args.threads,
                "device": args.device,
                "precision": args.precision,
                "cuda_graph": not args.no_graph,
            },
        }
    )
    ds = load_dataset(cfg.data)
    win = make_windows(ds, cfg.split, cfg.window)
    mean, std = train_statistics(ds, cfg.split)

    def new_model():
        torch.manual_seed(cfg.train.seed)
        spec = model_spec(cfg.model, ds.features, ds.targets, args.length, args.horizon)
        return build_model(spec, mean, std)

    x, y = torch.from_numpy(win["train"].x), torch.from_numpy(win["train"].y)
    steps_per_epoch = -(-len(x) // args.batch_size)
    print(
        f"data {Path(args.data).name}: {len(x)} train windows, {len(win['val'])} val windows, "
        f"window {args.length} -> {args.horizon}, {args.cell} hidden {args.hidden}, batch {args.batch_size}, "
        f"{args.epochs} epochs x {steps_per_epoch} steps, clip {'off' if args.no_clip else '1.0'}, "
        f"threads {torch.get_num_threads()}, device {args.device}, torch {torch.__version__}"
    )

    # Warm-up: one short run of each side (allocator, lazy init), not counted.
    warm = cfg.train.model_copy(update={"epochs": 2})
    fit(new_model(), win["train"], win["val"], warm, cfg.machine)
    reference = plain_graph_loop if args.reference == "graph" else plain_loop
    reference(new_model(), x, y, warm, args.device)

    fit_ms, fit_noval_ms, plain_ms, ratios, ratios_noval = [], [], [], [], []
    extras: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        order = ("fit", "plain") if rep % 2 == 0 else ("plain", "fit")
        got: dict[str, float] = {}
        for side in order:
            model = new_model()
            if side == "fit":
                timers = Timers()
                with instrumented(timers, args.profile):
                    t0 = time.perf_counter()
                    res = fit(model, win["train"], win["val"], cfg.train, cfg.machine)
                    wall = time.perf_counter() - t0
                steps = res.steps
                got["fit"] = 1000 * wall / steps
                got["fit_noval"] = 1000 * (wall - timers.seconds.get("validation", 0.0)) / steps
                for name, sec in timers.seconds.items():
                    extras.setdefault(name, []).append(1000 * sec / steps)
            else:
                t0 = time.perf_counter()
                steps = reference(model, x, y, cfg.train, args.device)
                got["plain"] = 1000 * (time.perf_counter() - t0) / steps
        fit_ms.append(got["fit"])
        fit_noval_ms.append(got["fit_noval"])
        plain_ms.append(got["plain"])
        ratios.append(got["fit"] / got["plain"])
        ratios_noval.append(got["fit_noval"] / got["plain"])
        print(
            f"  repeat {rep + 1}/{args.repeats} ({order[0]} first): fit {got['fit']:.3f} ms/step "
            f"(excl. val {got['fit_noval']:.3f}), plain {got['plain']:.3f} ms/step, "
            f"ratio {ratios[-1]:.3f} (excl. val {ratios_noval[-1]:.3f})"
        )

    med = statistics.median
    print()
    print("| loop | median ms/step | min | max | ratio to plain (median of pairs) |")
    print("|---|---:|---:|---:|---:|")
    ref = "plain whole-step CUDA graph loop" if args.reference == "graph" else "plain PyTorch loop"
    print(f"| {ref} | {med(plain_ms):.3f} | {min(plain_ms):.3f} | {max(plain_ms):.3f} | 1.000 |")
    print(f"| seqcast fit | {med(fit_ms):.3f} | {min(fit_ms):.3f} | {max(fit_ms):.3f} | {med(ratios):.3f} |")
    print(
        f"| seqcast fit excl. validation | {med(fit_noval_ms):.3f} | {min(fit_noval_ms):.3f} | "
        f"{max(fit_noval_ms):.3f} | {med(ratios_noval):.3f} |"
    )
    print(
        f"\nwindows/s: {ref} {args.batch_size * 1000 / med(plain_ms):,.0f}, seqcast fit "
        f"{args.batch_size * 1000 / med(fit_ms):,.0f} (excl. validation "
        f"{args.batch_size * 1000 / med(fit_noval_ms):,.0f})"
    )
    verdict = "met" if med(ratios) <= args.goal else "NOT met"
    print(f"goal: fit / reference <= {args.goal:.2f} -> {verdict} ({med(ratios):.3f})")
    for name, vals in extras.items():
        print(f"fit extra: {name}: median {med(vals):.3f} ms per training step")

    if args.profile and args.device == "cpu":  # per-part wall times mean little on an async GPU
        parts = profile_step_parts(new_model(), x, y, cfg.train)
        print("\none training step, mean ms by part (200 steps):")
        for name, ms in parts.items():
            print(f"  {name:20s} {ms:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
