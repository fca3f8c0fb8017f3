"""Adaptive batching (issue 16): concurrent calls share one model call, each gets its own rows and
its own errors, nothing waits when nothing else is queued, and the service wires it from settings."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.app import create_app
from service.batching import BatchingPredictor
from service.bundle.manifest import ModelSpec, NetworkSpec
from service.settings import Settings
from training.models import model_spec

SPEC: ModelSpec = model_spec(NetworkSpec(quantiles=[80.0]), ["value"], ["value"], 6, 2)


class Slow:
    """A predictor that takes ``seconds`` per call and records the batch of each; its forecast of a
    row is the row's last value and the sum of its values, so a wrong row shows."""

    def __init__(self, seconds: float = 0.02, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls: list[tuple[int, bool]] = []
        self.lock = threading.Lock()

    @property
    def spec(self) -> ModelSpec:
        return SPEC

    def _answer(self, x: np.ndarray, bounds: bool) -> np.ndarray:
        with self.lock:
            self.calls.append((len(x), bounds))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("the model failed")
        return np.stack([x[:, -1, :], x.sum(axis=1)], axis=1).astype(np.float32)  # (batch, 2, 1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._answer(x, False)

    def predict_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = self._answer(x, True)
        return y, np.stack([np.stack([y - 1]), np.stack([y + 1])])  # (2, 1 level, batch, 2, 1)


def inputs(n: int, rows: int = 1, time_steps: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(rows, time_steps, 1)).astype(np.float32) for _ in range(n)]


def expected(x: np.ndarray) -> np.ndarray:
    return np.stack([x[:, -1, :], x.sum(axis=1)], axis=1)


def test_concurrent_calls_share_model_calls_and_each_gets_its_own_rows():
    inner = Slow()
    batcher = BatchingPredictor(inner, max_size=64)
    xs = inputs(32)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(batcher.predict, xs))
    for x, y in zip(xs, answers, strict=True):
        np.testing.assert_allclose(y, expected(x), rtol=1e-6)
    sizes = [n for n, _ in inner.calls]
    assert sum(sizes) == 32
    assert len(sizes) < 16 and max(sizes) > 1  # batched: fewer calls than requests


def test_a_batch_holds_at_most_max_size_series():
    inner = Slow()
    batcher = BatchingPredictor(inner, max_size=4)
    xs = inputs(24)
    with ThreadPoolExecutor(24) as pool:
        list(pool.map(batcher.predict, xs))
    assert max(n for n, _ in inner.calls) <= 4 and sum(n for n, _ in inner.calls) == 24


def test_shapes_and_bounds_go_to_separate_calls_and_bounds_are_sliced_per_request():
    inner = Slow(seconds=0.05)
    batcher = BatchingPredictor(inner, max_size=64, max_delay=0.2)
    short, long = inputs(3, time_steps=4), inputs(3, time_steps=6)
    with ThreadPoolExecutor(9) as pool:
        plain = [pool.submit(batcher.predict, x) for x in short + long]
        bounded = [pool.submit(batcher.predict_bounds, x) for x in long]
        for x, f in zip(short + long, plain, strict=True):
            np.testing.assert_allclose(f.result(), expected(x), rtol=1e-6)
        for x, f in zip(long, bounded, strict=True):
            y, learned = f.result()
            np.testing.assert_allclose(y, expected(x), rtol=1e-6)
            np.testing.assert_allclose(learned[1, 0], expected(x) + 1, rtol=1e-6)
            assert learned.shape == (2, 1, 1, 2, 1)
    assert {bounds for _, bounds in inner.calls} == {False, True}
    assert sum(n for n, b in inner.calls if b) == 3


def test_a_failed_call_fails_each_of_its_requests_and_the_next_calls_work():
    inner = Slow(fail=True)
    batcher = BatchingPredictor(inner, max_size=8)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.predict, x) for x in inputs(4)]
        for f in futures:
            with pytest.raises(RuntimeError, match="the model failed"):
                f.result()
    inner.fail = False
    x = inputs(1)[0]
    np.testing.assert_allclose(batcher.predict(x), expected(x), rtol=1e-6)


def test_a_lone_request_is_answered_at_once_and_a_big_one_skips_the_queue():
    inner = Slow(seconds=0.0)
    batcher = BatchingPredictor(inner, max_size=8, max_delay=0.0)
    x = inputs(1)[0]
    batcher.predict(x)  # starts the batcher thread
    started = time.perf_counter()
    for _ in range(20):
        batcher.predict(x)
    assert (time.perf_counter() - started) / 20 < 0.01  # no timer on an idle queue
    big = inputs(1, rows=8)[0]
    np.testing.assert_allclose(batcher.predict(big), expected(big), rtol=1e-6)
    assert inner.calls[-1] == (8, False)


def test_max_delay_gathers_requests_that_arrive_within_it():
    inner = Slow(seconds=0.0)
    batcher = BatchingPredictor(inner, max_size=8, max_delay=0.3)
    xs = inputs(2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.predict, xs[0])
        time.sleep(0.05)
        second = pool.submit(batcher.predict, xs[1])
        first.result(), second.result()
    assert inner.calls == [(2, False)]


def test_batching_needs_threads(tmp_path: Path):
    with pytest.raises(ValueError, match="SEQCAST_THREADS above 1"):
        Settings(model_dir=tmp_path, batch_max_size=64, threads=1)


@pytest.mark.slow
def test_the_service_batches_concurrent_forecasts(tiny_bundle_dir):
    """Through the app: each of many concurrent requests gets the answer it gets alone, and the
    metrics count requests per model call."""
    model_dir, name = tiny_bundle_dir.model_dir, tiny_bundle_dir.name
    plain = create_app(Settings(model_dir=model_dir)).test_client()
    app = create_app(Settings(model_dir=model_dir, threads=8, batch_max_size=64))
    client = app.test_client()
    rng = np.random.default_rng(0)
    bodies = [
        {"series": [{"values": (300 + 50 * rng.normal(size=12)).round(1).tolist()}], "levels": [80]}
        for _ in range(24)
    ]
    alone = [plain.post(f"/v1/models/{name}/forecast", json=b).get_json()["forecasts"] for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: client.post(f"/v1/models/{name}/forecast", json=b), bodies))
    for answer, want in zip(together, alone, strict=True):
        assert answer.status_code == 200
        got = answer.get_json()["forecasts"]
        np.testing.assert_allclose(got[0]["mean"], want[0]["mean"], rtol=1e-5)
        np.testing.assert_allclose(
            got[0]["intervals"]["80"]["lower"], want[0]["intervals"]["80"]["lower"], rtol=1e-5
        )
    text = client.get("/metrics").get_data(as_text=True)
    count = next(
        line
        for line in text.splitlines()
        if line.startswith(f'seqcast_batch_requests_count{{model="{name}"}}')
    )
    total = next(
        line for line in text.splitlines() if line.startswith(f'seqcast_batch_requests_sum{{model="{name}"}}')
    )
    assert float(total.split()[-1]) == 24 and float(count.split()[-1]) <= 24
