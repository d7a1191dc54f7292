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
from typing import Any, AsyncGenerator

from ray import serve

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, EngineHealth, InvalidRequestError, Message, ReplicaLostError, TokenizerAccess


def _replica_gone_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return (ActorDiedError, ActorUnavailableError, RayActorError)


_REPLICA_GONE = _replica_gone_errors()  # the replica serving a call died (killed, node lost)


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

    async def stream(self, messages: list[Message], sampling: dict[str, Any]) -> AsyncGenerator[str | Completion, None]:
        """Text deltas, then the final Completion (its token counts and finish reason)."""
        from contextlib import aclosing

        stream = self.engine.stream(messages, SamplingConfig.model_validate(sampling))
        async with aclosing(stream):  # a client that goes away aborts the generation at once
            async for item in stream:
                yield item

    async def tokenize(self, messages: list[Message], options: dict[str, Any]) -> dict[str, Any]:
        return await self._tokenizer().tokenize(messages, **options)

    async def detokenize(self, tokens: list[int]) -> str:
        return await self._tokenizer().detokenize(tokens)

    async def tokenizer_info(self) -> dict[str, Any]:
        return await self._tokenizer().tokenizer_info()

    def _tokenizer(self) -> TokenizerAccess:
        if not isinstance(self.engine, TokenizerAccess):
            raise InvalidRequestError(f"the {type(self.engine).__name__} engine gives no access to its tokenizer")
        return self.engine

    async def context_screen_source(self) -> dict[str, Any] | None:
        """The engine's tokenizer definition and context length (`ContextBounded`), for the
        ingress's screen (`EngineScreen`); None for an engine that cannot say (a remote endpoint)."""
        from qvq_ray.engines.context_bound import ContextBounded

        if not isinstance(self.engine, ContextBounded):
            return None
        source = self.engine.context_screen_source()
        return source._asdict() if source is not None else None

    async def placement(self) -> dict[str, Any]:
        """GPU ids this replica claimed from its placement group, and what the process sees."""
        import os

        return {"gpu_ids": self.gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    async def model_name(self) -> str:
        return self.engine.model_name

    async def health(self) -> dict[str, Any]:
        """Readiness probe (the ingress's /health): the engine's state, read without generating."""
        return (await self.engine.health()).model_dump()

    async def check_health(self) -> None:
        """Serve's liveness check (every serve.health_check_period_s): raises only when the engine is
        closed, dead or stalled, so Serve restarts a stuck replica and never a busy one. It reads the
        engine's state and generates nothing: a probe generation would queue behind user work."""
        await self.engine.check_health()


class QvqEngineClient:
    """`Engine` over a handle to the `QvqEngine` deployment."""

    def __init__(self, handle: Any, model_name: str, replica_retries: int = 2):
        from qvq_ray.engines.context_bound import EngineScreen

        self.handle = handle
        self.model_name = model_name
        self.replica_retries = replica_retries
        # a prompt surely over the context is refused here, before its body goes to a replica
        self.screen = EngineScreen(lambda: self.handle.context_screen_source.remote())

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        """Retried when the replica died under it (killed, node lost): Serve routes the retry to a live one.

        Generation has no side effects, so a retry is safe."""
        await self.screen.check(messages, sampling.max_tokens)
        for attempt in range(self.replica_retries + 1):
            try:
                completions: list[Completion] = await self.handle.generate.remote(messages, sampling.model_dump())
                return completions
            except _REPLICA_GONE:
                if attempt == self.replica_retries:
                    raise
        raise AssertionError("unreachable")

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncGenerator[str | Completion, None]:
        """Retried whole on a live replica when the one streaming died before its first item; once
        items have gone to our consumer, a replica's death is `ReplicaLostError` (the consumer
        decides: the Solver, which has shown nothing of the sample to anyone, restarts it; an HTTP
        stream that already sent text ends with an in-band error)."""
        await self.screen.check(messages, sampling.max_tokens)
        for attempt in range(self.replica_retries + 1):
            response = self.handle.options(stream=True).stream.remote(messages, sampling.model_dump())
            yielded = 0
            try:
                async for item in response:
                    yielded += 1
                    yield item
                return
            except _REPLICA_GONE as exc:
                if yielded:
                    raise ReplicaLostError(f"the engine replica was lost after {yielded} streamed item(s): {exc}") from exc
                if attempt == self.replica_retries:
                    raise
            except (GeneratorExit, asyncio.CancelledError):
                # Our consumer stopped (client gone, solver cut a loop). Dropping the Serve response does
                # not stop the replica's generator; cancelling it does, and closes the engine's stream.
                response.cancel()
                raise

    async def tokenize(
        self, messages: list[Message], *, add_special_tokens: bool = True, add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        options = {"add_special_tokens": add_special_tokens, "add_generation_prompt": add_generation_prompt,
                   "chat_template_kwargs": chat_template_kwargs}
        tokenized: dict[str, Any] = await self.handle.tokenize.remote(messages, options)
        return tokenized

    async def detokenize(self, tokens: list[int]) -> str:
        text: str = await self.handle.detokenize.remote(tokens)
        return text

    async def tokenizer_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.handle.tokenizer_info.remote()
        return info

    async def health(self) -> "EngineHealth":
        """The state of the replica Serve routes this call to (the caller bounds the wait: with no
        replica alive, or every replica at max_ongoing_requests, the call waits for one)."""
        return EngineHealth.model_validate(await self.handle.health.remote())

    async def check_health(self) -> None:
        from qvq_ray.engines.base import EngineError

        health = await self.health()
        if not health.alive:
            raise EngineError(health.reason or "engine replica is not alive")

    async def close(self) -> None:
        self.screen.close()
