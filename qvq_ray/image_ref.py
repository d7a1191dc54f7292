"""How a problem gives an image (`ImageRef`), and the error every step of image intake raises.

At the floor because three modules that stand in order need them: the problem records hold
`ImageRef`s, `images.py` turns them into pixels, and `image_files.py` (below `images.py`) reads the
files they name; each imports this module downward instead of the next one up.
"""

from __future__ import annotations

import builtins

from pydantic import BaseModel, ConfigDict, Field


class ImageRef(BaseModel):
    """An image as bytes, or a reference resolved later (file path, data URL, http(s) URL)."""

    model_config = ConfigDict(extra="forbid")

    bytes: builtins.bytes | None = Field(None, description="Encoded image bytes (PNG, JPEG, ...).")
    path: str | None = Field(None, description="File path, data URL or URL when bytes are absent.")


class ImageError(ValueError):
    """An image could not be loaded or decoded, or breaks a limit (a client error, never retried)."""
