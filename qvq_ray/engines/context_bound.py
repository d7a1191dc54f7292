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
import json
import logging
import os
import re
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

from qvq_ray.engines.base import InvalidRequestError, Message, contained_call, prompt_texts

logger = logging.getLogger(__name__)

CUT_SLACK = 4  # tokens a cut inside one word may add, counted against each cut
SCREEN_NICENESS = 10  # the screen thread's nice value above the process's own (Linux: per thread)


def tokens_surely_over(
    texts: list[str], count: Callable[[str], int], budget: int, floor: Callable[[str], int | None] | None = None
) -> int | None:
    """A lower bound on the tokens of `texts` (the prompt's message texts) once it exceeds `budget`,
    else None. `floor` first, where given (`pretoken_floor`: a few ms for 262,144 characters);
    then chunks of `budget` characters: each holds at most `budget` tokens. `count`: a text's
    token count (`hf_token_counter`, `json_token_counter`)."""
    if budget <= 0 or sum(len(text) for text in texts) <= budget:  # a token is at least one character
        return None
    if floor is not None and (at_least := _floor_of_all(texts, floor)) is not None and at_least > budget:
        return at_least
    counted = cuts = 0
    chunk = max(budget, 1024)
    for text in texts:
        for start in range(0, len(text), chunk):
            counted += count(text[start : start + chunk])
            cuts += 1
            if counted - CUT_SLACK * cuts > budget:
                return counted - CUT_SLACK * cuts
    return None


def _floor_of_all(texts: list[str], floor: Callable[[str], int | None]) -> int | None:
    """The sum of `floor` over `texts`, or None as soon as one text has none."""
    total = 0
    for text in texts:
        if (one := floor(text)) is None:
            return None
        total += one
    return total


def hf_token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A Hugging Face tokenizer's count of a text, special tokens in it counted as text."""
    return lambda text: len(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def tokenizer_json(tokenizer: Any) -> str | None:
    """A Hugging Face fast tokenizer's whole definition (its tokenizer.json text), or None when it
    has no Rust tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return None
    text: str = backend.to_str()
    return text


def json_token_counter(definition: str) -> Callable[[str], int] | None:
    """A token counter on a Rust tokenizer built from `definition` (`tokenizer_json`): a copy of its
    own, safe beside any other, in this process or another. None when it cannot be built. Special-
    token text counts as one token here (as text it is several), so the count stays a lower bound
    of the engine's."""
    try:
        from tokenizers import Tokenizer

        own = Tokenizer.from_str(definition)
    except Exception as exc:  # an exotic tokenizer: the engine's prepare thread counts, as before
        logger.warning("no copy of the tokenizer for the context screen (%s); the engine counts", exc)
        return None

    return lambda text: len(own.encode_batch([text], add_special_tokens=False)[0].ids)  # releases the GIL


# Qwen2's pre-tokenizer (Qwen2-VL, QVQ): text is split by this pattern before BPE, and BPE makes
# at least one token of each piece.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# In ASCII text, each run of letters and each digit lies in a piece of its own under QWEN2_SPLIT
# (a piece holds at most one run of letters, or one digit, never both): their count is at most
# the pieces', hence at most the tokens'. Counted on bytes mapped to classes (a letter -> `a`, a
# digit -> `d`, anything else -> space): a run of letters starts wherever an `a` follows a space,
# a `d` or the start. Byte counts, not a regex: 0.7 ms for 262,144 characters against 5.5 ms,
# and the GIL is held for a fraction of a millisecond at a time (the ingress's event loop shares it).
_ASCII_CLASSES = bytes(
    ord("a") if chr(byte) in string.ascii_letters else ord("d") if chr(byte) in string.digits else ord(" ") for byte in range(256)
)


def _ascii_piece_floor(text: str) -> int:
    classes = text.encode("ascii").translate(_ASCII_CLASSES)
    letter_runs = classes.count(b" a") + classes.count(b"da") + classes.startswith(b"a")
    return letter_runs + classes.count(b"d")


def pretoken_floor(definition: str) -> Callable[[str], int | None] | None:
    """A lower bound on a text's tokens without tokenizing it: its runs of letters plus its digits
    (`_ascii_piece_floor`: 0.7 ms for 262,144 characters, where tokenizing the ~65,000 characters
    a chunked count needs took ~25 ms). Only for a BPE tokenizer whose pre-tokenizer splits by QWEN2_SPLIT;
    None for any other. The bound answers None for text it cannot bound soundly: non-ASCII
    (Python's and the tokenizer's Unicode tables may disagree on what a letter is) or text holding
    one of the tokenizer's added tokens (which may be one token)."""
    try:
        spec = json.loads(definition)
        pieces = spec["pre_tokenizer"]["pretokenizers"][0]
        qwen2 = (
            spec["model"]["type"] == "BPE"
            and pieces["type"] == "Split"
            and pieces["pattern"].get("Regex") == QWEN2_SPLIT
            and pieces["behavior"] == "Isolated"
            and not pieces.get("invert")
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if not qwen2:
        return None
    added = [token["content"] for token in spec.get("added_tokens") or [] if token.get("content")]
    added_in = re.compile("|".join(re.escape(text) for text in added)) if added else None

    def floor(text: str) -> int | None:
        if not text.isascii() or (added_in is not None and added_in.search(text)):
            return None
        return _ascii_piece_floor(text)

    return floor


def _lower_priority() -> None:
    """This thread yields the CPU to the process's other threads (Linux nice applies per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + SCREEN_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: a plain thread still keeps the lane free
        pass


class ContextScreen:
    """Refuses prompts surely over the context (see module doc) on its own low-priority thread,
    before they reach the engine's prepare thread. Prompts too short to be over pass at once."""

    def __init__(
        self, counter: Callable[[str], int], max_model_len: int, name: str = "context-screen",
        floor: Callable[[str], int | None] | None = None,
    ):
        self.counter = counter
        self.floor = floor  # pretoken_floor, where the tokenizer allows it
        self.max_model_len = max_model_len
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_lower_priority)

    @classmethod
    def from_source(cls, source: "ScreenSource") -> "ContextScreen | None":
        counter = json_token_counter(source.tokenizer_json)
        if counter is None:
            return None
        return cls(counter, source.max_model_len, floor=pretoken_floor(source.tokenizer_json))

    def may_be_over(self, messages: list[Message], max_tokens: int) -> bool:
        return sum(len(text) for text in prompt_texts(messages)) > self.max_model_len - max_tokens

    async def screen(self, messages: list[Message], max_tokens: int) -> bool:
        """Raises InvalidRequestError for a prompt surely over; True when it was screened (the
        prepare thread need not bound it again), False when it was too short to need it."""
        if not self.may_be_over(messages, max_tokens):
            return False
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, contained_call, refuse_surely_over_context, messages, self.counter, max_tokens, self.max_model_len,
            self.floor,
        )
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ScreenSource(NamedTuple):
    """What a screen in front of an engine needs (`ContextBounded`): the engine's tokenizer
    definition and its context length. Plain data: it crosses a Ray call once per ingress."""

    tokenizer_json: str
    max_model_len: int

    @classmethod
    def of(cls, tokenizer: Any, max_model_len: int) -> "ScreenSource | None":
        """A Hugging Face tokenizer's source (serialized once: Qwen2's definition is ~7 MB), or None
        without a Rust tokenizer."""
        definition = tokenizer_json(tokenizer)
        return cls(definition, max_model_len) if definition is not None else None


