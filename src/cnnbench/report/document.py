"""A small document model rendered twice: as Markdown and as one self-contained HTML file.

The report is built once as a list of blocks (headings, paragraphs, lists, tables,
figures); :meth:`Document.markdown` links the figure files, :meth:`Document.html` embeds
them as base64 PNG so the HTML file can be mailed or opened anywhere on its own.

The HTML page is laid out for a window of about 1,280 px: a table wider than the page
scrolls sideways in its own box (the page itself never does), short cells (numbers,
``3.5 min``, most headers) stay on one line, and figures are shown at a fixed scale of
their pixel size (:data:`FIGURE_DISPLAY_SCALE`), at most the page's width.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

# Figures are saved at figures.DPI (150) and shown at 135 px per inch: sharp on a HiDPI
# screen, their text about the size of the page's.
FIGURE_DISPLAY_SCALE = 0.9

# Cells whose text is at most this long never wrap (numbers, "3.5 min", "92.00 ± 2.00",
# run names); longer text (notes, error lines) wraps within a column of readable width.
NOWRAP_CHARS = 32

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.6em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left; vertical-align: top;
         white-space: nowrap; }
th.wrap, td.wrap { white-space: normal; min-width: 16em; max-width: 36em; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 0.2em; }
blockquote { border-left: 4px solid #ddd; margin: 0.5em 0; padding: 0.2em 1em; color: #444; }
figure { margin: 0.8em 0 1.6em; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def quote(self, text: str) -> None:
        self.blocks.append(("quote", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is not None:
            self.blocks.append(("figure", Path(path), caption))

    @property
    def figures(self) -> list[Path]:
        return [b[1] for b in self.blocks if b[0] == "figure"]

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out += [f"{'#' * block[1]} {block[2]}", ""]
            elif kind == "paragraph":
                out += [block[1], ""]
            elif kind == "quote":
                out += ["> " + line if line else ">" for line in block[1].splitlines()] + [""]
            elif kind == "bullets":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                header, rows = block[1], block[2]
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "figure":
                rel = block[1].relative_to(base).as_posix()
                out += [f"![{block[2]}]({rel})", "", f"*{block[2]}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
            elif kind == "paragraph":
                out.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "quote":
                out.append(f"<blockquote>{_inline(block[1]).replace(chr(10), '<br>')}"
                           "</blockquote>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(_cell("th", h) for h in block[1])
                body = "".join("<tr>" + "".join(_cell("td", c) for c in row) + "</tr>"
                               for row in block[2])
                out.append(f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
                           f"<tbody>{body}</tbody></table></div>")
            elif kind == "figure":
                raw = block[1].read_bytes()
                data = base64.b64encode(raw).decode("ascii")
                caption = html.escape(block[2])
                size = _png_size(raw)
                width = (f' width="{round(size[0] * FIGURE_DISPLAY_SCALE)}"'
                         f' height="{round(size[1] * FIGURE_DISPLAY_SCALE)}"' if size else "")
                out.append(f'<figure><img alt="{caption}"{width} '
                           f'src="data:image/png;base64,{data}">'
                           f"<figcaption>{caption}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _cell(tag: str, text) -> str:
    wrap = ' class="wrap"' if len(str(text)) > NOWRAP_CHARS else ""
    return f"<{tag}{wrap}>{_inline(text)}</{tag}>"


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height in pixels of an image file's bytes (PIL reads only the header), or
    ``None`` if PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError):
        return None


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    """HTML-escape, then the two Markdown spans the report uses: `code` and **bold**."""
    text = html.escape(str(text))
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
