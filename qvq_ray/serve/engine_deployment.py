"""The engine deployment: one replica holds one copy of the model (on one or several devices).

Replicas take many requests at once (`max_ongoing_requests` well above the engine's batch size)
so the engine's micro-batcher can fill its batches; autoscaling watches ongoing requests per
replica against a target derived from that batch capacity.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from ray import serve

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, Message


@serve.deployment(name="QvqEngine")
class EngineServer:
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

    async def stream(self, messages: list[Message], sampling: dict[str, Any]) -> AsyncIterator[Any]:
        """Text deltas, then the final Completion (its token counts and finish reason)."""
        from contextlib import aclosing

        stream = self.engine.generate_with_stream(messages, SamplingConfig.model_validate(sampling))
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
