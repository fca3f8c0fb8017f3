"""torchrun and DistributedDataParallel (issue 16): two CPU processes (gloo) train as one does, and
only rank 0 publishes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from training.config import Config

REPO = Path(__file__).resolve().parents[1]


def config() -> Config:
    return Config.model_validate(
        {
            "data": {"path": str(REPO / "data" / "airline.csv")},
            "split": {"test": 12, "val": 12},
            "window": {"length": 24, "horizon": 6},
            # 97 training windows: batches of 16 split 8 + 8, and a last one of 1 that two ranks drop,
            # so the one-process run gets batches of a multiple of 2 too (train.batch_size 16 and
            # the windows cut to 96 below)
            "model": {"cell": "lstm", "head": "direct", "hidden": 8},
            "train": {"epochs": 4, "batch_size": 16, "lr": 0.01, "patience": 10, "seed": 3},
            "machine": {"device": "cpu", "progress": False, "threads": 1},
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(cfg: Config) -> list[dict[str, float]]:
    """Train ``cfg`` on its windows, the training ones cut to a multiple of the batch."""
    from training import pipeline
    from training.data import load_dataset
    from training.recipe import resolve
    from training.windows import Windows, make_windows, train_statistics

    ds = load_dataset(cfg.data)
    cfg = resolve(cfg, ds, 12)
    windows = make_windows(ds, cfg.split, cfg.window)
    t = windows["train"]
    keep = len(t) - len(t) % cfg.train.batch_size
    windows["train"] = Windows(t.x[:keep], t.y[:keep], t.series[:keep], t.origin[:keep])
    mean, std = train_statistics(ds, cfg.split)
    assert cfg.model is not None
    _, result = pipeline.fit_network(cfg, cfg.model, ds, windows, mean, std)
    return result.history


def rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from training import distributed

    distributed.init("cpu")
    try:
        history = train(config())
        if rank == 0:
            Path(out).write_text(json.dumps(history))
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_two_processes_train_as_one_does(tmp_path):
    alone = train(config())
    out = tmp_path / "history.json"
    mp.spawn(rank_main, args=(2, free_port(), str(out)), nprocs=2, join=True)
    together = json.loads(out.read_text())
    assert len(together) == len(alone) == 4
    for a, b in zip(alone, together, strict=True):
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-4, (alone, together)
    # and it trained: the validation loss moved
    assert abs(alone[-1]["val_loss"] - alone[0]["val_loss"]) > 1e-3


@pytest.mark.slow
def test_torchrun_trains_and_only_rank_0_publishes(tmp_path):
    models = tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
        "-m", "training", "train", "--config", str(REPO / "configs" / "demo.toml"), "--epochs", "2",
        "--model-dir", str(models), "--set", "model.hidden=8",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    versions = [p for p in (models / "demo").iterdir() if p.is_dir()]
    assert len(versions) == 1, versions
    assert done.stdout.count("bundle:") == 1


def test_torchrun_refuses_the_automatic_recipe(tmp_path, monkeypatch):
    from training.cli import main

    config = tmp_path / "auto.toml"
    config.write_text(f'[data]\npath = "{REPO / "data" / "airline.csv"}"\n')
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--config", str(config), "--model-dir", str(tmp_path)]) == 2
