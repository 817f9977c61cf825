"""``zk0agg``: the aggregator operator's command line."""

from __future__ import annotations

import argparse
import sys

from node.adversary import ATTACKS
from node.errors import UserError
from node.logs import setup_logging


def _demo(args: argparse.Namespace) -> int:
    from aggregator.config import FederationConfig
    from aggregator.demo import DemoConfig, run_demo

    fed = FederationConfig(local_steps=args.local_steps, krum_f=args.krum_f, krum_m=args.krum_m)
    demo = DemoConfig(nodes=args.nodes, rounds=args.rounds, out=args.out or "", verify=not args.no_verify,
                      adversary=args.adversary, data=args.data, episodes=args.episodes,
                      eval_episodes=args.eval_episodes)
    fed.sim_max_steps = args.eval_max_steps
    summary = run_demo(demo, fed)
    return 0 if summary.get("rounds") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zk0agg", description="zk0 aggregator: run and inspect a verifiable "
                                     "federation of SO-100 robot policies.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Flower's and LeRobot's own logs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a whole federation on this machine (simulation, offline fixtures)")
    demo.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    demo.add_argument("--rounds", type=int, default=3, help="federated rounds (default 3)")
    demo.add_argument("--out", help="output folder (default outputs/demo-<time>)")
    demo.add_argument("--local-steps", type=int, default=20, help="training steps per node per round (default 20)")
    demo.add_argument("--krum-f", type=int, default=0, help="Byzantine nodes Krum tolerates (default 0)")
    demo.add_argument("--krum-m", type=int, default=2, help="updates MultiKrum averages (default 2; 1 = Krum)")
    demo.add_argument("--adversary", choices=[*ATTACKS, "unapproved"],
                      help="turn the last node adversarial (see docs/security.md); use with --nodes 5 --krum-f 1")
    demo.add_argument("--data", choices=["sim", "synthetic"], default="sim",
                      help="node datasets: MuJoCo scripted-expert demonstrations (default) or the synthetic generator")
    demo.add_argument("--episodes", type=int, default=4, help="episodes per node dataset (default 4)")
    demo.add_argument("--eval-episodes", type=int, default=2,
                      help="closed-loop held-out episodes in the simulator after each round (default 2; 0 = off)")
    demo.add_argument("--eval-max-steps", type=int, default=150,
                      help="step limit of a closed-loop episode (default 150, 5 s at 30 Hz)")
    demo.add_argument("--no-verify", action="store_true", help="plain Krum federation: no proofs, signatures, chain")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except UserError as err:
        print(f"zk0agg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zk0agg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
