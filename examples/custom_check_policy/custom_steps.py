"""A user check and a user policy for qvq-ray, written outside the package (issue 15).

- `answer_in_range`: a domain check, "the answer is an integer between 0 and 100". Listed in
  `verifier.checks`, it runs in the verifier's worker processes; its issues reach verdicts as
  `answer_in_range:not_integer` / `answer_in_range:out_of_range`, and `policy.resample_on` may name them.
- `StopWhenRepeating`: a policy (`policy.import_path`) that accepts the first attempt with no issue
  the config re-samples on, re-samples each failure a little warmer, and stops early once a failed
  answer comes back: the model is sure of it, so further samples would most likely spend tokens on
  the same answer.

Both must be importable where solves run: put this folder on PYTHONPATH (`PYTHONPATH=examples/custom_check_policy`),
which a local Ray cluster's workers inherit, or ship it with `runtime_env={"working_dir": ...}`.
"""

from __future__ import annotations

from qvq_ray.policies import Accept, Policy, Resample, Stop

LOW, HIGH = 0, 100


def answer_in_range(response: str, answer: str | None, problem) -> list[str]:
    """Issues of an answer that is not an integer in [LOW, HIGH]; none when there is no answer (the
    verifier already says `no_final_answer`). `problem` is a gold-free view (no gold, no images)."""
    if answer is None:
        return []
    text = answer.strip().strip("$").replace(",", "")
    try:
        value = int(text)
    except ValueError:
        return ["not_integer"]
    return [] if LOW <= value <= HIGH else ["out_of_range"]


class StopWhenRepeating(Policy):
    """First healthy attempt wins; a failed answer seen twice stops the solve; re-samples get warmer."""

    async def on_attempt(self, index, attempt):
        if self.healthy(attempt):
            return Accept(index)
        answer = attempt.verdict.canonical or attempt.verdict.answer
        earlier = [
            a.verdict.canonical or a.verdict.answer for i, a in self.state.attempts.items() if i != index
        ]
        if answer is not None and answer in earlier:
            return Stop("the same failed answer came back")
        warmer = attempt.sampling.temperature + 0.3
        return Resample(self.state.sampling.model_copy(update={"temperature": min(warmer, 1.5)}))
