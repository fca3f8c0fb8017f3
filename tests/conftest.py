"""Shared fixtures: a tiny trained and published bundle, trained once per test session.

``tiny_bundle_dir`` trains a small LSTM on ``data/airline.csv`` (window 12,
horizon 4, hidden 8, 2 epochs: a few seconds) and publishes it to a temporary
model directory. Tests that use it should carry ``@pytest.mark.slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

# One torch thread for the whole session, as the product's default (machine.threads = 1): tests
# that compare timings or weights then see what a user's run sees.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo.toml"
TINY_OVERRIDES = [
    'export.name="tiny"',
    "window.length=12",
    "window.horizon=4",
    "model.hidden=8",
    "train.epochs=2",
    "machine.progress=false",
    'machine.device="cpu"',
    "split.test=12",
    "split.val=12",
]


class TinyBundle(NamedTuple):
    """A published bundle and the PyTorch model it was exported from; unpacks as a 4-tuple."""

    model_dir: Path
    name: str
    version: str
    torch_model: Any  # training.models.Forecaster, on CPU, eval mode


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    """(model_dir, name, version, torch_model) of a tiny airline model, published with CURRENT."""
    from training.config import load_config
    from training.pipeline import publish_run, train_run

    cfg = load_config(DEMO_CONFIG, TINY_OVERRIDES)
    run = train_run(cfg)
    model_dir = tmp_path_factory.mktemp("models")
    bundle = publish_run(run, model_dir)
    return TinyBundle(model_dir, bundle.parent.name, bundle.name, run.model.to("cpu").eval())
