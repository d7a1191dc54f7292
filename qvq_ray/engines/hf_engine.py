"""The transformers engine: Qwen2-VL / QVQ through `generate`, with a micro-batcher.

Why a micro-batcher: a Ray Data actor or a Serve replica runs many solves at once; each calls
`generate` on its own. Concurrent calls queue up and are run as one left-padded `generate` batch
(grouped by sampling settings), so the accelerator sees a full batch instead of one chain at a
time. Greedy output in a batch equals greedy output alone (tested).

One model call runs at a time on a dedicated thread, so the event loop (Serve, the solver, the
verifier) never blocks on the model. Each request is prepared (images decoded, chat template,
tokenized, prompt length checked) on a second thread before it joins a batch, so one request's big
images or long prompt cost that request, not the batch in progress; a prompt over
`model.max_prompt_chars` is refused before any tokenizer runs. Message text is tokenized as text
(prompt_tokens.py) and each image's placeholder expanded to its feature count here, so the only
image tokens a prompt holds are its images'. A request that cannot be prepared fails alone; the
rest of its batch goes on.

Every request ends with a result or an exception, whatever its preparation or its batch raised:
work on the two threads runs through `contained_call` (asyncio cannot put a StopIteration into a
future: the awaiting task would wait forever), a batch's requests still open after their
`generate` are failed, and close() or a dying batch loop fails every request still in the engine.

Every generation step passes through `_StepMonitor`: it ticks the liveness clock (`StallWatch`),
stops rows whose client went away, rows at their own max_tokens, and rows that produced a stop
string (matched over a short window of new text, so a step costs the same whatever the stop
strings' length), and streams deltas.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable, TypeVar

from qvq_ray.config import HFEngineConfig, ModelConfig, QvqConfig, SamplingConfig
from qvq_ray.engines.hf_sampling import LogprobRecorder, logits_processors, prompt_logprobs, step_logprobs, token_logprobs
from qvq_ray.engines.base import (
    Completion,
    EngineError,
    EngineHealth,
    FinishReason,
    InvalidRequestError,
    Message,
    StallWatch,
    TextDelta,
    check_prompt_chars,
    check_prompt_ids,
    contained_call,
    preparation_error,
    prompt_chars,
    raw_prompt_ids,
    raw_prompt_text,
    split_images,
)
from qvq_ray.engines.context_bound import (
    ContextScreen,
    ScreenSource,
    hf_token_counter,
    over_context_error,
    refuse_surely_over_context,
)
from qvq_ray.engines.smallest_first import SmallestFirst
from qvq_ray.engines.prompt_tokens import chat_prompt_ids, check_chat_template_kwargs, check_raw_prompt, media_tokens

if TYPE_CHECKING:
    import torch

    from qvq_ray.engines.timing import EngineTiming

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # compared and hashed by identity: the engine keeps a set of open requests
class _Request:
    messages: list[Message]
    sampling: SamplingConfig
    future: asyncio.Future[list[Completion]]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)  # reached the engine
    queued: float | None = None  # prepared, joined the batch queue
    deltas: asyncio.Queue[Any] | None = None  # set for streaming requests
    cancelled: bool = False  # set when the consumer stops listening: the row stops generating
    counted: bool = False  # joined the batch queue (the StallWatch counts it in flight)
    screened: bool = False  # the context screen bounded its tokens already
    # filled by _prepare
    inputs: dict[str, Any] = field(default_factory=dict)  # the processor's tensors for this prompt alone
    prompt_tokens: int = 0


def _group_key(sampling: SamplingConfig, index: int) -> tuple[Any, ...]:
    """Requests sharing a key can run in one `generate` call.

    max_tokens is not part of it (rows are cut to their own limit). A seeded sampled request runs
    alone so its seed gives the same text whatever else is in flight.
    """
    sampled = not sampling.greedy
    seeded = sampled and sampling.seed is not None
    return (
        sampling.temperature if sampled else 0.0,
        sampling.top_p if sampled else 1.0,
        sampling.top_k if sampled else 0,
        tuple(sampling.stop),
        sampling.n,
        sampling.repetition_penalty,
        sampling.presence_penalty,
        sampling.frequency_penalty,
        sampling.min_p if sampled else 0.0,
        sampling.min_tokens,
        sampling.logprobs,
        sampling.prompt_logprobs,
        sampling.ignore_eos,
        (sampling.seed, index) if seeded else None,
    )


def _length_bucket(prompt_tokens: int) -> int:
    """Prompts batched together are within a factor of 4 in length (64-255, 256-1023, ... tokens).

    A batch is left-padded to its longest prompt, so one 10k-token prompt (8 images at full
    resolution) in a batch of short chats would make every row pay its prefill."""
    return max(prompt_tokens, 1).bit_length() // 2


class HFEngine:
    """`Engine` over transformers' `Qwen2VLForConditionalGeneration` (any Qwen2-VL checkpoint)."""

    def __init__(self, model: ModelConfig, engine: HFEngineConfig | None = None):
        from qvq_ray.models.tiny import resolve_model_path

        self.model_config = model
        self.engine_config = engine or HFEngineConfig()
        self.path = resolve_model_path(model.path)
        self.model_name = model.served_model_name or model.path.rstrip("/").split("/")[-1]
        self._load()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        # One thread: the fast tokenizer is not safe to call from two threads at once.
        self._prepare_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-prepare")
        # long prompts, before the prepare lane; the same source builds the ingress's screen
        self._screen_source = ScreenSource.of(self.tokenizer, self.max_model_len)
        self._screen = ContextScreen.from_source(self._screen_source) if self._screen_source is not None else None
        self._watch = StallWatch(self.engine_config.stall_limit_s)
        self._queue: asyncio.Queue[_Request] | None = None
        self._prepare_lane: SmallestFirst | None = None  # prompt preparation, smallest first
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._open: set[_Request] = set()  # submitted and not yet answered: failed on close

    @classmethod
    def from_config(cls, config: QvqConfig) -> "HFEngine":
        if not isinstance(config.engine, HFEngineConfig):  # build_engine picks this engine by engine.kind
            raise TypeError(f"HFEngine needs an HFEngineConfig, got {type(config.engine).__name__}")
        return cls(config.model, config.engine)

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        import torch
        from transformers import Qwen2VLForConditionalGeneration

        from qvq_ray.models.processor import load_processor

        cfg = self.engine_config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        dtype = self.model_config.dtype
        if dtype == "auto":
            torch_dtype = "auto" if device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": self.model_config.trust_remote_code}
        if cfg.device_map:
            kwargs["device_map"] = cfg.device_map  # shard one replica's copy over its GPUs
        model = Qwen2VLForConditionalGeneration.from_pretrained(self.path, **kwargs)
        if not cfg.device_map:
            model = model.to(device)
        self.model = model.eval()
        self.processor = load_processor(
            self.path, min_pixels=self.model_config.min_pixels, max_pixels=self.model_config.max_pixels
        )
        self.tokenizer = self.processor.tokenizer
        self.media_tokens = media_tokens(self.tokenizer)
        text_cfg = self.model.config.get_text_config()
        self.eos_token_ids = self._eos_ids(text_cfg)
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        self.max_model_len = self.model_config.max_model_len or int(text_cfg.max_position_embeddings)

    def _eos_ids(self, text_cfg: Any) -> list[int]:
        ids: list[int] = []
        for source in (getattr(self.model.generation_config, "eos_token_id", None), text_cfg.eos_token_id):
            if source is None:
                continue
            for i in source if isinstance(source, (list, tuple)) else [source]:
                if i not in ids:
                    ids.append(int(i))
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end not in ids and im_end != self.tokenizer.unk_token_id:
            ids.append(im_end)
        return ids

    # ------------------------------------------------------------------ public API

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        if sampling.greedy and sampling.n > 1:
            # Greedy is deterministic (and transformers refuses greedy num_return_sequences > 1):
            # generate once, repeat the sample n times, as the vLLM and OpenAI engines do.
            request = self._submit(messages, sampling.model_copy(update={"n": 1}))
            return [c.model_copy() for c in await request.future for _ in range(sampling.n)]
        request = self._submit(messages, sampling)
        return await request.future

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncGenerator[str | Completion, None]:
        """Text deltas of one sample as tokens are generated, then its final Completion.

        Closing this generator early (the client went away, the solver cut a loop) aborts the
        request: its row stops generating at the next step, the rest of its batch goes on.
        """
        if sampling.n != 1:
            raise InvalidRequestError("streaming supports n=1 per request")
        request = self._submit(messages, sampling, stream=True)
        assert request.deltas is not None
        shown = _StopHoldback(sampling.stop)
        finished = False
        pending: list[Any] = []  # log-probabilities of tokens whose text is not out yet
        try:
            while (item := await request.deltas.get()) is not None:
                delta, entries, usage = item
                pending.extend(entries)
                if text := shown.feed(delta):
                    yield TextDelta(text, pending, usage)
                    pending = []
            completion = (await request.future)[0]  # raises the request's error, if any
            if rest := shown.rest(completion.text):
                yield rest
            finished = True
            yield completion
        finally:
            if not finished:
                request.cancelled = True

    # ------------------------------------------------------------------ tokenizer (TokenizerAccess)

    async def tokenize(
        self, messages: list[Message], *, add_special_tokens: bool = True, add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The prompt's token ids as generation builds them (each image's placeholder expanded to its
        features), on the prepare thread (the tokenizer is not shared between threads)."""
        check_prompt_chars(messages, self.model_config.max_prompt_chars)

        def ids() -> list[int]:
            try:
                tokens, images = self._prompt_ids(
                    messages, chat_template_kwargs, add_special_tokens=add_special_tokens,
                    add_generation_prompt=add_generation_prompt,
                )
                return self._model_inputs(tokens, images)["input_ids"][0].tolist() if images else tokens
            except Exception as exc:
                raise preparation_error(exc) from exc

        tokens = await self._on_prepare_thread(ids)
        return {"tokens": tokens, "max_model_len": self.max_model_len}

    async def detokenize(self, tokens: list[int]) -> str:
        if not tokens:
            return ""
        check_prompt_ids(tokens, len(self.tokenizer), {})
        return await self._on_prepare_thread(lambda: self.tokenizer.decode(tokens, skip_special_tokens=False))

    async def tokenizer_info(self) -> dict[str, Any]:
        from qvq_ray.engines.prompt_tokens import tokenizer_info

        return tokenizer_info(self.tokenizer, self.processor.chat_template)

    async def _on_prepare_thread(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise EngineError("engine is closed")
        return await asyncio.get_running_loop().run_in_executor(self._prepare_executor, contained_call, fn)

    async def health(self) -> EngineHealth:
        reason = None
        task = self._loop_task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            reason = f"batch loop died: {task.exception()!r}"
        return self._watch.health(closed=self._closed, reason=reason)

    async def check_health(self) -> None:
        health = await self.health()
        if not health.alive:
            raise EngineError(health.reason or "engine is not alive")

    async def close(self) -> None:
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._prepare_executor.shutdown(wait=False, cancel_futures=True)
        if self._screen is not None:
            self._screen.close()
        self._fail_open(EngineError("engine is closed"))

    def context_screen_source(self) -> ScreenSource | None:
        """`ContextBounded`: this engine's tokenizer and context, for the Serve ingress's screen."""
        return self._screen_source

    def _fail_open(self, exc: Exception, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Fail every request still in the engine (of `loop` only, when given): none waits forever."""
        for request in list(self._open):
            if loop is None or request.loop is loop:
                _resolve(request, exc=exc)

    # ------------------------------------------------------------------ batching

    def _submit(self, messages: list[Message], sampling: SamplingConfig, stream: bool = False) -> _Request:
        if self._closed:
            raise EngineError("engine is closed")
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop_task is None or self._loop_task.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._prepare_lane = SmallestFirst(self._prepare_executor)  # of this loop, like the queue
            self._loop_task = loop.create_task(self._batch_loop(self._queue))
        request = _Request(messages, sampling, loop.create_future(), loop, deltas=asyncio.Queue() if stream else None)
        request.future.add_done_callback(lambda _: self._watch.finished() if request.counted else None)
        self._open.add(request)
        request.future.add_done_callback(lambda _: self._open.discard(request))
        admit = loop.create_task(self._admit(request, self._queue, self._loop_task))
        request.future.add_done_callback(lambda _: admit.cancel())
        return request

    async def _admit(self, request: _Request, queue: asyncio.Queue[_Request], batch_loop: asyncio.Task[None]) -> None:
        """Prepare the request off the model thread, then queue it for a batch (or fail it alone).

        A preparation failure is the request's input at fault (a 400): a processor error about its
        images or text, a prompt over a limit. A queue whose batch loop has ended is never joined
        (health reports the loop's death; Serve restarts the replica)."""
        try:
            if self._screen is not None:  # a prompt surely over the context never takes the prepare lane
                check_prompt_chars(request.messages, self.model_config.max_prompt_chars)
                request.screened = await self._screen.screen(request.messages, request.sampling.max_tokens)
            lane = self._prepare_lane
            if lane is None:  # never: _submit sets it before the request is admitted
                raise EngineError("engine is closed")
            await lane.run(prompt_chars(request.messages), contained_call, self._prepare, request)
        except asyncio.CancelledError:  # its future is done, or the engine closed under it
            _resolve(request, exc=EngineError("engine is closed"))
            raise
        except Exception as exc:
            _resolve(request, exc=preparation_error(exc))
            return
        if request.future.done() or request.cancelled:
            return
        if batch_loop.done():
            _resolve(request, exc=EngineError("engine is closed" if self._closed else "the engine's batch loop stopped"))
            return
        request.counted = True
        request.queued = time.perf_counter()
        self._watch.started()
        queue.put_nowait(request)

    async def _batch_loop(self, queue: asyncio.Queue[_Request]) -> None:
        try:
            while True:
                await self._run_batch(await self._next_batch(queue))
        finally:  # cancelled by close(), or died of a bug: none of this loop's requests waits forever
            reason = "engine is closed" if self._closed else "the engine's batch loop stopped"
            self._fail_open(EngineError(reason), asyncio.get_running_loop())

    async def _next_batch(self, queue: asyncio.Queue[_Request]) -> list[_Request]:
        """The next batch: the first queued request, then whatever else arrives within batch_wait_ms."""
        cfg = self.engine_config
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + cfg.batch_wait_ms / 1000.0
        while len(batch) < cfg.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0 and queue.empty():
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=max(remaining, 0.0)))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run_batch(self, batch: list[_Request]) -> None:
        """Run a batch's groups (one `generate` each) on the model thread, one after another.

        A group that raises is failed and the engine keeps serving. _run_group answers each request
        from the model thread through call_soon_threadsafe, which runs before this coroutine
        resumes, so a request still open afterwards got no answer: it is failed, never left waiting."""
        loop = asyncio.get_running_loop()
        groups: dict[tuple[Any, ...], list[_Request]] = {}
        for index, request in enumerate(batch):
            if not request.future.done():
                key = (_group_key(request.sampling, index), _length_bucket(request.prompt_tokens))
                groups.setdefault(key, []).append(request)
        for group in groups.values():
            try:
                await loop.run_in_executor(self._executor, contained_call, self._run_group, group)
            except Exception as exc:  # a bug or an engine crash: fail the group, keep serving
                logger.exception("generate failed")
                for request in group:
                    _resolve(request, exc=EngineError(f"generation failed: {exc}"))
            for request in group:
                _resolve(request, exc=EngineError("generation ended without an answer for this request"))

    # ------------------------------------------------------------------ model thread

    def _prepare(self, request: _Request) -> None:
        """Token ids and tensors of one request (prepare thread): cheap checks before costly ones."""
        if request.cancelled or request.future.done():
            return  # its client went away (or it was refused) while it waited for this thread
        check_prompt_chars(request.messages, self.model_config.max_prompt_chars)
        if not request.screened:
            refuse_surely_over_context(request.messages, hf_token_counter(self.tokenizer), request.sampling.max_tokens, self.max_model_len)
        ids, images = self._prompt_ids(request.messages, request.sampling.chat_template_kwargs)
        inputs = self._model_inputs(ids, images)
        request.prompt_tokens = int(inputs["input_ids"].shape[1])
        if request.prompt_tokens + request.sampling.max_tokens > self.max_model_len:
            raise over_context_error(str(request.prompt_tokens), request.sampling.max_tokens, self.max_model_len)
        request.inputs = inputs

    def _prompt_ids(
        self, messages: list[Message], chat_template_kwargs: dict[str, Any] | None = None, *, add_special_tokens: bool = True,
        add_generation_prompt: bool = True,
    ) -> tuple[list[int], list[Any]]:
        """(token ids with one image placeholder per image, the decoded images).

        Chat messages: the chat template's structure, their text as text (prompt_tokens.py). A raw
        prompt: tokenized as is, special tokens parsed (vLLM's /v1/completions does the same), but
        no image placeholder (there is no image for it, and in a batch it would break the image
        features of the other rows)."""
        raw = raw_prompt_text(messages)
        if (ids := raw_prompt_ids(messages)) is not None:
            check_prompt_ids(ids, len(self.tokenizer), {self.tokenizer.convert_tokens_to_ids(t): t for t in self.media_tokens})
            return ids, []
        if raw is not None:
            check_raw_prompt(raw, self.media_tokens)
            return list(self.tokenizer(raw, split_special_tokens=False, add_special_tokens=add_special_tokens)["input_ids"]), []
        check_chat_template_kwargs(self.processor.chat_template, chat_template_kwargs)
        template_messages, images = split_images(messages, max_images=self.model_config.max_images_per_prompt)
        ids = chat_prompt_ids(
            template_messages, lambda marked: self._apply_template(marked, add_generation_prompt, chat_template_kwargs),
            self.tokenizer, special_tokens_in_text=self.model_config.special_tokens_in_text,
        )
        return ids, images

    def _apply_template(
        self, template_messages: list[Message], add_generation_prompt: bool = True, chat_template_kwargs: dict[str, Any] | None = None
    ) -> str:
        prompt: str = self.processor.apply_chat_template(
            template_messages, tokenize=False, add_generation_prompt=add_generation_prompt, **(chat_template_kwargs or {})
        )
        return prompt

    def _model_inputs(self, ids: list[int], images: list[Any]) -> dict[str, Any]:
        """The tensors the processor would give for this prompt: the images through its image
        processor, each image's placeholder repeated once per feature (its `replace_image_token`,
        in ids), and the per-token tensors."""
        import torch

        image_inputs = dict(self.processor(images=images, return_tensors="pt")) if images else {}
        grid = image_inputs.get("image_grid_thw")
        merge = int(self.processor.image_processor.merge_size) ** 2
        features = [int(thw.prod()) // merge for thw in grid] if grid is not None else []
        ids = _expand_image_placeholders(ids, features, self.processor.image_token_id, self.processor.video_token_id)
        input_ids = torch.tensor([ids], dtype=torch.long)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if "mm_token_type_ids" in self.processor.model_input_names:
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids([ids]), dtype=torch.long)
        return {**inputs, **image_inputs}

    def _collate(self, ready: list[_Request]) -> dict[str, Any]:
        """One left-padded batch from prepared prompts, as the processor would build it with padding:
        per-token tensors padded on the left (input ids with the pad token, masks with 0), image
        tensors concatenated in prompt order."""
        import torch

        length = max(r.prompt_tokens for r in ready)
        batch: dict[str, Any] = {}
        for key in {k for r in ready for k in r.inputs}:
            parts = [r.inputs[key] for r in ready if key in r.inputs]
            if all(key in r.inputs and r.inputs[key].shape == r.inputs["input_ids"].shape for r in ready):
                fill = self.pad_token_id if key == "input_ids" else 0
                batch[key] = torch.cat(
                    [torch.nn.functional.pad(t, (length - t.shape[1], 0), value=fill) for t in parts]
                )
            else:
                batch[key] = torch.cat(parts)
        return batch

    def _run_group(self, group: list[_Request]) -> None:
        import torch

        ready = []
        for request in group:
            if request.cancelled:  # its client went away while it waited: nothing to generate
                _resolve(request, result=[Completion(text="", finish_reason="abort", prompt_tokens=request.prompt_tokens)])
            elif not request.future.done():
                ready.append(request)
        if not ready:
            return
        inputs = self._collate(ready)
        prompt_lens = [r.prompt_tokens for r in ready]
        device = self.model.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        sampling = ready[0].sampling
        max_new = max(r.sampling.max_tokens for r in ready)
        recorder = LogprobRecorder() if sampling.logprobs is not None else None
        gen_kwargs = self._generation_kwargs(sampling, max_new, recorder)
        monitor = _StepMonitor(self, ready, sampling.n, recorder)
        gen_kwargs["stopping_criteria"] = [monitor]
        if not sampling.greedy and sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        self._watch.running = len(ready)
        monitor.begun = time.perf_counter()
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, **gen_kwargs)
        finally:
            self._watch.running = 0
            self._watch.step()
        prompt_entries = self._prompt_logprobs(ready) if sampling.prompt_logprobs is not None else {}
        sequences = output.sequences if hasattr(output, "sequences") else output
        new_tokens = sequences[:, inputs["input_ids"].shape[1]:].tolist()
        now = time.perf_counter()
        n = sampling.n
        for i, request in enumerate(ready):
            completions = [
                self._to_completion(
                    new_tokens[i * n + j][: monitor.produced[i * n + j]], request, int(prompt_lens[i]), now,
                    monitor.logprobs.get(i * n + j), monitor,
                )
                for j in range(n)
            ]
            for completion in completions:
                completion.prompt_logprobs = prompt_entries.get(id(request))
            _resolve(request, result=completions)

    def _prompt_logprobs(self, ready: list[_Request]) -> dict[int, list[Any]]:
        """Each prompt's token log-probabilities from the logits of a forward pass over it alone
        (the prefill's; generate does not return them), with the raw model distribution as vLLM's
        prompt_logprobs: no temperature or truncation. Each token's text is what it adds to the
        prompt's text, special tokens included."""
        import torch

        out = {}
        for request in ready:
            inputs = {k: v.to(self.model.device) for k, v in request.inputs.items()}
            with torch.inference_mode():
                logits = self.model(**inputs).logits[0]
            self._watch.step()
            ids = inputs["input_ids"][0].tolist()
            decoder = _IncrementalDecoder(self.tokenizer, skip_special_tokens=False)
            texts = [decoder.push(token) for token in ids]
            out[id(request)] = prompt_logprobs(logits, ids, request.sampling.prompt_logprobs or 0, self.tokenizer, texts)
        return out

    def _generation_kwargs(self, sampling: SamplingConfig, max_new: int, recorder: LogprobRecorder | None = None) -> dict[str, Any]:
        from transformers import GenerationConfig, LogitsProcessorList

        # Sampling is always explicit: nothing falls back to the checkpoint's generation_config.
        # transformers gets no warpers (temperature, top-k/p, min-p are None): hf_sampling runs
        # them after the penalties, in vLLM's order. Stop strings are matched by _StepMonitor
        # (transformers' StopStringCriteria precomputes tables over the vocabulary per stop
        # string: seconds per kilobyte of stop string).
        config = GenerationConfig(
            max_new_tokens=max_new,
            min_new_tokens=sampling.min_tokens or None,
            do_sample=not sampling.greedy,
            temperature=None,
            top_p=None,
            top_k=None,
            num_return_sequences=sampling.n,
            repetition_penalty=sampling.repetition_penalty,
            # [] and not None: None would be filled in from the checkpoint's generation_config
            eos_token_id=[] if sampling.ignore_eos else self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        return {"generation_config": config, "logits_processor": LogitsProcessorList(logits_processors(sampling, recorder))}

    def _to_completion(
        self, tokens: list[int], request: _Request, prompt_tokens: int, now: float, logprob_steps: list[Any] | None = None,
        monitor: "_StepMonitor | None" = None,
    ) -> Completion:
        """`tokens` are the row's own: generate pads a row that ended before the batch with
        pad_token_id, and _StepMonitor.produced cuts that off (a pad token the model itself
        generated is text: the tiny model's is not an end of sequence)."""
        limit = request.sampling.max_tokens
        finish: FinishReason = "length"
        used: list[int] = []
        for token in tokens:
            used.append(token)
            if token in self.eos_token_ids and not request.sampling.ignore_eos:
                finish = "stop"
                break
        if len(used) > limit:
            used, finish = used[:limit], "length"
        text = self.tokenizer.decode(used, skip_special_tokens=True)
        hits = [(text.find(stop), stop) for stop in request.sampling.stop if stop and stop in text]
        if hits:
            cut, stop = min(hits)  # the earliest stop string ends the sample
            used = used[: self._tokens_until(used, stop)]  # count what was generated up to it
            text, finish = text[:cut], "stop"
        if request.cancelled and finish != "stop":
            finish = "abort"
        logprobs = None
        if request.sampling.logprobs is not None:
            steps = (logprob_steps or [])[: len(used)]
            logprobs = token_logprobs(steps, self.tokenizer, texts=self._token_texts(used[: len(steps)], text))
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(used),
            latency_s=now - request.enqueued,
            logprobs=logprobs,
            timing=monitor.timing(request, len(used)) if monitor is not None else None,
        )

    def _token_texts(self, tokens: list[int], text: str) -> list[str]:
        """What each token adds to `text`, so that the logprob tokens joined are the completion's
        text: incremental decoding (an end of sequence adds nothing, a character split over two
        tokens comes with the second), the last pieces cut where the text was cut (a stop string)
        or given the rest (a character the length limit split)."""
        decoder = _IncrementalDecoder(self.tokenizer)
        pieces = [decoder.push(token) for token in tokens]
        joined = "".join(pieces)
        if joined.startswith(text):  # cut at a stop string: trim from the end
            excess = len(joined) - len(text)
            for i in range(len(pieces) - 1, -1, -1):
                if excess <= 0:
                    break
                keep = max(len(pieces[i]) - excess, 0)
                excess -= len(pieces[i]) - keep
                pieces[i] = pieces[i][:keep]
        elif text.startswith(joined) and pieces:  # held back at the end: the rest goes to the last token
            pieces[-1] += text[len(joined):]
        return pieces

    def _tokens_until(self, tokens: list[int], stop: str) -> int:
        """Fewest leading tokens whose text contains `stop` (a stop string seen only after decoding,
        e.g. across a multi-byte character, does not stop `generate`; the count must not include
        the tokens generated past it)."""
        low, high = 1, len(tokens)
        while low < high:
            middle = (low + high) // 2
            if stop in self.tokenizer.decode(tokens[:middle], skip_special_tokens=True):
                high = middle
            else:
                low = middle + 1
        return high


