"""Rule-based English sentence splitting: fast (regex, no model), deterministic, dependency-free.

Rules:
- A blank line always ends a sentence. A single line break ends one too, unless the next line
  starts with a lowercase letter (then it is a hard-wrapped line and is joined with a space).
- Inside a line, a boundary is ``.``, ``!``, ``?`` or ``…`` (repeated or not), optionally followed by
  closing quotes or brackets (``."``, ``?"``, ``!'``, ``.)``), then whitespace, then an uppercase
  letter or digit (optionally after an opening quote or bracket). Decimals (``3.5``) never match.
- A single ``.`` is not a boundary after a title or month abbreviation (``Mr.``, ``Dr.``, ``Sen.``,
  ``Jan.``, ``St.``), after ``e.g.``/``i.e.``/``vs.``, or after ``No.``/``Vol.``/``Fig.`` before a digit.
  After an initial or a dotted acronym (``J.``, ``U.S.``, ``p.m.``) or ``Inc.``/``Jr.``/``etc.`` it is
  a boundary only if the next word is a common sentence opener (``The``, ``He``, ``But``, ...):
  ``U.S. President`` stays whole, ``... the U.S. The`` splits.
- A leading dateline is dropped from each paragraph: ``MOSCOW, March 19. /TASS/.``,
  ``WASHINGTON (Reuters) -``, ``Washington (CNN)``, ``WASHINGTON —``, ``Geneva, Switzerland -``.
- Fragments are dropped: a sentence needs at least 3 words made of letters and at least one
  all-lowercase word, which removes leftovers such as ``View Comments``, ``U.S.`` or
  ``MOSCOW, March 19.`` (and, by design, all-caps shouting and non-Latin scripts).
"""

import re

_TITLES = (
    "mr mrs ms messrs dr drs prof rev hon gen col lt capt cmdr maj sgt adm gov govs sen sens rep reps "
    "pres supt insp st mt ft"
)
_MONTHS = "jan feb mar apr jun jul aug sep sept oct nov dec"
_NEVER_END = frozenset(f"{_TITLES} {_MONTHS} e.g i.e vs viz cf approx".split())
_BEFORE_NUMBER = frozenset("no nos vol vols fig figs art pp ch sec".split())
_AMBIGUOUS = frozenset("inc corp co ltd jr sr etc al".split())
_OPENERS = frozenset(
    """the a an this that these those it its he she they we i you his her their our my your
    but and so yet or nor if when while after before as since although though because once until
    in on at for of by with without from to into under over during despite according
    there here what why how who where which some many most all both each one two no not none
    meanwhile however also still then now later earlier instead indeed yes""".split()
)

_BOUNDARY = re.compile(r"([.!?…]+)([\"'”’)\]]*)\s+(?=[\"'“‘(\[]*[A-Z0-9])")
_NEXT_WORD = re.compile(r"[\"'“‘(\[]*([A-Za-z]+)")
_INITIALS = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")
_PARAGRAPHS = re.compile(r"\n[^\S\n]*\n\s*")
_LINE_ENDS = re.compile(r"\n(?![^\S\n]*[a-z])")
_WORDS = re.compile(r"[^\W\d_]+")

_CAPS_PLACE = r"[A-Z][A-Z.'\-]+(?: [A-Z][A-Z.'\-]+)*"
_PLACE = r"[A-Z][\w.'\-]*(?: [A-Z][\w.'\-]*){0,3}"
_DATELINE = re.compile(
    "^(?:"
    rf"{_CAPS_PLACE}(?: /[^/\n]{{1,40}}/)?,[^/\n]{{0,40}}?/[A-Z]+/\.?"  # MOSCOW, March 19. /TASS/.
    rf"|(?:{_PLACE} )?\([A-Z][\w.]*\)\s*[-–—]+"  # WASHINGTON (Reuters) -
    rf"|(?:{_PLACE} )?\([A-Z][\w.]*\)(?=[A-Z])"  # Washington (CNN)Vice ...
    rf"|{_CAPS_PLACE}(?:, {_PLACE})? [-–—]+"  # WASHINGTON —
    rf"|{_PLACE}, {_PLACE} [-–—]+"  # Geneva, Switzerland -
    r")\s*"
)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace-collapsed, datelines and fragments dropped (rules above)."""
    sentences = []
    for paragraph in _PARAGRAPHS.split(text):
        for line in _LINE_ENDS.split(paragraph):
            line = _DATELINE.sub("", " ".join(line.split()), count=1)
            sentences.extend(s for s in _split_line(line) if is_sentence(s))
    return sentences


def is_sentence(text: str) -> bool:
    """True unless `text` is a fragment: fewer than 3 letter words, or none of them lowercase."""
    count, lowercase = 0, False
    for word in _WORDS.finditer(text):  # stops as soon as the answer is known
        count += 1
        lowercase = lowercase or word.group().islower()
        if count >= 3 and lowercase:
            return True
    return False


def _split_line(line: str) -> list[str]:
    pieces, start = [], 0
    for match in _BOUNDARY.finditer(line):
        if _is_boundary(match):
            pieces.append(line[start : match.end()].rstrip())
            start = match.end()
    pieces.append(line[start:])
    return pieces


def _is_boundary(match: re.Match) -> bool:
    """Decide whether a candidate ``.`` is a sentence end (``!``, ``?``, ``..`` and ``."`` always are)."""
    if match.group(1) != "." or match.group(2):
        return True
    line, dot = match.string, match.start()
    token = line[line.rfind(" ", 0, dot) + 1 : dot].lstrip("\"'“‘([")
    lowered = token.lower()
    if lowered in _NEVER_END:
        return False
    if lowered in _BEFORE_NUMBER and line[match.end()].isdigit():
        return False
    if lowered in _AMBIGUOUS or _INITIALS.fullmatch(token):
        following = _NEXT_WORD.match(line, match.end())
        return following is not None and following.group(1).lower() in _OPENERS
    return True
