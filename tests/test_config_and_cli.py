"""Configs shipped in the repo validate; the CLI answers fast without heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qvq_ray.config import QvqConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted([*(ROOT / "pipelines").glob("**/*.yaml"), *(ROOT / "qvq_ray" / "presets").glob("*.yaml")]), ids=lambda p: p.name)
def test_pipeline_configs_validate(path):
    QvqConfig.from_yaml(path)


@pytest.mark.parametrize("path", sorted((ROOT / "serve_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_serve_configs_validate_and_build_deployment_options(path):
    from qvq_ray.serve.app import engine_deployment_options

    spec = yaml.safe_load(path.read_text())
    assert spec["http_options"]["host"] == "127.0.0.1"
    for app in spec["applications"]:
        assert app["import_path"] == "qvq_ray.serve.app:build_app"
        config = QvqConfig.from_any(app["args"]["config"])
        options = engine_deployment_options(config)
        scaling = options["autoscaling_config"]
        expected = config.serve.engine_autoscaling.target_ongoing_requests or config.engine.max_batch_size
        assert scaling["target_ongoing_requests"] == expected  # derived from batch capacity unless set
        assert scaling["min_replicas"] <= scaling["max_replicas"]


def test_config_forbids_unknown_keys():
    with pytest.raises(Exception, match="extra"):
        QvqConfig.model_validate({"model": {"pathh": "x"}})


@pytest.mark.parametrize("kind", ["hf", "vllm"])
def test_sharded_replica_reserves_one_gpu_bundle_each_strict_pack(kind):
    from qvq_ray.serve.app import engine_deployment_options

    config = QvqConfig.model_validate({"resources": {"tensor_parallel_size": 4, "num_cpus": 8}, "engine": {"kind": kind}})
    options = engine_deployment_options(config)
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert [b.get("GPU") for b in options["placement_group_bundles"]] == [1.0] * 4
    assert options["ray_actor_options"] == {"num_cpus": 8, "num_gpus": 0}  # the replica itself sits on CPUs


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys; from qvq_ray.cli import build_parser; build_parser().format_help(); import qvq_ray; "
        "heavy = [m for m in ('torch', 'transformers', 'ray', 'sympy', 'math_verify', 'PIL') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    result = subprocess.run([sys.executable, "-m", "qvq_ray.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "solve" in result.stdout and "serve" in result.stdout


def test_verify_cli_reads_stdin():
    response = "Let me think... **Final Answer**\n\\[ \\boxed{\\frac{1}{2}} \\]"
    result = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", "--gold", "0.5"], input=response, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert '"correct":true' in result.stdout.replace(" ", "") and '"answer":"\\\\frac{1}{2}"' in result.stdout.replace(" ", "")
