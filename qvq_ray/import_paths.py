"""The object an import path names ('package.module:name' or 'package.module.name').

One loader for the two places a user names code of their own: `policy.import_path` (a policy
class, loaded by `qvq_ray.policies.load_policy`) and `verifier.checks` (functions the verifier's
worker processes import at boot, `qvq_ray.verify.user_checks`). At the floor because the
verifier is below the policies and must not import them.
"""

from __future__ import annotations

import importlib
from typing import Any


def split_path(path: str) -> tuple[str, str]:
    """'pkg.mod:fn' or 'pkg.mod.fn' -> ('pkg.mod', 'fn')."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not an import path ('package.module:function')")
    return module, attr


def load_object(path: str) -> Any:
    """The object an import path names (its module imported)."""
    module, attr = split_path(path)
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
