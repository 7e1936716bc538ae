"""What an answer may say: the claims, numbers, text and words of the facts the model was given,
the conversation and the shop's persona, in the forms the answer guard compares.

A knowledge-base entry's text is read once (cached by its text, so a reload that changes an entry
reads the new text and an unchanged entry costs nothing); a request unions the sheets of the
handful of texts it was given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from shop.guard.claims import Claim, digits_for_words, extract_claims
from shop.text import normalize

# Marks after which a sentence (or clause: ；) is over whatever follows.
HARD_ENDS = "。！？!?;；\n"
# After a sentence end; an English full stop only before a space (not "3.5").
_SPLIT = re.compile(rf"(?<=[{HARD_ENDS}])|(?<=\.)(?=\s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

Words = Callable[[str], Iterable[str]]


def split_sentences(text: str) -> list[str]:
    """`text` split after each sentence end, ends kept, nothing lost ("".join gives it back);
    the last part may be empty or unfinished."""
    return _SPLIT.split(text)


@dataclass(frozen=True)
class FactSheet:
    """The union of what some texts say, in comparable forms."""

    claims: frozenset[tuple[str, object]] = frozenset()  # (kind, value)
    numbers: frozenset[float] = frozenset()  # every number written, whatever its unit
    text: str = ""  # normalised, for codes and phrases
    words: frozenset[str] = frozenset()

    def supports(self, claim: Claim) -> bool:
        if claim.kind == "code":
            return any(value in self.text for value in claim.values)
        if any((claim.kind, value) in self.claims for value in claim.values):
            return True
        if claim.kind == "date":  # "12月" against "12月15日"
            return any((claim.kind, (month, 0)) in self.claims for month, _ in claim.values)
        # A count or a bare number may repeat a number the facts give without a unit ("库存 58").
        if claim.kind == "range":
            return any(kind in ("count", "number") and {low, high} <= self.numbers
                       for kind, low, high in claim.values)
        return claim.kind in ("count", "number") and bool(self.numbers & claim.values)

    def __or__(self, other: FactSheet) -> FactSheet:
        return FactSheet(self.claims | other.claims, self.numbers | other.numbers,
                         self.text + "\n" + other.text, self.words | other.words)


def sheet_of(texts: Iterable[str], words: Words) -> FactSheet:
    """The union of the sheets of `texts` (each cached)."""
    result = FactSheet()
    for text in texts:
        if text:
            result = result | _sheet(text, words)
    return result


@lru_cache(maxsize=4096)
def _sheet(text: str, words: Words) -> FactSheet:
    normalized = normalize(text)
    claims = extract_claims(normalized)
    values: set[tuple[str, object]] = set()
    for claim in claims:
        for value in claim.values:
            values.add((claim.kind, value))
            if claim.kind == "date":
                values.add(("date", (value[0], 0)))
            if claim.kind == "range":  # each end of a range alone: "up to 4 days"
                kind, low, high = value
                values.update(((kind, low), (kind, high)))
    numbers = frozenset(float(n) for n in _NUMBER.findall(digits_for_words(normalized)))
    return FactSheet(frozenset(values), numbers, normalized, frozenset(words(normalized)))
