"""The report as one self-contained page (``report.html``) and its examples in Markdown.

The page makes no network request and runs no script: figures are inline (PNG data URIs), styles are
inline, and a Content-Security-Policy forbids everything else, so a document that holds HTML or a
script is shown as text, never run. Document text is escaped, control characters are shown as visible
symbols, and every document's text is isolated for direction (right-to-left text stays in its box).
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from typing import Any

from dsir_spark.selection.examples import GROUPS

_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline { display: flex; gap: 1.2em; flex-wrap: wrap; }
.headline div { background: #f4f7fb; border: 1px solid #d8e0ea; border-radius: 6px; padding: .6em 1em; }
.headline b { display: block; font-size: 1.4em; }
.warning { background: #fff4e5; border: 1px solid #f0c36d; padding: .5em 1em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.doc { border: 1px solid #ddd; border-radius: 6px; margin: .8em 0; padding: .6em .9em; break-inside: avoid; }
.doc .meta { color: #555; font-size: .9em; margin-bottom: .4em; }
.doc pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font: 13px/1.4 ui-monospace, monospace; }
mark.toward { background: #c8f0c8; } mark.away { background: #f6c8c8; } .ctl { color: #a00; }
.ngrams { font-size: .85em; color: #444; margin-top: .4em; }
@media print { body { max-width: none; margin: 0; } .doc, figure, table { break-inside: avoid; } }
"""


def _symbol(match: re.Match) -> str:
    """A control character as the Unicode symbol that stands for it (NUL as U+2400, DEL as U+2421)."""
    code = ord(match.group(0))
    return f'<span class="ctl">{chr(0x2400 + code) if code < 0x20 else chr(0x2421)}</span>'


def escape_text(text: str) -> str:
    """Text as HTML: escaped, with control characters (NUL ...) shown as the symbols that stand for them."""
    return _CONTROL.sub(_symbol, html.escape(text, quote=True))


def _marked(text: str, spans: Sequence[dict[str, Any]]) -> str:
    parts, at = [], 0
    for span in spans:
        parts.append(escape_text(text[at:span["start"]]))
        parts.append(f'<mark class="{span["side"]}">{escape_text(text[span["start"]:span["end"]])}</mark>')
        at = span["end"]
    parts.append(escape_text(text[at:]))
    return "".join(parts)


class Markup(str):
    """A table cell's HTML, already escaped."""


