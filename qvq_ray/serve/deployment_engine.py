"""An `Engine` that forwards to the engine deployment through a Serve handle.

The ingress's Solver talks to this exactly as the batch job's Solver talks to an in-process
engine: one solve loop, two front ends.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from qvq_ray.config import SamplingConfig
from qvq_ray.engines.base import Completion, Message


class DeploymentEngine:
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

    async def generate_with_stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[Any]:
        async for item in self.handle.options(stream=True).stream.remote(messages, sampling.model_dump()):
            yield item

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[str]:
        async for item in self.generate_with_stream(messages, sampling):
            if isinstance(item, str):
                yield item

    async def check_health(self) -> None:
        await self.handle.model_name.remote()

    async def close(self) -> None:
        return None
