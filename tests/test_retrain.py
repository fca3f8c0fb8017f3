"""The retraining job and version management, end to end on the demo data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.bundle import store
from training.cli import main
from training.config import load_config
from training.pipeline import publish_run, train_run
from training.retrain import EXIT_LOCKED, model_lock

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.toml"
QUICK = ["--set", "train.epochs=20", "--set", "machine.progress=false"]

pytestmark = pytest.mark.slow


def retrain(models: Path, *extra: str) -> int:
    return main(["retrain", "--config", str(DEMO), "--model-dir", str(models), "-q", *QUICK, *extra])


def decisions(models: Path) -> list[dict]:
    folder = models / "demo" / "decisions"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_first_run_publishes_second_run_keeps(tmp_path, capsys):
    models = tmp_path / "models"
    assert retrain(models) == 0
    first = store.read_current(models, "demo")
    assert first is not None
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"retrain demo: promoted {first} over no champion (mase ")
    assert "< seasonal naive" in line

    assert retrain(models) == 0  # same data, same saved config, same seed: a tie is not a win
    assert store.read_current(models, "demo") == first
    assert capsys.readouterr().out.startswith(f"retrain demo: kept {first} (mase ")
    kept = decisions(models)[-1]
    assert kept["outcome"] == "kept" and kept["promoted"] is False
    assert kept["champion_score"] == kept["challenger_score"]
    assert kept["data"]["fingerprint"] == decisions(models)[0]["data"]["fingerprint"]
    assert set(kept["durations_s"]) >= {"train", "export", "evaluate", "total"}
    assert store.list_versions(models, "demo") == [first]


def test_better_challenger_is_promoted(tmp_path):
    models = tmp_path / "models"
    good = load_config(DEMO, ["train.epochs=20", "machine.progress=false", f'export.model_dir="{models}"'])
    weak_run = train_run(
        load_config(DEMO, ["train.epochs=1", "model.hidden=2", "train.lr=0.0001", "machine.progress=false"])
    )
    weak_run.config = good  # the champion's manifest says "good config", its weights are weak
    weak = publish_run(weak_run, models).name
    assert retrain(models) == 0
    record = decisions(models)[-1]
    assert record["outcome"] == "promoted", record
    assert record["challenger_score"] < record["champion_score"]
    assert store.read_current(models, "demo") == record["challenger"] != weak
    assert store.previous_version(models, "demo") == weak


def test_config_from_job_rolls_out_a_new_recipe(tmp_path):
    models = tmp_path / "models"
    assert (
        main(
            [
                "train",
                "--config",
                str(DEMO),
                "--model-dir",
                str(models),
                "-q",
                "--epochs",
                "1",
                "--set",
                "model.hidden=2",
            ]
        )
        == 0
    )
    weak = store.read_current(models, "demo")
    plain = [
        "retrain",
        "--config",
        str(DEMO),
        "--model-dir",
        str(models),
        "-q",
        "--set",
        "machine.progress=false",
    ]
    assert main(plain) == 0  # the champion's recipe (1 epoch, hidden 2), no override: a tie, kept
    assert store.read_current(models, "demo") == weak
    assert decisions(models)[-1]["outcome"] == "kept"
    assert retrain(models, "--set", 'retrain.config_from="job"') == 0
    record = decisions(models)[-1]
    assert record["outcome"] == "promoted" and record["challenger_score"] < record["champion_score"]
    manifest = store.load_manifest(models / "demo" / record["challenger"])
    assert manifest.training_config["train"]["epochs"] == 20


def test_explicit_overrides_apply_to_the_champions_recipe(tmp_path):
    models = tmp_path / "models"
    weak = ["train", "--config", str(DEMO), "--model-dir", str(models), "-q", "--epochs", "1"]
    assert main([*weak, "--set", "model.hidden=2", "--set", "machine.progress=false"]) == 0
    # the job's --epochs and --set model.* are applied on top of the champion's recipe, not dropped
    assert retrain(models, "--epochs", "7", "--seed", "3", "--set", "model.layers=2") == 0
    recipe = decisions(models)[-1]["recipe"]  # what the challenger was trained with, won or lost
    assert (recipe["train"]["epochs"], recipe["train"]["seed"]) == (7, 3)
    assert (recipe["model"]["hidden"], recipe["model"]["layers"]) == (2, 2)  # hidden: the champion's
    assert "machine" not in recipe


def test_margin_blocks_a_small_win(tmp_path):
    models = tmp_path / "models"
    assert retrain(models) == 0
    assert retrain(models, "--margin", "0.5") == 0
    assert decisions(models)[-1]["reason"].endswith("x (1 - 0.5)")


def test_failure_leaves_the_served_model_untouched(tmp_path, capsys):
    models = tmp_path / "models"
    assert retrain(models) == 0
    served = store.read_current(models, "demo")
    other = tmp_path / "fresh.csv"
    rows = (REPO / "data" / "airline.csv").read_text().splitlines()
    other.write_text("\n".join([rows[0] + ",temp"] + [r + ",1.0" for r in rows[1:]]) + "\n")
    code = main(
        [
            "retrain",
            "--config",
            str(DEMO),
            "--model-dir",
            str(models),
            "-q",
            "--set",
            f'data.path="{other}"',
            "--set",
            'data.covariates=["temp"]',
        ]
    )
    assert code == 1
    assert "champion features ['value'] differ" in capsys.readouterr().err
    assert store.read_current(models, "demo") == served
    failed = decisions(models)[-1]
    assert failed["outcome"] == "failed" and "RetrainError" in failed["error"]


def test_second_job_cannot_run_while_one_holds_the_lock(tmp_path, capsys):
    models = tmp_path / "models"
    with model_lock(models, "demo"):
        assert retrain(models) == EXIT_LOCKED
    assert "another retrain job for 'demo' holds" in capsys.readouterr().err
    assert store.read_current(models, "demo") is None


def test_a_killed_job_leaves_nothing_to_trip_over(tmp_path):
    models = tmp_path / "models"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from training.retrain import model_lock
        with model_lock(Path({str(models)!r}), "demo"):
            print("locked", flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert retrain(models) == EXIT_LOCKED
        os.kill(holder.pid, signal.SIGKILL)  # crash: no cleanup code runs
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.stdout.close()
    assert (models / "demo" / ".retrain.lock").exists()  # the file stays; the lock does not
    assert retrain(models) == 0
    assert store.read_current(models, "demo") is not None


def test_models_list_show_promote_rollback_prune(tmp_path, capsys):
    models = tmp_path / "models"
    versions = []
    for seed in range(4):
        assert (
            main(
                [
                    "train",
                    "--config",
                    str(DEMO),
                    "--model-dir",
                    str(models),
                    "--seed",
                    str(seed),
                    "-q",
                    "--set",
                    "train.epochs=1",
                    "--set",
                    "model.hidden=4",
                ]
            )
            == 0
        )
        versions.append(store.read_current(models, "demo"))
    capsys.readouterr()
    base = ["models", "--model-dir", str(models)]
    assert main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert f" * {versions[-1]}  lstm/direct hidden=4  window 36 horizon 12  MASE " in listing
    assert all(v in listing for v in versions)

    assert main([*base, "show", "demo", versions[0]]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == versions[0]

    assert main([*base, "promote", "demo", versions[1]]) == 0
    assert store.read_current(models, "demo") == versions[1]
    assert main([*base, "rollback", "demo"]) == 0
    assert store.read_current(models, "demo") == versions[3]

    assert main([*base, "prune", "demo", "--keep", "1"]) == 0
    # kept: the newest (also CURRENT) and the version before CURRENT (versions[1])
    assert store.list_versions(models, "demo") == [versions[1], versions[3]]
    capsys.readouterr()
    assert main([*base, "promote", "demo", "20990101T000000Z-0000"]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    assert main([*base, "show", "nope"]) == 2
