"""JSON that stays on one line for every reader.

json.dumps escapes the control characters, but with ensure_ascii=False it leaves U+0085, U+2028
and U+2029 raw, and str.splitlines() (httpx's iter_lines, many SSE and JSONL readers) breaks a line
at each. Model text holds them (the untrained tiny model writes them; a long chain of thought may),
and a server-sent event or a JSONL row cut in two is a JSONDecodeError in the client.
"""

from __future__ import annotations

import json
from typing import Any

_LINE_BREAKS_JSON_KEEPS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line_json(value: Any, **dumps_kwargs: Any) -> str:
    """json.dumps(value, ensure_ascii=False, ...) with no character any reader takes for a line end."""
    return json.dumps(value, ensure_ascii=False, **dumps_kwargs).translate(_LINE_BREAKS_JSON_KEEPS)
