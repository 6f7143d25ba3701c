"""``python -m erank_cli``: the same ``erank`` command (tests run it in a fresh process)."""

from erank_cli.app import app

app(prog_name="erank")
