"""``erank bench``: each benchmark end to end on the tiny model, in seconds (reusing the
session's engine): JSON and PNG written, the server ÷ raw ratios present."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from erank.server import ScoringServer
from erank_cli.app import app
from erank_cli.bench.report import server_table
from erank_cli.bench.server import ServerBench, run, write


async def test_bench_server_writes_json_plot_and_ratios(
    tiny_server: ScoringServer, tmp_path: Path
) -> None:
    bench = ServerBench(docs=(1, 2), doc_tokens=20, concurrency=(1, 2), min_docs=2, rounds=1)
    result = await run(bench, tiny_server)
    json_path, png_path = write(result, tmp_path)
    saved = json.loads(json_path.read_text())
    assert [(lv["docs"], lv["concurrency"]) for lv in saved["levels"]] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    for level in saved["levels"]:
        server, raw = level["server"], level["raw"]
        # the same prompts on the same engine generate the same tokens both ways
        assert server["generated_tokens"] == raw["generated_tokens"] > 0
        assert server["requests"] == max(level["concurrency"], 2 // level["docs"])
        assert 0 < server["first_result_p50_ms"] <= server["p50_ms"] <= server["p99_ms"]
        assert level["ratio_docs_per_s"] > 0 and level["ratio_p50"] > 0
        assert server["cpu_ms_per_doc"] > 0 and raw["cpu_ms_per_doc"] > 0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "docs/s ÷ raw" in str(server_table(result).columns[-3].header)


def test_bench_server_refuses_bad_lists() -> None:
    out = CliRunner().invoke(app, ["bench", "server", "--concurrency", "0,2"])
    assert out.exit_code == 2
    assert "concurrency" in out.output
