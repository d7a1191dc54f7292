"""Special tokens typed in message text are text, and every request ends (tiny Qwen2-VL, real
transformers engine; the vLLM engine's prompt is tested in tests/test_vllm_engine_pure.py).

Issue 20, item 1: a chat with an image and the text `<|image_pad|>` hung forever (the processor's
`next()` over the images raised StopIteration on the prepare thread, which asyncio cannot put into
a future), `<|video_pad|>` failed generate with a 500. Now message text is tokenized as text
(`engines/prompt_tokens.py`), or refused with `model.special_tokens_in_text: refuse`, and any
exception in preparation or generation reaches the caller.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
from qvq_ray.engines.base import EngineError, InvalidRequestError, raw_prompt, split_images
from qvq_ray.engines.prompt_tokens import chat_prompt_ids, special_tokens
from tests.conftest import png_bytes

SPECIAL_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
IMAGE = png_bytes("12 + 30", size=(112, 56))  # 4 x 2 patches of 28 px: 8 visual tokens
IMAGE_FEATURES = 8
TIMEOUT_S = 30  # a request that never ends fails here instead of hanging the suite
SHORT = SamplingConfig(max_tokens=3)


def _messages(text: str, image: bytes | None = None, system: str | None = None) -> list[dict]:
    content = ([{"type": "image", "image": image}] if image else []) + [{"type": "text", "text": text}]
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    return HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=4, batch_wait_ms=20))


@pytest.fixture(scope="module")
def refusing(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    return HFEngine(ModelConfig(path=tiny_model_dir, special_tokens_in_text="refuse"), HFEngineConfig(batch_wait_ms=5))


def _answer(engine, messages, sampling=SHORT):
    return asyncio.run(asyncio.wait_for(engine.generate(messages, sampling), TIMEOUT_S))


def _template(processor):
    return lambda m: processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)


# --------------------------------------------------------------------------- the ids themselves


@pytest.mark.parametrize("text", ["hi", "\n\nleading newlines", " leading space", "!!punct", "日本語 😀 x", "trailing\n", "", "a\r\nb  \n"])
def test_without_special_tokens_the_ids_are_plain_tokenization(engine, text):
    """Tokenizing in pieces changes nothing for ordinary text: the tokenizer splits at special tokens first."""
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "sys " + text}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}, {"type": "image"}, {"type": "text", "text": text + "z"}]},
        {"role": "assistant", "content": [{"type": "text", "text": text}]},
        {"role": "user", "content": [{"type": "text", "text": text}]},
    ]
    rendered = _template(engine.processor)(messages)
    assert chat_prompt_ids(messages, _template(engine.processor), engine.tokenizer) == engine.tokenizer(
        rendered, add_special_tokens=False
    )["input_ids"]


def test_the_engines_inputs_equal_the_processors_for_ordinary_text(engine):
    """What the engine builds from ids (placeholders expanded, mm_token_type_ids, image tensors) is
    what the processor builds from the rendered text."""
    import torch

    messages = _messages("What is the sum?", IMAGE, system="Think.")
    ids, images = engine._prompt_ids(messages)
    ours = engine._model_inputs(ids, images)
    rendered = _template(engine.processor)(split_images(messages, max_images=8)[0])
    theirs = engine.processor(text=[rendered], images=images, return_tensors="pt")
    assert set(ours) == set(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_the_tokenizer_knows_the_qwen2_vl_special_tokens(engine):
    assert set(SPECIAL_TOKENS) <= set(special_tokens(engine.tokenizer))


# --------------------------------------------------------------------------- the transformers engine


@pytest.mark.parametrize("with_image", [True, False])
@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_a_typed_special_token_is_answered_and_read_as_text(engine, token, with_image):
    typed = f"what is {token} here"
    messages = _messages(typed, IMAGE if with_image else None, system=f"sys {token}")
    (completion,) = _answer(engine, messages)
    assert completion.finish_reason in ("stop", "length") and completion.completion_tokens >= 1

    ids, images = engine._prompt_ids(messages)
    inputs = engine._model_inputs(ids, images)
    row = inputs["input_ids"][0].tolist()
    assert completion.prompt_tokens == len(row)
    tok = engine.tokenizer
    image_pad, video_pad = tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|video_pad|>")
    assert row.count(image_pad) == (IMAGE_FEATURES if with_image else 0)  # exactly what the image needs
    assert video_pad not in row and row.count(tok.convert_tokens_to_ids("<|vision_start|>")) == int(with_image)
    assert row.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3 and row.count(tok.convert_tokens_to_ids("<|im_end|>")) == 2
    assert typed in tok.decode(row) and f"sys {token}" in tok.decode(row)
    plain = _messages("what is  here", IMAGE if with_image else None, system="sys ")
    extra = len(tok(token, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    assert completion.prompt_tokens - _answer(engine, plain)[0].prompt_tokens == 2 * extra  # the typed characters, twice


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_typed_special_tokens_are_refused_with_a_400_when_configured(refusing, token):
    with pytest.raises(InvalidRequestError, match=f"special token '{token.replace('|', '[|]')}'.*refuse"):
        _answer(refusing, _messages(f"a {token} b", IMAGE))
    assert _answer(refusing, _messages("no special tokens", IMAGE))[0].completion_tokens >= 1


def test_a_raw_prompt_parses_special_tokens_but_refuses_media_placeholders(engine):
    raw = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    (completion,) = _answer(engine, raw_prompt(raw))
    ids = engine.tokenizer(raw)["input_ids"]
    assert completion.prompt_tokens == len(ids)
    assert ids.count(engine.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2  # parsed: one token each
    assert ids.count(engine.tokenizer.convert_tokens_to_ids("<|im_end|>")) == 1
    for token in ("<|image_pad|>", "<|video_pad|>"):
        with pytest.raises(InvalidRequestError, match="raw prompt carries no images"):
            _answer(engine, raw_prompt("x " * 40 + token))


def test_a_raw_prompt_with_a_placeholder_never_breaks_its_batch_neighbours(engine):
    """In one batch, a raw prompt's stray `<|image_pad|>` used to fail its image neighbour too."""

    async def go():
        raw = engine.generate(raw_prompt("x " * 40 + "<|image_pad|>"), SHORT)
        chat = engine.generate(_messages("hi", IMAGE), SHORT)
        return await asyncio.wait_for(asyncio.gather(raw, chat, return_exceptions=True), TIMEOUT_S)

    raw, chat = asyncio.run(go())
    assert isinstance(raw, InvalidRequestError) and chat[0].completion_tokens >= 1


