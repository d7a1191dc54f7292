"""What a verify worker process runs for one check: equivalence, the parse check, the claims.

`run_checks` is the one allowlisted entry point the `Verifier` calls (`pool.ALLOWED_FUNCTIONS`).
Each stage has a soft deadline inside the call's budget, so a stage that runs long is cut and the
others still answer; the pool's hard timeout (kill and replace) and the worker's memory limit
bound the rest. Importing this module warms the LaTeX parser (done before a call's timeout starts).
"""

from __future__ import annotations

import time
from typing import Any

from qvq_ray.verify import symbolic
from qvq_ray.verify.calculation import check_claims
from qvq_ray.verify.equivalence import Comparer, Options, answer_parses
from qvq_ray.verify.symbolic import SoftTimeout, Undecidable, soft_deadline

# Seconds kept back from a call's budget so the soft deadlines fire before the hard kill.
HARD_MARGIN_S = 0.25


def run_checks(request: dict[str, Any]) -> dict[str, Any]:
    """Run the sympy-side checks of one response.

    request: answer, gold (optional), options (choices, unit, tolerance, precision, answer_type,
    missing_unit), check_parse (bool), claims ([[lhs, op, rhs], ...]), budget_s.
    Returns: correct (True/False/None), parse_ok (True/False/None), false_claims, unchecked_claims,
    timed_out (a stage ran past its soft deadline or out of memory), undecidable, error.
    """
    start = time.monotonic()
    budget = float(request.get("budget_s") or 5.0)

    def remaining() -> float:
        return budget - HARD_MARGIN_S - (time.monotonic() - start)

    out: dict[str, Any] = {
        "correct": None,
        "parse_ok": None,
        "false_claims": [],
        "unchecked_claims": 0,
        "timed_out": False,
        "undecidable": False,
        "error": None,
    }
    answer, gold = request.get("answer"), request.get("gold")
    options = Options.build(request.get("options"))
    if answer is not None and gold is not None:
        try:
            with soft_deadline(max(remaining(), 0.05)):
                out["correct"] = Comparer(options, use_sympy=True).equal(answer, gold)
        except SoftTimeout:
            out["timed_out"] = True
        except MemoryError:
            out["timed_out"] = True
        except Undecidable:
            out["undecidable"] = True
        except RecursionError:
            out["error"] = "too deeply nested"
        except Exception as exc:  # noqa: BLE001 - reported, never raised into the pool
            out["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if request.get("check_parse") and answer:
        if remaining() > 0.05:
            try:
                with soft_deadline(remaining()):
                    out["parse_ok"] = answer_parses(answer, options, use_sympy=True)
            except (SoftTimeout, MemoryError):
                out["timed_out"] = True
            except Exception:  # noqa: BLE001
                out["parse_ok"] = False
        else:
            out["timed_out"] = True
    claims = request.get("claims") or []
    if claims:
        try:
            result = check_claims([tuple(c) for c in claims], deadline_s=max(remaining(), 0.0))
            out["false_claims"] = result["false"]
            out["unchecked_claims"] = result["unchecked"]
        except MemoryError:
            out["timed_out"] = True
    return out


def _warm() -> None:
    """Build the ANTLR parser's tables once, outside any call's timeout."""
    try:
        symbolic.parse_leaf("\\frac{1}{2}+x^{2}")
    except Exception:  # noqa: BLE001
        pass


_warm()
