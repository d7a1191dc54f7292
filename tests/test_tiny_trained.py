"""The trained tiny Qwen2-VL ('tiny'): shipped checkpoint, its task's splits, and that it really solves.

The checkpoint in qvq_ray/assets/tiny-qwen2-vl-arith/ was trained by pipelines/train_tiny.py on
examples/make_visual_arithmetic.py's train split; the test split ships as examples/arithmetic-test/.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path


from qvq_ray.config import HFEngineConfig, ModelConfig, PolicyConfig, SamplingConfig, VerifierConfig
from tests.conftest import script_module

ROOT = Path(__file__).resolve().parent.parent
TEST_SET = ROOT / "examples" / "arithmetic-test"


def _generator():
    return script_module(ROOT / "examples" / "make_visual_arithmetic.py")


def test_checkpoint_is_shipped_with_its_hash_and_recipe():
    from qvq_ray.models.tiny import TRAINED_COMMAND, TRAINED_DIR, TRAINED_SHA256, checkpoint_digest, resolve_model_path

    assert resolve_model_path("tiny") == str(TRAINED_DIR)
    assert checkpoint_digest(TRAINED_DIR) == TRAINED_SHA256
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "preprocessor_config.json", "generation_config.json", "qvq_ray_tiny.json"):
        assert (TRAINED_DIR / name).is_file(), name
    size = sum(f.stat().st_size for f in TRAINED_DIR.iterdir() if f.is_file())
    assert size < 20 * 1024 * 1024
    meta = json.loads((TRAINED_DIR / "qvq_ray_tiny.json").read_text())
    assert meta["command"] == TRAINED_COMMAND
    assert meta["steps"] > 0 and meta["seed"] == 0 and meta["sha256"] == TRAINED_SHA256
    config = json.loads((TRAINED_DIR / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]


def test_training_script_builds_the_shipped_tokenizer(tmp_path):
    """The tokenizer pipelines/train_tiny.py builds is the one in the checkpoint (code and asset agree)."""
    from qvq_ray.models.tiny import TRAINED_DIR, build_tokenizer

    build_tokenizer(scaffold_merges=True).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text()) == json.loads((TRAINED_DIR / "tokenizer.json").read_text())


def test_splits_are_disjoint_and_the_shipped_test_split_is_the_generators():
    gen = _generator()
    splits = gen.splits()
    test, dev, train = (set(splits[k]) for k in ("test", "dev", "train"))
    assert len(test) == gen.TEST_SIZE and len(dev) == gen.DEV_SIZE
    assert not test & train and not dev & train and not test & dev
    assert len(test) + len(dev) + len(train) == len(gen.all_triples())
    # every training draw comes from the train split
    stream = gen.train_stream(seed=0)
    assert all(next(stream) in train for _ in range(2000))

    rows = [json.loads(line) for line in (TEST_SET / "problems.jsonl").read_text().splitlines()]
    shipped = [(r["meta"]["a"], r["meta"]["op"], r["meta"]["b"]) for r in rows]
    assert shipped == splits["test"]
    for row, triple in zip(rows, shipped):
        assert row["answer"] == str(gen.value(triple))
        assert (TEST_SET / row["images"][0]).is_file()
    # the shipped images are the generator's renderings
    from PIL import Image

    for row, triple in list(zip(rows, shipped))[:3]:
        with Image.open(TEST_SET / row["images"][0]) as shipped_image:
            assert shipped_image.convert("RGB").tobytes() == gen.render(triple).tobytes()


def test_verifier_reads_the_answer_shape_and_catches_a_false_worked_line():
    from qvq_ray.verify import Verifier

    gen = _generator()
    good = gen.target_text((97, "-", 73))
    assert good == "97-73=24\n\n**Final Answer**\n\n\\boxed{24}"
    with Verifier(VerifierConfig(workers=1)) as verifier:
        ok = verifier.check_sync(good, gold="24")
        bad = verifier.check_sync(good.replace("24", "34"), gold="24")
    assert ok.answer == "24" and ok.correct is True and not ok.issues
    assert bad.answer == "34" and bad.correct is False and "false_calculation" in bad.issues


def test_trained_model_loads_like_qvq_and_greedy_solves_unseen_problems():
    """HFEngine(ModelConfig(path='tiny')) -> Solver -> Verifier: the path QVQ-72B takes."""
    from qvq_ray.datasets import load_problems
    from qvq_ray.engines.hf_engine import HFEngine
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    problems = list(load_problems(str(TEST_SET), limit=20))
    assert len(problems) == 20
    engine = HFEngine(ModelConfig(path="tiny"), HFEngineConfig(max_batch_size=20, batch_wait_ms=50, torch_threads=1))
    assert engine.path.endswith("tiny-qwen2-vl-arith")
    with Verifier(VerifierConfig(workers=1)) as verifier:
        solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=1), sampling=SamplingConfig(max_tokens=48))

        async def solve_all():
            try:
                return await asyncio.gather(*(solver.solve(p) for p in problems))
            finally:
                await engine.close()

        solutions = asyncio.run(solve_all())
    right = sum(s.answer == p.answer for s, p in zip(solutions, problems))
    texts = [s.attempts[0].text for s in solutions]
    assert all("**Final Answer**" in t and "\\boxed{" in t for t in texts), texts
    assert right >= 10, f"{right}/20 right: {texts}"


def test_tiny_random_still_resolves_to_the_random_model(tmp_path, monkeypatch):
    from qvq_ray.models.tiny import TINY_TEXT, TRAINED_DIR, resolve_model_path

    monkeypatch.setenv("QVQ_RAY_CACHE", str(tmp_path))
    path = Path(resolve_model_path("tiny-random"))
    assert path.parent == tmp_path and path != TRAINED_DIR
    config = json.loads((path / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == TINY_TEXT["hidden_size"]
    assert resolve_model_path("some/other-model") == "some/other-model"
