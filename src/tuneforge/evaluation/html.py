"""HTML building blocks shared by the run report and the several-run comparison: escaping, numbers with
intervals, tables that never show an empty column, sections, inlined images and the offline stylesheet
(system fonts only: nothing is fetched, the page opens from a file anywhere)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

LONG_TEXT = 320  # characters of a text cell shown (the rest is in its tooltip)

CSS = """
:root{--ink:#1d2733;--muted:#5b6b7c;--line:#d9e0e7;--soft:#f4f7fa;--good:#1a7f37;--bad:#c62828;--warn:#9a6700;
--accent:#1f5fa8}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 10px;padding-bottom:4px;
border-bottom:2px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
.meta{color:var(--muted);margin:0 0 14px}.meta b{color:var(--ink);font-weight:600}
nav{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:13px;margin:10px 0 4px;padding:8px 12px;
background:var(--soft);border-radius:6px}nav a{color:var(--accent);text-decoration:none}
.verdict{border-left:6px solid var(--muted);background:var(--soft);padding:12px 16px;border-radius:4px;
font-size:15.5px}.verdict.good{border-color:var(--good)}.verdict.bad{border-color:var(--bad)}
.verdict.mixed{border-color:var(--warn)}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13.5px;max-width:100%}
th,td{border-bottom:1px solid var(--line);padding:5px 10px;text-align:right;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.t,th.t,th.text{text-align:left}tr.hl td{font-weight:600;background:#eef5ff}
td .ci{display:block;color:var(--muted);font-size:11.5px;font-weight:400;white-space:nowrap}
td.text{max-width:520px;text-align:left;white-space:normal;word-break:break-word}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:13px;font-weight:600;color:#fff;
background:var(--muted)}.badge.good{background:var(--good)}.badge.bad{background:var(--bad)}
.badge.mixed,.badge.warn{background:var(--warn)}
.flag{color:var(--bad);font-weight:600}.better{color:var(--good)}.worse{color:var(--bad)}
.muted{color:var(--muted)}.small{font-size:12.5px}
img{max-width:100%;border:1px solid var(--line);border-radius:4px;margin:4px 0}
ul{margin:4px 0 8px;padding-left:22px}li{margin:2px 0}
details{margin:6px 0}summary{cursor:pointer;color:var(--accent)}
code{background:var(--soft);padding:0 4px;border-radius:3px;font-size:13px}
.placeholder{color:var(--muted);font-style:italic}
@media print{nav{display:none}body{max-width:none}}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 3) -> str:
    """A number as the report shows it ('' for anything else)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if value != value:
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits if abs(value) < 10 else min(digits, 2)}f}"


def with_ci(value: Any, ci: Sequence[float] | None) -> str:
    """'0.977' with its interval underneath, small: '0.957–0.990'."""
    text = num(value)
    if not text:
        return ""
    return text + (f'<span class="ci">{num(float(ci[0]))}–{num(float(ci[1]))}</span>' if ci else "")


def text_cell(value: Any) -> str:
    s = "" if value is None else (", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if len(s) <= LONG_TEXT:
        return esc(s)
    return f'<span title="{esc(s)}">{esc(s[:LONG_TEXT - 1])}…</span>'


def table(headers: list[str], rows: list[list[str]], text_cols: Sequence[int] = (0,),
          highlight: Sequence[int] = (), wide_text: Sequence[int] = ()) -> str:
    """An HTML table of already-rendered cells; a column whose cells are all empty is left out."""
    keep = [j for j in range(len(headers)) if any(j < len(r) and r[j] != "" for r in rows)]
    if not rows or not keep:
        return ""

    def cls(j: int) -> str:
        return ' class="text"' if j in wide_text else ' class="t"' if j in text_cols else ""

    head = "".join(f"<th{cls(j) if j in text_cols or j in wide_text else ''}>{headers[j]}</th>" for j in keep)
    body = "".join(f"<tr{' class=hl' if i in highlight else ''}>"
                   + "".join(f"<td{cls(j)}>{r[j] if j < len(r) else ''}</td>" for j in keep) + "</tr>"
                   for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: list[tuple[str, str]]) -> str:
    """A two-column table of (label, rendered value) without a header; empty values left out."""
    rows = "".join(f'<tr><td class="t muted">{esc(k)}</td><td class="t">{v}</td></tr>' for k, v in pairs if v != "")
    return f"<table><tbody>{rows}</tbody></table>" if rows else ""


def items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>" if lines else ""


def image(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def section(sid: str, title: str, body: str) -> tuple[str, str, str]:
    """(id, title, html) of a section; an empty body leaves the section out of the page."""
    return sid, title, f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>' if body else ""


def page(title: str, header: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: header, a table of contents of the sections present, the sections."""
    present = [(sid, t, h) for sid, t, h in sections if h]
    nav = "<nav>" + "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in present) + "</nav>"
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"{header}{nav}{''.join(h for _, _, h in present)}"
            "<p class='muted small' style='margin-top:40px'>Written by tuneforge. Self-contained: opens offline, "
            "images inlined.</p></body></html>")


def verdict_class(text: str) -> str:
    """'better' / 'worse' / '' for a paired-test verdict (colours it)."""
    return "better" if text.startswith("better") else "worse" if text.startswith("worse") else ""
