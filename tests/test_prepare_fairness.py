"""Refused and queued prompt work: an over-long prompt is refused after tokenizing a part of it,
and waiting preparations run smallest first (engines/context_bound.py, engines/smallest_first.py).
The engine is the real tiny Qwen2-VL through transformers; its tokenizer is watched by a wrapper
over the real one (named so) that records how many characters each call tokenized."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
from qvq_ray.engines.base import InvalidRequestError
from qvq_ray.engines.context_bound import hf_token_counter, tokens_surely_over
from qvq_ray.engines.smallest_first import SmallestFirst

WORDS = "seven plus eleven is eighteen and the angle ABC measures forty degrees so "


def _chat(text: str):
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


class TokenizerWatchWrapper:
    """The real tokenizer, with the characters of each call's text recorded."""

    def __init__(self, real):
        self.real, self.chars = real, []

    def __call__(self, text, *args, **kwargs):
        self.chars.append(len(text) if isinstance(text, str) else sum(len(t) for t in text))
        return self.real(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir, max_model_len=2048), HFEngineConfig(torch_threads=1))
    yield engine
    asyncio.run(engine.close())


class CounterWatchWrapper:
    """The context screen's real token counter, with the characters and thread of each call recorded."""

    def __init__(self, real):
        self.real, self.chars, self.threads = real, [], set()

    def __call__(self, text):
        self.chars.append(len(text))
        self.threads.add(threading.current_thread().name)
        return self.real(text)


def test_a_prompt_surely_over_the_context_is_refused_on_the_screen_after_tokenizing_a_part_of_it(engine):
    """Refused by the context screen, on its own thread, after a few chunks of the budget: the
    prepare lane (the engine's tokenizer) never sees it, so small prompts never wait behind it.
    Non-ASCII words: the pieces' floor cannot bound them, so the chunked count does."""
    watch = engine.tokenizer = TokenizerWatchWrapper(engine.tokenizer)
    screen = engine._screen.counter = CounterWatchWrapper(engine._screen.counter)
    text = ("déjà " + WORDS) * 2500
    with pytest.raises(InvalidRequestError, match=r"at least \d+ tokens.*limit of 2048"):
        asyncio.run(engine.generate(_chat(text[:200_000]), SamplingConfig(max_tokens=2)))
    assert 0 < sum(screen.chars) <= 3 * 2046, screen.chars  # a few chunks of the budget, not 200,000 characters
    assert screen.threads == {"context-screen_0"} and watch.chars == []
    # a prompt that may fit passes the screen and is counted once, exactly, on the prepare lane
    completion = asyncio.run(engine.generate(_chat((WORDS * 40)[:2400]), SamplingConfig(max_tokens=2)))[0]
    assert completion.prompt_tokens < 2048 - 2 and len(screen.chars) >= 1 and watch.chars


def test_an_ascii_prompt_surely_over_is_refused_by_counting_its_pieces_without_tokenizing(engine):
    """ASCII words: the screen's floor (runs of letters plus digits, each a piece of the Qwen2
    pre-tokenizer) is over the budget, so nothing is tokenized at all."""
    assert engine._screen.floor is not None  # the tiny model's tokenizer splits as Qwen2's does
    screen = engine._screen.counter = CounterWatchWrapper(engine._screen.counter)
    with pytest.raises(InvalidRequestError, match=r"at least \d+ tokens.*limit of 2048"):
        asyncio.run(engine.generate(_chat((WORDS * 3000)[:200_000]), SamplingConfig(max_tokens=2)))
    assert screen.chars == []