class _StopHoldback:
    """The streamed text as a client may see it: nothing from the earliest stop string on, and no
    tail that could still turn out to begin one (held back until the next delta decides). The
    model thread streams raw decoded tokens; the final Completion is cut at the stop string."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""  # all text received
        self.sent = 0  # how much of it went out
        self.stopped = False

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.stopped:
            return ""
        # A stop string starting before `sent` would already have been found: search from there.
        hits = [i for stop in self.stops if (i := self.text.find(stop, self.sent)) >= 0]
        self.stopped = bool(hits)
        end = min(hits) if hits else len(self.text) - self.hold
        out = self.text[self.sent : end] if end > self.sent else ""
        self.sent += len(out)
        return out

    def rest(self, final_text: str) -> str:
        """What the final text adds to what went out (the held-back tail, a last character whose
        bytes completed at the end), so the deltas joined equal it."""
        sent = self.text[: self.sent]
        return final_text[len(sent) :] if final_text.startswith(sent) else ""


class _IncrementalDecoder:
    """The text each new token adds, decoding only a short window of recent tokens.

    Decoding the whole sequence at every step costs O(n^2) over a generation (12 s of CPU on the
    model's own thread for 8,192 tokens of the tiny tokenizer). As vLLM's detokenizer does, the
    window starts at the last point where the text was complete; a delta is the window's text past
    what the window's older tokens gave. An incomplete UTF-8 character waits for its next token.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.tokens: list[int] = []
        self.prefix = 0  # window start: a character boundary
        self.read = 0  # tokens whose text has gone out

    def push(self, token: int) -> str:
        self.tokens.append(token)
        decode = self.tokenizer.decode
        before: str = decode(self.tokens[self.prefix : self.read], skip_special_tokens=self.skip_special_tokens)
        text: str = decode(self.tokens[self.prefix :], skip_special_tokens=self.skip_special_tokens)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.tokens)
        return text[len(before) :]


