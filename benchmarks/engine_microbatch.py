"""Micro-batching in the transformers engine: throughput of concurrent solves' generate calls.

Baseline: the same engine with max_batch_size=1 (each request runs alone, as a naive per-request
`generate` would). Measured in the same run, same model, same prompts, greedy decoding.
Prints both side by side and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time


def _image(text: str) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (112, 56), "white")
    ImageDraw.Draw(image).text((6, 20), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def _run(engine, prompts, sampling) -> tuple[float, int]:
    started = time.perf_counter()
    results = await asyncio.gather(*(engine.generate(m, sampling) for m in prompts))
    elapsed = time.perf_counter() - started
    return elapsed, sum(r[0].completion_tokens for r in results)


def main() -> None:
    from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
    from qvq_ray.engines.hf_engine import HFEngine

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
    args = parser.parse_args()

    prompts = [
        [{"role": "user", "content": [{"type": "image", "image": _image(f"{i} + {2 * i}")}, {"type": "text", "text": f"What is {i} + {2 * i}?"}]}]
        for i in range(args.requests)
    ]
    sampling = SamplingConfig(max_tokens=args.max_tokens)
    figures = {}
    for label, batch in (("baseline_batch1", 1), (f"microbatch_{args.batch}", args.batch)):
        engine = HFEngine(
            ModelConfig(path=args.model, dtype=args.dtype), HFEngineConfig(device=args.device, max_batch_size=batch, batch_wait_ms=5)
        )
        asyncio.run(_run(engine, prompts[:2], sampling))  # warm-up
        elapsed, tokens = asyncio.run(_run(engine, prompts, sampling))
        figures[label] = {"seconds": round(elapsed, 3), "requests_per_s": round(args.requests / elapsed, 2), "tokens_per_s": round(tokens / elapsed, 1)}
    base, micro = figures["baseline_batch1"], figures[f"microbatch_{args.batch}"]
    print(f"{'':22}{'batch=1 (baseline)':>20}{f'batch={args.batch}':>14}")
    for key in ("seconds", "requests_per_s", "tokens_per_s"):
        print(f"{key:22}{base[key]:>20}{micro[key]:>14}")
    speedup = round(micro["requests_per_s"] / base["requests_per_s"], 2)
    print(f"speedup {speedup}x over {args.requests} concurrent requests, {args.max_tokens} new tokens each")
    print(json.dumps({"benchmark": "engine_microbatch", "device": engine.device, "requests": args.requests, "baseline": base, "microbatch": micro, "speedup": speedup}))


if __name__ == "__main__":
    main()
