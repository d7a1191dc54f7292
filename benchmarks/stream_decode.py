"""Streaming detokenization in the transformers engine: CPU time per streamed generation.

The engine's streamer runs on the model's own thread at every step, so its cost delays every row
of the batch. Baseline: decoding the whole sequence at each new token (what the streamer did
before), measured in the same run on the same tokens as `_IncrementalDecoder` (a short window).
Both must give the same text. Prints both side by side and ends with one JSON line.

    python benchmarks/stream_decode.py [--tokens 8192] [--model tiny]
"""

from __future__ import annotations

import argparse
import json
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192, help="Generation length (QVQ's max_new_tokens is 8192).")
    parser.add_argument("--model", default="tiny", help="Checkpoint whose tokenizer is used.")
    args = parser.parse_args()

    from qvq_ray.engines.hf_engine import _IncrementalDecoder
    from qvq_ray.models.processor import load_processor
    from qvq_ray.models.tiny import resolve_model_path

    tokenizer = load_processor(resolve_model_path(args.model), min_pixels=3136, max_pixels=200704).tokenizer
    rng = random.Random(0)
    words = ["Let", "me", "compute", "97-73=24", "所以", "答案", "\\boxed{24}", "x^2", "+", "résumé", "😀"]
    ids: list[int] = []
    while len(ids) < args.tokens:
        ids += tokenizer(" ".join(rng.choice(words) for _ in range(2000)))["input_ids"]
    ids = ids[: args.tokens]

    started = time.perf_counter()
    whole = ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            whole = text
    baseline_s = time.perf_counter() - started

    started = time.perf_counter()
    decoder = _IncrementalDecoder(tokenizer)
    windowed = "".join(decoder.push(token) for token in ids)
    windowed_s = time.perf_counter() - started

    same = windowed == whole
    print(f"stream decoding of {len(ids)} tokens ({args.model} tokenizer), CPU seconds on the model thread")
    print(f"  whole sequence per token (baseline)  {baseline_s:8.3f} s")
    print(f"  short window per token (engine)      {windowed_s:8.3f} s   {baseline_s / windowed_s:6.1f}x less   same text: {same}")
    print(json.dumps({"benchmark": "stream_decode", "tokens": len(ids), "baseline_s": round(baseline_s, 4),
                      "windowed_s": round(windowed_s, 4), "same_text": same}))
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