def _codes(items: Sequence[str]) -> Markup:
    return Markup(" ".join(f"<code>{escape_text(item)}</code>" for item in items) or "(not seen)")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, Markup):
            return f"<td>{value}</td>"
        if isinstance(value, float):
            return f'<td class="num">{value:.4f}</td>'
        if isinstance(value, int):
            return f'<td class="num">{value:,}</td>'
        return f"<td>{escape_text(str(value))}</td>"

    head = "".join(f"<th>{escape_text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _example(example: dict[str, Any]) -> str:
    facts = [f"id <code>{escape_text(str(example['id']))}</code>"]
    if example.get("label") is not None:
        facts.append(f"label {escape_text(str(example['label']))}")
    facts.append(f"{example['num_tokens']:,} tokens")
    facts.append(f"log weight {example['log_weight']:.3f}")
    if example.get("key") is not None:
        facts.append(f"key {example['key']:.3f}")
    more = " …" if example.get("truncated") else ""
    ngrams = "".join(
        f"<div>{'pulling toward' if side == 'toward' else 'pulling away'}: "
        + ", ".join(f'<mark class="{side}">{escape_text(g["ngram"])}</mark> {g["total"]:+.2f}' for g in example[side])
        + "</div>" for side in ("toward", "away") if example.get(side))
    return (f'<div class="doc"><div class="meta">{" · ".join(facts)}</div>'
            f'<pre dir="auto"><bdi>{_marked(example["text"], example.get("marks", []))}</bdi>{more}</pre>'
            f'<div class="ngrams">{ngrams}</div></div>')


def _examples(report: dict[str, Any]) -> str:
    examples = report.get("examples") or []
    if not examples:
        return ""
    parts = ["<h2 id=\"examples\">Example documents</h2>",
             "<p>N-grams marked <mark class=\"toward\">green</mark> pull a document toward the target, "
             "<mark class=\"away\">red</mark> away from it; the first 2,000 characters of each.</p>"]
    targets = report.get("targets") or []
    for group, title in GROUPS.items():
        mine = [e for e in examples if e["group"] == group]
        if not mine:
            continue
        parts.append(f"<h3>{escape_text(title[0].upper() + title[1:])}</h3>")
        for target in sorted({e["target"] for e in mine}, key=lambda t: -1 if t is None else t):
            if len(targets) > 1 and target is not None:
                parts.append(f"<h4>Target {escape_text(str(targets[target]))}</h4>")
            parts += [_example(e) for e in mine if e["target"] == target]
    return "\n".join(parts)


def to_html(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The whole report as one page; ``figures``: PNG bytes by file name, shown inline."""
    kl, docs, tokens = report["kl_reduction"], report["documents"], report["tokens"]
    body = ["<h1>DSIR selection report</h1>",
            '<div class="headline">'
            f"<div>selected<b>{docs['selected']:,}</b>of {docs['raw']:,} documents</div>"
            + (f"<div>model tokens<b>{report['model_tokens']['selected']:,}</b>"
               f"{escape_text(os.path.basename(str(report['model_tokens']['tokenizer']['path'])))}</div>"
               if report.get("model_tokens") else "")
            + f"<div>wordpunct tokens<b>{tokens['selected']:,}</b>of {tokens['raw']:,}</div>"
            f"<div>KL reduction<b>{kl['selected']:.3f}</b>random {kl['random']:.3f}, top-k {kl['top_k']:.3f}</div>"
            f"<div>seed<b>{report['seed']}</b>{escape_text(str(report.get('estimator', '')))}</div></div>"]
    body += [f'<p class="warning">{escape_text(w)}</p>' for w in report.get("warnings", [])]
    body += ["<h2>KL reduction (higher is closer to the target)</h2>",
             _table(["selection", "KL reduction"], [(name, kl[name]) for name in ("selected", "random", "top_k")])]
    for target, values in kl.get("per_target", {}).items():
        body.append(_table([f"target {target}", "KL reduction"], [(n, values[n]) for n in ("selected", "random",
                                                                                           "top_k")]))
    if "labels" in report:
        shares = report["labels"]["shares"]
        body += [f"<h2>Share of each {escape_text(report['labels']['column'])}</h2>",
                 _table(["label", "raw", "selected", "random"],
                        [(label, shares["raw"][label], shares["selected"].get(label, 0.0),
                          shares["random"].get(label, 0.0)) for label in shares["raw"]])]
    body += [f'<figure><img alt="{escape_text(name)}" src="data:image/png;base64,'
             f'{base64.b64encode(data).decode("ascii")}"></figure>' for name, data in figures.items()]
    for side, title in (("toward", "pull documents toward the target"), ("away", "pull documents away from it")):
        rows = report.get("ngrams", {}).get(side)
        if rows:
            body += [f"<h2>N-grams that {title}</h2>",
                     _table(["n-grams (most frequent in the bucket first)", "bucket", "log ratio"],
                            [(_codes(row["ngrams"]), str(row["bucket"]), row["log_ratio"]) for row in rows])]
    body.append(_examples(report))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>DSIR selection report</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def framed(page: str, height: int = 900) -> str:
    """The page inside an iframe (its styles and policy apply inside it, not to the notebook around it)."""
    return (f'<iframe sandbox="" srcdoc="{html.escape(page, quote=True)}" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ddd"></iframe>')


def examples_markdown(report: dict[str, Any]) -> str:
    """The examples for report.md: each document's facts, its n-grams, and its text in a fenced block
    (a fence longer than any run of backticks in it, so nothing in the text ends it early)."""
    examples = report.get("examples") or []
    if not examples:
        return ""
    lines = ["", "## Example documents", ""]
    for group, title in GROUPS.items():
        mine = [e for e in examples if e["group"] == group]
        if mine:
            lines += [f"### {title[0].upper() + title[1:]}", ""]
        for e in mine:
            target = f", target {report['targets'][e['target']]}" if e["target"] is not None and \
                len(report.get("targets") or []) > 1 else ""
            label = f", label {e['label']}" if e.get("label") is not None else ""
            lines.append(f"**{_inline(str(e['id']))}**{label}{target}: {e['num_tokens']:,} tokens, log weight "
                         f"{e['log_weight']:.3f}" + (f", key {e['key']:.3f}" if e.get("key") is not None else ""))
            for side in ("toward", "away"):
                if e.get(side):
                    lines.append(f"- pulling {side}: " + ", ".join(f"{_inline(g['ngram'])} {g['total']:+.2f}"
                                                                  for g in e[side]))
            fence = "`" * max(3, _longer_than_backticks(e["text"]))
            shown = _CONTROL.sub(lambda m: "\ufffd", e["text"])
            lines += ["", fence + "text", shown + (" …" if e.get("truncated") else ""), fence, ""]
    return "\n".join(lines)


def _longer_than_backticks(text: str) -> int:
    """One more than the longest run of backticks in ``text``: a fence or span of that many is not ended
    by anything inside."""
    return 1 + max((len(run) for run in re.findall(r"`+", text)), default=0)


def _inline(text: str) -> str:
    """Text as a Markdown code span, whatever backticks it holds."""
    ticks = "`" * _longer_than_backticks(text)
    return f"{ticks} {text} {ticks}" if text.startswith("`") or text.endswith("`") else f"{ticks}{text}{ticks}"