def test_the_screen_runs_at_a_lower_cpu_priority(engine):
    import os

    async def niceness():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(engine._screen._executor, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    assert asyncio.run(niceness()) >= os.getpriority(os.PRIO_PROCESS, 0) + 1


def test_a_prompt_near_the_context_is_counted_exactly(engine):
    """Under the bound's reach: the exact count decides (here, within the limit: answered)."""
    completion = asyncio.run(engine.generate(_chat((WORDS * 40)[:2400]), SamplingConfig(max_tokens=2)))[0]
    assert completion.prompt_tokens < 2048 - 2 and completion.completion_tokens >= 1


def test_the_lower_bound_never_exceeds_the_real_count(engine):
    for text in [(WORDS * 400)[:30_000], "x" * 30_000, "数学 " * 8000, ("a" * 5000 + " ") * 6]:
        real = len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
        bound = tokens_surely_over([text], hf_token_counter(engine.tokenizer), budget=real - 50)
        assert bound is None or bound <= real, (text[:20], bound, real)
    assert tokens_surely_over(["short"], hf_token_counter(engine.tokenizer), budget=10) is None


# ASCII pieces the pre-tokenizer treats specially: contractions, digits, runs of spaces and
# newlines, punctuation runs, special tokens typed as text
PIECES = st.sampled_from(list("abcXYZ019 \t\n\r'.,-_<|>") + ["'s", "'ll", "'RE", "<|im_end|>", "<|image_pad|>", "  ", "\r\n", "..."])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.lists(PIECES, max_size=120).map("".join))
def test_the_pieces_floor_never_exceeds_the_engines_count(engine, text):
    """The floor is sound against the count that decides: the engine's own tokenization of user
    text (special tokens typed are text) and the screen's copy (special tokens as one token)."""
    floor = engine._screen.floor(text)
    if floor is not None:
        assert floor <= len(engine.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        assert floor <= engine._screen.counter(text)


def test_the_pieces_floor_is_only_for_a_qwen2_pre_tokenizer_and_ascii_text(engine):
    import json

    from qvq_ray.engines.context_bound import pretoken_floor, tokenizer_json

    definition = json.loads(tokenizer_json(engine.tokenizer))
    floor = pretoken_floor(json.dumps(definition))
    assert floor("it's 12 dogs") == 5 and floor("naïve") is None and floor("a <|im_end|> b") is None
    definition["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,3}| ?\p{L}+|\s+"  # GPT-4's digit groups
    assert pretoken_floor(json.dumps(definition)) is None
    assert pretoken_floor("not json") is None


def test_waiting_jobs_run_smallest_first_and_cancelled_ones_never_run():
    ran: list[str] = []
    gate = threading.Event()

    def job(name: str):
        if name == "first":
            gate.wait(5)
        ran.append(name)

    async def scenario():
        lane = SmallestFirst(ThreadPoolExecutor(max_workers=1))
        first = asyncio.ensure_future(lane.run(1000, job, "first"))
        await asyncio.sleep(0.05)  # the first holds the thread
        waiting = {name: asyncio.ensure_future(lane.run(size, job, name)) for name, size in [("big", 500), ("small", 2), ("gone", 1), ("mid", 40)]}
        await asyncio.sleep(0.05)
        waiting["gone"].cancel()
        gate.set()
        await first
        await asyncio.gather(*waiting.values(), return_exceptions=True)

    asyncio.run(scenario())
    assert ran == ["first", "small", "mid", "big"]


# ----------------------------------------------------------------------------- the ingress's screen


class SourceAsked:
    """The engine deployment's `context_screen_source`, answered from the real engine in this
    process (the Serve call is what the ingress makes; here a coroutine), with each ask counted."""

    def __init__(self, engine, fail: int = 0):
        self.engine, self.asked, self.fail = engine, 0, fail

    async def __call__(self):
        self.asked += 1
        if self.asked <= self.fail:
            raise RuntimeError("no replica yet")
        source = self.engine.context_screen_source()
        return source._asdict() if source is not None else None


def test_the_ingress_screen_refuses_with_the_engines_tokenizer_before_any_replica_sees_the_prompt(engine):
    """EngineScreen (in QvqEngineClient, the ingress's side of the engine deployment): a prompt
    surely over the engine's context is refused from the engine's own tokenizer definition, asked
    once; a short prompt asks nothing; the engine's tokenizer is never called for the refusal."""
    from qvq_ray.engines.context_bound import EngineScreen

    watch = engine.tokenizer = TokenizerWatchWrapper(engine.tokenizer)
    ask = SourceAsked(engine)
    screen = EngineScreen(ask)

    async def scenario():
        await screen.check(_chat("What is 2 + 2?"), 16)
        assert ask.asked == 0  # too short to be over any context: nothing asked
        for _ in range(3):
            with pytest.raises(InvalidRequestError, match=r"at least \d+ tokens.*limit of 2048"):
                await screen.check(_chat((WORDS * 3000)[:200_000]), 2)
        await screen.check(_chat((WORDS * 40)[:2400]), 2)  # may fit: the engine counts it exactly

    asyncio.run(scenario())
    screen.close()
    assert ask.asked == 1 and watch.chars == []


def test_the_ingress_screen_asks_again_after_a_failure_and_never_after_a_no(engine, monkeypatch):
    from qvq_ray.engines.context_bound import EngineScreen

    monkeypatch.setattr(EngineScreen, "RETRY_S", 0.0)
    failing = SourceAsked(engine, fail=1)
    screen = EngineScreen(failing)
    long_chat = _chat((WORDS * 3000)[:200_000])

    async def scenario():
        await screen.check(long_chat, 2)  # the ask failed: passed on (the engine's own screen refuses it)
        with pytest.raises(InvalidRequestError):
            await screen.check(long_chat, 2)

    asyncio.run(scenario())
    assert failing.asked == 2

    async def no_screen():
        return None  # an engine that cannot say (a remote endpoint)

    asked = []
    silent = EngineScreen(lambda: (asked.append(1), no_screen())[1])
    for _ in range(3):
        asyncio.run(silent.check(long_chat, 2))
    assert len(asked) == 1
