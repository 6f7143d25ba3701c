"""What ``erank eval`` leaves behind: ``eval.json`` (settings, runs, per-query and mean
measures, the server's scores), a TREC run file per evaluated ranking, ``alpha_sweep.png``, and
tables on the console.

Everything is drawn from the JSON document itself, so the files and the console never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from connector.evaluation.metrics import Scores
from connector.evaluation.runs import Run

JSON_NAME = "eval.json"
PLOT_NAME = "alpha_sweep.png"
RUN_SUFFIX = ".run"
LABELS = {"first_stage": "first stage", "erank": "ERank", "hybrid": "hybrid"}
BASELINE_STYLES = {"first_stage": ":", "erank": "--"}


def system(name: str, alpha: float | None, run: Run, scores: Scores) -> dict[str, Any]:
    """One evaluated ranking as it appears in the JSON."""
    return {
        "name": name,
        "alpha": alpha,
        "mean": scores.mean,
        "per_query": scores.per_query,
        "run": run,
    }


def _label(entry: dict[str, Any]) -> str:
    label = LABELS[entry["name"]]
    return label if entry["alpha"] is None else f"{label} (alpha {entry['alpha']:g})"


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    """Each measure of the hybrid against alpha, with first stage and ERank alone as dashed
    lines of the same colour: where fusion helps, and by how much."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    sweep = report["alpha_sweep"]
    alphas = [entry["alpha"] for entry in sweep]
    baselines = {s["name"]: s["mean"] for s in report["systems"] if s["alpha"] is None}
    for measure in report["measures"]:
        (line,) = axes.plot(alphas, [e["mean"][measure] for e in sweep], marker="o", label=measure)
        colour = line.get_color()
        for name, style in BASELINE_STYLES.items():
            axes.axhline(baselines[name][measure], color=colour, linestyle=style, alpha=0.7)
    for name, style in BASELINE_STYLES.items():
        axes.plot([], [], color="grey", linestyle=style, label=LABELS[name])
    axes.set_xlabel("alpha (weight of the first-stage score)")
    axes.set_ylabel("mean over judged queries")
    collection = report["collection"]
    axes.set_title(f"{collection['name']} / {collection['split']}: hybrid fusion")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)


def run_name(entry: dict[str, Any]) -> str:
    """The TREC run file of an evaluated ranking: ``first_stage.run``, ``erank.run``,
    ``hybrid-alpha-0.2.run``; its tag (the sixth column) is the name without ``.run``."""
    name = entry["name"] if entry["alpha"] is None else f"{entry['name']}-alpha-{entry['alpha']:g}"
    return f"{name}{RUN_SUFFIX}"


def trec_run(run: Run, tag: str) -> str:
    """``qid Q0 docid rank score tag`` lines, best first. The score is the count of documents
    below plus one (n, n-1, …, 1), as the measures were taken: trec_eval re-sorts by score and
    breaks ties by doc id, so the server's own scores (in ``documents``) could reorder ties."""
    return "".join(
        f"{qid} Q0 {doc} {rank} {len(docs) - rank + 1} {tag}\n"
        for qid, docs in run.items()
        for rank, doc in enumerate(docs, start=1)
    )


def write_runs(report: dict[str, Any], folder: Path) -> list[Path]:
    """One TREC run file per ranking of ``systems`` and ``alpha_sweep`` (a hybrid at an alpha
    the sweep repeats is written once); returns the paths written."""
    written: dict[str, Path] = {}
    for entry in [*report["systems"], *report["alpha_sweep"]]:
        name = run_name(entry)
        if name not in written:
            written[name] = folder / name
            written[name].write_text(trec_run(entry["run"], name.removesuffix(RUN_SUFFIX)))
    return list(written.values())


def write(report: dict[str, Any], folder: Path) -> list[Path]:
    """``eval.json``, the TREC run files, and the plot when there is a sweep; returns the paths
    written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / JSON_NAME]
    written[0].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    written += write_runs(report, folder)
    if report["alpha_sweep"]:
        written.append(folder / PLOT_NAME)
        plot_sweep(report, written[-1])
    return written


def _table(title: str, entries: list[dict[str, Any]], measures: list[str]) -> Table:
    table = Table(title=title)
    table.add_column("ranking")
    for measure in measures:
        table.add_column(measure, justify="right")
    best = {m: max(e["mean"][m] for e in entries) for m in measures}
    for entry in entries:
        cells = [
            f"[bold]{v:.4f}[/]" if (v := entry["mean"][m]) == best[m] else f"{v:.4f}"
            for m in measures
        ]
        table.add_row(_label(entry), *cells)
    return table


def show(report: dict[str, Any], console: Console) -> None:
    """The main table, then the sweep's (best value per measure in bold)."""
    collection = report["collection"]
    title = f"{collection['name']} / {collection['split']}: {collection['queries']} judged queries"
    console.print(_table(title, report["systems"], report["measures"]))
    if report["alpha_sweep"]:
        console.print(_table("alpha sweep", report["alpha_sweep"], report["measures"]))
