"""The one rule that recognises the shop's no-answer message ("I need to check that") in a reply.

Two decisions use it: a model reply that is the no-answer message (the facts did not answer the
question) becomes a `no_answer` hand-off (shop/assistant.py), and assistant turns that were that
message count towards `repeated_failure` (shop/handoff.py). Models add or drop a word or a mark,
so a reply is the message when it contains it or is at least `SIMILARITY` alike.

Cheap first, because it runs on every model answer: the containment test, then difflib's upper
bounds (lengths alone, then character counts), and the full comparison only for a reply of about
the message's length. A 256-word answer costs microseconds, not difflib's milliseconds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from shop.text import normalize

# A model reply this similar to the shop's no-answer message is that message.
SIMILARITY = 0.85


class NoAnswerMessages:
    """A shop's no-answer messages (one per language) and the rule that finds them in a reply."""

    def __init__(self, messages: Iterable[str]):
        self._expected = tuple(normalize(m).strip() for m in messages)

    def said_in(self, reply: str) -> bool:
        """Whether `reply` is one of the no-answer messages (see the module doc)."""
        said = normalize(reply).strip()
        for expected in self._expected:
            if expected in said:
                return True
            # ratio() = 2 * matches / (len(a) + len(b)) can reach SIMILARITY only when the
            # lengths allow it; skip the matcher when they do not.
            total = len(said) + len(expected)
            if total == 0 or 2 * min(len(said), len(expected)) < SIMILARITY * total:
                continue
            matcher = difflib.SequenceMatcher(None, said, expected)
            if matcher.quick_ratio() >= SIMILARITY and matcher.ratio() >= SIMILARITY:
                return True
        return False
