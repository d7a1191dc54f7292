"""Engines: the Engine protocol and its implementations (imported lazily: they pull in torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qvq_ray.engines.base import Completion, Engine, EngineError, InvalidRequestError

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig


def build_engine(config: "QvqConfig") -> Engine:
    """The engine named by `config.engine.kind`, loaded in this process."""
    if config.engine.kind == "hf":
        from qvq_ray.engines.hf import HFEngine

        return HFEngine.from_config(config)
    raise ValueError(f"unknown engine kind {config.engine.kind!r}")


__all__ = ["Completion", "Engine", "EngineError", "InvalidRequestError", "build_engine"]
