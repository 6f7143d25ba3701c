"""Tables and plots of ``erank bench`` results (matplotlib, rendered off-screen to PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


def server_table(result: dict[str, Any]) -> Table:
    """One row per level: each pass's medians over the rounds, and the medians of the rounds'
    ratios (first pass ÷ second: server ÷ raw by default)."""
    table = Table(title=f"erank bench server: {result['server']['model']}")
    labels = result["levels"][0]["paths"]
    a, b = labels[0], labels[-1]
    columns = ["docs", "conc.", f"{a} docs/s", f"{a} tok/s", "p50 ms", "p95 ms", "p99 ms"]
    columns += ["1st result ms", f"{b} docs/s", f"{b} p50 ms", f"docs/s {a} ÷ {b}"]
    columns += [f"p50 {a} ÷ {b}", f"CPU ms/doc {a} − {b}"]
    for col in columns:
        table.add_column(col, justify="right")
    for level in result["levels"]:
        s = level[a]
        row = [str(level["docs"]), str(level["concurrency"]), f"{s['docs_per_s']:.1f}"]
        row += [f"{s['generated_tokens_per_s']:.0f}"]
        row += [f"{s[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms", "first_result_p50_ms")]
        if len(labels) == 1:
            row += ["-"] * 5
        else:
            other = level[b]
            row += [f"{other['docs_per_s']:.1f}", f"{other['p50_ms']:.0f}"]
            row += [f"{level['ratio_docs_per_s']:.3f}", f"{level['ratio_p50']:.3f}"]
            row += [f"{level['extra_cpu_ms_per_doc']:.2f}"]
        table.add_row(*row)
    return table


def rounds_table(result: dict[str, Any]) -> Table:
    """Every round of every level: which pass went first, both passes' docs/s and p50, the
    round's own ratios, and the prompt tokens each found in vLLM's prefix cache."""
    labels = result["levels"][0]["paths"]
    table = Table(title="every round (each pass on its own new requests)")
    columns = ["docs", "conc.", "round", "first"]
    for label in labels:
        columns += [f"{label} docs/s", f"{label} p50 ms", f"{label} cached prompt %"]
    if len(labels) == 2:
        columns += ["docs/s ratio", "p50 ratio", "2nd ÷ 1st docs/s"]
    for col in columns:
        table.add_column(col, justify="right")
    for level in result["levels"]:
        for rd in level["rounds"]:
            row = [str(level["docs"]), str(level["concurrency"]), str(rd["round"]), rd["order"][0]]
            for label in labels:
                p = rd[label]
                cached = 100 * p["cached_prompt_tokens"] / max(1, p["prompt_tokens"])
                row += [f"{p['docs_per_s']:.1f}", f"{p['p50_ms']:.0f}", f"{cached:.0f}"]
            if len(labels) == 2:
                row += [f"{rd['ratio_docs_per_s']:.3f}", f"{rd['ratio_p50']:.3f}"]
                row += [f"{rd['second_over_first_docs_per_s']:.3f}"]
            table.add_row(*row)
    return table


def plot_server(result: dict[str, Any], path: Path) -> None:
    """p50 latency and docs/s against concurrency, one line per size and pass (medians over
    the rounds, every round's docs/s a dot); with two passes, each round's own ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    pair = len(levels[0]["paths"]) == 2
    fig, axes = plt.subplots(1, 3 if pair else 2, figsize=(15 if pair else 10, 4))
    lat, thr = axes[0], axes[1]
    for docs in sorted({level["docs"] for level in levels}):
        same = [lv for lv in levels if lv["docs"] == docs]
        conc = [lv["concurrency"] for lv in same]
        for label, style in zip(same[0]["paths"], ("-o", "--x"), strict=False):
            name = f"{label}, {docs} docs"
            lat.plot(conc, [lv[label]["p50_ms"] for lv in same], style, label=name)
            line = thr.plot(conc, [lv[label]["docs_per_s"] for lv in same], style, label=name)
            for lv in same:
                dots = lv[label]["rounds_docs_per_s"]
                thr.plot([lv["concurrency"]] * len(dots), dots, ".", color=line[0].get_color())
    for ax, ylabel in ((lat, "p50 latency per request (ms)"), (thr, "documents / s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    lat.set_yscale("log")
    thr.legend(fontsize=7)
    if pair:
        _plot_round_ratios(axes[2], levels)
    fig.suptitle(f"{result['date']} · {result['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_round_ratios(ax: Any, levels: list[dict[str, Any]]) -> None:
    """Each round's docs/s ratio (first pass ÷ second, both cold), one line per level."""
    a, b = levels[0]["paths"]
    for lv in levels:
        rounds = [rd["round"] for rd in lv["rounds"]]
        ratios = [rd["ratio_docs_per_s"] for rd in lv["rounds"]]
        name = f"{lv['docs']} docs × {lv['concurrency']}: median {lv['ratio_docs_per_s']:.2f}"
        ax.plot(rounds, ratios, "-o", markersize=3, label=name)
    ax.axhline(1.0, color="black", alpha=0.4)
    ax.set_ylim(0.5, 1.5)
    ax.set_xlabel("round (odd: first pass first)")
    ax.set_ylabel(f"docs/s {a} ÷ {b}, per round")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def proxy_table(result: dict[str, Any]) -> Table:
    """Live medians (direct, proxy, ratio) and the isolated rates."""
    table = Table(title="erank bench proxy")
    for col in ("what", "direct ms", "proxy ms", "proxy ÷ direct", "hits / CPU-s"):
        table.add_column(col, justify="right")
    for name, live in result["live"].items():
        table.add_row(
            f"search, {name.replace('_', ' ')} (median of {live['searches']})",
            f"{live['direct']['median_ms']:.2f}",
            f"{live['proxy']['median_ms']:.2f}",
            f"{live['ratio_median']:.2f}",
            "",
        )
    iso = result["isolated"]
    for key, label in (("rewrite", "proxy rewrite"), ("fusion", "fusion + order")):
        rate = iso[f"{key}_hits_per_cpu_s"]
        table.add_row(f"{label}, {iso['hits_per_call']} hits", "", "", "", f"{rate:,.0f}")
    return table


def budget_table(result: dict[str, Any]) -> Table:
    """One row per budget: latency against it, completions, thinking, closing margin, goal."""
    full = result["full"]
    table = Table(
        title=f"erank bench budget: {result['bench']['docs']} documents, full-length "
        f"{full['median_ms']:.0f} ms (median of {len(full['rounds_ms'])}), "
        f"{full['mean_thinking_tokens']:.0f} thinking tokens"
    )
    columns = ["budget %", "budget ms", "requests", "p50 ms", "p99 ms", "p99 ÷ budget"]
    columns += ["full %", "cut %", "unscored %", "thinking tokens", "closing margin ms", "goal"]
    for col in columns:
        table.add_column(col, justify="right")
    for row in result["budgets"]:
        cells = [str(row["percent"]), str(row["budget_ms"]), str(row["requests"])]
        cells += [f"{row['p50_ms']:.0f}", f"{row['p99_ms']:.0f}", f"{row['p99_over_budget']:.2f}"]
        cells += [f"{row[k]:.0f}" for k in ("full_pct", "cut_pct", "unscored_pct")]
        cells += [f"{row['mean_thinking_tokens']:.0f}", f"{row['closing_margin_ms']:.0f}"]
        cells += ["met" if row["goal_met"] else "missed"]
        table.add_row(*cells)
    return table


def budget_extras_table(result: dict[str, Any]) -> Table:
    """The background completion's two searches and the cache lookups."""
    table = Table(title="background completion and cache lookups")
    for col in ("what", "ms", "full", "cut", "unscored", "cache hits"):
        table.add_column(col, justify="right")
    bg = result["background"]
    for key, label in (("first", "cut search, finish in background"), ("second", "same again")):
        s = bg[key]
        name = f"{label} ({bg['percent']} % budget)"
        cells = [f"{s['ms']:.0f}", str(s["full"]), str(s["cut"]), str(s["unscored"])]
        table.add_row(name, *cells, str(s["cache_hits"]))
    for key, lookup in result["cache_lookup"].items():
        where, n = key.replace("_", "-"), lookup["documents"]
        ms = f"{lookup['request_p50_ms']:.1f} ({lookup['request_p99_ms']:.1f})"
        hits = str(lookup["min_cache_hits"])
        table.add_row(f"search, all {n} from the {where} cache, p50 (p99)", ms, "", "", "", hits)
        ms = f"{lookup['lookup_p50_ms']:.3f} ({lookup['lookup_p99_ms']:.3f})"
        table.add_row(f"lookup of {n} keys, {where} cache, p50 (p99)", ms, "", "", "", "")
    return table


def plot_budget(result: dict[str, Any], path: Path) -> None:
    """Latency (p50, p99) against the budget with the goal line; completions per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["budgets"]
    fig, (lat, share) = plt.subplots(1, 2, figsize=(10, 4))
    budgets = [r["budget_ms"] for r in rows]
    lat.plot(budgets, budgets, ":", color="grey", label="budget")
    lat.plot(budgets, [1.1 * b for b in budgets], "--", color="grey", label="budget + 10 %")
    lat.plot(budgets, [r["p50_ms"] for r in rows], "-o", label="p50")
    lat.plot(budgets, [r["p99_ms"] for r in rows], "-x", label="p99")
    lat.axvline(result["full"]["median_ms"], color="black", alpha=0.3, label="full length")
    lat.set_xlabel("budget (ms)")
    lat.set_ylabel("latency per request (ms)")
    lat.legend(fontsize=7)
    lat.grid(True, alpha=0.3)
    labels = [f"{r['percent']} %" for r in rows]
    bottom = [0.0] * len(rows)
    for key, color in (("full_pct", "tab:green"), ("cut_pct", "tab:orange")):
        values = [r[key] for r in rows]
        share.bar(labels, values, bottom=bottom, color=color, label=key.split("_")[0])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    values = [r["unscored_pct"] for r in rows]
    share.bar(labels, values, bottom=bottom, color="tab:red", label="unscored")
    share.set_xlabel("budget (% of the full-length time)")
    share.set_ylabel("documents (%)")
    share.set_ylim(0, 115)
    share.legend(fontsize=7, loc="upper center", ncol=3)
    fig.suptitle(f"{result['date']} · {result['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