# --------------------------------------------------------------------------- every request ends


class _Injected(Exception):
    pass


@pytest.mark.parametrize(
    "error, needle",
    [
        (StopIteration(), "StopIteration"),
        (ValueError("Image features and image tokens do not match: tokens: 9, features 8"), "do not match"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
    ],
)
def test_an_exception_in_prompt_preparation_reaches_the_caller(engine, monkeypatch, error, needle):
    def prepare_fails(messages, *args, **kwargs):
        raise error

    monkeypatch.setattr(engine, "_prompt_ids", prepare_fails)

    async def go():
        with pytest.raises(InvalidRequestError, match=needle):
            await asyncio.wait_for(engine.generate(_messages("hi", IMAGE), SHORT), TIMEOUT_S)
        stream = engine.stream(_messages("hi", IMAGE), SHORT)
        with pytest.raises(InvalidRequestError, match=needle):
            await asyncio.wait_for(anext(stream), TIMEOUT_S)

    asyncio.run(go())
    monkeypatch.undo()
    assert _answer(engine, _messages("hi", IMAGE))[0].completion_tokens >= 1  # the engine keeps serving


def test_an_exception_in_generation_reaches_every_request_of_its_batch(engine, monkeypatch):
    def generate_fails(**kwargs):
        raise StopIteration  # what transformers' get_rope_index raises on an image it has no grid for

    monkeypatch.setattr(engine.model, "generate", generate_fails)

    async def go():
        calls = [engine.generate(_messages(f"q{i}", IMAGE), SHORT) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), TIMEOUT_S)

    results = asyncio.run(go())
    assert all(isinstance(r, EngineError) and "StopIteration" in str(r) for r in results), results
    monkeypatch.undo()
    assert _answer(engine, _messages("hi", IMAGE))[0].completion_tokens >= 1


def test_a_request_its_batch_left_unanswered_is_failed(engine, monkeypatch):
    monkeypatch.setattr(engine, "_run_group", lambda group: None)  # a bug: returns without answering
    with pytest.raises(EngineError, match="without an answer"):
        _answer(engine, _messages("hi"))


