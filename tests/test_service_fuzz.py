"""Property: nothing a client sends makes the service answer 5xx (random JSON, random bytes, near-misses)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_stubs import make_manifest, settings_for, standard_models, stub_loader

from service import values
from service.app import create_app
from service.bundle.manifest import InputWindow, ModelSpec

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True, width=64))
finite = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e30, 1e30))
rows = st.lists(st.lists(numbers, min_size=0, max_size=4), max_size=9)
# Mostly valid histories for the stub models (uni: window 6; multi: 3 features, window 4), so that
# the answering path (timestamps, horizon, output) is fuzzed too, not only the rejecting one.
plausible = st.one_of(
    st.lists(finite, min_size=6, max_size=10),
    st.lists(st.lists(finite, min_size=3, max_size=3), min_size=4, max_size=6),
)
stamp = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
dates = st.one_of(
    st.text(max_size=12), stamp.map(lambda d: d.date().isoformat()), stamp.map(datetime.isoformat)
)
increasing = st.lists(stamp, min_size=4, max_size=10, unique=True).map(
    lambda ds: [d.isoformat() for d in sorted(ds)]
)
# Near-misses reach deep into validation: the right keys with wrong, edge or almost-right values.
series = st.fixed_dictionaries(
    {"values": st.one_of(plausible, plausible, st.lists(numbers, max_size=9), rows, any_json)},
    optional={
        "id": st.one_of(st.text(max_size=5), st.integers()),
        "start": dates,
        "timestamps": st.one_of(increasing, st.lists(dates, max_size=9)),
        "extra": any_json,
    },
)
request = st.fixed_dictionaries(
    {"series": st.one_of(st.lists(series, min_size=1, max_size=5), any_json)},
    optional={"horizon": st.one_of(st.integers(-3, 5), any_json), "levels": any_json},
)


@st.composite
def tensor(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.one_of(st.tuples(st.integers(1, 3), st.integers(3, 8), st.integers(1, 3)).map(list),
                           st.lists(st.integers(-1, 7), max_size=4)))  # fmt: skip
    size = max(0, int(np.prod(shape))) if shape else 0
    data = draw(
        st.one_of(st.lists(finite, min_size=size, max_size=size), st.lists(numbers, max_size=40), any_json)
    )
    out = {"name": draw(st.sampled_from(["x", "x", "y"])), "shape": shape,
           "datatype": draw(st.sampled_from(["FP32", "FP32", "FP64", "BYTES"])), "data": data}  # fmt: skip
    if draw(st.booleans()):
        out["parameters"] = draw(any_json)
    return out


infer = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensor(), min_size=1, max_size=2), any_json)},
    optional={"outputs": any_json, "id": any_json, "parameters": any_json},
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    path: Path = tmp_path_factory.mktemp("fuzz-models")
    standard_models(path)
    return create_app(
        settings_for(path, max_series=4, max_body_bytes=64 * 1024), loader=stub_loader
    ).test_client()


def send(client: FlaskClient, url: str, body: Any) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body)  # json writes NaN/Infinity: clients do too
    r = client.post(url, data=data, content_type="application/json")
    assert r.status_code < 500, (url, body, r.data)
    assert r.is_json  # every answer, good or bad, is JSON
    return r.status_code


@FUZZ
@given(body=any_json, model=st.sampled_from(["uni", "multi", "nofreq", "broken", "nope"]))
def test_random_json_never_5xx_except_a_failed_model(client: FlaskClient, body: Any, model: str) -> None:
    url = f"/v1/models/{model}/forecast"
    if model == "broken":  # the one 5xx a client may see: 503, this model is not ready
        r = client.post(url, data=json.dumps(body), content_type="application/json")
        assert r.status_code == 503
        return
    send(client, url, body)


@FUZZ
@given(body=request, model=st.sampled_from(["uni", "multi", "nofreq"]))
def test_near_miss_requests_never_5xx(client: FlaskClient, body: Any, model: str) -> None:
    send(client, f"/v1/models/{model}/forecast", body)


@FUZZ
@given(body=st.binary(max_size=200))
def test_random_bytes_never_5xx(client: FlaskClient, body: bytes) -> None:
    send(client, "/v1/models/uni/forecast", body)
    send(client, "/v2/models/uni/infer", body)


@FUZZ
@given(body=infer, model=st.sampled_from(["uni", "multi"]))
def test_v2_near_misses_never_5xx(client: FlaskClient, body: Any, model: str) -> None:
    send(client, f"/v2/models/{model}/infer", body)


# -- the common case of service.values agrees with the per-series rules ---------------

# Every one refused by a rule, but 2**70 (a legal number beyond 64-bit integers).
odd = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 1e39, -3.5e38, 2**70, 10**400,
     True, False, None, "1", [], [1.0], {"v": 1}]
)  # fmt: skip


@st.composite
def batches(draw: st.DrawFn, spec: ModelSpec) -> list[Any]:
    """Series of one length around the model's minimum, of clean numbers (plain, or rows as wide as
    the model's features), then maybe one flaw: an odd cell, a series one shorter, a row one wider.
    The common case is taken for most clean ones and must refuse every flawed one."""
    n = draw(st.integers(1, 5))
    length = draw(st.integers(spec.input_window.min_length - 1, spec.input_window.length + 2))
    width = len(spec.features) if len(spec.features) > 1 else draw(st.sampled_from([0, 1]))  # 0: plain
    shape = (n, length) if width == 0 else (n, length, width)
    size = int(np.prod(shape))
    cells = draw(st.lists(finite, min_size=size, max_size=size))
    histories: list[Any] = np.array(cells, dtype=object).reshape(shape).tolist()  # ints stay ints
    flaw = draw(st.sampled_from(["none", "cell", "cell", "shorter", "wider"]))
    if length == 0 or flaw == "none":
        return histories
    i, j, k = draw(st.integers(0, n - 1)), draw(st.integers(0, length - 1)), draw(st.integers(0, 2))
    if flaw == "cell" and width == 0:
        histories[i][j] = draw(odd)
    elif flaw == "cell":
        histories[i][j][k % width] = draw(odd)
    elif flaw == "shorter":
        histories[i].pop()
    elif flaw == "wider" and width:
        histories[i][j].append(1.0)
    return histories


SPECS = {
    "uni": make_manifest("u").spec,
    "multi": make_manifest("m", features=("x", "y", "temp"), targets=("x", "y"), window=4).spec,
    # a shorter minimum than the window: histories may differ in length
    "uni-short": make_manifest("u").spec.model_copy(
        update={"input_window": InputWindow(length=6, min_length=2)}
    ),
}


@settings(max_examples=500, deadline=None)
@given(data=st.data(), model=st.sampled_from(sorted(SPECS)))
def test_the_batch_is_what_each_series_gives_alone(data: st.DataObject, model: str) -> None:
    spec = SPECS[model]
    histories = data.draw(
        st.one_of(
            batches(spec),
            batches(spec),
            st.lists(st.one_of(plausible, rows, any_json), min_size=1, max_size=4),
        )
    )
    x, details = values.batch(histories, spec)
    arrays, alone = values.check_all(enumerate(histories), spec)
    assert details == alone
    if alone:
        assert x is None
        return
    assert x is not None
    if len({len(a) for a in arrays}) > 1:  # a short-context model: each series its own history
        assert isinstance(x, list) and len(x) == len(arrays)
        for got, want in zip(x, arrays, strict=True):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
        return
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[2] == len(spec.features)
    np.testing.assert_array_equal(x, np.stack(arrays))


def test_values_name_the_element_and_the_reason() -> None:
    spec = SPECS["uni"]
    cases = [
        ("3", (), "expected a list of numbers, got a string"),
        ([1, 2, 3, 4, 5, 10**400], (5,), "outside the float32 range"),  # not from HTTP: a direct caller
        ([1, 2, float("nan"), 4, 5, 6], (2,), "NaN is not allowed"),
        ([1, 2, 3, float("-inf"), 5, 6], (3,), "infinity is not allowed"),
        ([[1], [2], [3], [4], [5], [True]], (5, 0), "expected a number, got a boolean"),
        ([1, 2, 3], (), "3 points, the model needs at least 6"),
    ]
    for given_values, where, msg in cases:
        with pytest.raises(values.BadValues) as caught:
            values.history(given_values, spec)
        assert (caught.value.where, caught.value.msg[: len(msg)]) == (where, msg), given_values
    x, details = values.batch([[1, 2, 3, 4, 5, 6, 7]] * 2, spec)  # longer than the window: the tail
    assert details == [] and x is not None and x[:, :, 0].tolist() == [[2, 3, 4, 5, 6, 7]] * 2
