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
    # export.model_dir = "../models" is written in configs/demo.toml: relative to that file,
    # so `seqcast train --config configs/demo.toml` publishes into the checkout's models/
    assert cfg.model_dir == REPO / "models" and cfg.name == "demo"
    assert cfg.train.clip_norm is not None and cfg.model.scaling == "window"


def test_paths_resolve_against_the_config_file_and_the_name_defaults_to_its_stem(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "sales.toml"
    path.write_text('[data]\npath = "data/sales.csv"\n[export]\nmodel_dir = "out"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    assert cfg.data.path == tmp_path / "conf" / "data" / "sales.csv"
    assert cfg.model_dir == tmp_path / "conf" / "out" and cfg.name == "sales"  # never "demo"
    # a path on the command line is relative to the working directory, as for any command
    cfg = load_config(path, ['data.path="here.csv"', 'export.name="s2"'])
    assert (cfg.data.path, cfg.name) == (Path("here.csv"), "s2")
    # no model_dir anywhere: the service's setting, else ./models
    path.write_text('[data]\npath = "sales.csv"\n')
    monkeypatch.setenv("SEQCAST_MODEL_DIR", "/srv/models")
    assert load_config(path).model_dir == Path("/srv/models")
    monkeypatch.delenv("SEQCAST_MODEL_DIR")
    assert load_config(path).model_dir == Path("models")


def test_old_option_names_are_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "old.toml"
    path.write_text(
        '[data]\npath = "x.csv"\n[window]\nlength = 13\n[model]\nhead = "mlp"\nskip_lag = 12\n'
        'skip_damping = "auto"\n[train]\ndevice = "cpu"\nprogress = false\n[export]\ntolerance = 0.001\n'
    )
    cfg = load_config(path)
    assert (cfg.model.base_lag, cfg.model.base_damping, cfg.export.parity_tolerance) == (12, "auto", 0.001)
    assert (cfg.machine.device, cfg.machine.progress) == ("cpu", False)
    assert "model.skip_lag is now model.base_lag" in caplog.text
    assert load_config(path, ["model.skip_lag=6"]).model.base_lag == 6
    assert load_config(path, ["model.base_lag=6"]).model.base_lag == 6
    path.write_text(path.read_text().replace("skip_lag = 12", "skip_lag = 12\nbase_lag = 6"))
    with pytest.raises(ValueError, match="same option"):
        load_config(path)  # both names in one file: which one was meant?


def test_machine_settings_are_not_stored():
    from training.config import config_to_dict

    stored = config_to_dict(load_config(DEMO, ['machine.device="cpu"', "machine.threads=1"]))
    assert "machine" not in stored and "device" not in stored["train"]


def test_configuration_reference_is_generated_from_the_code():
    from training.config_doc import DOC, render

    assert DOC.read_text() == render(), "docs/configuration.md is stale: run python -m training.config_doc"


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
    assert manifest.spec.horizon == 12 and manifest.spec.input_window.length == 36
    assert manifest.metrics is not None and manifest.metrics.model.mase is not None
    assert manifest.training_config["train"]["epochs"] == 3
    assert len(manifest.data.fingerprint) == 64 and manifest.spec.frequency == "MS"
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
    assert again.spec == manifest.spec
    # a checkpoint's model is trained: --set cannot describe another one
    assert (
        main(["export", "--checkpoint", str(ckpt), "--model-dir", str(models), "--set", "model.hidden=9"])
        == 2
    )
    assert "are fixed" in capsys.readouterr().err


@pytest.mark.slow
def test_train_from_anywhere_publishes_where_the_config_says(tmp_path, monkeypatch):
    """A checkout's layout in a temporary folder, trained from another working directory."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "airline.csv").write_bytes((REPO / "data" / "airline.csv").read_bytes())
    (tmp_path / "configs" / "demo.toml").write_text(DEMO.read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--config", "../configs/demo.toml", "-q", *FAST]) == 0
    assert store.read_current(tmp_path / "models", "demo") is not None
    assert not (elsewhere / "models").exists() and not (tmp_path.parent / "models").exists()
    # and every other subcommand finds it with the same option, after the subcommand
    assert main(["models", "list", "--model-dir", str(tmp_path / "models")]) == 0


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
