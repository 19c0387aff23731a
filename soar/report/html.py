"""Small HTML building blocks for a self-contained, offline page (inline CSS, images by relative path)."""
from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }
th { background: #f6f8fa; position: sticky; top: 0; }
td:first-child, th:first-child, table.text td, table.text th { text-align: left; }
tr:hover td { background: #f6f8fa; }
code, pre { font-family: ui-monospace, monospace; font-size: 0.85em; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; max-width: 640px; }
figure { margin: 1em 0 2em; } figcaption { color: #57606a; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 1.5em; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em; }
.note { color: #9a6700; }
.muted { color: #57606a; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, percent: bool = True) -> str:
    """A cell: '-' for unknown, yes/no for booleans, fractions as percentages, other numbers as they are."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if percent else f"{value:.4g}"
    return esc(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells must already be HTML (use esc / fmt); cls="text" left-aligns every column."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image(src: str, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{quote(src)}" alt="{esc(alt)}"{size}>'


def figure(src: str, caption: str) -> str:
    return f"<figure>{image(src, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{body}\n</body></html>\n")