class _StepMonitor:
    """The per-step stopping criterion of one `generate` call (called after every new token).

    It ticks the engine's liveness clock, and per row: stops it when its client went away, at its
    own max_tokens (rows of one batch may ask for different limits), or once its new text contains
    a stop string; and pushes streamed text deltas. Text is decoded incrementally and stop strings
    are searched only in the last `longest stop + delta` characters, so a step costs the same
    however long the generation or the stop strings are.
    """

    def __init__(self, engine: HFEngine, requests: list[_Request], n: int, recorder: LogprobRecorder | None = None):
        self.engine = engine
        self.recorder = recorder
        self.logprobs: dict[int, list[Any]] = {}  # row -> (token, logprob, top) per step, when asked for
        self.rows = [r for r in requests for _ in range(n)]
        self.stream_rows = {i * n for i, r in enumerate(requests) if r.deltas is not None}
        self.decoders = {
            row: _IncrementalDecoder(engine.tokenizer)
            for row, r in enumerate(self.rows)
            if r.sampling.stop or row in self.stream_rows
        }
        self.tails = {row: "" for row in self.decoders}
        self.generated = 0
        self.done = [False] * len(self.rows)
        self.produced: list[int | None] = [None] * len(self.rows)  # a row's own tokens, once it ended
        self.begun = time.perf_counter()  # the batch's generate started (set again just before it)
        self.step_times: list[float] = []  # when each step's token was generated: a row's k tokens are the first k

    def timing(self, request: _Request, tokens: int) -> EngineTiming:
        """The engine's timing of a sample of `request` that used its first `tokens` steps."""
        from qvq_ray.engines.timing import timing_from_token_times

        queued = request.queued if request.queued is not None else request.enqueued
        return timing_from_token_times(request.enqueued, self.step_times[:tokens], queue_s=self.begun - queued)

    def _end(self, row: int) -> None:
        self.done[row] = True
        self.produced[row] = self.generated

    def _push(self, row: int, request: _Request, delta: str) -> None:
        """A streamed row's step: its text delta, its token's log-probabilities (when asked; the
        token's text is the delta, as in the final Completion) and the token counts so far."""
        entries = []
        if request.sampling.logprobs is not None and self.logprobs.get(row):
            entries = token_logprobs(self.logprobs[row][-1:], self.engine.tokenizer, texts=[delta])
        if (delta or entries) and request.deltas is not None:  # a streamed row: deltas set
            item = (delta, entries, (request.prompt_tokens, self.generated))
            request.loop.call_soon_threadsafe(request.deltas.put_nowait, item)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        self.engine._watch.step()
        self.step_times.append(time.perf_counter())
        self.generated += 1
        last = input_ids[:, -1].tolist()
        eos = self.engine.eos_token_ids
        for row, request in enumerate(self.rows):
            if self.done[row]:
                continue
            if self.recorder is not None and self.recorder.last is not None:
                self.logprobs.setdefault(row, []).append(
                    step_logprobs(self.recorder.last[row], last[row], request.sampling.logprobs or 0)
                )
            if request.cancelled or (last[row] in eos and not request.sampling.ignore_eos):
                self._end(row)
                continue
            decoder = self.decoders.get(row)
            delta = decoder.push(last[row]) if decoder is not None else ""
            if row in self.stream_rows:
                self._push(row, request, delta)
            if delta:
                stops = [s for s in request.sampling.stop if s]
                if stops:
                    window = self.tails[row] + delta
                    if any(stop in window for stop in stops):
                        self._end(row)
                    self.tails[row] = window[-max(len(s) for s in stops):]
            if self.generated >= request.sampling.max_tokens and not self.done[row]:
                self._end(row)
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


