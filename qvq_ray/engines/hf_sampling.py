"""The transformers engine's sampling chain, in vLLM's order, and its per-token log-probabilities.

transformers applies its own warpers (temperature, top-k, top-p, min-p) before any custom logits
processor, so OpenAI's presence/frequency penalties added as a custom processor would act on
already-tempered, already-truncated scores. vLLM applies penalties first. Here the engine asks
transformers for no warpers and runs this chain instead: repetition penalty (transformers', from
the generation config) -> presence/frequency penalties -> temperature -> top-k -> top-p -> min-p ->
NaN/inf removal -> the log-probability recorder (which sees the distribution actually sampled
from: vLLM's `logprobs_mode="processed_logprobs"`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qvq_ray.config import SamplingConfig

if TYPE_CHECKING:
    import torch


class OutputPenalties:
    """OpenAI's presence and frequency penalties over the tokens generated so far (not the prompt,
    as in vLLM). Counts grow by one token per step, so a step costs the same at any length."""

    def __init__(self, presence: float, frequency: float) -> None:
        self.presence, self.frequency = presence, frequency
        self.counts: torch.Tensor | None = None
        self.seen = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        if self.counts is None:  # first step: input_ids is the (padded) prompt
            self.counts = torch.zeros_like(scores)
            self.seen = input_ids.shape[1]
        for column in range(self.seen, input_ids.shape[1]):
            self.counts.scatter_add_(1, input_ids[:, column : column + 1], torch.ones_like(scores[:, :1]))
        self.seen = input_ids.shape[1]
        return scores - self.frequency * self.counts - self.presence * (self.counts > 0).to(scores.dtype)


class LogprobRecorder:
    """Keeps the last step's log-probabilities (after the whole chain) for `_StepMonitor` to read
    once the token is chosen. Only the current step is held: memory does not grow with length."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores


def logits_processors(sampling: SamplingConfig, recorder: LogprobRecorder | None) -> list[Any]:
    """The chain after transformers' own processors (which the engine leaves without warpers)."""
    from transformers.generation.logits_process import (
        InfNanRemoveLogitsProcessor,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    chain: list[Any] = []
    if sampling.presence_penalty or sampling.frequency_penalty:
        chain.append(OutputPenalties(sampling.presence_penalty, sampling.frequency_penalty))
    if not sampling.greedy:
        if sampling.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k:
            chain.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            chain.append(TopPLogitsWarper(sampling.top_p))
        if sampling.min_p:
            chain.append(MinPLogitsWarper(sampling.min_p))
        chain.append(InfNanRemoveLogitsProcessor())  # a NaN/inf score never reaches multinomial
    if recorder is not None:
        chain.append(recorder)
    return chain


def step_logprobs(logprobs_row: torch.Tensor, token: int, top: int) -> tuple[int, float, list[tuple[int, float]]]:
    """The chosen token's log-probability and the `top` most likely tokens at one step of one row."""
    import torch

    chosen = float(logprobs_row[token])
    if top <= 0:
        return token, chosen, []
    values, indices = torch.topk(logprobs_row, top)
    return token, chosen, list(zip(indices.tolist(), values.tolist()))


def token_logprobs(
    steps: list[tuple[int, float, list[tuple[int, float]]]], tokenizer: Any, texts: list[str] | None = None
) -> list[Any]:
    """OpenAI-shaped entries (token text, log-probability, UTF-8 bytes, alternatives) for the steps.
    `texts`: each chosen token's text as it adds to the completion (joined, they are its text);
    without them a token is decoded alone (special tokens and split characters shown as such)."""
    from qvq_ray.engines.base import TokenLogprob, TopLogprob

    def text(token_id: int) -> str:
        decoded: str = tokenizer.decode([token_id], skip_special_tokens=False)
        return decoded

    def finite(value: float) -> float:
        return value if value > -1e30 else -9999.0  # OpenAI's convention for "never": JSON has no -inf

    out = []
    for index, (token, logprob, top) in enumerate(steps):
        piece = texts[index] if texts is not None else text(token)
        out.append(
            TokenLogprob(
                token=piece,
                logprob=finite(logprob),
                bytes=list(piece.encode()),
                top_logprobs=[
                    # the chosen token among its alternatives reads as it does in the text
                    TopLogprob(token=alt, logprob=finite(v), bytes=list(alt.encode()))
                    for i, v in top
                    for alt in [piece if i == token else text(i)]
                ],
            )
        )
    return out


def prompt_logprobs(logits: torch.Tensor, ids: list[int], top: int, tokenizer: Any, texts: list[str]) -> list[Any]:
    """Each prompt token's log-probability given the tokens before it, from the logits of a forward
    pass over the prompt (position i predicts token i + 1), the `top` most likely tokens at its
    position, and its text (`texts`). The first token has no context: logprob None, as in vLLM."""
    import torch

    from qvq_ray.engines.base import PromptLogprob

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    out = [PromptLogprob(token=texts[0], logprob=None, bytes=list(texts[0].encode()))] if ids else []
    for position in range(1, len(ids)):
        token, chosen, alternatives = step_logprobs(logprobs[position - 1], ids[position], top)
        entry = token_logprobs([(token, chosen, alternatives)], tokenizer, texts=[texts[position]])[0]
        out.append(PromptLogprob(**entry.model_dump()))
    return out
