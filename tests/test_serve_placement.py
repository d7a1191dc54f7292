"""A tensor-parallel (TP=2) replica on a local cluster that declares fake GPUs: its bundles are
placed STRICT_PACK, the transformers engine claims both GPUs, and the group is released when the
app is deleted. (The GPUs are declared resources only; the tiny model runs on the CPU.)"""

from __future__ import annotations

import time

import pytest

APP = "tp2"
CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny"},
    "engine": {"device": "cpu", "torch_threads": 1},
    "sampling": {"max_tokens": 8},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5, "tensor_parallel_size": 2},
    "serve": {"ingress_num_cpus": 0.25},
}


def _groups() -> dict:
    from ray.util import placement_group_table

    return placement_group_table()


def _strict_pack_gpu_groups(state: str) -> list[dict]:
    return [
        g
        for g in _groups().values()
        if g["strategy"] == "STRICT_PACK" and g["state"] == state and [b.get("GPU") for b in g["bundles"].values()] == [1.0, 1.0]
    ]


def test_tp2_replica_bundles_strict_pack_and_released(ray_cluster):
    from ray import serve

    from qvq_ray.serve.app import build_app
    from tests.conftest import session_serve_port

    assert ray_cluster.cluster_resources().get("GPU") == 4
    before = {g["placement_group_id"] for g in _strict_pack_gpu_groups("CREATED")}
    session_serve_port()
    try:
        serve.run(build_app({"config": CONFIG}), name=APP, route_prefix="/tp2")
        created = [g for g in _strict_pack_gpu_groups("CREATED") if g["placement_group_id"] not in before]
        assert len(created) == 1, _groups()
        group = created[0]
        engine = serve.get_deployment_handle("QvqEngine", app_name=APP)
        placement = engine.placement.remote().result(timeout_s=60)
        assert len(placement["gpu_ids"]) == 2 and len(set(placement["gpu_ids"])) == 2
        assert placement["cuda_visible_devices"] == ",".join(placement["gpu_ids"])
        assert engine.model_name.remote().result(timeout_s=60) == "qvq-tiny"
        serve.delete(APP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _groups()[group["placement_group_id"]]["state"] != "REMOVED":
            time.sleep(0.5)
        assert _groups()[group["placement_group_id"]]["state"] == "REMOVED"
    finally:
        if APP in serve.status().applications:
            serve.delete(APP)