def test_close_fails_the_requests_still_in_the_engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(batch_wait_ms=5))
    release = threading.Event()
    prepare = engine._prepare
    engine._prepare = lambda request: (release.wait(TIMEOUT_S), prepare(request))

    async def go():
        first = asyncio.ensure_future(engine.generate(_messages("being prepared"), SHORT))
        second = asyncio.ensure_future(engine.generate(_messages("queued behind it"), SHORT))
        await asyncio.sleep(0.2)
        await engine.close()
        release.set()
        return await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), TIMEOUT_S)

    results = asyncio.run(go())
    assert all(isinstance(r, EngineError) and "closed" in str(r) for r in results), results


# --------------------------------------------------------------------------- the solver (/v1/solve, batch rows)


def test_problems_with_special_tokens_are_solved_beside_the_others(engine, refusing):
    """A problem line holding `<|image_pad|>` used to hang the solve, and with it a whole batch job."""
    from qvq_ray.config import PolicyConfig, VerifierConfig
    from qvq_ray.problem import ImageRef, Problem
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    def problem(pid: str, question: str) -> Problem:
        return Problem(id=pid, question=f"<image1>{question}", images=[ImageRef(bytes=IMAGE)])

    problems = [problem("good", "What is 12 + 30?"), problem("pad", "What is <|image_pad|>?"), problem("video", "<|video_pad|><|im_end|>")]
    verifier = Verifier(VerifierConfig(workers=1))
    try:
        policy, sampling = PolicyConfig(max_attempts=1), SamplingConfig(max_tokens=4)
        solver = Solver(engine, verifier, policy=policy, sampling=sampling)
        strict = Solver(refusing, verifier, policy=policy, sampling=sampling)

        async def go(solver):
            solves = asyncio.gather(*(solver.solve(p) for p in problems), return_exceptions=True)
            return await asyncio.wait_for(solves, TIMEOUT_S)

        solved = asyncio.run(go(solver))
        assert all(s.error is None and len(s.attempts) == 1 for s in solved), solved
        good, pad, video = asyncio.run(go(strict))
        assert good.error is None and len(good.attempts) == 1
        assert isinstance(pad, InvalidRequestError) and "<|image_pad|>" in str(pad)
        assert isinstance(video, InvalidRequestError) and "<|video_pad|>" in str(video)
    finally:
        verifier.close()


# --------------------------------------------------------------------------- the openai engine


def test_the_openai_engine_sends_text_as_text_and_refuses_when_configured():
    """It has no tokenizer: 'escape' sends the text (the endpoint tokenizes it: another qvq-ray
    escapes), 'refuse' refuses Qwen2-VL's special tokens before any request; a raw prompt goes as is."""
    from qvq_ray.config import OpenAIEngineConfig
    from qvq_ray.engines.openai_engine import OpenAIEngine

    typed = _messages("what is <|im_end|> here", IMAGE)
    config = OpenAIEngineConfig(base_url="http://127.0.0.1:9/v1")
    body, _ = OpenAIEngine(ModelConfig(path="qvq"), config)._request(SHORT, typed, stream=False)
    assert body["messages"][-1]["content"][-1] == {"type": "text", "text": "what is <|im_end|> here"}
    strict = OpenAIEngine(ModelConfig(path="qvq", special_tokens_in_text="refuse"), config)
    with pytest.raises(InvalidRequestError, match=r"messages\[1\].*'<\|im_end\|>'"):
        strict._request(SHORT, [{"role": "system", "content": "x"}, *typed], stream=False)
    body, _ = strict._request(SHORT, raw_prompt("<|im_start|>user\nhi<|im_end|>"), stream=False)
    assert body["prompt"] == "<|im_start|>user\nhi<|im_end|>"


def test_a_dead_batch_loop_fails_new_requests_instead_of_queueing_them(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(batch_wait_ms=5))

    async def broken_batch(queue):
        raise RuntimeError("a bug in batching")

    engine._next_batch = broken_batch

    async def go():
        first = await asyncio.wait_for(asyncio.gather(engine.generate(_messages("a"), SHORT), return_exceptions=True), TIMEOUT_S)
        second = await asyncio.wait_for(asyncio.gather(engine.generate(_messages("b"), SHORT), return_exceptions=True), TIMEOUT_S)
        return first + second, await engine.health()

    results, health = asyncio.run(go())
    assert all(isinstance(r, EngineError) and "batch loop stopped" in str(r) for r in results), results
    assert not health.alive and "a bug in batching" in health.reason
