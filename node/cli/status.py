"""``zk0node status``: is this machine's SuperNode up, and what it is pinned to."""

from __future__ import annotations

import argparse

from node.cliargs import add_command


def _status(args: argparse.Namespace) -> int:
    """Exit 0 when the SuperNode runs, 1 when nothing runs (scripts and health checks test the code)."""
    from node.status import node_status

    status = node_status(args.state_dir)
    if not status.started:
        print(f"no SuperNode runs here: nothing was started with --state-dir {args.state_dir} "
              f"({status.state_file} missing); start one with zk0node start")
        return 1
    f = status.facts
    state = "UP" if status.alive else "NOT RUNNING"
    print(f"SuperNode {state} (pid {f.get('pid')}, started {f.get('started_at')})\n"
          f"  superlink  {f.get('superlink')} "
          f"({'reachable' if status.superlink_reachable else 'NOT reachable' if status.alive else '-'}, "
          f"{'INSECURE plain text' if f.get('insecure') else 'TLS'})\n"
          f"  runtime    127.0.0.1:{f.get('runtime_port')} "
          f"({'listening' if status.runtime_listening else 'not listening'})\n"
          f"  app hashes {', '.join(f.get('app_hashes', []))} (the only bundles it runs)\n"
          f"  wallet     {f.get('address')} ({f.get('wallet')})\n"
          f"  dataset    {f.get('dataset')}\n"
          f"  srs        {f.get('srs')}\n"
          f"  log        {f.get('log')}")
    if not status.alive:
        print(f"nothing runs: the SuperNode last started from {args.state_dir} has exited (see its log)")
    return 0 if status.alive else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = add_command(sub, "status", _status, help="is this machine's SuperNode up; its SuperLink, pinned app "
                         "hash, wallet address and dataset (exit 1 when nothing runs)")
    status.add_argument("--state-dir", default="~/.zk0/node", help="the --state-dir of zk0node start (default "
                        "~/.zk0/node)")
