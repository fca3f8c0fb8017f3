"""`seqcast train | evaluate | export` end to end on the bundled demo data."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from service.bundle import store
from training.cli import main
from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.toml"
FAST = ["--epochs", "3", "--set", "model.hidden=8", "--set", "machine.progress=false"]


def test_demo_config_is_valid_and_paths_resolve():
    cfg = load_config(DEMO)
    assert cfg.data.path == REPO / "data" / "airline.csv"
    assert cfg.train.clip_norm is not None and cfg.model.scaling == "window"


def test_overrides_are_typed_and_validated():
    cfg = load_config(DEMO, ["train.epochs=7", "model.cell=gru", "train.clip_norm=0.5"])
    assert (cfg.train.epochs, cfg.model.cell, cfg.train.clip_norm) == (7, "gru", 0.5)
    with pytest.raises(ValueError, match="cell"):
        load_config(DEMO, ["model.cell=transformer"])
    with pytest.raises(ValueError, match="expected section.key=value"):
        load_config(DEMO, ["epochs=3"])


@pytest.mark.slow
def test_train_evaluate_export(tmp_path, capsys):
    models = tmp_path / "models"
    ckpt = tmp_path / "run" / "ckpt.pt"
    assert (
        main(
            [
                "train",
                "--config",
                str(DEMO),
                "--model-dir",
                str(models),
                "--name",
                "air",
                "--checkpoint",
                str(ckpt),
                "-q",
                *FAST,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "seasonal naive (lag 12)" in out and "bundle:" in out
    version = store.read_current(models, "air")
    bundle = models / "air" / version
    manifest = store.verify_bundle(bundle)
    assert manifest.horizon == 12 and manifest.input_window.length == 36
    assert manifest.metrics is not None and manifest.metrics.model.mase is not None
    assert manifest.training_config["train"]["epochs"] == 3
    assert len(manifest.data.fingerprint) == 64 and manifest.frequency == "MS"
    assert (bundle / "report" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    sess = ort.InferenceSession(str(bundle / "model.onnx"))
    assert [i.name for i in sess.get_inputs()] == ["x"]

    assert main(["evaluate", "--model-dir", str(models), "--name", "air", "-q"]) == 0
    out = capsys.readouterr().out
    assert "(onnxruntime)" in out
    onnx_mae = float(out.splitlines()[2].split()[1])
    assert onnx_mae == pytest.approx(manifest.metrics.model.mae, rel=1e-3)

    assert (
        main(["export", "--checkpoint", str(ckpt), "--model-dir", str(models), "--name", "air2", "-q"]) == 0
    )
    again = store.verify_bundle(models / "air2" / store.read_current(models, "air2"))
    assert again.metrics.model.mae == pytest.approx(manifest.metrics.model.mae, rel=1e-5)


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\npath = "missing.csv"\n')
    assert main(["train", "--config", str(bad), "--model-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing.csv" in err and "does not exist" in err


def test_evaluate_without_model_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit, match="has no CURRENT version"):
        main(["evaluate", "--model-dir", str(tmp_path), "--name", "none", "-q"])


def test_same_seed_same_weights(tmp_path):
    for run in ("a", "b"):
        assert main(["train", "--config", str(DEMO), "--model-dir", str(tmp_path / run), "-q", *FAST]) == 0
    ma = store.verify_bundle(tmp_path / "a" / "demo" / store.read_current(tmp_path / "a", "demo"))
    mb = store.verify_bundle(tmp_path / "b" / "demo" / store.read_current(tmp_path / "b", "demo"))
    assert ma.onnx_sha256 == mb.onnx_sha256
    assert json.dumps(ma.metrics.model_dump()) == json.dumps(mb.metrics.model_dump())


def test_models_list_says_how_each_forecast_is_built(tmp_path, capsys):
    from tests.service_stubs import make_manifest, publish_stub

    plain = make_manifest("weekly", version="v1")
    publish_stub(tmp_path, plain)
    damped = make_manifest("weekly", version="v2", window=337)
    network = damped.spec.network.model_copy(update={"base_lag": 336, "base_damping": 0.95, "hidden": 8})
    spec = damped.spec.model_copy(update={"ensemble": 3, "network": network})
    publish_stub(tmp_path, damped.model_copy(update={"spec": spec}))
    # --model-dir works before and after the action, like every other subcommand's options
    assert main(["models", "--model-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert main(["models", "list", "--model-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == out
    assert "   v1  lstm/direct  window 6 horizon 3  MASE n/a" in out
    # every option that differs from the default is shown, by its own name: no hand-kept list
    assert (
        " * v2  lstm/direct hidden=8 base_lag=336 base_damping=0.95 ensemble=3  window 337 horizon 3" in out
    )
