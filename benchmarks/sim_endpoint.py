"""A simulated OpenAI-compatible endpoint for the batch benchmarks (a simulation, named so: no model).

Serves what `engine.kind: openai` calls (qvq_ray/engines/openai_engine.py): POST /v1/chat/completions
(plain JSON, or SSE when `stream` is true, with the usage chunk that `stream_options.include_usage`
asks for), POST /v1/completions (raw prompts), and GET /v1/models (the engine's `check_health`).

- Each sample's completion length is drawn from a lognormal (median 1,500 tokens, sigma 0.9, capped
  at 16,384), seeded by a hash of the request's messages (or prompt), sampling (temperature, top_p,
  seed) and the choice index: the same problem gets the same length whoever sends it (the Ray job
  or a plain loop), and a re-sample (another seed or temperature) another one.
- A request takes its longest sample's length / `tokens_per_s` seconds; every request sleeps
  concurrently (unlimited slots). `zero_latency` answers at once with a short text (pipeline
  overhead measurements). A sample longer than max_tokens stops there (finish_reason "length").
- The text ends with a QVQ-style final answer that the verifier accepts: a question "What is A + B?"
  (or A - B, A x B) is answered correctly (`A + B = C`, `**Final Answer**`, `\\boxed{C}`), so with
  that gold the first attempt is accepted and no re-sample changes the request count. Other
  questions get `\\boxed{42}`. `usage.completion_tokens` is the drawn length.
- GET /stats: requests in flight over time since the last reset: the time-weighted mean in flight
  over the active window (first request's start to the last one's end), busy seconds (time with at
  least one request in flight), the peak, requests, tokens, and a timeline (mean in flight per
  `timeline_bucket_s`). POST /stats/reset starts a new window.

Run it as a process (`python benchmarks/sim_endpoint.py --port 0` prints one JSON line with its
URL, then serves until killed) or through `SimEndpoint` (a subprocess, or a thread with
`in_process=True`). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

MEDIAN_TOKENS = 1500
SIGMA = 0.9
CAP_TOKENS = 16_384
# 1,500 tokens (the median) in 2 s. Faster than a real QVQ sequence (vLLM decodes tens of tokens/s
# per sequence), slow enough that a 2-core machine's CPU is not what limits either side: at 3,750
# tokens/s both the loop and the job became CPU-bound there and measured the CPU, not the slots.
DEFAULT_TOKENS_PER_S = 750.0
MODEL_NAME = "sim-qvq"
_QUESTION = re.compile(r"What is (-?\d+)\s*([+\-x*×])\s*(-?\d+)\s*\?")


# --------------------------------------------------------------------------- pure parts


def draw_length(key: bytes, *, median: float = MEDIAN_TOKENS, sigma: float = SIGMA, cap: int = CAP_TOKENS) -> int:
    """A completion length for one sample: lognormal(log median, sigma), fixed by `key`, in [1, cap]."""
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    return max(1, min(cap, int(round(median * math.exp(sigma * rng.gauss(0.0, 1.0))))))


def request_key(body: dict[str, Any], index: int, salt: int = 0) -> bytes:
    """What fixes a sample's length: the prompt, the sampling that changes between attempts, the choice."""
    prompt = body.get("messages") if "messages" in body else body.get("prompt")
    parts = [prompt, body.get("temperature"), body.get("top_p"), body.get("seed"), index, salt]
    return json.dumps(parts, sort_keys=True, default=str).encode()


def prompt_text(body: dict[str, Any]) -> str:
    """The last user text of a chat body (or the raw prompt)."""
    if "prompt" in body and "messages" not in body:
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else json.dumps(prompt)
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")
    return ""


def answer_text(question: str, *, short: bool = False) -> str:
    """A response in QVQ's shape whose final answer is right for 'What is A + B?' questions."""
    match = _QUESTION.search(question)
    if match:
        a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
        value = a + b if op == "+" else a - b if op == "-" else a * b
        sign = {"*": "x", "×": "x"}.get(op, op)
        claim = f"{a} {sign} {b} = {value}"
    else:
        value, claim = 42, "6 x 7 = 42"
    if short:
        return f"{claim}\n\n**Final Answer**\n\\boxed{{{value}}}"
    return (
        "Let me work through this step by step.\n\n"
        "First I read the numbers in the question and the operation between them. "
        f"Working it out carefully: {claim}.\n\n"
        "Checking once more by the reverse operation confirms the result.\n\n"
        f"**Final Answer**\n\\boxed{{{value}}}"
    )


