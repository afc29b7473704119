"""Separate what the customer wrote from the mail they quoted.

Mail clients quote in a few recognisable ways; the first marker found ends the new text:

* an attribution line ("On Mon, 2 Mar 2026 at 10:00, Ann <ann@example.com> wrote:"), which Gmail
  and Apple Mail write and which clients wrap over two or three lines; also its French, German,
  Spanish, Italian, Portuguese and Dutch forms;
* Outlook's "-----Original Message-----" line, or its header block ("From: ... / Sent: ... /
  To: ... / Subject: ..."), often after a line of underscores;
* a run of ``>`` lines (with nothing but ``>`` lines and blank lines after it, or a second run
  later: top-posted replies keep their quote at the end).

The full body is always kept beside the new text, so a wrong cut loses nothing.
"""

from __future__ import annotations

import re

__all__ = ["split_quoted"]

_ATTRIBUTION_START = re.compile(r"^\s*(on|le|am|el|il|em|op|den|w dniu)\b.{0,300}$", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(
    # "... wrote:" in most languages; German and Scandinavian put the name after the verb.
    r"(wrote|a écrit|escribió|ha scritto|escreveu|schreef)\s*:\s*$|(schrieb|skrev|napisał)\b.{0,200}:\s*$",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"forwarded message)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FIELD = re.compile(r"^\s*\*?(from|de|von|van|da)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(sent|date|to|subject|envoyé|gesendet|enviado|inviato|verzonden|cc)\s*:", re.IGNORECASE
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")


def _attribution_at(lines: list[str], i: int) -> bool:
    """An attribution starting at line ``i``, wrapped over up to three lines."""
    if not _ATTRIBUTION_START.match(lines[i]):
        return False
    joined = ""
    for line in lines[i : i + 3]:
        joined = f"{joined} {line.strip()}".strip()
        if _ATTRIBUTION_END.search(joined):
            return True
    return False


def _outlook_block_at(lines: list[str], i: int) -> bool:
    if not _OUTLOOK_FIELD.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 5] if line.strip()]
    return sum(1 for line in following if _OUTLOOK_NEXT.match(line)) >= 2


def _quote_run_at(lines: list[str], i: int) -> bool:
    """A ``>`` line that starts the quoted tail: what follows is only quotes, blanks or a signature."""
    if not lines[i].lstrip().startswith(">"):
        return False
    rest = [line for line in lines[i:] if line.strip()]
    quoted = sum(1 for line in rest if line.lstrip().startswith(">"))
    return quoted >= len(rest) * 0.6


def split_quoted(text: str) -> tuple[str, str]:
    """(new text, quoted text). The quoted part is empty when no marker was found.

    When everything would count as quoted (a forward with no comment), the whole text is new:
    an agent must never see an empty message.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    for i in range(len(lines)):
        if (
            _ORIGINAL.match(lines[i])
            or _attribution_at(lines, i)
            or _outlook_block_at(lines, i)
            or _quote_run_at(lines, i)
        ):
            cut = i
            if cut > 0 and _UNDERSCORES.match(lines[cut - 1]):
                cut -= 1
            new = "\n".join(lines[:cut]).strip()
            if not new:
                return text.strip(), ""
            return new, "\n".join(lines[cut:]).strip()
    return text.strip(), ""
