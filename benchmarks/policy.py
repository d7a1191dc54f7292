"""Solve policies on a simulated engine: tokens, accuracy and wall time in engine steps.

`SimulatedEngine` is a simulation (named so; used by this benchmark only). Its parameters are the
ones fixed by the solver issue, so the figures mean something:
  - per-problem success probability: 40% U(0.8, 0.98), 35% U(0.4, 0.8), 25% U(0, 0.4);
  - a wrong answer is one of 3 distractors, one dominant (60% / 25% / 15%);
  - chain length lognormal (mu 7.9, sigma 0.6 in log-tokens, ~2.7k median), capped at 8,192;
  - 12% of chains loop to the cap without a final answer;
  - fixed seeds, 2,000 problems.
Loop cut-off: a looping chain is detected once the cycle has repeated for LOOP_DETECT_TOKENS after
it starts (the start drawn like a chain's length), and stopped there.

(a) adaptive self-consistency (sample until one answer has `quorum` votes, at most k; loops cut off)
    vs fixed best-of-8 majority without cut-off: tokens per problem and accuracy (gold never used).
(b) continuous re-sampling (a slot takes the next needed sample the moment it frees) vs round-based
    (every unfinished problem gets its next sample per round; a barrier waits for the round's
    slowest chain), same policy and slots: wall time in engine steps (1 token per slot per step).
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
from collections import Counter
from dataclasses import dataclass

CAP = 8192
LOOP_RATE = 0.12
LOOP_DETECT_TOKENS = 300
DISTRACTOR_WEIGHTS = (0.60, 0.25, 0.15)


@dataclass(frozen=True)
class Sample:
    answer: str | None  # None: looped, no final answer
    tokens_full: int  # tokens if run to its end
    tokens_cut: int  # tokens with loop cut-off (== tokens_full unless it loops)


class SimulatedEngine:
    """A simulation of QVQ's outcome statistics (not a model): sample j of problem i is fixed by the seed."""

    def __init__(self, num_problems: int, seed: int = 0):
        rng = random.Random(seed)
        self.seed = seed
        self.success = []
        for _ in range(num_problems):
            u = rng.random()
            low, high = (0.8, 0.98) if u < 0.40 else (0.4, 0.8) if u < 0.75 else (0.0, 0.4)
            self.success.append(rng.uniform(low, high))

    def sample(self, problem: int, index: int) -> Sample:
        rng = random.Random(self.seed * 1_000_003 + problem * 1_009 + index)
        length = min(CAP, max(1, int(math.exp(rng.gauss(7.9, 0.6)))))
        if rng.random() < LOOP_RATE:
            onset = min(CAP, max(1, int(math.exp(rng.gauss(7.9, 0.6)))))
            return Sample(None, CAP, min(CAP, onset + LOOP_DETECT_TOKENS))
        if rng.random() < self.success[problem]:
            return Sample("gold", length, length)
        distractor = rng.choices(range(len(DISTRACTOR_WEIGHTS)), weights=DISTRACTOR_WEIGHTS)[0]
        return Sample(f"wrong{distractor}", length, length)


# ---------------------------------------------------------------- stop rules (per problem)


class AdaptiveVote:
    """Self-consistency with a quorum: the solver's rule (`PolicyConfig.self_consistency`, `quorum`)."""

    def __init__(self, quorum: int, max_samples: int, cut_loops: bool):
        self.quorum, self.max_samples, self.cut_loops = quorum, max_samples, cut_loops
        self.votes: Counter = Counter()
        self.order: list[str] = []
        self.samples = 0

    def add(self, sample: Sample) -> int:
        """Record a finished sample; return the tokens it cost."""
        self.samples += 1
        if sample.answer is not None:
            if sample.answer not in self.votes:
                self.order.append(sample.answer)
            self.votes[sample.answer] += 1
        return sample.tokens_cut if self.cut_loops else sample.tokens_full

    def needed(self) -> int:
        """Samples certainly still needed: the leader needs quorum - votes more (never past max_samples)."""
        lead = max(self.votes.values()) if self.votes else 0
        return max(0, min(self.quorum - lead, self.max_samples - self.samples))

    def done(self) -> bool:
        return self.samples >= self.max_samples or (bool(self.votes) and max(self.votes.values()) >= self.quorum)

    def answer(self) -> str | None:
        if not self.votes:
            return None
        return max(self.order, key=lambda a: (self.votes[a], -self.order.index(a)))


