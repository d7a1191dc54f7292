"""Reading a request body the way a public endpoint must: bounded before it is read, strict JSON.

FastAPI's own body parsing reads the whole body first and takes Python's `json` as is (NaN and
Infinity literals accepted; a body nested 100,000 deep or an integer of 5,000 digits raises a
RecursionError or ValueError that becomes a 500). Here every such body is a 4xx naming the
problem, and a body over the limit is refused from its Content-Length, or as soon as the bytes
read pass the limit, never read whole.
"""

from __future__ import annotations

import json
from typing import Any

from qvq_ray.serve.openai_api import ClientError


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use a finite number or null)")


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The raw body, refused with 413 once it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ClientError(400, "Content-Length is not an integer") from None
        if size > max_bytes:
            raise ClientError(413, f"request body of {size} bytes exceeds the limit of {max_bytes}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise ClientError(413, f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON: no NaN/Infinity, bounded nesting and integer size (Python's own limits, caught)."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ClientError(400, "request body is not valid JSON: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"request body is not valid JSON: not UTF-8 ({exc.reason})") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over sys.get_int_max_str_digits()
        raise ClientError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ClientError(400, "request body must be a JSON object")
    return data
