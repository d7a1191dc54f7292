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
"""

from __future__ import annotations

from typing import Any

from qvq_ray.engines.base import InvalidRequestError, Message, prompt_texts

CUT_SLACK = 4  # tokens a cut inside one word may add, counted against each cut


def tokens_surely_over(texts: list[str], tokenizer: Any, budget: int) -> int | None:
    """A lower bound on the tokens of `texts` (the prompt's message texts) once it exceeds `budget`,
    else None. Chunks are `budget` characters: each holds at most `budget` tokens."""
    if budget <= 0 or sum(len(text) for text in texts) <= budget:  # a token is at least one character
        return None
    counted = cuts = 0
    chunk = max(budget, 1024)
    for text in texts:
        for start in range(0, len(text), chunk):
            piece = text[start : start + chunk]
            counted += len(tokenizer(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"])
            cuts += 1
            if counted - CUT_SLACK * cuts > budget:
                return counted - CUT_SLACK * cuts
    return None


def over_context_error(prompt_tokens: str, max_tokens: int, max_model_len: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's limit of {max_model_len} tokens"
    )


def refuse_surely_over_context(messages: list[Message], tokenizer: Any, max_tokens: int, max_model_len: int) -> None:
    """InvalidRequestError when the messages' text surely leaves no room for `max_tokens`."""
    if (at_least := tokens_surely_over(prompt_texts(messages), tokenizer, max_model_len - max_tokens)) is not None:
        raise over_context_error(f"at least {at_least}", max_tokens, max_model_len)
