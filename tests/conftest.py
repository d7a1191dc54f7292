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


def shared_data_root() -> Path:
    """The shared benchmark samples (MATH-V, MathVista, MMMU, OlympiadBench in their native formats),
    where the benchmarks find them (`$QVQ_RAY_SHARED_DATA`, else `../shared/data` beside the
    repository), resolved: the loaders resolve image paths, so do the expected ones (a linked ../shared)."""
    from benchmarks.shared_data import shared_data_root as configured_root

    return configured_root().resolve()


#: Set (to 1) where the shared data must be present: a missing file then fails the run instead of
#: skipping, so a moved or renamed sample cannot turn the real-output tests off unnoticed (.ci/run).
REQUIRE_SHARED_DATA_ENV = "QVQ_RAY_REQUIRE_SHARED_DATA"


def shared_data(relative: str = "") -> Path:
    """`<shared data>/<relative>`, or skip the calling test (or, called at import, the whole module)
    when it is absent; fail instead where `$QVQ_RAY_REQUIRE_SHARED_DATA` is 1."""
    path = shared_data_root() / relative
    if not path.exists():
        reason = (
            f"{relative or 'shared data'} not found at {path}: the shared benchmark samples are read from "
            f"../shared/data beside the repository (or $QVQ_RAY_SHARED_DATA)"
        )
        if os.environ.get(REQUIRE_SHARED_DATA_ENV) == "1":
            pytest.fail(f"{reason}; ${REQUIRE_SHARED_DATA_ENV}=1 requires it", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The random tiny Qwen2-VL in a fresh cache dir, built through the same path as `--model tiny-random`.

    Tests that need a model that never answers (re-sampling budgets) and speed use this one; the
    trained `tiny` checkpoint shipped in the package has its own tests."""
    if not _shared_session_cluster():  # under pytest-xdist the controller built it (pytest_configure)
        os.environ["QVQ_RAY_CACHE"] = str(tmp_path_factory.mktemp("qvq-cache"))  # inherited by Ray workers started later
    from qvq_ray.models.tiny import resolve_model_path

    return resolve_model_path("tiny-random")


@pytest.fixture(scope="session")
def ray_cluster(tiny_model_dir):
    """The session's one real local Ray cluster (`_start_session_cluster`): started here, or, under
    pytest-xdist, the one the controller process started, which each worker joins as a driver."""
    import ray

    shared = _shared_session_cluster()
    if shared:
        ray.init(address=shared, log_to_driver=False, runtime_env=_session_runtime_env())
        yield ray
        _leave_serve()
        ray.shutdown()  # a driver leaving: the cluster and its Serve stay for the other workers
        return
    _start_session_cluster()
    yield ray
    _end_session_cluster()


#: The gcs address of the session cluster the pytest-xdist controller started for its workers.
_SHARED_CLUSTER_ENV = "QVQ_RAY_TEST_CLUSTER"


def _shared_session_cluster() -> str | None:
    return os.environ.get(_SHARED_CLUSTER_ENV)


def _session_runtime_env() -> dict:
    return {"env_vars": {"QVQ_RAY_CACHE": os.environ["QVQ_RAY_CACHE"]}}


def _start_session_cluster() -> str:
    """A local Ray cluster: 4 logical CPUs on this 2-core machine, 4 fake GPUs (declared resources
    only: placement tests need them; nothing runs on them). Returns its gcs address."""
    import ray

    ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False, runtime_env=_session_runtime_env())
    return ray.get_runtime_context().gcs_address


def _leave_serve() -> None:
    """Stop this driver's Serve handles (their routers push metrics to the controller from a thread
    of their own, which would go on logging errors into closed streams once Ray is disconnected),
    and forget the controller: Serve itself keeps running for the other drivers."""
    from ray.serve import context as serve_context

    client = serve_context._global_client
    if client is not None:
        client.shutdown_cached_handles()
        serve_context._disconnect()


def _end_session_cluster() -> None:
    import ray

    if os.environ.pop(_SERVE_PORT_ENV, None):
        from ray import serve

        serve.shutdown()
    ray.shutdown()


def _xdist_controller(config) -> bool:
    """This process is pytest-xdist's controller (`-n N`, N > 0): it runs no test itself."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config):
    """Under pytest-xdist, still one Ray cluster and one Serve for the whole run: the controller
    builds the tiny checkpoint, starts both before its workers exist, and hands them the addresses
    through the environment they inherit; each worker joins as a driver of its own (apps under
    their own names; jobs tell theirs apart by job id)."""
    if not _xdist_controller(config) or config.option.collectonly:
        return
    import tempfile

    config._qvq_ray_cache = os.environ["QVQ_RAY_CACHE"] = tempfile.mkdtemp(prefix="qvq-test-cache-")
    from qvq_ray.models.tiny import resolve_model_path

    resolve_model_path("tiny-random")
    os.environ[_SHARED_CLUSTER_ENV] = _start_session_cluster()
    session_serve_port()
    config._qvq_ray_session_cluster = True


