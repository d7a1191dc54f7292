"""The engine deployment and its client adapter.

`QvqEngine` (deployed under that name): one replica holds one copy of the model, on one or several
devices. Replicas take many requests at once (`max_ongoing_requests` well above the engine's batch
size) so the engine can fill its batches; autoscaling watches ongoing requests per replica against
a target derived from that batch capacity (`serve/app.py: engine_deployment_options`).

`QvqEngineClient`: an `Engine` that forwards to the deployment through a Serve handle, so the
ingress's Solver talks to it exactly as the batch job's Solver talks to an in-process engine: one
solve loop, two front ends.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from ray import serve

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, Message


@serve.deployment(name="QvqEngine")
class QvqEngine:
    def __init__(self, config_json: str):
        from qvq_ray.engines import build_engine

        self.config = QvqConfig.model_validate_json(config_json)
        self.gpu_ids: list[str] = []
        if self.config.engine.kind == "hf" and self.config.resources.tensor_parallel_size > 1:
            from qvq_ray.serve.placement import claim_bundle_gpus

            self.gpu_ids = claim_bundle_gpus()  # before torch initialises CUDA
        self.engine = build_engine(self.config)

    async def generate(self, messages: list[Message], sampling: dict[str, Any]) -> list[Completion]:
        return await self.engine.generate(messages, SamplingConfig.model_validate(sampling))

    async def stream(self, messages: list[Message], sampling: dict[str, Any]) -> AsyncIterator[str | Completion]:
        """Text deltas, then the final Completion (its token counts and finish reason)."""
        from contextlib import aclosing

        stream = self.engine.stream(messages, SamplingConfig.model_validate(sampling))
        async with aclosing(stream):  # a client that goes away aborts the generation at once
            async for item in stream:
                yield item

    async def placement(self) -> dict[str, Any]:
        """GPU ids this replica claimed from its placement group, and what the process sees."""
        import os

        return {"gpu_ids": self.gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    async def model_name(self) -> str:
        return self.engine.model_name

    async def check_health(self) -> None:
        """Called by Serve periodically: a failing engine gets its replica replaced."""
        await self.engine.check_health()


class QvqEngineClient:
    """`Engine` over a handle to the `QvqEngine` deployment."""

    def __init__(self, handle: Any, model_name: str, replica_retries: int = 2):
        self.handle = handle
        self.model_name = model_name
        self.replica_retries = replica_retries

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        """Retried when the replica died under it (killed, node lost): Serve routes the retry to a live one.

        Generation has no side effects, so a retry is safe; a streamed request cannot be retried
        once text has gone out, and fails instead (see README, "what an in-flight request sees")."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        for attempt in range(self.replica_retries + 1):
            try:
                return await self.handle.generate.remote(messages, sampling.model_dump())
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                if attempt == self.replica_retries:
                    raise
        raise AssertionError("unreachable")

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[str | Completion]:
        response = self.handle.options(stream=True).stream.remote(messages, sampling.model_dump())
        try:
            async for item in response:
                yield item
        except (GeneratorExit, asyncio.CancelledError):
            # Our consumer stopped (client gone, solver cut a loop). Dropping the Serve response does
            # not stop the replica's generator; cancelling it does, and closes the engine's stream.
            response.cancel()
            raise

    async def check_health(self) -> None:
        await self.handle.model_name.remote()

    async def close(self) -> None:
        return None