def run_sequential(engine: SimulatedEngine, n: int, make_rule) -> tuple[float, float]:
    """Tokens per problem and accuracy of a stop rule, samples taken one after another."""
    tokens = correct = 0
    for p in range(n):
        rule = make_rule()
        index = 0
        while not rule.done():
            tokens += rule.add(engine.sample(p, index))
            index += 1
        correct += rule.answer() == "gold"
    return tokens / n, correct / n


# ---------------------------------------------------------------- scheduling (engine steps)


def continuous_steps(
    engine: SimulatedEngine, n: int, slots: int, make_rule, speculate: bool = False
) -> tuple[int, int, float]:
    """Event simulation of the solver: a free slot immediately takes a sample some problem needs.

    A problem keeps up to `needed()` samples in flight (samples its quorum certainly requires);
    free slots go first to the problems that have taken the most samples (the hard ones, which set
    the makespan). With `speculate` (the solver's `parallel_samples`), slots that would idle take
    extra samples of unfinished problems, within k. When a problem is decided, its samples still
    running are aborted and charged only the tokens generated so far.
    Returns (steps, tokens, accuracy)."""
    rules = [make_rule() for _ in range(n)]
    next_index = [0] * n
    in_flight: list[dict[int, int]] = [dict() for _ in range(n)]  # sample index -> start step
    ready = [(0, p) for p in range(n)]  # (-samples taken, problem)
    queued = set(range(n))
    events: list[tuple[int, int, int]] = []  # (finish step, problem, sample index); lazy deletion
    busy = now = tokens = 0

    def start(p: int) -> None:
        nonlocal busy
        sample = engine.sample(p, next_index[p])
        heapq.heappush(events, (now + sample.tokens_cut, p, next_index[p]))
        in_flight[p][next_index[p]] = now
        next_index[p] += 1
        busy += 1

    def wants(p: int) -> bool:
        return not rules[p].done() and len(in_flight[p]) < max(1, rules[p].needed())

    while ready or busy:
        while ready and busy < slots:
            _, p = heapq.heappop(ready)
            queued.discard(p)
            if wants(p):
                start(p)
                if wants(p):
                    heapq.heappush(ready, (-next_index[p], p))
                    queued.add(p)
        if speculate and not ready and busy < slots:
            for q in sorted((q for q in range(n) if in_flight[q]), key=lambda q: -next_index[q]):
                while busy < slots and next_index[q] < rules[q].max_samples and not rules[q].done():
                    start(q)
        finish, p, index = heapq.heappop(events)
        if index not in in_flight[p]:
            continue  # aborted earlier
        now = finish
        del in_flight[p][index]
        busy -= 1
        tokens += rules[p].add(engine.sample(p, index))
        if rules[p].done():
            for other, began in in_flight[p].items():  # abort: charge what was generated
                tokens += now - began
                busy -= 1
            in_flight[p].clear()
        elif wants(p) and p not in queued:
            heapq.heappush(ready, (-next_index[p], p))
            queued.add(p)
    accuracy = sum(rule.answer() == "gold" for rule in rules) / n
    return now, tokens, accuracy


