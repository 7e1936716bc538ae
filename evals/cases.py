"""The labelled evaluation sets in evals/ and their dev/test split, enforced where cases load.

A labelled set (e.g. evals/shop-messages.yaml: a `clock` and a list of `cases`, each with an
`id`) is split by a hash of the case id, so a case keeps its half whatever else is added:
- `dev`: may be read case by case, for error analysis (`--show-misses`) and for tuning
  (scripts/tune_retrieval.py);
- `test`: only ever scored in aggregate (scripts/evaluate_shops.py --split test), so the figures
  reported on it are not figures of a set the thresholds were fitted to.

The rule lives here rather than in each script's argument parsing: a caller states its purpose,
and `LabelledSet.select` refuses a purpose that reads individual cases on any split but `dev`.
`CaseSelection` re-checks at construction, so a selection that claims a purpose also holds only
cases of the half that purpose allows.
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

Case = dict[str, Any]
SPLITS = ("dev", "test")
SELECTABLE = ("all", *SPLITS)


def split_of(case_id: str) -> str:
    """The half a case belongs to: the first byte of the SHA-1 of its id, even = test. A
    cryptographic hash, not `hash()`, so the split is the same in every process and release."""
    return "test" if hashlib.sha1(case_id.encode()).digest()[0] % 2 == 0 else "dev"


class Purpose(enum.Enum):
    """Why cases are loaded. Only SCORE (aggregate figures) may read the test half."""

    SCORE = "score"  # aggregate figures over the selection, nothing per case
    SHOW_MISSES = "show-misses"  # error analysis: individual cases and what went wrong
    TUNE = "tune"  # choosing thresholds or settings on the cases

    @property
    def reads_individual_cases(self) -> bool:
        return self is not Purpose.SCORE


class SplitAccessRefused(PermissionError):
    """A purpose that reads individual cases asked for cases outside the dev half."""


@dataclass(frozen=True)
class CaseSelection:
    """The cases of one split of a labelled set, loaded for one purpose."""

    split: str
    purpose: Purpose
    cases: tuple[Case, ...]

    def __post_init__(self) -> None:
        if self.split not in SELECTABLE:
            raise ValueError(f"unknown split {self.split!r}: one of {', '.join(SELECTABLE)}")
        if self.purpose.reads_individual_cases and self.split != "dev":
            raise SplitAccessRefused(
                f"{self.purpose.value} reads individual cases, which only the dev split allows "
                f"(asked for {self.split!r}): the test half is scored, never inspected")
        if self.split != "all":
            stray = [c["id"] for c in self.cases if split_of(c["id"]) != self.split]
            if stray:
                raise SplitAccessRefused(f"cases outside the {self.split} split: {stray[:5]}")

    @property
    def individual_access(self) -> bool:
        """True when the cases may be looked at one by one (misses listed, settings tuned)."""
        return self.purpose.reads_individual_cases

    def where(self, keep: Callable[[Case], bool]) -> CaseSelection:
        """The cases for which `keep` is true, with the same split and purpose."""
        return CaseSelection(self.split, self.purpose, tuple(c for c in self.cases if keep(c)))

    def __len__(self) -> int:
        return len(self.cases)


@dataclass(frozen=True)
class LabelledSet:
    """One labelled set file: its clock (the time its labels assume) and its cases."""

    path: Path
    clock: datetime
    _cases: tuple[Case, ...]

    @classmethod
    def load(cls, path: Path | str) -> LabelledSet:
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        cases = tuple(data["cases"])
        duplicates = sorted(i for i, n in Counter(c["id"] for c in cases).items() if n > 1)
        if duplicates:  # two cases with one id would share a half by construction, not by hash
            raise ValueError(f"{path}: duplicate case ids {duplicates}")
        return cls(path, datetime.fromisoformat(data["clock"]), cases)

    def select(self, split: str, purpose: Purpose) -> CaseSelection:
        """The cases of `split` ("dev", "test" or "all") for `purpose`. Raises
        SplitAccessRefused when `purpose` reads individual cases and `split` is not "dev"."""
        if split not in SELECTABLE:
            raise ValueError(f"unknown split {split!r}: one of {', '.join(SELECTABLE)}")
        if purpose.reads_individual_cases and split != "dev":
            # Refused before any case is read, not only by the selection's own check.
            raise SplitAccessRefused(
                f"{purpose.value} reads individual cases, which only the dev split allows "
                f"(asked for {split!r}): the test half of {self.path.name} is scored, never "
                "inspected")
        return CaseSelection(split, purpose, tuple(
            c for c in self._cases if split == "all" or split_of(c["id"]) == split))
