"""The report a person opens (``training.report_page``) and how the service serves it.

The page is rendered from a made-up manifest and data here (fast); the slow tests
check a real bundle's page, its rebuild by ``seqcast report``, and, in a real
headless browser (Debian's chromium), that the served page renders and every
image loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from service_stubs import make_manifest, settings_for, stub_loader

from service.app import create_app
from service.bundle import store
from service.bundle.manifest import CandidateScore, Intervals, Manifest, Selection
from training import report_page
from training.cli import main as cli

EVIL = '<script>alert("x")</script>'


def manifest() -> Manifest:
    selection = Selection(
        windows=24,
        chosen="mean(a, b)",
        score=0.5,
        baseline=1.0,
        candidates=[
            CandidateScore(name="a", kind="base", score=0.45, history=0.6),
            CandidateScore(name="mean(a, b)", kind="combination", score=0.5),
            CandidateScore(name="naive", kind="base", score=1.2, history=1.3),
            CandidateScore(name="seasonal_naive[12]", kind="base", score=1.0, history=1.1),
        ],
        notes=[f"a note with {EVIL}"],
    )
    cal = Intervals(windows=24, errors=72, levels=[80.0, 95.0], widths=[[[1.0]] * 3, [[2.0]] * 3])
    return make_manifest("demo").model_copy(update={"selection": selection, "intervals": cal})


def entry(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "history_time": ["2020-01-01", "2020-02-01"],
        "history": [[1.0], [2.0]],
        "time": ["2020-03-01", "2020-04-01", "2020-05-01"],
        "actual": [[3.0], [4.0], [5.0]],
        "forecast": [[3.1], [3.9], [5.2]],
        "seasonal_naive": [[2.0], [1.0], [2.0]],
        "intervals": {"95": [[[2.0], [3.0], [4.0]], [[4.0], [5.0], [6.0]]], "80": [[[2.5]] * 3, [[4.5]] * 3]},
    }


def data(series: int = 2) -> dict[str, Any]:
    return {
        "targets": ["value"],
        "series_total": 40,
        "test_windows": 40,
        "test_points": 120,
        "series": [entry(EVIL if i == 1 else f"s{i}") for i in range(series)],
        "loss": {"history": [], "best_epoch": 0},
        "by_step": {"model": [0.5, 0.6, 0.7], "seasonal naive": [1.0, 1.1, 1.2]},
        "coverage": [{"level": 80.0, "observed": 78.3}, {"level": 95.0, "observed": 94.2}],
    }


def test_the_page_shows_the_choice_the_forecasts_and_the_coverage_and_loads_nothing() -> None:
    page = report_page.render(manifest(), data())
    assert page.startswith("<!doctype html>") and report_page.CSP in page
    assert '<tr class="chosen"><td>mean(a, b)</td>' in page  # the winner, marked
    assert "50 % below the better of naive and seasonal naive" in page
    assert "seasonal_naive[12]" in page and "78.3 %" in page and "94.2 %" in page
    assert "the 2 largest of 40 series" in page and page.count("<option") == 2  # the selector
    # every string from the data is escaped: the series id and the note cannot inject markup
    assert EVIL not in page and html_escaped(EVIL) in page
    # one image per series, the error by step, the coverage and the loss curve, all inline
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == 2 + 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_a_single_series_needs_no_selector_and_a_model_without_calibration_says_so() -> None:
    m = manifest().model_copy(update={"intervals": None, "selection": None})
    page = report_page.render(m, data(1) | {"coverage": []})
    assert "<select" not in page and "no interval calibration" in page and "hand-written model" in page


# --- served ---------------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    files = {"report/index.html": b"<!doctype html><p>report</p>", "report/loss.png": b"\x89PNG fake"}
    bundle = store.publish(tmp_path, make_manifest("demo"), b"stub: not an ONNX graph", files)
    (bundle / "report" / "escape.txt").symlink_to(bundle / "manifest.json")  # a link out of the folder
    store.publish(tmp_path, make_manifest("bare"), b"stub: not an ONNX graph")
    return create_app(settings_for(tmp_path), loader=stub_loader).test_client()


def test_the_service_serves_the_report_folder_read_only(client: FlaskClient) -> None:
    r = client.get("/v1/models/demo/report")
    assert r.status_code == 200 and r.mimetype == "text/html" and b"report" in r.data
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert r.headers["X-Model-Version"] == "v1"
    png = client.get("/v1/models/demo/report/loss.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert client.post("/v1/models/demo/report").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "../manifest.json",
        "%2e%2e/manifest.json",
        "..%2fmanifest.json",
        "/etc/passwd",
        "escape.txt",  # a symlink to the manifest, outside the report folder
        "missing.txt",
        "index.py",  # not a report file type
        "../model.onnx",
    ],
)
def test_nothing_outside_the_report_folder_can_be_reached(client: FlaskClient, path: str) -> None:
    r = client.get(f"/v1/models/demo/report/{path}", follow_redirects=True)  # // is merged first
    assert r.status_code == 404, (path, r.data[:80])
    assert b"version" not in r.data or r.is_json  # an error document, never a file's content


def test_a_bundle_without_a_report_and_an_unknown_model_are_404s(client: FlaskClient) -> None:
    r = client.get("/v1/models/bare/report")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "report_not_found"
    assert client.get("/v1/models/nope/report").status_code == 404


# --- a real bundle --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trained_bundle_has_a_page_that_seqcast_report_rebuilds(
    tiny_bundle_dir: Any, tmp_path: Path
) -> None:
    model_dir, name, version, _ = tiny_bundle_dir
    bundle = model_dir / name / version
    page = (bundle / "report" / "index.html").read_text()
    numbers = json.loads((bundle / "report" / "data.json").read_text())
    assert numbers["series"] and numbers["coverage"] and len(numbers["by_step"]["model"]) == 4
    assert [c["level"] for c in numbers["coverage"]] == [50.0, 80.0, 90.0, 95.0][: len(numbers["coverage"])]
    out = tmp_path / "again.html"
    assert cli(["report", str(bundle), "--out", str(out)]) == 0
    assert out.read_text() == page  # the same numbers, the same page
    assert cli(["report", str(model_dir / name), "--out", str(out)]) == 0  # the model folder: CURRENT


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_served_page_renders_in_a_real_browser_with_every_image(
    tiny_bundle_dir: Any, tmp_path: Path
) -> None:
    from gunicorn_server import gunicorn

    assert CHROMIUM is not None
    with gunicorn(tiny_bundle_dir.model_dir, tmp_path / "gunicorn.log") as (base, _proc):
        url = f"{base}/v1/models/{tiny_bundle_dir.name}/report"
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert loaded is not None, dom.stdout[:500]  # the page's script ran after every image settled
    assert int(loaded[1]) == int(loaded[2]) >= 4, loaded[0]  # all decoded: forecasts, steps, coverage, loss
    assert "The latest forecasts" in dom.stdout