def round_steps(engine: SimulatedEngine, n: int, slots: int, make_rule) -> tuple[int, int]:
    """Round-based: each round queues one sample per unfinished problem; a barrier ends the round."""
    rules = [make_rule() for _ in range(n)]
    next_index = [0] * n
    now = tokens = 0
    active = list(range(n))
    while active:
        free = [now] * slots  # min-heap of slot free times within the round
        heapq.heapify(free)
        end = now
        for p in active:
            s = engine.sample(p, next_index[p])
            start = heapq.heappop(free)
            heapq.heappush(free, start + s.tokens_cut)
            end = max(end, start + s.tokens_cut)
            tokens += rules[p].add(s)
            next_index[p] += 1
        now = end  # the barrier: the next round starts after the slowest chain
        active = [p for p in active if not rules[p].done()]
    return now, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quorum", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=8)
    args = parser.parse_args()

    engine = SimulatedEngine(args.problems, seed=args.seed)
    n = args.problems
    adaptive = lambda: AdaptiveVote(args.quorum, args.max_samples, cut_loops=True)  # noqa: E731
    fixed8 = lambda: AdaptiveVote(quorum=10**9, max_samples=8, cut_loops=False)  # noqa: E731

    a_tokens, a_acc = run_sequential(engine, n, adaptive)
    b_tokens, b_acc = run_sequential(engine, n, fixed8)
    print(f"(a) {n} problems, seed {args.seed}")
    print(f"{'':34}{'tokens/problem':>16}{'accuracy':>10}")
    print(f"{'fixed best-of-8 majority (baseline)':34}{b_tokens:>16.0f}{b_acc:>10.1%}")
    print(f"{f'adaptive quorum {args.quorum}, k<={args.max_samples}, cut-off':34}{a_tokens:>16.0f}{a_acc:>10.1%}")
    ratio = a_tokens / b_tokens
    print(f"token ratio {ratio:.3f}x (target <= 0.65x), accuracy {a_acc - b_acc:+.1%} (target >= 0)")

    figures = {"benchmark": "policy", "problems": n, "seed": args.seed, "quorum": args.quorum,
               "a": {"adaptive_tokens": round(a_tokens, 1), "adaptive_accuracy": round(a_acc, 4),
                     "best_of_8_tokens": round(b_tokens, 1), "best_of_8_accuracy": round(b_acc, 4),
                     "token_ratio": round(ratio, 3)}, "b": {}}
    print(f"\n(b) wall time in engine steps, same adaptive policy and slots")
    print(f"{'problems/slot':14}{'slots':>6}{'round-based':>13}{'continuous':>12}{'speedup':>9}{'+parallel':>11}{'speedup':>9}")
    for per_slot in (8, 2):
        slots = max(1, n // per_slot)
        rounds, r_tokens = round_steps(engine, n, slots, adaptive)
        cont, c_tokens, c_acc = continuous_steps(engine, n, slots, adaptive)
        spec, s_tokens, s_acc = continuous_steps(engine, n, slots, adaptive, speculate=True)
        print(f"{per_slot:<14}{slots:>6}{rounds:>13}{cont:>12}{rounds / cont:>8.2f}x{spec:>11}{rounds / spec:>8.2f}x")
        print(f"{'':14}{'tokens/problem':>19}{r_tokens / n:>6.0f}{c_tokens / n:>12.0f}{'':9}{s_tokens / n:>11.0f}"
              f"   accuracy {c_acc:.1%} | {s_acc:.1%}")
        figures["b"][f"{per_slot}_per_slot"] = {
            "slots": slots, "round_steps": rounds, "continuous_steps": cont, "speedup": round(rounds / cont, 3),
            "parallel_steps": spec, "parallel_speedup": round(rounds / spec, 3),
            "tokens_per_problem": {"round": round(r_tokens / n, 1), "continuous": round(c_tokens / n, 1), "parallel": round(s_tokens / n, 1)},
            "accuracy": {"continuous": round(c_acc, 4), "parallel": round(s_acc, 4)},
        }
    print("targets: >= 1.2x at 8 problems per slot, >= 1.5x at 2")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