class InFlight:
    """Requests in flight over time: time-weighted mean, busy time, peak, a bucketed timeline.

    Used from one event loop only (no lock)."""

    def __init__(self, bucket_s: float = 1.0, clock=time.monotonic):
        self.bucket_s = bucket_s
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.area = 0.0  # request-seconds
        self.busy = 0.0  # seconds with >= 1 in flight
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.last_change: float | None = None
        self.requests = 0
        self.completed = 0
        self.aborted = 0
        self.samples = 0
        self.completion_tokens = 0
        self.buckets: list[float] = []  # request-seconds per bucket since first_start
        self.cpu0 = time.process_time()

    def _advance(self, now: float) -> None:
        if self.last_change is not None and self.in_flight:
            dt = now - self.last_change
            self.area += self.in_flight * dt
            self.busy += dt
            self._spread(self.last_change, now, self.in_flight)
        self.last_change = now

    def _spread(self, start: float, end: float, level: int) -> None:
        """Add level x (end - start) to the timeline buckets it covers."""
        t0 = self.first_start or start
        while start < end:
            i = int((start - t0) / self.bucket_s)
            edge = min(end, t0 + (i + 1) * self.bucket_s)
            if len(self.buckets) <= i:
                self.buckets.extend([0.0] * (i + 1 - len(self.buckets)))
            self.buckets[i] += level * (edge - start)
            start = edge if edge > start else end

    def start(self) -> None:
        now = self.clock()
        if self.first_start is None:
            self.first_start = now
        self._advance(now)
        self.in_flight += 1
        self.requests += 1
        self.peak = max(self.peak, self.in_flight)

    def end(self, *, samples: int, tokens: int, aborted: bool) -> None:
        now = self.clock()
        self._advance(now)
        self.in_flight -= 1
        self.last_end = now
        if aborted:
            self.aborted += 1
        else:
            self.completed += 1
            self.samples += samples
            self.completion_tokens += tokens

    def snapshot(self, *, timeline: bool = True) -> dict[str, Any]:
        now = self.clock()
        self._advance(now)
        if self.first_start is None:
            window = 0.0
        else:
            end = now if self.in_flight else (self.last_end or now)
            window = max(end - self.first_start, 0.0)
        out: dict[str, Any] = {
            "requests": self.requests,
            "completed": self.completed,
            "aborted": self.aborted,
            "in_flight_now": self.in_flight,
            "peak_in_flight": self.peak,
            "samples": self.samples,
            "completion_tokens": self.completion_tokens,
            "window_s": window,  # first request's start -> last request's end
            "busy_s": self.busy,  # time with >= 1 request in flight
            "request_s": self.area,  # sum over requests of their duration
            "mean_in_flight": self.area / window if window > 0 else 0.0,
            "mean_in_flight_busy": self.area / self.busy if self.busy > 0 else 0.0,
            "first_start": self.first_start,  # time.monotonic() (CLOCK_MONOTONIC: comparable across processes)
            "last_end": self.last_end,
            "timeline_bucket_s": self.bucket_s,
            # CPU this endpoint's process spent since the reset (in-process mode: the whole process's)
            "endpoint_cpu_s": time.process_time() - self.cpu0,
        }
        if timeline:
            out["timeline"] = [round(a / self.bucket_s, 2) for a in self.buckets]
        return out


# --------------------------------------------------------------------------- the server


