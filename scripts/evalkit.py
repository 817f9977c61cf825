"""What the evaluation and benchmark scripts share: their command line, the cpu time they measure, the rows they
keep in a results file, and the Markdown tables they print and write into the docs.

The scripts put the repository root on ``sys.path`` and import it as ``scripts.evalkit``, as ``scripts.doc_section``.
"""

from __future__ import annotations

import argparse
import json
import resource
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from scripts.doc_section import write_section


# ---------------------------------------------------------------------------------------------- command line
def script_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser: its docstring, as written (examples and all), is what ``--help`` says first."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_options(parser: argparse.ArgumentParser, **options) -> None:
    """One ``--name`` per keyword, in order (``local_steps`` is ``--local-steps``). A keyword's value is the option's
    default, or a ``(default, help)`` pair: False makes a flag (``store_true``), None an option that takes a string,
    and any other default gives the option its type (``Path(...)``: a Path, ``1e-3``: a float)."""
    for name, value in options.items():
        default, help_ = value if isinstance(value, tuple) else (value, None)
        flag = "--" + name.replace("_", "-")
        if default is False:
            parser.add_argument(flag, action="store_true", help=help_)
        else:
            parser.add_argument(flag, type=None if default is None else type(default), default=default, help=help_)


def add_saved_models(parser: argparse.ArgumentParser) -> None:
    """The options of a script that reads saved models of fed_vs_central's runs: the spec and the fixtures they were
    trained on, and the models as ``label=folder`` arguments (read with ``saved_models``)."""
    add_options(parser, model=("learn", "SmolVLA spec (node/model.py; default learn)"),
                task=("reach", "the task of the fixtures (default reach)"), nodes=(4, "nodes of the fixtures"),
                episodes=(4, "expert episodes per dataset of the fixtures (fed_vs_central's --episodes)"),
                cache_dir=".zk0/fixtures")
    parser.add_argument("models", nargs="+", metavar="label=folder")


def saved_models(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(label, folder) of each ``label=folder`` argument (a bare folder is labelled by its name); exits with a message,
    not a traceback, when a folder holds no saved policy."""
    import sys

    named = [(m.split("=", 1) if "=" in m else (Path(m).name, m)) for m in args.models]
    missing = [folder for _, folder in named if not (Path(folder) / "model.safetensors").is_file()]
    if missing:
        sys.exit(f"no model.safetensors in {', '.join(missing)}: give folders that hold a saved policy "
                 "(a federated run's checkpoints/round_<r>, a centralized run's checkpoint)")
    return [(label, Path(folder)) for label, folder in named]


# ---------------------------------------------------------------------------------------------- measuring
def cpu_seconds() -> float:
    """User and system cpu seconds so far of this process and of every child it has waited for: EZKL's long calls
    run in child processes (prover/ezkl_process.py), and a benchmark that left them out measured 0.1 cpu s for a
    24 cpu s proof."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """The larger of this process's peak resident memory and its largest waited-for child's, in MB: the memory a
    step needs when its heavy part ran in a child (the kernel keeps one maximum over all children, not a sum)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return max(own.ru_maxrss, children.ru_maxrss) / 1024


def load_rows(path: Path) -> list[dict]:
    """The rows stored in ``path`` (a results.json), none if there is no such file yet."""
    return json.loads(path.read_text()) if path.exists() else []


def run_and_store(rows: list[dict], path: Path, script: str, name: str, run: Callable[[], dict]) -> None:
    """One federation of an evaluation: ``run()`` measures it and returns its row (``final_eval_loss``, ``wall_s``,
    ``cpu_s``, ``load``), which joins ``rows``, all of them written to ``path`` at once; a line on stdout before and
    after, ``[script] name``."""
    print(f"[{script}] {name} ...", flush=True)
    row = run()
    rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    print(f"[{script}] {name}: final eval loss {row['final_eval_loss']:.4f} ({row['wall_s']:.0f} s wall, "
          f"{row['cpu_s']:.0f} cpu s, load {row['load']:.1f})", flush=True)


def run_cost(row: dict) -> str:
    """A stored run's cost as a table cell: wall seconds (cpu seconds, load)."""
    return f"{row['wall_s']:.0f} ({row['cpu_s']:.0f}, {row['load']:.1f})"


def rejected(replies: list[dict]) -> Counter:
    """How many of a run's stored ``replies`` each gate reason rejected (neither SELECTED nor NOT_SELECTED), in the
    order the reasons first appear."""
    return Counter(x["status"] for x in replies if x["status"] not in ("SELECTED", "NOT_SELECTED"))


def not_averaged(scored: list[dict], min_gain: float) -> int:
    """How many of the ``scored`` replies were verified but left out of the average: a validation score at or below
    ``min_gain`` × the round's validation loss."""
    return sum(x["status"] == "NOT_SELECTED" and x["score"] <= min_gain * x["validation_loss"] for x in scored)


def write_json(path: str | None, rows) -> None:
    """``rows`` as indented JSON in ``path``; nothing without a path (a script's optional ``--json``)."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1))


# ---------------------------------------------------------------------------------------------- tables
def md_row(*cells) -> str:
    """One row of a Markdown table: ``| a | b | c |``."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def md_rule(columns: int) -> str:
    """The line under a Markdown table's header: ``|---|---|``."""
    return "|" + "---|" * columns


def publish(body: str, doc: Path, start: str, end: str, title: str = "") -> None:
    """Print ``body`` and write it into ``doc`` between its ``start`` and ``end`` marker lines, keeping the prose
    around them (a new doc starts with ``title``)."""
    print(body)
    write_section(doc, start, end, body, title)
