"""Self-contained HTML pages: MLflow shows an HTML artifact from a blob URL in a sandboxed iframe, where
relative links resolve nowhere, so every clip and figure is embedded as a data: URI."""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

STYLE = """
body { font-family: sans-serif; margin: 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
img { max-width: 100%; }
audio { width: 220px; }
"""


def data_uri(path: Path) -> str:
    """The file as a data: URI (wav, png ...)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def write_page(path: Path, title: str, body: str) -> None:
    """An HTML page titled `title` around `body` (HTML; escape what it quotes)."""
    Path(path).write_text(
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
