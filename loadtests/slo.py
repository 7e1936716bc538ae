"""SLO gates for a load run: the client-side figures against the limits of the workload config."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.workload import SLO


@dataclass(frozen=True)
class RunFigures:
    requests: int
    failures: int
    p95_ttft_s: float | None  # None when no request produced a token
    p99_e2e_s: float | None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class SLOResult:
    name: str
    limit: float
    measured: float | None
    passed: bool

    def describe(self) -> str:
        measured = "no data" if self.measured is None else f"{self.measured:.4g}"
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {measured} (limit {self.limit:g})"


def check_slos(figures: RunFigures, slo: SLO) -> list[SLOResult]:
    """One result per SLO. A run with no requests, or with no latency data, fails its gates:
    an empty run proves nothing."""
    return [
        SLOResult("error_rate", slo.max_error_rate, figures.error_rate if figures.requests else None,
                  figures.requests > 0 and figures.error_rate <= slo.max_error_rate),
        SLOResult("p95_ttft_s", slo.p95_ttft_s, figures.p95_ttft_s,
                  figures.p95_ttft_s is not None and figures.p95_ttft_s <= slo.p95_ttft_s),
        SLOResult("p99_e2e_s", slo.p99_e2e_s, figures.p99_e2e_s,
                  figures.p99_e2e_s is not None and figures.p99_e2e_s <= slo.p99_e2e_s),
    ]
