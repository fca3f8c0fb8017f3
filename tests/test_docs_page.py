"""The /docs page in a real headless browser (Debian's chromium): every "try it" form that sends a
body is prefilled so that sending it as it stands gets a 200 from the model served, V2 included
(issue 13, finding 8: the V2 forms sent shape [1, 3, 1] to a model with a longer window, and the
one-version route went to ``/versions//infer``)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from gunicorn_server import call, gunicorn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]

FORM = re.compile(r'<div class="try" data-path="([^"]+)" data-method="([a-z]+)">(.*?)<button', re.S)
PARAM = re.compile(r'<input value="([^"]*)" data-param="([^"]+)"')
BODY = re.compile(r'<textarea class="try-body">(.*?)</textarea>', re.S)


def test_every_try_it_form_with_a_body_works_as_prefilled(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    with gunicorn(tiny_bundle_dir.model_dir, tmp_path / "gunicorn.log") as (base, _):
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"{base}/docs"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert dom.returncode == 0, dom.stderr[-2000:]
        forms = FORM.findall(dom.stdout)
        assert len(forms) >= 10, dom.stdout[:1000]  # every operation has one
        sent = []
        for path, method, inner in forms:
            body = BODY.search(inner)
            if method != "post" or body is None:
                continue
            url = path
            for value, name in PARAM.findall(inner):
                assert value, f"{path}: {name} is not prefilled"
                url = url.replace("{" + name + "}", value)
            status, _, raw = call(base + url, json.loads(html.unescape(body.group(1))))
            assert status == 200, (url, raw[:300])
            sent.append(path)
    assert {
        "/v1/models/{name}/forecast",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    } <= set(sent)
