"""The timeout-safe worker pool: hard kill and replace, errors, allowlist, concurrency, memory cap."""

from __future__ import annotations

import asyncio
import time

import pytest

from qvq_ray.verify.pool import ALLOWED_FUNCTIONS, VerifyPool, VerifyTimeout, VerifyWorkerError

SLEEP = "qvq_ray.verify.pool._sleep_for_test"


@pytest.fixture(scope="module")
def pool():
    with VerifyPool(workers=2, timeout_s=10.0) as p:
        yield p


def test_pool_kills_a_hanging_call_and_recovers(pool):
    assert pool.call(SLEEP, 0.0) == 0.0  # warm: the timeout below measures the call only
    start = time.perf_counter()
    with pytest.raises(VerifyTimeout):
        pool.call(SLEEP, 30.0, timeout_s=1.0)
    assert time.perf_counter() - start < 1.0 + 3.0
    # The killed worker was replaced: calls keep working, on every worker.
    results = [pool.call(SLEEP, 0.01) for _ in range(4)]
    assert results == [0.01] * 4


def test_pool_errors_and_deaths_come_back(pool):
    with pytest.raises(VerifyWorkerError, match="boom"):
        pool.call("qvq_ray.verify.pool._raise_for_test", "boom")
    with pytest.raises(VerifyWorkerError, match="died"):
        pool.call("qvq_ray.verify.pool._exit_for_test", 3)
    assert pool.call(SLEEP, 0.0) == 0.0


def test_pool_runs_only_allowlisted_names(pool):
    with pytest.raises(PermissionError):
        pool.call("os.system", "echo hacked")
    with pytest.raises(PermissionError):
        pool.call("builtins.eval", "1+1")
    assert all(name.startswith("qvq_ray.verify.") for name in ALLOWED_FUNCTIONS)


def test_pool_calls_from_an_event_loop_run_concurrently(pool):
    async def main():
        return await asyncio.gather(*(pool.run_blocking(lambda: pool.call(SLEEP, 0.8)) for _ in range(2)))

    pool.call(SLEEP, 0.0)
    start = time.perf_counter()
    assert asyncio.run(main()) == [0.8, 0.8]
    assert time.perf_counter() - start < 1.5  # two workers: in parallel, not one after another


def test_memory_limit_is_applied_and_survivable():
    with VerifyPool(workers=1, timeout_s=20.0, memory_limit_mb=256) as p:
        with pytest.raises(VerifyWorkerError, match="MemoryError"):
            p.call("qvq_ray.verify.pool._allocate_for_test", 1024)
        assert p.call(SLEEP, 0.0) == 0.0
    with VerifyPool(workers=1, timeout_s=20.0, memory_limit_mb=0) as p:  # 0: no cap
        assert p.call("qvq_ray.verify.pool._allocate_for_test", 300) == 300 * 1024 * 1024


def test_closed_pool_refuses_calls():
    p = VerifyPool(workers=1, timeout_s=5.0)
    assert p.call(SLEEP, 0.0) == 0.0
    proc = next(iter(p._all)).process
    p.close()
    assert proc.poll() is not None  # the worker process is gone
    with pytest.raises(RuntimeError):
        p.call(SLEEP, 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        VerifyPool(workers=0)
    with pytest.raises(ValueError):
        VerifyPool(timeout_s=0)
    with pytest.raises(ValueError):
        VerifyPool(memory_limit_mb=-1)