def _expand_image_placeholders(ids: list[int], features: list[int], image_token_id: int, video_token_id: int) -> list[int]:
    """`ids` with the i-th image placeholder repeated `features[i]` times.

    InvalidRequestError unless there is exactly one placeholder per image and no video
    placeholder: the model matches image features to image tokens by id, and a mismatch fails
    the whole batch (or, inside transformers, raises StopIteration from a `next()` over images)."""
    placeholders = ids.count(image_token_id)
    if placeholders != len(features):
        raise InvalidRequestError(f"the prompt holds {placeholders} image placeholders for {len(features)} images")
    if video_token_id in ids:
        raise InvalidRequestError("the prompt holds a video placeholder; this server takes images only")
    counts = iter(features)
    out: list[int] = []
    for token in ids:
        out.extend([token] * next(counts) if token == image_token_id else [token])
    return out


def _resolve(request: _Request, result: Any = None, exc: BaseException | None = None) -> None:
    """Answer a request once (later calls do nothing), from any thread."""

    def set_outcome() -> None:
        if request.future.done():
            return
        if exc is not None:
            request.future.set_exception(exc)
        else:
            request.future.set_result(result)
        if request.deltas is not None:
            request.deltas.put_nowait(None)

    if _in_loop(request.loop):
        set_outcome()
    elif not request.loop.is_closed():
        request.loop.call_soon_threadsafe(set_outcome)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
