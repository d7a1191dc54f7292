"""Shared fixtures: the tiny checkpoint built once per session, a local Ray cluster."""

from __future__ import annotations

import io
import os
import socket

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The random tiny Qwen2-VL in a fresh cache dir, built through the same path as `--model tiny-random`.

    Tests that need a model that never answers (re-sampling budgets) and speed use this one; the
    trained `tiny` checkpoint shipped in the package has its own tests."""
    cache = tmp_path_factory.mktemp("qvq-cache")
    os.environ["QVQ_RAY_CACHE"] = str(cache)  # inherited by Ray workers started later
    from qvq_ray.models.tiny import resolve_model_path

    return resolve_model_path("tiny-random")


@pytest.fixture(scope="session")
def ray_cluster(tiny_model_dir):
    """One real local Ray cluster for the session: 4 logical CPUs on this 2-core machine, 4 fake GPUs
    (declared resources only: placement tests need them; nothing runs on them)."""
    import ray

    ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"QVQ_RAY_CACHE": os.environ["QVQ_RAY_CACHE"]}})
    yield ray
    ray.shutdown()


def png_bytes(text: str = "12 + 30", size=(112, 56)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((6, 20), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
