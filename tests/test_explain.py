"""The gradient-fade explanation: one curve per cell, newest step = 1, fading with distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.config import load_config
from training.explain import gradient_fade, plot, table

REPO = Path(__file__).resolve().parents[1]


def test_untrained_cells_fade_with_distance():
    cfg = load_config(REPO / "configs" / "demo.toml", ["window.length=48", "split.val=12", "split.test=12"])
    fades = gradient_fade(cfg, epochs=0)
    assert [f.cell for f in fades] == ["rnn", "lstm", "gru"]
    for f in fades:
        assert f.sensitivity.shape == (48,)
        assert np.isfinite(f.sensitivity).all()
        assert f.at(0) == 1.0
        assert f.at(35) < 1e-2 * max(f.at(1), 1e-30)  # 35 steps back: under 1% of one step back
    assert "steps back" in table(fades)
    assert plot(fades)[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_writes_the_plot(tmp_path, capsys):
    out = tmp_path / "fade.png"
    assert (
        main(
            [
                "explain",
                "--config",
                str(REPO / "configs" / "demo.toml"),
                "--epochs",
                "0",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "lstm" in capsys.readouterr().out
