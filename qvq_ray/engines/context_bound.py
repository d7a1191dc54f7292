"""Refuse a prompt that surely cannot fit the model's context before tokenizing all of it.

Why: a prompt under model.max_prompt_chars (262,144 characters) can still be several times the
context in tokens. Tokenizing it whole only to refuse it cost the engine's single prepare thread
about 0.25 s a prompt here; 16 such prompts in flight made a small chat wait 21x its usual p99
(benchmarks/serve.py --only-refused). Counted a chunk at a time, a prompt is refused as soon as
the tokens seen exceed the budget: after about `budget` tokens' worth of text, not all of it.

The count is a lower bound on the whole prompt's tokens: a tokenizer first splits text into
words, so cutting the text between chunks changes at most the word the cut falls in; each cut is
allowed `CUT_SLACK` tokens of difference. A prompt that is not surely over goes on to the exact
count (which the engine checks anyway), so a wrong "not sure" costs time, never a wrong refusal.

Why a screen of its own (`ContextScreen`): counted on the engine's one prepare thread, each refusal
still held that thread ~20 ms, and the small prompts queued behind it; sent at 16 a second they
also took the CPU the generation of everyone else needed (a small chat's p99 3.8x its p99 alone,
benchmarks/serve.py --only-refused). Prompts long enough to be over are screened on a thread of
their own, with its own copy of the tokenizer (a fast tokenizer must not be called from two threads
at once) and a lower CPU priority: work not yet admitted yields to the work already running, and
a small prompt never waits behind a long one being counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from qvq_ray.engines.base import InvalidRequestError, Message, contained_call, prompt_texts

logger = logging.getLogger(__name__)

CUT_SLACK = 4  # tokens a cut inside one word may add, counted against each cut
SCREEN_NICENESS = 10  # the screen thread's nice value above the process's own (Linux: per thread)


def tokens_surely_over(texts: list[str], count: Callable[[str], int], budget: int) -> int | None:
    """A lower bound on the tokens of `texts` (the prompt's message texts) once it exceeds `budget`,
    else None. Chunks are `budget` characters: each holds at most `budget` tokens. `count`: a text's
    token count (`hf_token_counter`, `own_token_counter`)."""
    if budget <= 0 or sum(len(text) for text in texts) <= budget:  # a token is at least one character
        return None
    counted = cuts = 0
    chunk = max(budget, 1024)
    for text in texts:
        for start in range(0, len(text), chunk):
            counted += count(text[start : start + chunk])
            cuts += 1
            if counted - CUT_SLACK * cuts > budget:
                return counted - CUT_SLACK * cuts
    return None


def hf_token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A Hugging Face tokenizer's count of a text, special tokens in it counted as text."""
    return lambda text: len(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def own_token_counter(tokenizer: Any) -> Callable[[str], int] | None:
    """A token counter on a copy of `tokenizer`'s Rust tokenizer (safe beside the engine's own), or
    None when it has none. Special-token text counts as one token here (as text it is several), so
    the count stays a lower bound of the engine's."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return None
    try:
        from tokenizers import Tokenizer

        own = Tokenizer.from_str(backend.to_str())
    except Exception as exc:  # an exotic tokenizer: the prepare thread counts, as before
        logger.warning("no copy of the tokenizer for the context screen (%s); the prepare thread counts", exc)
        return None

    return lambda text: len(own.encode_batch([text], add_special_tokens=False)[0].ids)  # releases the GIL


def _lower_priority() -> None:
    """This thread yields the CPU to the process's other threads (Linux nice applies per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + SCREEN_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: a plain thread still keeps the lane free
        pass


class ContextScreen:
    """Refuses prompts surely over the context (see module doc) on its own low-priority thread,
    before they reach the engine's prepare thread. Prompts too short to be over pass at once."""

    def __init__(self, counter: Callable[[str], int], max_model_len: int, name: str = "context-screen"):
        self.counter = counter
        self.max_model_len = max_model_len
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_lower_priority)

    @classmethod
    def of(cls, tokenizer: Any, max_model_len: int) -> "ContextScreen | None":
        counter = own_token_counter(tokenizer)
        return cls(counter, max_model_len) if counter is not None else None

    def may_be_over(self, messages: list[Message], max_tokens: int) -> bool:
        return sum(len(text) for text in prompt_texts(messages)) > self.max_model_len - max_tokens

    async def screen(self, messages: list[Message], max_tokens: int) -> bool:
        """Raises InvalidRequestError for a prompt surely over; True when it was screened (the
        prepare thread need not bound it again), False when it was too short to need it."""
        if not self.may_be_over(messages, max_tokens):
            return False
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, contained_call, refuse_surely_over_context, messages, self.counter, max_tokens, self.max_model_len
        )
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def over_context_error(prompt_tokens: str, max_tokens: int, max_model_len: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's limit of {max_model_len} tokens"
    )


def refuse_surely_over_context(messages: list[Message], count: Callable[[str], int], max_tokens: int, max_model_len: int) -> None:
    """InvalidRequestError when the messages' text surely leaves no room for `max_tokens`."""
    if (at_least := tokens_surely_over(prompt_texts(messages), count, max_model_len - max_tokens)) is not None:
        raise over_context_error(f"at least {at_least}", max_tokens, max_model_len)
