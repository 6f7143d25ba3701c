"""The committed stubs in erank_contract/v1/ are exactly what scripts/gen-stubs writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-stubs"), str(tmp_path)],
        check=True,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHON": sys.executable},
    )
    generated = sorted(
        p.relative_to(tmp_path) for p in (tmp_path / "erank_contract" / "v1").glob("*")
    )
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "erank_contract" / "v1").glob("*_pb2*"))
    assert generated == committed
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"stale stubs, run scripts/gen-stubs: {stale}"


def test_connector_imports_without_torch_or_vllm() -> None:
    code = (
        "import sys, erank_contract.client, erank_contract.v1.reranker_pb2_grpc\n"
        "bad = [m for m in ('torch', 'vllm', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
