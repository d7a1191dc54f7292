"""The clients people point at a vLLM server, unmodified, against our app (issue 22 item 4).

- lm-eval 0.4 `local-completions` with its defaults (remote tokenizer found at /tokenizer_info,
  `tokenized_requests` on: prompts go as token ids): a multiple_choice task (loglikelihood: echo +
  logprobs, checked against the model's own log-probabilities) and a generate_until task, on our
  five arithmetic items (tests/data/clients/); `local-chat-completions` on the generate_until task.
- guidellm and aiperf: short streaming runs (20 requests, 2 at a time, synthetic prompts made with
  the tiny model's own tokenizer, `ignore_eos` so every request generates exactly 16 tokens).

Each client must finish with no failed request, and each run is checked on the server's side too:
`/metrics` scraped before and after shows vLLM's TTFT and e2e histograms counting exactly the
requests the client says it sent, the inter-token histogram one gap per generated token after the
first, and no request answered with an error status.

Each client runs from its own venv (tests/clients/make_venv.py: pinned, built once, cached outside
the repository). Marked `clients` and left out of the default run (pyproject's addopts): run them
with `make test-clients` (`pytest -m clients`). No client reaches the Hugging Face hub: tokenizers
and datasets are local files, the hub is offline and its endpoint points at a closed local port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, running_app

sys.path.insert(0, str(REPO_ROOT / "tests" / "clients"))
import make_venv  # noqa: E402

pytestmark = [pytest.mark.clients, pytest.mark.timeout(900)]

MODEL = "qvq-tiny"
TOKENIZER = REPO_ROOT / "qvq_ray" / "assets" / "tiny-qwen2-vl-arith"  # the served `tiny` checkpoint's own
TASKS = REPO_ROOT / "tests" / "data" / "clients"
CLIENT_TIMEOUT_S = 240
LOAD_REQUESTS, LOAD_CONCURRENCY, PROMPT_TOKENS, OUTPUT_TOKENS = 20, 2, 32, 16
APP_CONFIG = {
    "model": {"path": "tiny", "served_model_name": MODEL, "max_pixels": 200704, "max_model_len": 2048},
    "engine": {"max_batch_size": 4, "batch_wait_ms": 5, "torch_threads": 1},
    "sampling": {"max_tokens": 64},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {"ingress_num_cpus": 0.25, "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}
# vLLM's per-request histograms: one observation per generated sample
PER_REQUEST = ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
               "vllm:request_generation_tokens")


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    with running_app(APP_CONFIG, "qvq-clients") as url:
        yield url


def client(name: str) -> Path:
    """The client's console script in its pinned venv (built on first use: 1-2 min each)."""
    try:
        return make_venv.ensure(name, log=lambda line: print(line, file=sys.stderr))
    except subprocess.CalledProcessError as error:  # say why, loudly: a client that cannot be installed is a failure
        pytest.fail(f"installing {name} from {make_venv.pins(name)} failed:\n{error.stderr[-3000:]}")