def pytest_unconfigure(config):
    if getattr(config, "_qvq_ray_session_cluster", False):
        import shutil

        _end_session_cluster()
        os.environ.pop(_SHARED_CLUSTER_ENV, None)
        shutil.rmtree(config._qvq_ray_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address(ray_cluster) -> str:
    """The session cluster's address, for CLI subprocesses to join with `--address`: starting a
    cluster of their own would be most of a small job's time. Tests whose subject is the start-up
    or a cluster the job started (its processes inherit the environment, die with the driver) keep
    their own."""
    return ray_cluster.get_runtime_context().gcs_address


def script_module(path: Path):
    """A script outside any package (benchmarks/*.py, examples/*.py, tests/data/...), imported by
    its path once per process, under its file's stem in sys.modules (so pickling and dataclasses
    find it)."""
    import importlib.util
    import sys

    name = path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def sim_endpoint_module():
    """benchmarks/sim_endpoint.py, the simulated OpenAI-compatible endpoint."""
    return script_module(REPO_ROOT / "benchmarks" / "sim_endpoint.py")


def sim_job_config(base_url: str, *, resources: dict, batch: dict) -> dict:
    """A batch job's config for the simulated endpoint at `base_url`: one attempt per problem, a
    token budget above the endpoint's cap (never truncated, never re-sampled), no client retries."""
    model = sim_endpoint_module().MODEL_NAME
    return {
        "model": {"path": model},
        "engine": {"kind": "openai", "base_url": base_url, "remote_model": model, "max_retries": 0},
        "sampling": {"max_tokens": 2000},
        "policy": {"max_attempts": 1},
        "resources": resources,
        "batch": batch,
    }


def png_bytes(text: str = "12 + 30", size=(112, 56)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((6, 20), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


#: The session's Serve HTTP port, once `session_serve_port` started Serve. Kept in the environment,
#: not a module global: this file is imported both as `conftest` (by pytest) and as `tests.conftest`.
_SERVE_PORT_ENV = "QVQ_RAY_TEST_SERVE_PORT"


def session_serve_port() -> int:
    """The port of the session's one Serve controller and HTTP proxy on 127.0.0.1, started on first
    use and shut down with the session's Ray cluster: apps come and go under their own names and
    route prefixes instead of a Serve start and shutdown per test module."""
    if _SERVE_PORT_ENV not in os.environ:
        from ray import serve

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        os.environ[_SERVE_PORT_ENV] = str(port)
    return int(os.environ[_SERVE_PORT_ENV])


@contextlib.contextmanager
def running_app(config: dict, name: str):
    """Our Serve app with `config` as application `name` on the session's Serve, under the route
    prefix `/name`; yields its base URL. Deleted at the end of the block."""
    from ray import serve

    from qvq_ray.serve.app import build_app

    port = session_serve_port()
    serve.run(build_app({"config": config}), name=name, route_prefix=f"/{name}")
    try:
        yield f"http://127.0.0.1:{port}/{name}"
    finally:
        serve.delete(name, _blocking=False)


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
    source = shared_data("mmmu/Math/validation-00000-of-00001.parquet")
    module = script_module(REPO_ROOT / "tests" / "data" / "datasets" / "make_vlmevalkit_tsv.py")
    return module.build(source, tmp_path_factory.mktemp("vlmevalkit"))


def pytest_collection_modifyitems(config, items):
    """Every test that needs the session's Ray cluster (batch jobs, Serve apps) is `slow`, so
    `pytest -m "not slow"` is the fast loop; `make test` runs all. Modules holding slow tests run
    first: pytest-xdist hands out whole modules in this order, and the many quick ones then fill
    the gaps at the end instead of one worker finishing a long module alone."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow") and item.module is not None}
    items.sort(key=lambda item: item.module is None or item.module.__name__ not in slow_modules)  # stable
