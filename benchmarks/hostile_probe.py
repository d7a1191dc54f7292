"""Issue 20's hostile cases against the live Serve app on 127.0.0.1: each must be a 2xx or a 4xx
within 30 s, and the app must keep serving (a small chat after each case).

Cases: the model's special tokens typed in chat text (with an image), in /v1/solve, and in a raw
completions prompt; empty completions prompts; malformed and non-ASCII API keys; integer-valued
floats; 16 over-long (262,000-character) prompts at once, then a small chat. Tiny model, one
engine replica, an API key set. Prints one line per case and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

KEY = "probe-key"
CONFIG = {
    "model": {"path": "tiny", "served_model_name": "qvq-tiny", "max_pixels": 50176},
    "engine": {"max_batch_size": 8, "torch_threads": 1},
    "sampling": {"max_tokens": 8},
    "policy": {"max_attempts": 1},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 1},
    "serve": {"api_keys": [KEY], "max_tokens_limit": 64, "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}
SPECIAL = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"]


def _png_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cases() -> list[tuple[str, str, dict, dict]]:
    """(name, path, body, extra headers)."""
    image = {"type": "image_url", "image_url": {"url": _png_url()}}
    cases = []
    for token in SPECIAL:
        text = {"type": "text", "text": f"What is {token} here?"}
        cases.append((f"chat+image {token}", "/v1/chat/completions", {"messages": [{"role": "user", "content": [image, text]}]}, {}))
        cases.append((f"solve {token}", "/v1/solve", {"question": f"What is 2+2? {token}", "images": [_png_url()]}, {}))
        cases.append((f"raw prompt {token}", "/v1/completions", {"prompt": f"Say {token}", "max_tokens": 4}, {}))
    for prompt in ("", ["x", ""], []):
        cases.append((f"completions prompt {json.dumps(prompt)}", "/v1/completions", {"prompt": prompt}, {}))
    for header in (b"Bearer \xff\xfe", "Bearer ключ".encode(), b"Bearer", b"Basic Zm9vOmJhcg=="):
        cases.append((f"authorization {header!r}", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, {"authorization": header}))
    cases.append(("max_tokens 4.0", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4.0}, {}))
    return cases


def _post(base: str, path: str, body: dict, headers: dict) -> tuple[int, float]:
    import httpx

    sent = [(b"authorization", f"Bearer {KEY}".encode())] if "authorization" not in headers else [(b"authorization", headers["authorization"])]
    started = time.perf_counter()
    try:
        status = httpx.post(base + path, json=body, headers=sent, timeout=30).status_code
    except httpx.TimeoutException:
        status = 0  # no answer within 30 s
    return status, time.perf_counter() - started


def main() -> None:
    import ray
    from ray import serve

    from qvq_ray.serve.app import build_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    small = {"messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 2}
    results = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # our own cluster, never one found in /tmp/ray
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(build_app({"config": CONFIG}), name="probe", route_prefix="/")
        _post(base, "/v1/chat/completions", small, {})  # warm
        for name, path, body, headers in _cases():
            status, seconds = _post(base, path, body, headers)
            after, _ = _post(base, "/v1/chat/completions", small, {})
            results.append({"case": name, "status": status, "seconds": round(seconds, 2), "small_chat_after": after})
            print(f"{name:<48} {status:>4} in {seconds:5.2f} s; a small chat after it: {after}")
        words = "seven plus eleven is eighteen and the angle ABC measures forty degrees so "
        long = {"messages": [{"role": "user", "content": (words * 3600)[:262_000]}], "max_tokens": 2}
        with ThreadPoolExecutor(16) as pool:
            started = time.perf_counter()
            refused = list(pool.map(lambda _: _post(base, "/v1/chat/completions", long, {})[0], range(16)))
            refused_s = time.perf_counter() - started
        status, small_s = _post(base, "/v1/chat/completions", small, {})
        print(f"16 prompts of 262,000 characters: statuses {sorted(set(refused))} in {refused_s:.2f} s; a small chat right after: {status} in {small_s:.2f} s")
        serve.delete("probe")
    finally:
        serve.shutdown()
        ray.shutdown()
    bad = [r for r in results if not (200 <= r["status"] < 500) or r["small_chat_after"] != 200]
    print(f"{len(results)} cases: {len(results) - len(bad)} answered 2xx/4xx within 30 s with the app still serving; {len(bad)} not")
    print(json.dumps({"benchmark": "hostile_probe", "cases": len(results), "failed": len(bad), "by_status": {
        str(s): sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})},
        "refused_16_s": round(refused_s, 2), "refused_statuses": sorted(set(refused)), "small_chat_after_s": round(small_s, 2)}))


if __name__ == "__main__":
    main()
