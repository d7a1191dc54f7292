"""Shared fixtures: the tiny checkpoint built once per session, a local Ray cluster, the shared benchmark samples."""

from __future__ import annotations

import contextlib
import io
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_ENV = "QVQ_RAY_SHARED_DATA"


def shared_data_root() -> Path:
    """The shared benchmark samples (MATH-V, MathVista, MMMU, OlympiadBench in their native formats):
    `$QVQ_RAY_SHARED_DATA`, else `../shared/data` beside the repository. They are not in the repository."""
    configured = os.environ.get(SHARED_DATA_ENV)
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def shared_data(relative: str = "") -> Path:
    """`<shared data>/<relative>`, or skip the calling test (or, called at import, the whole module) when it is absent."""
    path = shared_data_root() / relative
    if not path.exists():
        pytest.skip(
            f"{relative or 'shared data'} not found at {path}: the shared benchmark samples are read from "
            f"../shared/data beside the repository (or ${SHARED_DATA_ENV})",
            allow_module_level=True,
        )
    return path


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


@contextlib.contextmanager
def running_app(config: dict, name: str):
    """Our Serve app with `config` on a free 127.0.0.1 port of the session's Ray cluster; its base URL."""
    from ray import serve

    from qvq_ray.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config": config}), name=name, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def end_process_session(proc, *, interrupt: bool = True) -> None:
    """Stop a CLI started with `start_new_session=True` (Ctrl-C first, then kill), and whatever Ray
    processes it left in its session."""
    import signal
    import subprocess

    if proc.poll() is None and interrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vlmevalkit_tsv(tmp_path_factory) -> Path:
    """A tiny VLMEvalKit `MMMU_DEV_VAL.tsv` (5 rows), built at test time from the shared MMMU sample by
    tests/data/datasets/make_vlmevalkit_tsv.py (it holds MMMU content, so it is never committed)."""
    import importlib.util

    source = shared_data("mmmu/Math/validation-00000-of-00001.parquet")
    script = REPO_ROOT / "tests" / "data" / "datasets" / "make_vlmevalkit_tsv.py"
    spec = importlib.util.spec_from_file_location("make_vlmevalkit_tsv", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(source, tmp_path_factory.mktemp("vlmevalkit"))


def pytest_collection_modifyitems(config, items):
    """Every test that needs the session's Ray cluster (batch jobs, Serve apps) is `slow`, so
    `pytest -m "not slow"` is the fast loop; `make test` runs all."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
