"""The Serve application: its builder for config files, and `qvq-ray serve CONFIG`.

`import_path: qvq_ray.serve.app:build_app` with `args: {config: {...}}` (a QvqConfig as a dict)
or `args: {config_path: some.yaml}`. Resources and autoscaling come from that config, so one file
describes the tiny CPU app and a sharded QVQ-72B app alike.

`run_serve_config` runs such a file the way `serve run CONFIG` does; it exists so the project's own
command starts a local cluster with the right settings and prints where it listens.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

from qvq_ray.config import QvqConfig

if TYPE_CHECKING:
    from ray.serve import Application, Deployment


def engine_deployment_options(config: QvqConfig) -> dict[str, Any]:
    """Replica resources and autoscaling of the engine deployment, derived from the config.

    target_ongoing_requests defaults to the engine's batch capacity (max_batch_size): a replica
    with a full batch and more waiting is saturated, so Serve adds one. (Ray's LLM defaults set it
    to 1e9, which never scales.) max_ongoing_requests leaves room to queue a second batch.
    """
    res = config.resources
    scaling = config.serve.engine_autoscaling
    capacity = config.engine.max_batch_size
    options: dict[str, Any] = {
        "max_ongoing_requests": config.serve.engine_max_ongoing_requests or max(2 * capacity, 4),
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(scaling.min_replicas, 1),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests or float(capacity),
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "look_back_period_s": scaling.look_back_period_s,
            "metrics_interval_s": scaling.metrics_interval_s,
        },
        # Liveness: the check reads the engine's step clock and never generates (engines/base.py
        # StallWatch), so a busy replica passes and only a stuck or dead one is restarted.
        "health_check_period_s": config.serve.health_check_period_s,
        "health_check_timeout_s": config.serve.health_check_timeout_s,
    }
    if config.engine.kind == "openai":
        # The model runs at the remote endpoint: a replica is an HTTP client and holds no GPU.
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": 0}
    elif res.tensor_parallel_size > 1:
        # One bundle per GPU, packed on one node, released when the app is deleted. The replica
        # runs in bundle 0 on its CPUs only: vLLM puts one Ray worker per GPU bundle; the
        # transformers engine claims the bundles' GPUs for its own process (serve/placement.py).
        options["placement_group_bundles"] = [{"CPU": res.num_cpus, "GPU": 1.0}] + [
            {"GPU": 1.0} for _ in range(res.tensor_parallel_size - 1)
        ]
        options["placement_group_strategy"] = "STRICT_PACK"
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": 0}
    else:
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    return options


def build_app(args: dict[str, Any] | None = None) -> Application:
    from qvq_ray.serve.engine_deployment import QvqEngine
    from qvq_ray.serve.ingress import QvqIngress

    args = dict(args or {})
    if "config_path" in args:
        config = QvqConfig.from_yaml(args.pop("config_path"))
    else:
        config = QvqConfig.from_any(args.pop("config", None))
    if args:
        raise ValueError(f"unknown app args {sorted(args)}; expected 'config' or 'config_path'")
    config_json = config.model_dump_json()
    # @serve.deployment made both classes Deployments (Ray is not analysed: the names are the classes here)
    engine_deployment, ingress_deployment = cast("Deployment", QvqEngine), cast("Deployment", QvqIngress)
    engine = engine_deployment.options(**engine_deployment_options(config)).bind(config_json)
    return ingress_deployment.options(
        ray_actor_options={"num_cpus": config.serve.ingress_num_cpus},
        max_ongoing_requests=1000,
    ).bind(engine, config_json)


def _import_builder(import_path: str) -> Callable[..., Any]:
    """'pkg.module:attr' (Serve's form) or 'pkg.module.attr'."""
    module_name, _, attr = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    builder: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return builder


def run_serve_config(
    config_file: str,
    *,
    address: str | None = None,
    blocking: bool = True,
    host: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    """Run a Serve config file; `host`/`port` override its http_options (127.0.0.1:8000 by default).

    The whole file is checked before Ray starts, so a mistake costs a second, not a cluster
    start-up: its YAML, each application's import path, no per-deployment overrides, and the
    QvqConfig in the args of every qvq-ray application. Mistakes raise OSError (the file) or
    ValueError, each a one-line message naming the file, the application and the key."""
    import yaml
    from pydantic import ValidationError

    from qvq_ray.console import validation_line, yaml_error_line

    try:
        spec = yaml.safe_load(Path(config_file).read_text())
    except OSError as exc:
        raise type(exc)(f"cannot read {config_file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(yaml_error_line(config_file, exc)) from None
    if not isinstance(spec, dict) or not spec.get("applications"):
        raise ValueError(f"{config_file} lists no applications (a Serve config file has 'applications:')")
    http = spec.get("http_options") or {}
    host = host or http.get("host", "127.0.0.1")
    try:
        port = int(port if port is not None else http.get("port", 8000))
    except (TypeError, ValueError):
        raise ValueError(f"{config_file}: http_options.port must be a number, got {http.get('port')!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    apps = []
    for i, app_spec in enumerate(spec["applications"]):
        name = app_spec.get("name", "default") if isinstance(app_spec, dict) else f"#{i + 1}"
        where = f"{config_file}: application {name!r}"
        if not isinstance(app_spec, dict) or not app_spec.get("import_path"):
            raise ValueError(f"{where} has no import_path (e.g. qvq_ray.serve.app:build_app)")
        if app_spec.get("deployments"):
            raise ValueError(
                f"{where}: per-deployment overrides in 'deployments:' are not applied by qvq-ray serve; "
                "put resources and autoscaling in args.config, or use `serve run`"
            )
        try:
            builder = _import_builder(app_spec["import_path"])
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"{where}: cannot import {app_spec['import_path']!r}: {exc}") from None
        args = app_spec.get("args") or {}
        if builder is build_app:  # ours: its QvqConfig is checked here rather than after Ray starts
            if not isinstance(args, dict):
                raise ValueError(f"{where}: args must be a mapping with 'config' or 'config_path'")
            unknown = sorted(set(args) - {"config", "config_path"})
            if unknown:
                raise ValueError(f"{where}: unknown args {unknown}; expected 'config' or 'config_path'")
            try:
                if "config_path" in args:
                    QvqConfig.from_yaml(args["config_path"])
                else:
                    QvqConfig.from_any(args.get("config"))
            except ValidationError as exc:
                raise ValueError(f"{where}: invalid config: {validation_line(exc, prefix='args.config')}") from None
            except OSError as exc:
                raise ValueError(f"{where}: cannot read config_path {args['config_path']}: {exc.strerror or exc}") from None
            except yaml.YAMLError as exc:
                config_path = f"config_path {args['config_path']}"
                raise ValueError(f"{where}: {yaml_error_line(config_path, exc)}") from None
        apps.append((name, app_spec.get("route_prefix", "/"), builder, args))

    from ray import serve

    from qvq_ray.cluster import start_or_join_ray

    start_or_join_ray(address, log_to_driver=True)
    serve.start(http_options={"host": host, "port": port}, proxy_location=spec.get("proxy_location", "HeadOnly"))
    urls = {}
    try:
        for name, prefix, builder, args in apps:
            serve.run(builder(args), name=name, route_prefix=prefix, blocking=False)
            urls[name] = f"http://{host}:{port}{prefix.rstrip('/')}"
            print(f"qvq-ray serve: application {name!r} ready at {urls[name]}/v1 (OpenAI API), {urls[name]}/v1/solve", flush=True)
        if blocking:
            _wait_for_stop_signal()
            raise KeyboardInterrupt
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, while deploying too: shut down without a traceback
        print("qvq-ray serve: shutting down", flush=True)
        _bounded(serve.shutdown, SHUTDOWN_TIMEOUT_S, "serve.shutdown()")
    return urls


SHUTDOWN_TIMEOUT_S = 60.0


def _wait_for_stop_signal(poll_s: float = 0.5) -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM (a process manager's stop).

    Our own handlers, installed once the apps run, and a wait that wakes every `poll_s`: the stop
    does not depend on a KeyboardInterrupt reaching a long sleep (Ray's driver defers SIGINT around
    its own calls on the main thread), and SIGTERM stops as cleanly as Ctrl-C.

    The handler only sets a flag. It runs on the main thread between two bytecodes, wherever the
    wait happens to be; one that took a lock (a `threading.Event.set()`) deadlocked whenever the
    signal landed while the same thread held that Event's lock inside `Event.wait()`, and every
    further Ctrl-C then deadlocked on it again (the intermittent "Ctrl-C ignored" of the suite)."""
    import signal
    import time

    from qvq_ray.console import accept_stop_signals

    received: list[int] = []
    accept_stop_signals()  # run_serve_config may be called from Python, not only from the CLI
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            time.sleep(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bounded(fn: Callable[[], object], timeout_s: float, what: str) -> None:
    """`fn()` on a helper thread, waited for at most `timeout_s`: a stop never hangs on it."""
    import threading

    done = threading.Thread(target=fn, name=what, daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        print(f"qvq-ray serve: {what} did not finish within {timeout_s:.0f} s; exiting anyway", flush=True)
