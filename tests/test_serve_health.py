"""How /health judges liveness, readiness and saturation (serve/health.py), case by case.

The engine is a fake probe target (a stand-in for the Serve handle, named so) and Serve's
controller count is replaced with a stand-in that returns a chosen census: the real controller in
every state (no replica, starting, UNHEALTHY) would need an app per case. The real path, a probe
that queues behind a full replica and the real controller's count, is in tests/test_serve_load.py.
"""

from __future__ import annotations

import asyncio

import pytest

from qvq_ray.engines.base import EngineHealth
from qvq_ray.serve import health
from qvq_ray.serve.health import ReplicaCensus, assess


class ProbeTargetFake:
    """Answers the probe with a state, after a delay, or raises."""

    def __init__(self, state: EngineHealth | None = None, delay_s: float = 0.0, error: Exception | None = None):
        self.state, self.delay_s, self.error = state, delay_s, error

    async def health(self) -> EngineHealth:
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.state


@pytest.fixture
def census(monkeypatch):
    seen: dict = {"census": None, "asked": 0}

    def controller_stand_in(app_name: str):
        seen["asked"] += 1
        return seen["census"]

    monkeypatch.setattr(health, "_census_now", controller_stand_in)
    return seen


def _assess(engine, timeout_s=0.2):
    return asyncio.run(assess(engine, "app", timeout_s))


def test_an_idle_alive_replica_is_ready_and_not_saturated(census):
    report = _assess(ProbeTargetFake(EngineHealth(alive=True, running=0, waiting=0)))
    assert report.ready and report.live and not report.saturated and census["asked"] == 0


def test_requests_waiting_for_a_batch_slot_are_saturation_not_unreadiness(census):
    report = _assess(ProbeTargetFake(EngineHealth(alive=True, running=8, waiting=3)))
    assert report.ready and report.saturated and "3 request(s) waiting" in report.reason


def test_a_stalled_replica_is_neither_live_nor_ready(census):
    report = _assess(ProbeTargetFake(EngineHealth(alive=False, stalled=True, reason="no generation step for 130 s")))
    assert not report.ready and not report.live and report.reason == "no generation step for 130 s"


def test_a_probe_that_queues_behind_a_running_replica_is_ready_and_saturated(census):
    census["census"] = ReplicaCensus(status="HEALTHY", running=2)
    report = _assess(ProbeTargetFake(EngineHealth(alive=True), delay_s=5.0))
    assert report.ready and report.live and report.saturated and census["asked"] == 1
    assert report.replicas.running == 2 and report.engine is None


@pytest.mark.parametrize(
    "state, live",
    [(ReplicaCensus(status="UPSCALING", running=0, starting=1), True), (ReplicaCensus(status="UNHEALTHY", running=0), False)],
)
def test_no_running_replica_is_not_ready(census, state, live):
    census["census"] = state
    report = _assess(ProbeTargetFake(error=RuntimeError("no replica")))
    assert not report.ready and report.live is live and not report.saturated
    assert "engine probe failed: no replica" in report.reason and "0 running" in report.reason


def test_a_running_replica_in_an_unhealthy_deployment_is_not_ready(census):
    census["census"] = ReplicaCensus(status="UNHEALTHY", running=1)
    report = _assess(ProbeTargetFake(EngineHealth(alive=True), delay_s=5.0))
    assert not report.ready and not report.live


def test_an_app_without_the_engine_deployment_is_not_ready(census):
    report = _assess(ProbeTargetFake(EngineHealth(alive=True), delay_s=5.0))
    assert not report.ready and "no engine deployment in app 'app'" in report.reason


def test_metrics_show_the_latest_judgement():
    from qvq_ray.serve.health import AppHealth
    from qvq_ray.serve.metrics import ServeMetrics

    metrics = ServeMetrics("m")
    metrics.health(AppHealth(live=True, ready=True, saturated=True, replicas=ReplicaCensus(status="HEALTHY", running=1)))
    text = metrics.render().decode()
    assert "qvq_ray_engine_saturated 1.0" in text and "qvq_ray_engine_up 1.0" in text and "qvq_ray_engine_live 1.0" in text
    metrics.health(AppHealth(live=True, ready=False, saturated=False, reason="0 running"))
    text = metrics.render().decode()
    assert "qvq_ray_engine_saturated 0.0" in text and "qvq_ray_engine_up 0.0" in text
    metrics.health(AppHealth(live=True, ready=True, saturated=False, engine=EngineHealth(alive=True, running=3, waiting=0)))
    assert "qvq_ray_engine_running 3.0" in metrics.render().decode()
