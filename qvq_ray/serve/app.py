"""Application builder for Serve config files (`serve run`, `serve deploy`, `qvq-ray serve`).

`import_path: qvq_ray.serve.app:build_app` with `args: {config: {...}}` (a QvqConfig as a dict)
or `args: {config_path: some.yaml}`. Resources and autoscaling come from that config, so one file
describes the tiny CPU app and a sharded QVQ-72B app alike.
"""

from __future__ import annotations

from typing import Any

from qvq_ray.config import QvqConfig


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
        "max_ongoing_requests": max(2 * capacity, 4),
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(scaling.min_replicas, 1),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests or float(capacity),
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
        },
        "health_check_period_s": 10,
        "health_check_timeout_s": 120,
    }
    gpus_per_replica = res.num_gpus if res.tensor_parallel_size == 1 else float(res.tensor_parallel_size)
    if res.tensor_parallel_size > 1 and config.engine.kind != "hf":
        # Multi-process engines (vLLM's tensor-parallel workers): one bundle per GPU, packed on one
        # node; the replica itself runs in bundle 0 and its workers take the others.
        options["placement_group_bundles"] = [{"CPU": res.num_cpus, "GPU": 1.0}] + [
            {"GPU": 1.0} for _ in range(res.tensor_parallel_size - 1)
        ]
        options["placement_group_strategy"] = "STRICT_PACK"
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": 1.0}
    else:
        # The transformers engine is one process: it must own all of the replica's GPUs itself
        # (Ray sets CUDA_VISIBLE_DEVICES per actor) and spreads the model over them with device_map.
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": gpus_per_replica}
    return options


def build_app(args: dict[str, Any] | None = None):
    from qvq_ray.serve.engine_deployment import EngineServer
    from qvq_ray.serve.ingress import Ingress

    args = dict(args or {})
    if "config_path" in args:
        config = QvqConfig.from_yaml(args.pop("config_path"))
    else:
        config = QvqConfig.from_any(args.pop("config", None))
    if args:
        raise ValueError(f"unknown app args {sorted(args)}; expected 'config' or 'config_path'")
    config_json = config.model_dump_json()
    engine = EngineServer.options(**engine_deployment_options(config)).bind(config_json)
    return Ingress.options(
        ray_actor_options={"num_cpus": config.serve.ingress_num_cpus},
        max_ongoing_requests=1000,
    ).bind(engine, config_json)
