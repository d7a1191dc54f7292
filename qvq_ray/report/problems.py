"""The per-problem view of report.html: each shown problem's question, a thumbnail of its first
image, gold, the final answer, and every attempt's answer, verdict and tokens.

The page must stay self-contained and of a size known in advance whatever the run's size, so the
view is bounded: at most `limit` problems, failures first (error rows, then wrong, not judged,
without gold, correct), text cut to fixed lengths, at most MAX_ATTEMPTS attempts per problem, and
thumbnails at most THUMB_PX on a side, JPEG, embedded as data URLs. Output rows carry the problem
without its images, so thumbnails come from the problem set when the caller names it
(`qvq-ray report DIR --problems INPUT`); images are read with URLs refused, never fetched.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from qvq_ray.report import stats as st

if TYPE_CHECKING:
    from qvq_ray.config import ImageLimits
    from qvq_ray.image_files import ImageRoots
    from qvq_ray.problem import Problem

DEFAULT_LIMIT = 100
MAX_ATTEMPTS = 16
QUESTION_CHARS = 1200
ANSWER_CHARS = 160
ERROR_CHARS = 300
MAX_CHOICES = 12
RESPONSE_CHARS = 6000  # of one response shown: its start and its end (where the answer usually is)
RESPONSE_HEAD = 1000
SPAN_CONTEXT = 300  # characters kept either side of an answer found in a part that was cut
MAX_RESPONSES = 4  # responses shown per problem: the chosen attempt's first
THUMB_PX = 160
THUMB_QUALITY = 75
# failures first: what a reader opens the view for
STATUS_ORDER = ("error", "wrong", "not judged", "no gold", "correct")


def clip(text: Any, limit: int) -> str:
    shown = "" if text is None else str(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


@dataclass(frozen=True)
class Response:
    """A response as shown: pieces of ("text" | "answer" | "cut", text), the extracted answer
    marked where it was found, long middles cut (a "cut" piece says how many characters)."""

    attempt: int  # 1-based
    chosen: bool
    chars: int
    pieces: tuple[tuple[str, str], ...]
    answer: str | None = None  # the answer extracted from it (None: none was)

    @property
    def marked(self) -> bool:
        return any(kind == "answer" for kind, _ in self.pieces)


def answer_span(text: str, answer: str | None) -> tuple[int, int] | None:
    """Where the extracted answer stands in the response: its last occurrence as written, else the
    last one ignoring white space (an answer 'x = 3' written 'x=3'); None when absent."""
    if not text or not answer or not answer.strip():
        return None
    at = text.rfind(answer)
    if at >= 0:
        return at, at + len(answer)
    pattern = r"\s*".join(re.escape(ch) for ch in answer if not ch.isspace())
    last = None
    for last in re.finditer(pattern, text):
        pass
    return (last.start(), last.end()) if last else None


def response_view(text: str, answer: str | None, *, attempt: int = 1, chosen: bool = False,
                  limit: int = RESPONSE_CHARS) -> Response:
    """`text` as shown: whole up to `limit` characters; longer, its first RESPONSE_HEAD and its last
    characters, plus SPAN_CONTEXT either side of the answer when that falls in the cut."""
    text = text or ""
    span = answer_span(text, answer)
    if len(text) <= limit:
        keep = [(0, len(text))]
    else:
        keep = [(0, RESPONSE_HEAD), (len(text) - (limit - RESPONSE_HEAD), len(text))]
        if span and keep[0][1] <= span[0] and span[1] <= keep[1][0]:
            keep.insert(1, (max(keep[0][1], span[0] - SPAN_CONTEXT), min(keep[1][0], span[1] + SPAN_CONTEXT)))
    pieces: list[tuple[str, str]] = []
    shown_to = 0
    for start, end in keep:
        if start > shown_to:
            pieces.append(("cut", f"[{start - shown_to:,} characters not shown]"))
        if span and start <= span[0] and span[1] <= end:
            pieces += [("text", text[start:span[0]]), ("answer", text[span[0]:span[1]]), ("text", text[span[1]:end])]
        else:
            pieces.append(("text", text[start:end]))
        shown_to = end
    return Response(attempt, chosen, len(text), tuple(p for p in pieces if p[1]), answer)


def responses(row: dict[str, Any], limit: int = MAX_RESPONSES) -> tuple[Response, ...]:
    """The responses of a row's attempts, the chosen one first, at most `limit`."""
    attempts = list(row.get("attempts") or [])
    chosen = row.get("chosen_attempt")
    order = sorted(range(len(attempts)), key=lambda i: (i != chosen, i))
    out = []
    for index in order[:limit]:
        attempt = attempts[index]
        if attempt.get("text") is None:
            continue
        answer = (attempt.get("verdict") or {}).get("answer")
        out.append(response_view(attempt["text"], answer, attempt=index + 1, chosen=index == chosen))
    return tuple(out)


