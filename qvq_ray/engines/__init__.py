"""Engines: the Engine protocol and its implementations (imported lazily: they pull in torch).

Owns: `Engine` and `Completion` (base.py), one `*_engine.py` per backend and what they share
(prompt tokens, sampling, context bound, timing). May import the records below it
(`qvq_ray.images`), `qvq_ray.models`, `qvq_ray.config` and the floor; never the judge, the solver or
anything above. tests/test_import_layers.py holds it to that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qvq_ray.engines.base import Completion, Engine, EngineError, EngineOverloadedError, InvalidRequestError

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig


def build_engine(config: "QvqConfig") -> Engine:
    """The engine named by `config.engine.kind`, loaded in this process.

    'hf': transformers (qvq_ray/engines/hf_engine.py); 'vllm': vLLM's async engine, needs
    `pip install 'qvq-ray[vllm]'` (qvq_ray/engines/vllm_engine.py); 'openai': an OpenAI-compatible
    endpoint at `engine.base_url` (qvq_ray/engines/openai_engine.py). Each module is imported only here.
    """
    kind = config.engine.kind
    if kind == "hf":
        from qvq_ray.engines.hf_engine import HFEngine

        return HFEngine.from_config(config)
    if kind == "vllm":
        from qvq_ray.engines.vllm_engine import VLLMEngine

        return VLLMEngine.from_config(config)
    if kind == "openai":
        from qvq_ray.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_config(config)
    raise ValueError(f"unknown engine kind {kind!r}; expected 'hf', 'vllm' or 'openai'")


__all__ = ["Completion", "Engine", "EngineError", "EngineOverloadedError", "InvalidRequestError", "build_engine"]
