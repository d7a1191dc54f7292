"""qvq-ray: run QVQ-72B-Preview (and any Qwen2-VL checkpoint) on Ray, and verify its math.

Public names are re-exported lazily so `import qvq_ray` (and `qvq-ray --help`) stays fast: torch,
transformers and ray load only when an engine, a job or an app is actually built.

The package's rooms stand in layers, bottom to top (DESIGN.md "Layout", enforced by
tests/test_import_layers.py): the floor modules, config, verify/, the records, datasets/ models/
prompt results/, engines/, judge/ and policies, the solver, the front ends (batch/ serve/ report/),
jobs, the CLI. This module imports none of them at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "QvqConfig": "qvq_ray.config",
    "ModelConfig": "qvq_ray.config",
    "EngineConfig": "qvq_ray.config",
    "SamplingConfig": "qvq_ray.config",
    "PolicyConfig": "qvq_ray.config",
    "Problem": "qvq_ray.problem",
    "Attempt": "qvq_ray.problem",
    "Solution": "qvq_ray.problem",
    "Verdict": "qvq_ray.verify.verdict",
    "Verifier": "qvq_ray.verify.verifier",
    "Solver": "qvq_ray.solver",
    "Engine": "qvq_ray.engines.base",
    "Completion": "qvq_ray.engines.base",
    "build_engine": "qvq_ray.engines",
    "HFEngine": "qvq_ray.engines.hf_engine",
    "VLLMEngine": "qvq_ray.engines.vllm_engine",
    "OpenAIEngine": "qvq_ray.engines.openai_engine",
    "make_tiny_model": "qvq_ray.models.tiny",
    "load_problems": "qvq_ray.datasets",
    "run_solve_job": "qvq_ray.jobs",
    "build_app": "qvq_ray.serve.app",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qvq_ray' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
