"""The benchmark's report: the markdown of one run, its plot, and the performance table of
docs/benchmarks.md (regenerated from a run's results.json, between two marker lines)."""

from __future__ import annotations

import json
from pathlib import Path

from configs.schema import PROJECT_ROOT

BENCHMARK_PAGE = PROJECT_ROOT / "docs" / "benchmarks.md"
TABLE_START = "<!-- benchmark-table:start (loadtests/bench_report.py writes this) -->"
TABLE_END = "<!-- benchmark-table:end -->"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def delta_ms(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{(a - b) * 1000:+.0f} ms"


def _failed(level: dict) -> str:
    errors = level.get("errors") or {}
    return str(level["failed"]) + (f" ({', '.join(f'{n} × {e}' for e, n in errors.items())})"
                                   if errors else "")


def _levels_table(serve: list[dict], bare: list[dict]) -> list[str]:
    rows = ["| concurrency | tok/s Serve / vLLM | ratio | TTFT p50 Serve / vLLM (Δ) | "
            "TTFT p99 Serve / vLLM (Δ) | ITL p50 Serve / vLLM | ITL p99 Serve / vLLM (×) | "
            "failed | prompt tokens |",
            "|" + "---|" * 9]
    for s, v in zip(serve, bare):
        rows.append(
            f"| {s['concurrency']} | {s['tokens_per_s']:.1f} / {v['tokens_per_s']:.1f} | "
            f"{ratio(s['tokens_per_s'], v['tokens_per_s'])} | "
            f"{fmt_ms(s['ttft_p50_s'])} / {fmt_ms(v['ttft_p50_s'])} "
            f"({delta_ms(s['ttft_p50_s'], v['ttft_p50_s'])}) | "
            f"{fmt_ms(s['ttft_p99_s'])} / {fmt_ms(v['ttft_p99_s'])} "
            f"({delta_ms(s['ttft_p99_s'], v['ttft_p99_s'])}) | "
            f"{fmt_ms(s['itl_p50_s'])} / {fmt_ms(v['itl_p50_s'])} | "
            f"{fmt_ms(s['itl_p99_s'])} / {fmt_ms(v['itl_p99_s'])} "
            f"({ratio(s['itl_p99_s'], v['itl_p99_s'])}) | {_failed(s)} / {_failed(v)} | "
            f"{s.get('prompt_tokens', 'n/a')} / {v.get('prompt_tokens', 'n/a')} |")
    return rows


def ratio_summary(results: dict) -> list[str]:
    """Throughput ratio Serve / bare vLLM for every workload and variant at every level."""
    levels = results["setup"]["concurrency"]
    rows = ["| workload | Serve variant | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|---|---|" + "---|" * len(levels)]
    for name, workload in results["workloads"].items():
        bare = {lvl["concurrency"]: lvl for lvl in workload["bare"]}
        for variant, serve in workload["serve"].items():
            cells = [ratio(s["tokens_per_s"], bare[s["concurrency"]]["tokens_per_s"])
                     for s in serve]
            rows.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    return rows


def _hops_table(hops: dict) -> list[str]:
    rows = ["| path | server | 1 client: p50 / p99 | 16 clients: req/s | 16 clients: p50 / p99 |",
            "|---|---|---|---|---|"]
    for server, paths in hops.items():
        for path, by_c in paths.items():
            one, many = by_c.get("1"), by_c.get("16")
            rows.append(
                f"| `{path}` | {server} | "
                f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms | {many['requests_per_s']:.0f} | "
                f"{many['p50_ms']:.1f} / {many['p99_ms']:.1f} ms |")
    return rows


def _cpu_table(results: dict, workload: str) -> list[str]:
    """Cores each process role used, at the lowest and the highest level of `workload`."""
    data = results["workloads"][workload]
    columns = []  # (title, cores_by_role)
    for variant, serve in data["serve"].items():
        for level in (serve[0], serve[-1]):
            columns.append((f"{variant} c={level['concurrency']}", level["cores_by_role"]))
    for level in (data["bare"][0], data["bare"][-1]):
        columns.append((f"bare vLLM c={level['concurrency']}", level["cores_by_role"]))
    roles = sorted({role for _, by_role in columns for role in by_role},
                   key=lambda role: -max(by_role.get(role, 0) for _, by_role in columns))
    rows = ["| process | " + " | ".join(title for title, _ in columns) + " |",
            "|---|" + "---|" * len(columns)]
    for role in roles:
        rows.append(f"| {role} | " + " | ".join(
            f"{by_role.get(role, 0):.2f}" for _, by_role in columns) + " |")
    rows.append("| **all server processes** | " + " | ".join(
        f"{sum(by_role.values()):.2f}" for _, by_role in columns) + " |")
    return rows


def markdown(results: dict) -> str:
    setup = results["setup"]
    m = setup["machine"]
    out = [f"# Benchmark {setup['date']}{' (quick)' if setup['quick'] else ''}: Ray Serve stack "
           "against bare vLLM", "",
           f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python "
           f"{m['python']}, Linux {m['kernel']}. Versions: "
           + ", ".join(f"{k} {v}" for k, v in setup["versions"].items()) + ".", "",
           f"Model: {setup['model']} architecture, dummy weights; engine {setup['engine']}; "
           f"engine env {setup['engine_env']}; sampling {setup['sampling']}; "
           f"{setup['output_tokens']} output tokens per request; at least "
           f"{setup['requests_per_level']} requests (and 2 x concurrency) per level.", "",
           "Serve variants:", ""]
    out += [f"- `{name}`: {v['description']}" for name, v in setup["variants"].items()]
    out += ["", "## Throughput ratio, Serve / bare vLLM (output tokens/s)", ""]
    out += ratio_summary(results)
    for name, workload in results["workloads"].items():
        out += ["", f"## Workload `{name}`: {setup['workloads'][name]}"]
        for variant, serve in workload["serve"].items():
            out += ["", f"### Serve `{variant}` against bare vLLM", ""]
            out += _levels_table(serve, workload["bare"])
        out += ["", f"### CPU per process (cores), workload `{name}`", ""]
        out += _cpu_table(results, name)
    out += ["", "## The request path without a model", "",
            "`/health`: client → front door → ingress app. `/ready`: the same plus one call from "
            "the ingress to the model replica (its `ping`).", ""]
    out += _hops_table(results["hops"])
    return "\n".join(out) + "\n"


def concurrency_axes(axes, legend_fontsize: int = 8) -> None:
    """The benchmarks' plots against concurrent streams: log-2 x axis, light grid, a legend."""
    for axis in axes:
        axis.set_xscale("log", base=2)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=legend_fontsize)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results["workloads"].items())
    fig, axes = plt.subplots(len(workloads), 2, figsize=(11, 4 * len(workloads)), squeeze=False)
    for (name, workload), (left, right) in zip(workloads, axes):
        series = [(f"Serve {v}", levels) for v, levels in workload["serve"].items()]
        series.append(("vllm serve", workload["bare"]))
        for label, levels in series:
            x = [r["concurrency"] for r in levels]
            left.plot(x, [r["tokens_per_s"] for r in levels], marker="o", label=label)
            right.plot(x, [(r["ttft_p50_s"] or 0) * 1000 for r in levels], marker="o",
                       label=f"{label} p50")
        left.set(xlabel="concurrent streams", ylabel="output tokens/s",
                 title=f"Throughput ({name})")
        right.set(xlabel="concurrent streams", ylabel="ms", title=f"TTFT p50 ({name})")
        concurrency_axes((left, right))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary_table(results: dict, folder: str) -> str:
    """Before (`baseline`) and after (`shipped`) for each workload, with the targets."""
    setup = results["setup"]
    levels = setup["concurrency"]
    rows = [f"From `{folder}/` ({setup['date']}{', quick run' if setup['quick'] else ''}, "
            f"{setup['machine']['cpus']} CPUs; "
            "`scripts/benchmark.sh` regenerates this table). Throughput is output tokens/s, "
            "Serve over bare vLLM, same engine, same prompts, one run; target ≥ 0.97.", "",
            "| workload | Serve | " + " | ".join(f"c={c}" for c in levels)
            + " | TTFT p50 added at c=1 / c=2 | ITL p99 × bare at c=16 |",
            "|---|---|" + "---|" * len(levels) + "---|---|"]
    for name, workload in results["workloads"].items():
        bare = {lvl["concurrency"]: lvl for lvl in workload["bare"]}
        for variant, serve in workload["serve"].items():
            by_c = {s["concurrency"]: s for s in serve}
            cells = [ratio(s["tokens_per_s"], bare[s["concurrency"]]["tokens_per_s"])
                     for s in serve]
            added = " / ".join(delta_ms(by_c[c]["ttft_p50_s"], bare[c]["ttft_p50_s"])
                               if c in by_c else "n/a" for c in (1, 2))
            itl = (ratio(by_c[16]["itl_p99_s"], bare[16]["itl_p99_s"]) if 16 in by_c
                   else "n/a")
            label = {"baseline": "before (Serve defaults)", "shipped": "after (shipped)"}.get(
                variant, variant)
            rows.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {added} | {itl} |")
    hops = results["hops"]
    uvicorn = hops.get("plain uvicorn", {}).get("/health", {}).get("16")
    if uvicorn:
        rows += ["", "`GET /health`, 16 clients (target: Serve ≥ half of plain uvicorn): "
                 + "; ".join(f"{server} {paths['/health']['16']['requests_per_s']:.0f} req/s "
                             f"(p50 {paths['/health']['16']['p50_ms']:.1f} ms)"
                             for server, paths in hops.items() if "/health" in paths) + "."]
    return "\n".join(rows)


def update_benchmark_page(folder: Path, page: Path = BENCHMARK_PAGE) -> None:
    """Replace the table between the markers of `page` with the one of the run in `folder`."""
    results = json.loads((folder / "results.json").read_text())
    text = page.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    relative = folder.relative_to(PROJECT_ROOT) if folder.is_relative_to(PROJECT_ROOT) else folder
    page.write_text(text[:start + len(TABLE_START)] + "\n" + summary_table(results, str(relative))
                      + "\n" + text[end:])
