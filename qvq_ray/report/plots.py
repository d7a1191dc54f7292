"""The report's plots as PNG bytes.

matplotlib is imported here, lazily, and used through `Figure` with its Agg canvas, never pyplot:
no global backend is switched and no window can open, whatever the caller's environment.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qvq_ray.report import stats as st

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Plot:
    title: str
    filename: str
    png: bytes
    caption: str = ""


def _figure(width: float = 6.4, height: float = 3.6) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def accuracy_vs_attempts(points: list[st.CurvePoint], mode: str) -> Plot:
    """pass@j and maj@j against j, for the rows of one mode."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = _figure()
    ax = fig.add_subplot()
    js = [p.j for p in points]
    ax.plot(js, [100 * p.pass_at_j for p in points], marker="o", label="pass@j (any of the first j correct)")
    ax.plot(js, [100 * p.maj_at_j for p in points], marker="s", label="maj@j (majority of the first j correct)")
    ax.set_xlabel("attempts j")
    ax.set_ylim(-3, 103)  # lines at 0% and 100% stay visible
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    if mode == "oracle":
        ax.set_title("ORACLE mode (gold used while solving): pass@j vs attempts")
        ax.set_ylabel("pass@j (oracle)")
    else:
        ax.set_title(f"{mode} mode: pass@j and maj@j vs attempts")
        ax.set_ylabel("share of problems with gold")
    caption = (
        "Gold stopped the sampling in oracle mode: these are pass@j figures, not accuracy."
        if mode == "oracle"
        else "Computed from each attempt's correctness, in order; a problem that stopped early keeps its last value."
    )
    return Plot(f"pass@j vs attempts ({'ORACLE' if mode == 'oracle' else mode} mode)",
                f"attempts_{re.sub(r'[^A-Za-z0-9_-]+', '_', mode)}.png", _png(fig), caption)


def tokens_histogram(tokens: list[float]) -> Plot:
    """Completion tokens per problem, with mean and median marked."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    bins = min(30, max(1, len(set(tokens))))
    ax.hist(tokens, bins=bins, color="#4c72b0", edgecolor="white")
    spread = st.spread(tokens)
    if spread.mean is not None and spread.median is not None:  # both set, or neither
        ax.axvline(spread.mean, color="#dd8452", linestyle="--", label=f"mean {spread.mean:,.0f}")
        ax.axvline(spread.median, color="#55a868", linestyle=":", label=f"median {spread.median:,.0f}")
        ax.legend(fontsize="small")
    ax.set_xlabel("completion tokens per problem (all attempts)")
    ax.set_ylabel("problems")
    ax.set_title("Tokens per problem")
    ax.grid(alpha=0.3)
    return Plot("Tokens per problem", "tokens.png", _png(fig), f"{spread.n} problems that reached the engine.")
