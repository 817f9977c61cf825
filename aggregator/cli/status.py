"""``zk0agg status``: what runs (SuperLink, runs, nodes, rounds, pending chain operations, verifier)."""

from __future__ import annotations

import argparse

from aggregator.cli.common import add_state_flag
from node.cliargs import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = add_command(sub, "status", _status,
                         help="what runs: the SuperLink, its runs and connected nodes, the current "
                         "round, pending chain operations, the verifier (exit 1 when nothing runs)")
    add_state_flag(status)


def _status(args: argparse.Namespace) -> int:
    """What runs: SuperLink, runs, nodes, rounds, pending chain operations, verifier. Exit 1 when nothing runs."""
    from aggregator.tools.status import aggregator_status

    s = aggregator_status(args.state_dir)
    if not s.started:
        print(f"nothing runs: no aggregator was started with --state-dir {args.state_dir} ({s.state_file} "
              "missing); start one with zk0agg start")
        return 1
    process = "alive" if s.process_alive else "NOT RUNNING"
    print(f"zk0agg start (pid {s.pid}): {process}\n"
          f"  superlink {s.superlink}: {'up' if s.superlink_up else 'DOWN'}"
          f"{' (' + s.superlink_error + ')' if s.superlink_error else ''}")
    if s.superlink_up:
        _print_nodes_and_runs(s)
    print(f"  chain     {s.chain}\n  verifier  {s.verifier}")
    print("  logs      " + (", ".join(s.logs) or "-"))
    if not s.superlink_up:
        print("nothing runs: the SuperLink does not answer" + ("" if s.process_alive else
                                                              " (zk0agg start has exited; see its logs)"))
        return 1
    return 0


def _print_nodes_and_runs(s) -> None:
    """The SuperLink's connected nodes and its runs, each with its round and pending chain operations."""
    online = ": " + ", ".join(map(str, s.nodes_online)) if s.nodes_online else ""
    print(f"  nodes     {len(s.nodes_online)} connected{online} ({s.nodes_known} known to the SuperLink)")
    active = s.active_runs
    print(f"  runs      {len(s.runs)} in all, {len(active)} going" + ("" if active else ": no run is going"))
    for r in s.runs:
        progress = ""
        if r.rounds_done is not None:
            progress = (f", round {min(r.rounds_done + 1, r.rounds or r.rounds_done + 1)} of {r.rounds}"
                        if r.active else f", {r.rounds_done} of {r.rounds} round(s) done")
        chain = ""
        if r.pending_chain_ops is not None:
            chain = f", chain operations pending {r.pending_chain_ops}" + (
                f", FAILED {r.failed_chain_ops}" if r.failed_chain_ops else "")
        print(f"    run {r.run_id}: {r.status}{progress}{chain}; app {r.fab_hash[:12]}…; "
              f"outputs {r.out_dir or '-'}")
