"""Text cleaning: cheap, lossless-where-possible repairs that every source goes through.

Rules, in order:
1. C1 control characters (U+0080-U+009F) are read as the Windows-1252 characters they almost
   always stand for (``\\x92`` -> ``’``, ``\\x96`` -> ``–``), as in the SMS corpus.
2. HTML entities (``&amp;``, ``&lt;``) are unescaped.
3. Unicode NFKC normalisation (non-breaking spaces, full-width forms, ligatures, ``…``).
4. Zero-width characters, BOMs and soft hyphens are removed.
5. The news corpus's damage ``"?`` (a curly quote, apostrophe or dash plus the following space,
   lost in a bad re-encoding) is repaired: after a space or hyphen it was a dash
   (`` "?and`` -> `` — and``); after punctuation a closing quote (``,"?he`` -> ``," he``); between
   letters a closing quote when a ``"`` is open, else an apostrophe (``teachers"?unions`` ->
   ``teachers' unions``); anywhere else before a letter a closing quote.
   The sequence ``"?`` followed by a letter does not occur in clean text. A hyphen glued to
   sentence-final punctuation (``said.- But``, the same damage to a dash) is dropped.
6. Whitespace is collapsed to single spaces and stripped (line breaks can be kept for the
   sentence splitter).
Letters replaced by ``?`` or U+FFFD upstream (``Bus ?ireann``) cannot be recovered and are left.
"""

import html
import re
import unicodedata

_C1 = {
    code: bytes([code]).decode("cp1252", errors="ignore")
    for code in range(0x80, 0xA0)
}
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_TRANSLATE = {**_C1, **_INVISIBLE}

_DASH_DAMAGE = re.compile(r'[\s-]"\?\s*')
_QUOTE_DAMAGE = re.compile(r'(?<=[.,;:!?\'])"\?\s*')
_INWORD_DAMAGE = re.compile(r'(?<=\w)"\?(?=\w)')
_OTHER_DAMAGE = re.compile(r'"\?(?=\w)')
_GLUED_DASH = re.compile(r'(?<=[.!?])(["\'”’]?)-+(?= )')

_SPACES_IN_LINE = re.compile(r"[^\S\n]+")
_LINE_BREAKS = re.compile(r" ?\n[\s]*")


def clean_text(text: str, keep_newlines: bool = False) -> str:
    """Normalise and repair one text; `keep_newlines` keeps line and paragraph breaks
    (as ``\\n`` / ``\\n\\n``) so that `split_sentences` can use them."""
    if not text.isascii():  # the table and NFKC change only non-ASCII characters
        text = text.translate(_TRANSLATE)
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if '"?' in text:
        text = _repair_quote_damage(text)
    if "-" in text:
        text = _GLUED_DASH.sub(r"\1", text)
    if not keep_newlines or ("\n" not in text and "\r" not in text):
        return " ".join(text.split())  # str.split and re's \s agree on what whitespace is
    text = _SPACES_IN_LINE.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _LINE_BREAKS.sub(_line_break, text).strip()


def _line_break(match: re.Match) -> str:
    return "\n\n" if match.group().count("\n") > 1 else "\n"


def _repair_quote_damage(text: str) -> str:
    text = _DASH_DAMAGE.sub(" — ", text)
    text = _QUOTE_DAMAGE.sub('" ', text)
    text = _INWORD_DAMAGE.sub(_inword_quote, text)
    return _OTHER_DAMAGE.sub('" ', text)


def _inword_quote(match: re.Match) -> str:
    """A closing quote if the last ``"`` before it opened a quotation, else an apostrophe."""
    text, start = match.string, match.start()
    last = text.rfind('"', 0, start)
    opened = last >= 0 and (last == 0 or text[last - 1] in " ([\n") and text[last + 1 : last + 2] != "?"
    return '" ' if opened else "' "