def client_env(tmp_path: Path, *, hf_offline: bool = True) -> dict:
    """The client's environment: not the project's venv, no hub (a closed local port as its
    endpoint, and offline flags), a private HF cache, no proxy for the loopback."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update({
        "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
    })
    if hf_offline:
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


def run_client(cmd: list, *, log: Path, env: dict, cwd: Path | None = None) -> str:
    """Run a client to its end (bounded: CLIENT_TIMEOUT_S, then its whole process group is killed);
    its output, which must end with exit status 0."""
    cmd = [str(part) for part in cmd]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=CLIENT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{Path(cmd[0]).name} ran past {CLIENT_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}:\n{text[-5000:]}"
    return text


# --------------------------------------------------------------------------- /metrics, before and after


def scrape(base_url: str) -> dict:
    """(sample name, sorted labels) -> value, parsed by prometheus_client (it refuses malformed text)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=60).text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def delta(before: dict, after: dict, sample: str, **labels) -> float:
    key = (sample, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def error_statuses(before: dict, after: dict, allowed=()) -> dict:
    """Requests the app answered with a status other than 2xx between the two scrapes, by route and
    status, less the (route, status) pairs `allowed`."""
    out = {}
    for (name, labels), value in after.items():
        label = dict(labels)
        if (name == "qvq_ray_requests_total" and not label.get("status", "").startswith("2")
                and (label.get("route"), label.get("status")) not in allowed):
            change = value - before.get((name, labels), 0.0)
            if change:
                out[(label["route"], label["status"])] = change
    return out


def assert_server_counted(before: dict, after: dict, requests: int, generated: int | None = None, allowed=()) -> dict:
    """The acceptance check: vLLM's per-request histograms count `requests` more, the inter-token
    histogram one gap per generated token after each request's first, and no error status (but those
    `allowed`)."""
    model = {"model_name": MODEL}
    counted = {family: delta(before, after, f"{family}_count", **model) for family in PER_REQUEST}
    assert counted == {family: requests for family in PER_REQUEST}, counted
    tokens = delta(before, after, "vllm:generation_tokens_total", **model)
    if generated is not None:
        assert tokens == generated, (tokens, generated)
    gaps = delta(before, after, "vllm:inter_token_latency_seconds_count", **model)
    assert gaps == tokens - requests, (gaps, tokens, requests)
    assert delta(before, after, "vllm:time_to_first_token_seconds_sum", **model) > 0
    assert error_statuses(before, after, allowed) == {}
    return {"ttft_count": counted["vllm:time_to_first_token_seconds"], "itl_count": gaps, "generation_tokens": tokens}


# --------------------------------------------------------------------------- lm-eval


def lm_eval_run(base_url: str, tmp_path: Path, model: str, tasks: str, *extra: str) -> tuple[dict, dict[str, list[dict]]]:
    """`lm_eval run` with `--include_path` our task folder (as its working directory: the tasks' data
    files are relative); its results JSON and its logged samples by task, in document order."""
    lm_eval = client("lm-eval")
    route = "chat/completions" if "chat" in model else "completions"
    out = tmp_path / "lm-eval-out"
    cmd = [lm_eval, "run", "--model", model,
           "--model_args", f"model={MODEL},base_url={base_url}/v1/{route},num_concurrent=1,max_retries=1",
           "--include_path", ".", "--tasks", tasks, "--limit", "5", "--output_path", out, "--log_samples", *extra]
    text = run_client(cmd, log=tmp_path / "lm-eval.log", env=client_env(tmp_path), cwd=TASKS)
    print(f"$ (cd {TASKS.relative_to(REPO_ROOT)} && lm_eval {' '.join(str(c) for c in cmd[1:])})")
    print("\n".join(line for line in text.splitlines() if line.startswith(("|", "local-"))))
    (results_file,) = out.glob("*/results_*.json")
    samples = {}
    for task in tasks.split(","):
        (path,) = out.glob(f"*/samples_{task}_*.jsonl")
        samples[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return json.loads(results_file.read_text()), samples


def assert_every_sample_answered(samples: dict[str, list[dict]], documents: int = 5) -> int:
    """Each task's documents each have one response per request (lm-eval gives up on a failed request,
    but a chat reply it could not parse becomes an empty string); the number of requests."""
    for task, task_samples in samples.items():
        assert [s["doc_id"] for s in task_samples] == list(range(documents)), task
        for sample in task_samples:
            assert len(sample["resps"]) == len(sample["arguments"]) >= 1, sample
            for resp in sample["resps"]:
                assert resp and resp[0] not in (None, ""), sample
    return sum(len(s["arguments"]) for task_samples in samples.values() for s in task_samples)


def loglikelihoods_from_the_model(pairs: list[tuple[str, str]]) -> list[float]:
    """log P(continuation | context) by the served checkpoint itself, in this process, tokenized as
    lm-eval does (the whole string, the context's tokens first)."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    model = Qwen2VLForConditionalGeneration.from_pretrained(TOKENIZER, dtype=torch.float32).eval()
    out = []
    for context, continuation in pairs:
        whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
        start = len(tokenizer(context, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([whole])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logprobs[i - 1, whole[i]]) for i in range(start, len(whole))))
    return out


def test_lm_eval_local_completions_loglikelihood_and_generate_until(base_url, tmp_path):
    before = scrape(base_url)
    results, samples = lm_eval_run(base_url, tmp_path, "local-completions", "qvq_arith_mc,qvq_arith_gen")
    after = scrape(base_url)

    mc, gen = results["results"]["qvq_arith_mc"], results["results"]["qvq_arith_gen"]
    assert 0.0 <= mc["acc,none"] <= 1.0 and mc["sample_len"] == 5
    assert 0.0 <= gen["exact_match,none"] <= 1.0 and gen["sample_len"] == 5
    assert results["n-samples"]["qvq_arith_mc"]["effective"] == results["n-samples"]["qvq_arith_gen"]["effective"] == 5
    requests = assert_every_sample_answered(samples)
    assert requests == 5 * 3 + 5  # a loglikelihood request per choice, a generation per document
    # every one of them a completion (loglikelihood: echo + logprobs with max_tokens 1), counted once
    counted = assert_server_counted(before, after, requests)
    assert delta(before, after, "qvq_ray_requests_total", route="/v1/completions", status="200") == requests

    # the loglikelihoods lm-eval read from our prompt logprobs are the model's own
    pairs, served = [], []
    for sample in samples["qvq_arith_mc"]:
        for arguments, resp in zip(sample["arguments"].values(), sample["resps"]):
            pairs.append((arguments["arg_0"], arguments["arg_1"]))
            served.append(float(resp[0][0]))
    assert served == pytest.approx(loglikelihoods_from_the_model(pairs), abs=2e-3), pairs

    # a prompt sent as token ids generates what the same prompt as a string does
    for sample in samples["qvq_arith_gen"]:
        reply = httpx.post(f"{base_url}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": sample["arguments"]["gen_args_0"]["arg_0"], "max_tokens": 8, "temperature": 0,
            "stop": ["\n"], "seed": 1234,
        })
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["text"] == sample["resps"][0][0], sample
    print(f"lm-eval local-completions: {requests} requests, 0 failed; acc={mc['acc,none']}, "
          f"exact_match={gen['exact_match,none']}; /metrics: {counted}")


def test_lm_eval_local_chat_completions_generate_until(base_url, tmp_path):
    before = scrape(base_url)
    results, samples = lm_eval_run(base_url, tmp_path, "local-chat-completions", "qvq_arith_gen", "--apply_chat_template")
    after = scrape(base_url)

    gen = results["results"]["qvq_arith_gen"]
    assert 0.0 <= gen["exact_match,none"] <= 1.0 and gen["sample_len"] == 5
    requests = assert_every_sample_answered(samples)
    assert requests == 5
    for sample in samples["qvq_arith_gen"]:  # lm-eval sent messages (as JSON), not a templated string
        (messages,) = sample["arguments"]["gen_args_0"]["arg_0"]
        assert json.loads(messages) == [{"role": "user", "content": sample["doc"]["question"]}], sample
    counted = assert_server_counted(before, after, requests)
    assert delta(before, after, "qvq_ray_requests_total", route="/v1/chat/completions", status="200") == requests
    print(f"lm-eval local-chat-completions: {requests} requests, 0 failed; exact_match={gen['exact_match,none']}; "
          f"/metrics: {counted}")


# --------------------------------------------------------------------------- guidellm


def test_guidellm_streaming_run(base_url, tmp_path):
    guidellm = client("guidellm")
    report = tmp_path / "benchmarks.json"
    cmd = [guidellm, "run",
           "--backend", f"kind=openai_http,target={base_url},model={MODEL}",
           "--profile", f"kind=concurrent,streams={LOAD_CONCURRENCY}",
           "--constraint", f"kind=max_requests,count={LOAD_REQUESTS}",
           "--tokenizer", f"kind=huggingface_auto,model={TOKENIZER}",
           "--data", f"kind=synthetic_text,prompt_tokens={PROMPT_TOKENS},output_tokens={OUTPUT_TOKENS}",
           "--seed", "kind=static,value=0",
           "--output", f"kind=json,path={report}", "--output", "kind=console",
           "--disable-console-interactive"]
    before = scrape(base_url)
    text = run_client(cmd, log=tmp_path / "guidellm.log", env=client_env(tmp_path))
    after = scrape(base_url)

    (benchmark,) = json.loads(report.read_text())["benchmarks"]
    metrics = benchmark["metrics"]
    totals = metrics["request_totals"]
    assert totals == {"successful": LOAD_REQUESTS, "errored": 0, "incomplete": 0, "total": LOAD_REQUESTS}, totals
    assert len(benchmark["requests"]["successful"]) == LOAD_REQUESTS and not benchmark["requests"]["errored"]
    for sent in benchmark["requests"]["successful"][:1]:  # streamed, usage in every chunk, EOS ignored
        body = json.loads(sent["request_args"])["body"]
        assert body["stream"] is True and body["ignore_eos"] is True and body["stream_options"]["continuous_usage_stats"] is True
    ttft, itl = metrics["time_to_first_token_ms"]["successful"], metrics["inter_token_latency_ms"]["successful"]
    assert ttft["count"] == LOAD_REQUESTS and ttft["mean"] > 0
    assert itl["count"] == LOAD_REQUESTS * (OUTPUT_TOKENS - 1) and itl["mean"] > 0
    output_tokens = metrics["output_token_count"]["successful"]
    assert output_tokens["total_sum"] == LOAD_REQUESTS * OUTPUT_TOKENS, output_tokens  # ignore_eos applied
    counted = assert_server_counted(before, after, LOAD_REQUESTS, generated=LOAD_REQUESTS * OUTPUT_TOKENS)
    assert delta(before, after, "qvq_ray_requests_total", route="/v1/chat/completions", status="200") == LOAD_REQUESTS
    print(f"$ {' '.join(str(c) for c in cmd)}")
    tables = [line for line in text.splitlines() if line.startswith(("|", "ℹ"))]
    print("\n".join(tables[: tables.index("ℹ Run Summary Info", 1)] if tables.count("ℹ Run Summary Info") > 1 else tables))
    print(f"guidellm: {totals}; TTFT mean {ttft['mean']:.1f} ms, ITL mean {itl['mean']:.2f} ms "
          f"({itl['count']} gaps); /metrics: {counted}")


# --------------------------------------------------------------------------- aiperf


def test_aiperf_streaming_run(base_url, tmp_path):
    aiperf = client("aiperf")
    artifacts = tmp_path / "aiperf"
    cmd = [aiperf, "profile", "--model", MODEL, "--url", base_url, "--endpoint-type", "chat", "--streaming",
           "--tokenizer", TOKENIZER, "--request-count", LOAD_REQUESTS, "--concurrency", LOAD_CONCURRENCY,
           "--isl", PROMPT_TOKENS, "--osl", OUTPUT_TOKENS, "--extra-inputs", "ignore_eos:true",
           "--use-server-token-count", "--per-chunk-usage", "--random-seed", 0,
           "--output-artifact-dir", artifacts, "--ui-type", "none", "--no-gpu-telemetry", "--workers-max", 1,
           "--record-processor-service-count", 1]
    before = scrape(base_url)
    # aiperf 0.13 in HF offline mode looks a tokenizer path up as a hub cache entry and fails: it runs
    # online, with the hub's endpoint a closed local port (the tokenizer is a local folder)
    run_client(cmd, log=tmp_path / "aiperf.log", env=client_env(tmp_path, hf_offline=False))
    after = scrape(base_url)

    summary = json.loads((artifacts / "profile_export_aiperf.json").read_text())
    assert summary["is_complete"] is True and summary["was_cancelled"] is False
    assert summary["error_summary"] == [], summary["error_summary"]
    assert summary["request_count"]["avg"] == summary["completed_request_count"]["avg"] == LOAD_REQUESTS
    assert summary["request_error_rate"]["avg"] == 0
    assert "error_request_count" not in summary or summary["error_request_count"]["avg"] == 0
    ttft, itl = summary["time_to_first_token"], summary["inter_token_latency"]
    assert ttft["unit"] == "ms" and ttft["min"] > 0 and ttft["avg"] > 0
    assert itl["unit"] == "ms" and itl["avg"] > 0
    assert summary["total_usage_completion_tokens"]["avg"] == LOAD_REQUESTS * OUTPUT_TOKENS  # ignore_eos applied
    # aiperf probes /metrics with HEAD, then scrapes it with GET: both answered, as vLLM answers them
    counted = assert_server_counted(before, after, LOAD_REQUESTS, generated=LOAD_REQUESTS * OUTPUT_TOKENS)
    assert delta(before, after, "qvq_ray_requests_total", route="/v1/chat/completions", status="200") == LOAD_REQUESTS

    # aiperf scraped our /metrics during its run, as it does a vLLM server's: it read vLLM's histograms
    scraped = json.loads((artifacts / "server_metrics_export.json").read_text())["metrics"]
    for family, count in (("vllm:time_to_first_token_seconds", LOAD_REQUESTS),
                          ("vllm:inter_token_latency_seconds", LOAD_REQUESTS * (OUTPUT_TOKENS - 1))):
        (series,) = scraped[family]["series"]
        assert series["stats"]["count"] == count, (family, series)
    print(f"$ {' '.join(str(c) for c in cmd)}")
    print("\n".join(line for line in (artifacts / "profile_export_console.txt").read_text().splitlines()
                    if any(key in line for key in ("Time to First Token", "Inter Token Latency", "Request Count",
                                                   "Request Error", "Completed Requests", "Request Latency"))))
    print(f"aiperf: {summary['completed_request_count']['avg']:.0f} completed, error rate {summary['request_error_rate']['avg']}%; "
          f"TTFT avg {ttft['avg']:.1f} ms, ITL avg {itl['avg']:.2f} ms; /metrics: {counted}")
