"""Tables and plots of ``erank bench`` results (matplotlib, rendered off-screen to PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


def server_table(result: dict[str, Any]) -> Table:
    """One row per level: both paths' docs/s and p50, and the server ÷ raw ratios."""
    table = Table(title=f"erank bench server: {result['server']['model']}")
    columns = ["docs", "conc.", "server docs/s", "server tok/s", "p50 ms", "p95 ms", "p99 ms"]
    columns += ["1st result ms", "raw docs/s", "raw p50 ms", "docs/s ÷ raw", "p50 ÷ raw"]
    columns += ["CPU ms/doc server − raw"]
    for col in columns:
        table.add_column(col, justify="right")
    for level in result["levels"]:
        s, raw = level["server"], level.get("raw")
        row = [str(level["docs"]), str(level["concurrency"]), f"{s['docs_per_s']:.1f}"]
        row += [f"{s['generated_tokens_per_s']:.0f}"]
        row += [f"{s[k]:.0f}" for k in ("p50_ms", "p95_ms", "p99_ms", "first_result_p50_ms")]
        if raw is None:
            row += ["-"] * 5
        else:
            row += [f"{raw['docs_per_s']:.1f}", f"{raw['p50_ms']:.0f}"]
            row += [f"{level['ratio_docs_per_s']:.3f}", f"{level['ratio_p50']:.3f}"]
            row += [f"{level['server_extra_cpu_ms_per_doc']:.2f}"]
        table.add_row(*row)
    return table


def plot_server(result: dict[str, Any], path: Path) -> None:
    """p50 latency and docs/s against concurrency, one line per size and path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = sorted({level["docs"] for level in result["levels"]})
    for docs in sizes:
        levels = [lv for lv in result["levels"] if lv["docs"] == docs]
        conc = [lv["concurrency"] for lv in levels]
        for path_name, style in (("server", "-o"), ("raw", "--x")):
            if path_name not in levels[0]:
                continue
            label = f"{path_name}, {docs} docs"
            lat.plot(conc, [lv[path_name]["p50_ms"] for lv in levels], style, label=label)
            thr.plot(conc, [lv[path_name]["docs_per_s"] for lv in levels], style, label=label)
    for ax, ylabel in ((lat, "p50 latency per request (ms)"), (thr, "documents / s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    lat.set_yscale("log")
    thr.legend(fontsize=7)
    fig.suptitle(f"{result['date']} · {result['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