@dataclass(frozen=True)
class AttemptCard:
    index: int
    answer: str
    verdict: str  # correct / wrong / no answer / not judged / not scored
    issues: str
    tokens: int
    finish_reason: str
    chosen: bool


@dataclass(frozen=True)
class ProblemCard:
    id: str
    source: str
    subject: str
    level: str
    mode: str
    status: str
    question: str
    choices: tuple[str, ...]
    gold: str
    answer: str
    error: str
    attempts: tuple[AttemptCard, ...]
    attempts_total: int
    tokens: int
    num_images: int
    thumbnail: str | None = None  # data:image/jpeg;base64,... or None
    responses: tuple[Response, ...] = ()  # the chosen attempt's first
    image_note: str = ""  # why there is no thumbnail


@dataclass
class ProblemList:
    """A report block: the cards shown, how many problems there were, and how they were picked."""

    cards: list[ProblemCard]
    total: int
    note: str
    title: str = "Problems"


def status(view: st.RowView) -> str:
    if view.error:
        return "error"
    if not view.has_gold:
        return "no gold"
    if view.not_judged:
        return "not judged"
    return "correct" if view.correct else "wrong"


def _attempt_verdict(attempt: dict[str, Any], has_gold: bool) -> str:
    """correct / wrong / no answer / not judged / not scored, with "(judge)" when the judge model decided;
    "engine failed: ..." for a call that produced nothing."""
    if attempt.get("error"):
        return "engine failed: " + clip(attempt["error"], ERROR_CHARS)
    verdict = attempt.get("verdict") or {}
    by_judge = " (judge)" if attempt.get("decided_by") == "judge" or verdict.get("extraction") == "judge" else ""
    if verdict.get("answer") is None:
        if verdict.get("judge") and has_gold and attempt.get("correct") is None:
            return "not judged (the judge did not answer)"
        return "no answer" + by_judge
    if attempt.get("correct") is True:
        return "correct" + by_judge
    if attempt.get("correct") is False:
        return "wrong" + by_judge
    return "not judged" if has_gold else "not scored"


def _num_images(row: dict[str, Any]) -> int:
    from qvq_ray.problem import stored_problem_dict

    try:
        return int(stored_problem_dict(row.get("problem")).get("num_images") or 0)
    except (ValueError, TypeError):
        return 0


def card(row: dict[str, Any], view: st.RowView) -> ProblemCard:
    attempts = list(row.get("attempts") or [])
    chosen = row.get("chosen_attempt")
    shown = []
    for index, attempt in enumerate(attempts[:MAX_ATTEMPTS]):
        verdict = attempt.get("verdict") or {}
        shown.append(
            AttemptCard(
                index=index + 1,
                answer=clip(verdict.get("answer"), ANSWER_CHARS),
                verdict=_attempt_verdict(attempt, view.has_gold),
                issues=", ".join(verdict.get("issues") or ()),
                tokens=int(attempt.get("completion_tokens") or 0),
                finish_reason=str(attempt.get("finish_reason") or ""),
                chosen=chosen == index,
            )
        )
    return ProblemCard(
        id=view.id,
        source=view.source,
        subject=view.subject,
        level=view.level,
        mode=view.mode,
        status=status(view),
        question=clip(row.get("question"), QUESTION_CHARS),
        choices=tuple(clip(c, ANSWER_CHARS) for c in (row.get("choices") or [])[:MAX_CHOICES]),
        gold=clip(row.get("gold"), ANSWER_CHARS),
        answer=clip(row.get("answer"), ANSWER_CHARS),
        error=clip(row.get("error"), ERROR_CHARS),
        attempts=tuple(shown),
        attempts_total=len(attempts),
        tokens=int(row.get("completion_tokens") or 0),
        num_images=_num_images(row),
        responses=responses(row),
    )


def pick(rows: list[dict[str, Any]], views: list[st.RowView], limit: int) -> list[tuple[dict[str, Any], st.RowView]]:
    """The rows shown: failures first (STATUS_ORDER), file order within a status, at most `limit`."""
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    order = sorted(range(len(rows)), key=lambda i: (rank[status(views[i])], i))
    return [(rows[i], views[i]) for i in order[: max(0, limit)]]


