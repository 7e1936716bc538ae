"""Soak: the sales workload at a steady load for a long time (default 30 minutes) against a running
stack on this machine, with each serving process's memory sampled from /proc and latency
percentiles per window. A leak shows as a slope; a slow degradation as windows that get worse.

    scripts/run-local.sh                      # in one terminal: the stack
    scripts/run-soak.sh --minutes 30          # installs Locust (the test set), then this

Processes are found by their role (the ingress replica, each model replica and its vLLM engine
core and worker, HAProxy or the Serve proxy, the Serve controller, Ray's raylet and GCS; the
table in loadtests/process_cpu.py). Memory is PSS (shared pages split between the processes that
map them) from /proc/<pid>/smaps_rollup. The slope is a least-squares fit over the samples after
the first window (start-up allocations, caches filling), in MiB per hour.

Output: one line per window while it runs, then the tables, and soak.json + soak.md in --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loadtests.process_cpu import snapshot
from loadtests.stats import percentile
from loadtests.workload import steady_workload

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pss_mib(pid: int) -> float | None:
    """Proportional set size of `pid` in MiB (RSS when smaps_rollup is unreadable); None if gone."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# Roles of processes that do not serve requests (the benchmark's own helpers).
NOT_SERVING = ("spawned helper processes", "plain uvicorn")


def serving_processes(exclude_pid: int | None) -> dict[int, str]:
    """pid -> role of every process with a known serving role on this machine."""
    return {pid: role for pid, (role, _) in snapshot(exclude_pid).seconds.items()
            if role not in NOT_SERVING}


@dataclass
class MemoryTrack:
    role: str
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)

    @property
    def label(self) -> str:
        return f"{self.role} (pid {self.pid})"

    def slope_mib_per_hour(self, after_s: float) -> float | None:
        points = [(t, m) for t, m in self.samples if t >= after_s]
        if len(points) < 3:
            return None
        ts, ms = zip(*points)
        slope, _ = statistics.linear_regression(ts, ms)
        return slope * 3600


class MemorySampler(threading.Thread):
    """Samples the PSS of every serving process every `period_s` until stopped. A process that
    appears later (a replica restarted or scaled up) gets its own track."""

    def __init__(self, period_s: float, exclude_pid: int | None = None):
        super().__init__(daemon=True)
        self.period_s = period_s
        self.exclude_pid = exclude_pid
        self.tracks: dict[int, MemoryTrack] = {}
        self.started = time.monotonic()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic() - self.started
            for pid, role in serving_processes(self.exclude_pid).items():
                mib = pss_mib(pid)
                if mib is not None:
                    self.tracks.setdefault(pid, MemoryTrack(role, pid)).samples.append((now, mib))
            self._stopping.wait(self.period_s)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


