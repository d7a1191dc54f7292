"""Markdown and self-contained HTML from the report's blocks (headings, tables, plots).

Cells carry text from output rows (benchmark names, ids, error messages that quote model output),
so every piece of text is escaped: `html.escape` in HTML, and in Markdown too (renderers pass
raw HTML through) plus the characters that would break a table row.
"""

from __future__ import annotations

import base64
import html
import re

from qvq_ray.report.blocks import Flip, FlipList, Heading
from qvq_ray.report.plots import Plot
from qvq_ray.report.problems import ProblemCard, ProblemList, Response
from qvq_ray.report.tables import Table


Block = Heading | Table | Plot | ProblemList | FlipList

_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_escape(text: str) -> str:
    text = " ".join(str(text).split())  # no newlines inside a table row or a heading
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _md_table(table: Table) -> list[str]:
    out = [f"### {md_escape(table.title)}", ""]
    if table.rows:
        out.append("| " + " | ".join(md_escape(h) for h in table.headers) + " |")
        text = set(table.text_columns) | {0}
        out.append("|" + "|".join(":---" if i in text else "---:" for i in range(len(table.headers))) + "|")
        out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
        out.append("")
    if table.note:
        out += [f"_{md_escape(table.note)}_", ""]
    return out


def render_markdown(title: str, intro: list[str], blocks: list[Block]) -> str:
    """Markdown; plots are linked as PNG files written beside it under their `filename`."""
    out = [f"# {md_escape(title)}", ""]
    out += [md_escape(line) + "  " for line in intro] + [""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"## {md_escape(block.text)}", ""]
        elif isinstance(block, Table):
            out += _md_table(block)
        elif isinstance(block, ProblemList):
            out += _md_problems(block)
        elif isinstance(block, FlipList):
            out += _md_flips(block)
        else:
            out += [f"![{md_escape(block.title)}]({block.filename})", ""]
            if block.caption:
                out += [f"_{md_escape(block.caption)}_", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_problems(block: ProblemList) -> list[str]:
    """A one-line-per-problem table; questions, thumbnails and attempts are in report.html."""
    out = [f"### {md_escape(block.title)}", ""]
    if block.cards:
        out.append("| id | benchmark | status | gold | answer | attempts | tokens |")
        out.append("|:---|:---|:---|:---|:---|---:|---:|")
        for c in block.cards:
            cells = [c.id, c.source, c.status, c.gold, c.answer or c.error, str(c.attempts_total), str(c.tokens)]
            out.append("| " + " | ".join(md_escape(x) for x in cells) + " |")
        out.append("")
    out += [f"_{md_escape(block.note + ' Questions, images and each attempt are in report.html.')}_", ""]
    return out


def _md_flips(block: FlipList) -> list[str]:
    """One line per flipped problem; both responses are in report.html."""
    out = [f"### {md_escape(block.title)}", ""]
    if block.flips:
        out += ["| id | benchmark | gold | A answer | B answer |", "|:---|:---|:---|:---|:---|"]
        out += ["| " + " | ".join(md_escape(x) for x in (f.id, f.source, f.gold, f.answer_a, f.answer_b)) + " |"
                for f in block.flips]
        out.append("")
    return out + [f"_{md_escape(block.note)}_", ""]


CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.7em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.35em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin: 1.3em 0 .4em; }
p.intro { margin: .1em 0; color: #57606a; }
table { border-collapse: collapse; margin: .3em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: #f6f8fa; }
th:first-child, td:first-child { text-align: left; }
th.text { text-align: left; }
td.text { text-align: left; max-width: 40em; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .9em; }
table.total tr:last-child td { font-weight: 600; }
p.note, figcaption { color: #57606a; font-size: .9em; margin: .3em 0 1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
.oracle { color: #9a6700; }
details.problem { border: 1px solid #d0d7de; border-radius: 6px; margin: .4em 0; padding: .3em .7em; }
details.problem > summary { cursor: pointer; }
details.problem .status { font-weight: 600; }
details.problem.s-error .status, details.problem.s-wrong .status { color: #cf222e; }
details.problem.s-correct .status { color: #1a7f37; }
.problem-body { display: flex; gap: 1em; align-items: flex-start; margin: .5em 0; }
img.thumb { max-width: 160px; max-height: 160px; border: 1px solid #d0d7de; flex: none; }
pre.question { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-size: .9em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; margin: .4em 0; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
table.attempts td.text { max-width: 30em; }
details.response { margin: .3em 0; }
details.response > summary { cursor: pointer; color: #57606a; }
pre.response { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85em; background: #f6f8fa;
               border: 1px solid #d0d7de; padding: .5em; margin: .3em 0; max-height: 40em; overflow-y: auto; }
pre.response mark { background: #fff8c5; outline: 1px solid #d4a72c; }
pre.response .cut { color: #57606a; font-style: italic; }
.side-by-side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.side-by-side h4 { margin: .2em 0; font-size: .95em; }
"""

def _h(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: Table) -> str:
    oracle = " oracle" if "ORACLE" in table.title else ""
    cls = ' class="total"' if table.total else ""
    anchor = f' id="{_h(table.anchor)}"' if table.anchor else ""
    parts = [f'<h3{anchor} class="title{oracle}">{_h(table.title)}</h3>']
    if table.rows:
        text_cols = set(table.text_columns)
        parts.append(f"<table{cls}>")
        parts.append("<tr>" + "".join(f'<th class="text">{_h(h)}</th>' if i in text_cols else f"<th>{_h(h)}</th>"
                                      for i, h in enumerate(table.headers)) + "</tr>")
        for row in table.rows:
            cells = "".join(
                f'<td class="text">{_h(c)}</td>' if i in text_cols else f"<td>{_h(c)}</td>" for i, c in enumerate(row)
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    if table.note:
        parts.append(f'<p class="note">{_h(table.note)}</p>')
    return "\n".join(parts)


def _html_plot(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    caption = f"<figcaption>{_h(plot.caption)}</figcaption>" if plot.caption else ""
    return f'<figure><img alt="{_h(plot.title)}" src="data:image/png;base64,{data}">{caption}</figure>'


def _html_card(c: ProblemCard) -> str:
    facts = [("benchmark", c.source), ("subject", c.subject), ("level", c.level), ("mode", c.mode),
             ("gold", c.gold or "(none)"), ("final answer", c.answer or "(none)"),
             ("tokens", f"{c.tokens:,} over {c.attempts_total} attempt(s)")]
    if c.choices:
        facts.insert(4, ("choices", " | ".join(f"{chr(65 + i)}. {x}" if i < 26 else x for i, x in enumerate(c.choices))))
    if c.error:
        facts.append(("error", c.error))
    if c.image_note:
        facts.append(("image", c.image_note))
    thumb = (f'<img class="thumb" alt="first image of {_h(c.id)}" src="{_h(c.thumbnail)}">'
             if c.thumbnail and c.thumbnail.startswith("data:image/jpeg;base64,") else "")
    parts = [
        f'<details class="problem s-{_h(c.status.replace(" ", "-"))}" data-status="{_h(c.status)}" data-id="{_h(c.id)}">',
        f'<summary><span class="status">{_h(c.status)}</span> <code>{_h(c.id)}</code> · {_h(c.source)}'
        f' · gold <code>{_h(c.gold or "(none)")}</code> · answer <code>{_h(c.answer or "(none)")}</code></summary>',
        f'<div class="problem-body">{thumb}<pre class="question">{_h(c.question)}</pre></div>',
        '<dl class="facts">' + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in facts) + "</dl>",
    ]
    if c.attempts:
        parts.append('<table class="attempts"><tr><th>attempt</th><th>answer</th><th>verdict</th><th>issues</th>'
                     "<th>tokens</th><th>finish</th></tr>")
        for a in c.attempts:
            mark = " (chosen)" if a.chosen else ""
            parts.append(f"<tr><td>{a.index}{mark}</td><td class=\"text\">{_h(a.answer or '(none)')}</td>"
                         f'<td class="verdict">{_h(a.verdict)}</td><td class="text">{_h(a.issues)}</td>'
                         f"<td>{a.tokens:,}</td><td>{_h(a.finish_reason)}</td></tr>")
        parts.append("</table>")
        if c.attempts_total > len(c.attempts):
            parts.append(f'<p class="note">{c.attempts_total - len(c.attempts)} more attempts not listed.</p>')
    parts += [html_response(r) for r in c.responses]
    parts.append("</details>")
    return "\n".join(parts)


def response_pre(r: Response) -> str:
    """The response text, escaped, its answer in <mark>, cut parts said in place."""
    out = []
    for kind, text in r.pieces:
        if kind == "answer":
            out.append(f'<mark class="answer">{_h(text)}</mark>')
        elif kind == "cut":
            out.append(f'<span class="cut">{_h(text)}</span>')
        else:
            out.append(_h(text))
    return f'<pre class="response">{"".join(out)}</pre>'


def html_response(r: Response, label: str = "") -> str:
    """A response, collapsed: its summary names the attempt, its length and whether the answer is marked."""
    what = label or f"response of attempt {r.attempt}" + (" (chosen)" if r.chosen else "")
    found = ("answer highlighted" if r.marked else "no answer extracted" if not r.answer
             else "the extracted answer is not in the text as written")
    return (f'<details class="response"><summary>{_h(what)} · {r.chars:,} characters · {found}</summary>'
            f"{response_pre(r)}</details>")


def _html_problems(block: ProblemList) -> str:
    parts = [f'<section id="problems"><h3 class="title">{_h(block.title)}</h3>',
             f'<p class="note">{_h(block.note)}</p>']
    parts += [_html_card(c) for c in block.cards]
    parts.append("</section>")
    return "\n".join(parts)


def _html_flip(f: Flip) -> str:
    sides = []
    for run, answer, response in (("A", f.answer_a, f.response_a), ("B", f.answer_b, f.response_b)):
        body = response_pre(response) if response is not None else '<p class="note">(no response)</p>'
        sides.append(f"<div><h4>{run}: answer <code>{_h(answer or '(none)')}</code></h4>{body}</div>")
    return (f'<details class="problem flip" data-id="{_h(f.id)}"><summary><code>{_h(f.id)}</code> · {_h(f.source)}'
            f' · gold <code>{_h(f.gold or "(none)")}</code> · A <code>{_h(f.answer_a or "(none)")}</code>'
            f' · B <code>{_h(f.answer_b or "(none)")}</code></summary>'
            f'<div class="side-by-side">{"".join(sides)}</div></details>')


def _html_flips(block: FlipList) -> str:
    parts = [f'<h3 class="title">{_h(block.title)}</h3>', f'<p class="note">{_h(block.note)}</p>']
    return "\n".join(parts + [_html_flip(f) for f in block.flips])


def render_html(title: str, intro: list[str], blocks: list[Block]) -> str:
    """One self-contained page: inline CSS, plots as base64 PNG data URIs, thumbnails as JPEG ones,
    no script and no external assets."""
    body = [f"<h1>{_h(title)}</h1>"] + [f'<p class="intro">{_h(line)}</p>' for line in intro]
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h2>{_h(block.text)}</h2>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, ProblemList):
            body.append(_html_problems(block))
        elif isinstance(block, FlipList):
            body.append(_html_flips(block))
        else:
            body.append(_html_plot(block))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_h(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
