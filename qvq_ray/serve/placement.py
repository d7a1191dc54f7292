"""GPUs of a sharded replica's placement group, for engines that run in one process.

A replica with tensor_parallel_size > 1 reserves one bundle per GPU (STRICT_PACK: one node) and
runs on CPUs in bundle 0. vLLM's Ray executor places its workers in those bundles itself. The
transformers engine is a single process, so before it loads it claims the bundles' GPUs: a probe
task per bundle reports the GPU Ray assigned there, and the replica makes exactly those visible
(CUDA_VISIBLE_DEVICES) before `device_map="auto"` spreads the model over them.
"""

from __future__ import annotations

import os


def bundle_gpu_ids() -> list[str]:
    """GPU ids of every bundle of the current placement group (empty outside one)."""
    import ray
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = get_current_placement_group()
    if group is None:
        return []

    def probe() -> list[str]:
        return [str(i) for i in ray.get_gpu_ids()]

    remote_probe = ray.remote(num_cpus=0, num_gpus=1)(probe)  # not a decorator: Ray's is untyped here
    refs = [
        remote_probe.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=i)
        ).remote()
        for i, bundle in enumerate(group.bundle_specs)
        if bundle.get("GPU", 0) >= 1
    ]
    return [gpu for ids in ray.get(refs, timeout=120) for gpu in ids]


def claim_bundle_gpus() -> list[str]:
    """Make this process see its placement group's GPUs; returns their ids (unchanged env if none)."""
    ids = bundle_gpu_ids()
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    return ids