def windows(records: list[dict], start: float, window_s: float) -> list[dict]:
    """Requests, errors and TTFT/duration percentiles per window of `window_s` from `start`."""
    grouped: dict[int, list[dict]] = defaultdict(list)
    for record in records:
        grouped[int((record["t"] - start) // window_s)].append(record)
    rows = []
    for index in sorted(grouped):
        group = grouped[index]
        ok = [r for r in group if r["ok"]]
        ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
        e2e = [r["e2e_s"] for r in ok if r["e2e_s"] is not None]
        errors = Counter(r["error"] or f"HTTP {r['status']}" for r in group if not r["ok"])
        rows.append({
            "index": index,
            "window": f"{index * window_s / 60:g}-{(index + 1) * window_s / 60:g} min",
            "requests": len(group), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "ttft_p50_s": percentile(ttft, 0.5), "ttft_p95_s": percentile(ttft, 0.95),
            "ttft_p99_s": percentile(ttft, 0.99), "e2e_p50_s": percentile(e2e, 0.5),
            "e2e_p95_s": percentile(e2e, 0.95), "e2e_p99_s": percentile(e2e, 0.99),
        })
    return rows


def soak_workload(minutes: float, users: int) -> dict:
    """The sales workload's requests and mix at a steady `users` shoppers; it reports, it does
    not gate (the sales-event run has the SLO gates)."""
    return steady_workload(minutes * 60, users, drain_s=120, stage="soak")


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {unit}" if unit == "s" else f"{value:+.1f}"


def markdown(report: dict) -> str:
    lines = [f"# Soak: {report['minutes']:g} min, {report['users']} shoppers, "
             f"{report['requests']} requests, {report['errors']} errors", "",
             f"Stack: {report['host']}; memory sampled every {report['sample_s']:g} s; slope "
             f"fitted after the first {report['window_min']:g} min.", "",
             "| process | PSS first (MiB) | PSS last (MiB) | peak (MiB) | slope (MiB/h) |",
             "|---|---|---|---|---|"]
    for row in report["memory"]:
        lines.append(f"| {row['process']} | {row['first_mib']:.0f} | {row['last_mib']:.0f} | "
                     f"{row['peak_mib']:.0f} | {fmt(row['slope_mib_per_hour'], 'mib')} |")
    lines += ["", "| window | requests | errors | TTFT p50 / p95 / p99 | duration p50 / p95 / "
              "p99 |", "|---|---|---|---|---|"]
    for w in report["windows"]:
        lines.append(
            f"| {w['window']} | {w['requests']} | {w['errors']} | {fmt(w['ttft_p50_s'])} / "
            f"{fmt(w['ttft_p95_s'])} / {fmt(w['ttft_p99_s'])} | {fmt(w['e2e_p50_s'])} / "
            f"{fmt(w['e2e_p95_s'])} / {fmt(w['e2e_p99_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=4, help="steady concurrent shoppers")
    parser.add_argument("--sample-s", type=float, default=15.0, help="memory sampling period")
    parser.add_argument("--window-min", type=float, default=5.0, help="latency window")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".run" / "soak")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.users < 1 or args.sample_s <= 0 or args.window_min <= 0:
        parser.error("--minutes, --users, --sample-s and --window-min must be positive")

    args.out.mkdir(parents=True, exist_ok=True)
    workload = args.out / "workload.yaml"
    workload.write_text(yaml.safe_dump(soak_workload(args.minutes, args.users),
                                       allow_unicode=True))
    requests_log = args.out / "requests.jsonl"
    requests_log.unlink(missing_ok=True)
    locust = Path(sys.executable).parent / "locust"
    command = [str(locust), "-f", str(PROJECT_ROOT / "loadtests" / "locustfile.py"),
               "--headless", "--host", args.host, "--workload", str(workload),
               "--requests-jsonl", str(requests_log), "--only-summary"]
    print(f"soak: {args.minutes:g} min at {args.users} shoppers against {args.host}; "
          f"output in {args.out}", flush=True)
    started_wall = time.time()
    with (args.out / "locust.log").open("w") as log:
        runner = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = MemorySampler(args.sample_s, exclude_pid=runner.pid)
        sampler.start()
        window_s = args.window_min * 60
        try:
            next_report = window_s
            while runner.poll() is None:
                time.sleep(5)
                if time.time() - started_wall >= next_report:
                    progress(requests_log, started_wall, window_s, sampler)
                    next_report += window_s
        except KeyboardInterrupt:
            runner.terminate()
            runner.wait(timeout=180)
        finally:
            sampler.stop()

    records = [json.loads(line) for line in requests_log.read_text().splitlines()] \
        if requests_log.exists() else []
    report = build_report(args, records, started_wall, sampler)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "soak.md").write_text(text)
    print(text)
    if not records:
        print("soak: no request completed: see locust.log", file=sys.stderr)
        return 1
    return 0


def progress(requests_log: Path, started: float, window_s: float,
             sampler: MemorySampler) -> None:
    """One line for the window that just ended."""
    records = [json.loads(line) for line in requests_log.read_text().splitlines()] \
        if requests_log.exists() else []
    ended = int((time.time() - started) // window_s) - 1  # the window that just ended
    rows = [row for row in windows(records, started, window_s)
            if row["index"] == ended]
    if rows:
        w = rows[0]
        memory = sum(t.samples[-1][1] for t in sampler.tracks.values() if t.samples)
        print(f"soak: {w['window']}: {w['requests']} requests, {w['errors']} errors, TTFT p95 "
              f"{fmt(w['ttft_p95_s'])}, duration p99 {fmt(w['e2e_p99_s'])}; serving processes "
              f"{memory:.0f} MiB PSS", flush=True)


def build_report(args, records: list[dict], started: float, sampler: MemorySampler) -> dict:
    window_s = args.window_min * 60
    memory = []
    for track in sorted(sampler.tracks.values(), key=lambda t: (t.role, t.pid)):
        values = [m for _, m in track.samples]
        memory.append({
            "process": track.label, "samples": len(values),
            "first_mib": values[0], "last_mib": values[-1], "peak_mib": max(values),
            "slope_mib_per_hour": track.slope_mib_per_hour(after_s=window_s),
        })
    return {
        "host": args.host, "minutes": args.minutes, "users": args.users,
        "started": started,  # the windows' origin (Unix time), to recompute them from the log
        "sample_s": args.sample_s, "window_min": args.window_min,
        "requests": len(records), "errors": sum(1 for r in records if not r["ok"]),
        "memory": memory, "windows": windows(records, started, window_s),
    }


if __name__ == "__main__":
    sys.exit(main())
