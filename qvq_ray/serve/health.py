"""Liveness, readiness and saturation of the app, three different answers a load balancer needs.

A probe of the engine goes through the Serve handle, so it queues behind user work when every
replica is at `max_ongoing_requests`: a probe that does not come back in time therefore proves
nothing but that the replicas are busy. Then Serve's controller is asked instead: its own health
checks (our `check_health`, which fails a stalled engine) run beside the request queue, and a
replica it counts as RUNNING is alive and can take work once a slot frees. So a busy node stays in
the load balancer (readiness 200, `saturated: true`); only a node with no running engine replica,
or whose replica reports itself stalled or dead, is taken out (an earlier version said 503 on any
probe timeout, a third of the time under ordinary load).

- live: the engine can make progress (no replica says it is dead or stalled; the deployment is
  not UNHEALTHY). Starting up is live.
- ready: a request sent now will be served: a replica is running and not stalled.
- saturated: every replica is busy (the probe queued) or the probed one has requests waiting for a
  batch slot. Reported in the body, a header and /metrics; never a 503 of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from qvq_ray.engines.base import EngineHealth, remote_cause

ENGINE_DEPLOYMENT = "QvqEngine"


class ReplicaCensus(BaseModel):
    """Serve's controller's view of the engine deployment."""

    status: str = Field(..., description="The deployment's status (HEALTHY, UNHEALTHY, UPDATING, UPSCALING...).")
    running: int = Field(0, description="Replicas in state RUNNING (passing Serve's health checks).")
    starting: int = Field(0, description="Replicas being started or recovered.")


class AppHealth(BaseModel):
    live: bool = Field(..., description="The engine can make progress.")
    ready: bool = Field(..., description="A request sent now will be served.")
    saturated: bool = Field(..., description="Every engine slot is taken: new requests wait (they are not refused).")
    reason: str | None = Field(None, description="Why not ready or why saturated, in words.")
    engine: EngineHealth | None = Field(None, description="The probed replica's own state, when one answered in time.")
    replicas: ReplicaCensus | None = Field(None, description="The controller's count, when the probe did not answer.")


def _census_now(app_name: str) -> ReplicaCensus | None:
    """Blocking (a controller RPC): call it off the event loop."""
    from ray import serve

    application = serve.status().applications.get(app_name)
    deployment = application.deployments.get(ENGINE_DEPLOYMENT) if application else None
    if deployment is None:
        return None
    states = deployment.replica_states
    starting = sum(count for state, count in states.items() if state in ("STARTING", "UPDATING", "RECOVERING"))
    status = getattr(deployment.status, "value", deployment.status)  # an enum in Ray 2.60
    return ReplicaCensus(status=str(status), running=states.get("RUNNING", 0), starting=starting)


async def assess(engine: Any, app_name: str, timeout_s: float) -> AppHealth:
    """The app's health within about twice `timeout_s` (a probe, then at most the controller)."""
    try:
        state: EngineHealth = await asyncio.wait_for(engine.health(), timeout=timeout_s)
    except asyncio.TimeoutError:
        return await _from_controller(app_name, timeout_s, f"no engine replica answered a probe within {timeout_s:g} s")
    except Exception as exc:  # the replica died under the probe, or none is deployed yet
        return await _from_controller(app_name, timeout_s, f"engine probe failed: {remote_cause(exc)}")
    if not state.alive:
        return AppHealth(live=False, ready=False, saturated=False, reason=state.reason or "engine is not alive", engine=state)
    saturated = state.waiting > 0
    reason = f"{state.waiting} request(s) waiting for a batch slot" if saturated else None
    return AppHealth(live=True, ready=True, saturated=saturated, reason=reason, engine=state)


async def _from_controller(app_name: str, timeout_s: float, probe_failure: str) -> AppHealth:
    try:
        census = await asyncio.wait_for(asyncio.to_thread(_census_now, app_name), timeout=timeout_s)
    except Exception as exc:
        return AppHealth(live=False, ready=False, saturated=False, reason=f"{probe_failure}; Serve's controller: {exc!r}")
    if census is None:
        return AppHealth(live=False, ready=False, saturated=False, reason=f"{probe_failure}; no engine deployment in app {app_name!r}")
    live = census.status != "UNHEALTHY"
    if census.running >= 1 and live:
        reason = f"saturated: {probe_failure}, and Serve counts {census.running} running replica(s), so all are busy"
        return AppHealth(live=True, ready=True, saturated=True, reason=reason, replicas=census)
    reason = f"{probe_failure}; Serve counts {census.running} running and {census.starting} starting engine replica(s) ({census.status})"
    return AppHealth(live=live, ready=False, saturated=False, reason=reason, replicas=census)