class SimServer:
    def __init__(
        self,
        *,
        tokens_per_s: float = DEFAULT_TOKENS_PER_S,
        zero_latency: bool = False,
        median: float = MEDIAN_TOKENS,
        sigma: float = SIGMA,
        cap: int = CAP_TOKENS,
        salt: int = 0,
        stream_chunks: int = 4,
        model_name: str = MODEL_NAME,
        bucket_s: float = 1.0,
    ):
        self.tokens_per_s = tokens_per_s
        self.zero_latency = zero_latency
        self.median, self.sigma, self.cap, self.salt = median, sigma, cap, salt
        self.stream_chunks = max(1, stream_chunks)
        self.model_name = model_name
        self.stats = InFlight(bucket_s)

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/stats/reset", self.reset_stats)
        app.router.add_get("/health", self.health)
        return app

    # -- routes

    async def health(self, request):
        from aiohttp import web

        return web.json_response({"ok": True})

    async def models(self, request):
        from aiohttp import web

        return web.json_response(
            {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "sim"}]}
        )

    async def get_stats(self, request):
        from aiohttp import web

        return web.json_response(self.stats.snapshot(timeline=request.query.get("timeline", "1") != "0"))

    async def reset_stats(self, request):
        from aiohttp import web

        self.stats.reset()
        return web.json_response({"reset": True})

    async def chat(self, request):
        return await self._generate(request, chat=True)

    async def completions(self, request):
        return await self._generate(request, chat=False)

    # -- generation

    def _samples(self, body: dict[str, Any]) -> list[tuple[str, str, int]]:
        """(text, finish_reason, tokens) per choice."""
        n = max(1, int(body.get("n") or 1))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.cap)
        text = answer_text(prompt_text(body), short=self.zero_latency)
        out = []
        for index in range(n):
            length = draw_length(request_key(body, index, self.salt), median=self.median, sigma=self.sigma, cap=self.cap)
            if length > max_tokens:  # cut at max_tokens: no final answer
                out.append((text[: len(text) // 2], "length", max_tokens))
            else:
                out.append((text, "stop", length))
        return out

    async def _generate(self, request, *, chat: bool):
        from aiohttp import web

        try:
            body = await request.json()
        except Exception:
            return web.json_response({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, status=400)
        if not isinstance(body, dict) or ("messages" if chat else "prompt") not in body:
            return web.json_response({"error": {"message": "missing messages/prompt", "type": "invalid_request_error"}}, status=400)
        samples = self._samples(body)
        duration = 0.0 if self.zero_latency else max(t for _, _, t in samples) / self.tokens_per_s
        prompt_tokens = max(1, len(json.dumps(body.get("messages") or body.get("prompt"))) // 4)
        tokens = sum(t for _, _, t in samples)
        created = int(time.time())
        rid = f"sim-{hashlib.sha1(request_key(body, 0, self.salt)).hexdigest()[:16]}"
        model = body.get("model") or self.model_name
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
        self.stats.start()
        aborted = True
        try:
            if not body.get("stream"):
                if duration:
                    await asyncio.sleep(duration)
                if chat:
                    choices = [
                        {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": f, "logprobs": None}
                        for i, (text, f, _) in enumerate(samples)
                    ]
                else:
                    choices = [{"index": i, "text": text, "finish_reason": f, "logprobs": None} for i, (text, f, _) in enumerate(samples)]
                response = web.json_response(
                    {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                     "model": model, "choices": choices, "usage": usage}
                )
                aborted = False
                return response
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await response.prepare(request)
            kind = "chat.completion.chunk" if chat else "text_completion"

            def chunk(choices: list[dict], extra: dict | None = None) -> bytes:
                data = {"id": rid, "object": kind, "created": created, "model": model, "choices": choices}
                if extra:
                    data.update(extra)
                return b"data: " + json.dumps(data).encode() + b"\n\n"

            def piece(i: int, content: str | None, finish: str | None) -> dict:
                if chat:
                    delta = {"content": content} if content is not None else {}
                    return {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
                return {"index": i, "text": content or "", "finish_reason": finish, "logprobs": None}

            if chat:
                await response.write(chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                                            for i in range(len(samples))]))
            k = self.stream_chunks
            for step in range(k):
                if duration:
                    await asyncio.sleep(duration / k)
                pieces = []
                for i, (text, _, _) in enumerate(samples):
                    size = -(-len(text) // k)
                    part = text[step * size : (step + 1) * size]
                    if part:
                        pieces.append(piece(i, part, None))
                if pieces:
                    await response.write(chunk(pieces))
            await response.write(chunk([piece(i, None, f) for i, (_, f, _) in enumerate(samples)]))
            if (body.get("stream_options") or {}).get("include_usage"):
                await response.write(chunk([], {"usage": usage}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            aborted = False
            return response
        finally:
            self.stats.end(samples=len(samples), tokens=tokens, aborted=aborted)


async def _serve(server: SimServer, host: str, port: int, ready) -> None:
    from aiohttp import web

    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # the port the OS gave for port 0
    ready(bound, runner)


# --------------------------------------------------------------------------- a handle for benchmarks


class SimEndpoint:
    """The simulated endpoint on 127.0.0.1 with a free port: a subprocess (default) or a thread.

    `base_url` ends in /v1 (what engine.base_url wants); `stats()`, `reset()`; `close()` stops it
    (only the process this object started). In-process, `server_class` (a SimServer subclass: a test
    that records more per request) and `server_options` (more of its keyword arguments) make the server."""

    def __init__(
        self,
        *,
        tokens_per_s: float = DEFAULT_TOKENS_PER_S,
        zero_latency: bool = False,
        in_process: bool = False,
        stream_chunks: int = 4,
        bucket_s: float = 1.0,
        salt: int = 0,
        model_name: str = MODEL_NAME,
        server_class: type[SimServer] | None = None,
        server_options: dict[str, Any] | None = None,
    ):
        if (server_class or server_options) and not in_process:
            raise ValueError("server_class and server_options are for in_process=True")
        self.model_name = model_name
        self.server: SimServer | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        options = dict(tokens_per_s=tokens_per_s, zero_latency=zero_latency, stream_chunks=stream_chunks,
                       bucket_s=bucket_s, salt=salt, model_name=model_name)
        if in_process:
            self._start_thread({**options, **(server_options or {})}, server_class or SimServer)
        else:
            self._start_process(options)
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"

    def _start_process(self, options: dict) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--host", "127.0.0.1", "--port", "0",
                   "--tokens-per-s", str(options["tokens_per_s"]), "--stream-chunks", str(options["stream_chunks"]),
                   "--bucket-s", str(options["bucket_s"]), "--salt", str(options["salt"]),
                   "--model-name", options["model_name"]]
        if options["zero_latency"]:
            command.append("--zero-latency")
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, text=True)
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=10)
            raise RuntimeError(f"simulated endpoint did not start (exit {self._proc.returncode})")
        self.port = int(json.loads(line)["port"])
        self.pid = self._proc.pid

    def _start_thread(self, options: dict, server_class: type[SimServer]) -> None:
        server = self.server = server_class(**options)
        started = threading.Event()
        box: dict[str, Any] = {}

        def ready(port, runner):
            box["port"], self._runner = port, runner
            started.set()

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(_serve(server, "127.0.0.1", 0, ready))
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="sim-endpoint", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("simulated endpoint did not start")
        self.port = box["port"]
        self.pid = None

    def _call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self, timeline: bool = True) -> dict:
        return self._call("/stats" + ("" if timeline else "?timeline=0"))

    def reset(self) -> None:
        self._call("/stats/reset", "POST")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> "SimEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sparkline(values: list[float], width: int = 60, top: float | None = None) -> str:
    """A one-line profile of a timeline (for the benchmarks' printouts)."""
    if not values:
        return ""
    step = max(1, math.ceil(len(values) / width))
    cols = [sum(values[i : i + step]) / len(values[i : i + step]) for i in range(0, len(values), step)]
    top = top or max(cols) or 1.0
    marks = " .:-=+*#%@"
    return "".join(marks[min(len(marks) - 1, int(round(c / top * (len(marks) - 1))))] for c in cols)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"], help="Loopback only.")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed).")
    parser.add_argument("--tokens-per-s", type=float, default=DEFAULT_TOKENS_PER_S)
    parser.add_argument("--zero-latency", action="store_true", help="No sleep, short text.")
    parser.add_argument("--stream-chunks", type=int, default=4, help="Content chunks per streamed sample.")
    parser.add_argument("--bucket-s", type=float, default=1.0, help="Timeline bucket width in /stats.")
    parser.add_argument("--salt", type=int, default=0, help="Changes every drawn length.")
    parser.add_argument("--model-name", default=MODEL_NAME)
    args = parser.parse_args()
    server = SimServer(tokens_per_s=args.tokens_per_s, zero_latency=args.zero_latency, stream_chunks=args.stream_chunks,
                       bucket_s=args.bucket_s, salt=args.salt, model_name=args.model_name)

    def ready(port, runner):
        print(json.dumps({"port": port, "url": f"http://127.0.0.1:{port}/v1"}), flush=True)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_serve(server, args.host, args.port, ready))
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
