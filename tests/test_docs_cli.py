"""Every `erank` command line the docs show names a command and flags the `erank` command has.

The command tree is walked from the typer app itself (`erank_cli/app.py`), so a renamed or
removed flag fails here, in the doc that still names it. Read: README.md, docs/*.md, the plugin's
README and bench/RESULTS.md; in fenced blocks (a line ending in `\\` continues) and in inline
code spans. A command line runs from `erank` to the end of its line or span, or to a shell
separator (`|`, `&&`, `;`, `#`, `>`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from erank_cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "opensearch_plugin" / "java" / "README.md",
    ROOT / "bench" / "RESULTS.md",
]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
SHELL = {"bash", "sh", "shell", "console"}  # other blocks (diagrams, JSON) are not command lines
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?:^|[\s(=$\"']|bin/)erank\s+(.*)")
SEPARATORS = {"|", "&&", "||", ";", "#", ">", "2>&1", "&"}


def command_tree() -> dict[tuple[str, ...], set[str]]:
    """Every command path (``("opensearch", "install")``) and its option names."""
    tree: dict[tuple[str, ...], set[str]] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:  # typer's own click (typer._click)
        names = {"--help"}
        for param in command.params:
            if param.param_type_name == "option":
                names |= {n for n in (*param.opts, *param.secondary_opts) if n.startswith("-")}
        tree[path] = names
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return tree


def command_lines(text: str) -> list[str]:
    """The `erank …` command lines of a Markdown text (blocks with continuations joined)."""
    found: list[str] = []
    for language, block in FENCE.findall(text):
        if language.strip() in SHELL:
            joined = re.sub(r"\\\n\s*", " ", block)
            found += [line for line in joined.splitlines() if "erank" in line]
    outside = FENCE.sub("", text)
    found += [span for span in INLINE.findall(outside) if "erank" in span]
    return [" ".join(m.group(1).split()) for line in found if (m := COMMAND.search(line))]


def check(line: str, tree: dict[tuple[str, ...], set[str]]) -> list[str]:
    """What is wrong with one command line (after `erank`): an unknown command or flag."""
    words: list[str] = []
    for word in line.split():
        if word in SEPARATORS or word.startswith("#"):
            break
        words.append(word.strip("[]()\"'`,."))
    if words and "|" in words[0]:  # `erank serve|rest|proxy`: each of them
        rest = " ".join(words[1:])
        return [p for name in words[0].split("|") for p in check(f"{name} {rest}", tree)]
    path: tuple[str, ...] = ()
    while words and (*path, words[0]) in tree:
        path = (*path, words.pop(0))
    if not path:
        return [f"`erank {line}`: no command {words[0] if words else ''!r}"]
    problems = []
    for word in words:
        for flag in word.split("/"):
            flag = flag.split("=", 1)[0]
            if flag.startswith("--") and flag not in tree[path]:
                problems.append(f"`erank {' '.join(path)}` has no {flag} (in `erank {line}`)")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_erank_command_line_in_the_docs_exists(doc: Path) -> None:
    tree = command_tree()
    lines = command_lines(doc.read_text())
    problems = [problem for line in lines for problem in check(line, tree)]
    assert not problems, "\n".join(problems)


def test_the_check_reads_commands_and_catches_a_stale_flag() -> None:
    tree = command_tree()
    text = (
        "Run `erank serve --port 1 --no-such-flag`:\n"
        "```bash\nerank opensearch install \\\n  --field text --bogus x\n```\n"
    )
    lines = command_lines(text)
    assert lines == ["opensearch install --field text --bogus x", "serve --port 1 --no-such-flag"]
    assert [p.split(" (")[0] for line in lines for p in check(line, tree)] == [
        "`erank opensearch install` has no --bogus",
        "`erank serve` has no --no-such-flag",
    ]
    assert check("nonsense --x", tree) == ["`erank nonsense --x`: no command 'nonsense'"]