def problem_list(rows: list[dict[str, Any]], limit: int = DEFAULT_LIMIT, thumbnails: dict[str, tuple[str | None, str]] | None = None,
                 thumbnail_hint: str = "", views: list[st.RowView] | None = None) -> ProblemList:
    """The per-problem block of `rows` (output rows as dicts). `thumbnails`: id -> (data URL or None,
    why not); without it, problems with images say how to get thumbnails (`thumbnail_hint`).
    `views`: the rows' views when the caller has them (relabelled, for rescored rows)."""
    views = st.views(rows) if views is None else views
    cards = []
    for row, view in pick(rows, views, limit):
        c = card(row, view)
        if thumbnails is not None and c.id in thumbnails:
            url, why = thumbnails[c.id]
            c = ProblemCard(**{**c.__dict__, "thumbnail": url, "image_note": why})
        elif c.num_images and thumbnail_hint:
            c = ProblemCard(**{**c.__dict__, "image_note": thumbnail_hint})
        cards.append(c)
    counts = {s: sum(1 for v in views if status(v) == s) for s in STATUS_ORDER}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if len(cards) < len(rows):
        note = (f"Showing {len(cards)} of {len(rows)} problems ({summary}): failures first (errors, wrong, not judged, "
                f"no gold, correct), in file order within each; raise --max-problems to show more.")
    else:
        note = f"All {len(rows)} problems ({summary}), failures first."
    note += (f" Text is cut at {QUESTION_CHARS} characters (questions) and {ANSWER_CHARS} (answers); "
             f"at most {MAX_ATTEMPTS} attempts are listed per problem, and the responses of {MAX_RESPONSES} "
             f"(the chosen one first; each its first {RESPONSE_HEAD:,} and last {RESPONSE_CHARS - RESPONSE_HEAD:,} "
             "characters, the extracted answer highlighted where it is found in the text).")
    return ProblemList(cards, len(rows), note)


# ---------------------------------------------------------------- thumbnails


def thumbnail_data_url(data: bytes, limits: ImageLimits | None = None) -> str:
    """A JPEG thumbnail (at most THUMB_PX on a side) of encoded image bytes, as a data URL."""
    from qvq_ray.images import decode_image

    image = decode_image(data, limits)  # RGB, with the decoder's own size and format checks
    image.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails_from_problems(
    path: str | Path,
    ids: set[str],
    *,
    format: str | None = None,
    allow_paths_outside: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, tuple[str | None, str]]:
    """id -> (thumbnail data URL of the problem's first image, or None with the reason) for the
    problems of `ids` in the problem set at `path`. URLs are never fetched here, and image files are
    read only inside the problem set's own folder unless `allow_paths_outside`, as in the batch job.
    A row of the set that cannot be read has no thumbnail (its output row says why); `warn` hears
    how many there were, in one line, and the report goes on."""
    from qvq_ray.config import ImageLimits
    from qvq_ray.datasets import LoadError, image_roots, load_problems
    from qvq_ray.image_files import ImageRoots

    limits = ImageLimits(allow_urls=False)
    roots = ImageRoots.anywhere() if allow_paths_outside else ImageRoots.of(image_roots(path, format=format))
    out: dict[str, tuple[str | None, str]] = {}
    unreadable: list[LoadError] = []
    for problem in load_problems(path, format=format):
        if isinstance(problem, LoadError):
            unreadable.append(problem)
            continue
        if problem.id in ids and problem.id not in out:
            out[problem.id] = _thumbnail(problem, limits, roots)
    if unreadable and warn is not None:
        first = unreadable[0]
        rows = f"{len(unreadable)} row{'s' if len(unreadable) != 1 else ''}"
        warn(f"{rows} of {path} could not be read and have no thumbnail "
             f"(first: {clip(first.ref, 80)}: {clip(first.reason, 200)})")
    return out


def _thumbnail(problem: Problem, limits: ImageLimits, roots: ImageRoots) -> tuple[str | None, str]:
    """(data URL of the first image's thumbnail, a note) or (None, why not)."""
    from qvq_ray.images import ImageError, load_image_bytes

    if not problem.images:
        return None, ""
    more = len(problem.images) - 1
    note = f"the first of {len(problem.images)} images" if more else ""
    try:
        return thumbnail_data_url(load_image_bytes(problem.images[0], limits=limits, roots=roots), limits), note
    except ImageError as exc:
        return None, f"image not shown: {st.error_kind('bad image: ' + str(exc))[1]}"
