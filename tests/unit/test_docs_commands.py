"""Every ``zk0agg`` / ``zk0node`` command the README and the operator guides show parses as written: the flags,
sub-commands and values a reader pastes exist (a renamed or removed flag fails here, not in a reader's terminal).

What runs the commands end to end is the deployment test; this one reads every documented line, which that test
cannot afford to run one by one.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("operator-*.md"))]
COMMAND = re.compile(r"^(?:\.venv/bin/)?(zk0agg|zk0node)\s")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, program, argv) of each command line in the docs' bash blocks: continuation lines joined, comments
    and ``export`` lines dropped, shell variables of the same block (``CHAIN="..."``) expanded. Lines that are
    templates for the reader (``...``, ``[--optional]``, ``<placeholder>``) are left out, and so are the rehearsal
    blocks (``<!-- rehearsal: ... -->``), which the deployment test runs in bash as written."""
    found = []
    for doc in DOCS:
        for rehearsal, block in re.findall(r"(<!-- rehearsal: [^\n]*-->\n)?```bash\n(.*?)```", doc.read_text(), re.S):
            if rehearsal:  # shell, not single commands: tests/integration/test_deployment.py runs these blocks
                continue
            variables: dict[str, str] = {}
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.split("  #")[0].split(" # ")[0].strip()
                if m := re.match(r"^([A-Z_]+)=(.*)$", line):
                    variables[m[1]] = shlex.split(m[2])[0] if m[2] else ""
                    continue
                if not COMMAND.match(line) or "..." in line or "[" in line or "<" in line:
                    continue
                for name, value in variables.items():
                    line = line.replace(f"${name}", value)
                program, *argv = shlex.split(line)
                found.append((f"{doc.name}: {line[:60]}", Path(program).name, argv))
    return found


def parser_for(program: str, argv: list[str]):
    """The parser that reads ``argv``: the program's own, or the one a delegated command hands the line to."""
    if program == "zk0node":
        from node.cli import build_parser

        return build_parser(), argv
    if argv[:2] == ["chain", "up"]:
        from contracts.local_chain import up_parser

        return up_parser(), argv[2:]
    if argv[:2] == ["chain", "fund"]:
        from contracts.local_chain import fund_parser

        return fund_parser(), argv[2:]
    if argv[:2] == ["verifier", "serve"]:
        from aggregator.verifier.service import build_parser as verifier_parser

        return verifier_parser(), argv[2:]
    from aggregator.cli import build_parser

    return build_parser(), argv


def test_the_docs_show_commands_of_both_programs():
    programs = {program for _, program, _ in documented_commands()}
    assert programs == {"zk0agg", "zk0node"} and len(documented_commands()) > 30


@pytest.mark.parametrize("where,program,argv", documented_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_documented_command_parses_as_written(where, program, argv, capsys):
    parser, rest = parser_for(program, argv)
    try:
        parser.parse_args(rest)
    except SystemExit as exit_:
        pytest.fail(f"{where}: {program} {' '.join(argv)} does not parse (exit {exit_.code}): "
                    f"{capsys.readouterr().err.strip()}")
