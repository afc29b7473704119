"""HTML mail: a plain-text rendering for agents, and a sanitised copy the app may display.

Both are built on the standard library's ``html.parser``: mail HTML is often malformed, and the
parser never raises on it. Sanitising keeps an allow-list of layout tags and safe attributes, drops
scripts, styles, forms and embedded objects with their content, and keeps only ``http(s)``,
``mailto`` and ``cid`` links, so nothing in it runs or phones home through a ``javascript:`` URL.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "sanitize_html"]

_DROP_WITH_CONTENT = {"script", "style", "head", "title", "iframe", "object", "embed", "noscript", "template"}
_BLOCK = {
    "p",
    "div",
    "br",
    "tr",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "hr",
    "section",
    "article",
    "header",
    "footer",
}
_ALLOWED = {
    "a",
    "b",
    "blockquote",
    "br",
    "code",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
}
_VOID = {"br", "hr", "img"}
_ATTRS = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}, "td": {"colspan", "rowspan"}}
_SAFE_URL = re.compile(r"^(https?:|mailto:|cid:|#)", re.IGNORECASE)


class _TextRenderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._pre = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip += 1
            return
        if tag == "pre":
            self._pre += 1
        if tag == "blockquote":
            self._quote += 1
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip = max(0, self._skip - 1)
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag == "blockquote":
            self._quote = max(0, self._quote - 1)
        if tag in _BLOCK and tag != "li":  # the next item's "- " already starts a line
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
        if self._quote:
            # Quoted replies in HTML are blockquotes: render them as "> " lines so the quote
            # splitter recognises them as it does in plain-text mail.
            data = data.replace("\n", "\n> ")
            if not self.out or self.out[-1].endswith("\n"):
                data = "> " * self._quote + data.lstrip()
        self.out.append(data)

    def text(self) -> str:
        raw = "".join(self.out).replace("\xa0", " ")
        text = "\n".join(line.strip() for line in raw.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML body (paragraphs kept, scripts and styles dropped)."""
    renderer = _TextRenderer()
    renderer.feed(markup)
    renderer.close()
    return renderer.text()


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip += 1
            return
        if self._skip or tag not in _ALLOWED:
            return
        kept = []
        for name, value in attrs:
            if name not in _ATTRS.get(tag, set()) or value is None:
                continue
            if name in {"href", "src"} and not _SAFE_URL.match(value.strip()):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"')
        if tag == "a":
            kept.append(' rel="noopener noreferrer nofollow"')
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT:
            self._skip = max(0, self._skip - 1)
            return
        if not self._skip and tag in _ALLOWED and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(html.escape(data, quote=False))


def sanitize_html(markup: str) -> str:
    """The HTML with only allow-listed tags and attributes; safe to show in the app's web view."""
    sanitizer = _Sanitizer()
    sanitizer.feed(markup)
    sanitizer.close()
    return "".join(sanitizer.out).strip()