@runtime_checkable
class ContextBounded(Protocol):
    """An engine whose context a screen in front of it can bound: the Serve ingress refuses a
    prompt surely over it before sending its body to an engine replica (`EngineScreen`)."""

    def context_screen_source(self) -> ScreenSource | None: ...


class EngineScreen:
    """The ingress's screen in front of the engine deployment: a `ContextScreen` built from the
    engine's own tokenizer (`ScreenSource`, asked of a replica once), so a prompt surely over the
    context is refused in the ingress, the way vLLM's API server tokenizes before its engine core
    sees a request: a refused 262k-character body then never crosses to a replica, takes none of
    its `max_ongoing_requests` slots and none of its event loop (a small chat's p99 with 16 such
    prompts in flight: benchmarks/serve.py --only-refused). Prompts too short to be over any
    context pass without asking; an engine that cannot say (a remote endpoint) is never asked
    again, and a failed ask is tried again after `RETRY_S`."""

    MIN_CHARS = 1024  # no served context is shorter: a prompt of fewer characters is never over
    RETRY_S = 30.0

    def __init__(self, fetch: Callable[[], Any]):
        self._fetch = fetch  # an awaitable factory: the engine's ScreenSource (a dict) or None
        self._screen: ContextScreen | None = None
        self._settled = False  # asked, and the engine answered (a screen, or that it has none)
        self._next_try = 0.0
        self._lock: asyncio.Lock | None = None

    async def check(self, messages: list[Message], max_tokens: int) -> None:
        """Raises InvalidRequestError for a prompt surely over the engine's context."""
        if sum(len(text) for text in prompt_texts(messages)) <= self.MIN_CHARS:
            return
        screen = self._screen if self._settled else await self._ask()
        if screen is not None:
            await screen.screen(messages, max_tokens)

    async def _ask(self) -> ContextScreen | None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._settled or time.monotonic() < self._next_try:
                return self._screen
            try:
                source = await self._fetch()
            except Exception as exc:  # no replica yet, or it failed: the engine screens meanwhile
                logger.info("no context screen from the engine yet (%s); retrying in %.0f s", exc, self.RETRY_S)
                self._next_try = time.monotonic() + self.RETRY_S
                return None
            self._screen = ContextScreen.from_source(ScreenSource(**source)) if source else None
            self._settled = True
            return self._screen

    def close(self) -> None:
        if self._screen is not None:
            self._screen.close()


def over_context_error(prompt_tokens: str, max_tokens: int, max_model_len: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's limit of {max_model_len} tokens"
    )


def refuse_surely_over_context(
    messages: list[Message], count: Callable[[str], int], max_tokens: int, max_model_len: int,
    floor: Callable[[str], int | None] | None = None,
) -> None:
    """InvalidRequestError when the messages' text surely leaves no room for `max_tokens`."""
    if (at_least := tokens_surely_over(prompt_texts(messages), count, max_model_len - max_tokens, floor)) is not None:
        raise over_context_error(f"at least {at_least}", max_tokens, max_model_len)
