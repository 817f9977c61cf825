"""``zk0agg demo``: a whole federation on this machine, from offline fixtures."""

from __future__ import annotations

import argparse
from pathlib import Path

from aggregator.cli.common import add_wandb_flag, wandb_wanted
from node.cliargs import add_command, at_least
from node.logs import tee_output


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = add_command(sub, "demo", _demo, help="run a whole federation on this machine (offline fixtures)")
    demo.add_argument("--nodes", type=at_least(1), default=3, help="number of nodes (default 3)")
    demo.add_argument("--rounds", type=at_least(1), default=3, help="federated rounds (default 3)")
    demo.add_argument("--out", help="output folder (default outputs/demo-<time>)")
    demo.add_argument("--engine", choices=["simulation", "deployment"], default="simulation",
                      help="Flower's simulation engine (default), or real SuperLink + SuperNode processes on loopback")
    demo.add_argument("--local-steps", type=at_least(1), default=20,
                      help="training steps per node per round (default 20)")
    demo.add_argument("--krum-f", type=at_least(0), default=0, help="Byzantine nodes Krum tolerates (default 0)")
    demo.add_argument("--krum-m", type=at_least(1), default=2, help="updates MultiKrum averages (default 2; 1 = Krum)")
    demo.add_argument("--adversary", metavar="ATTACK",  # checked by DemoConfig (the attacks package loads torch)
                      help="turn the last node adversarial: sign-flip, forge-proof, fabricate-witness, replay, … "
                      "(docs/security.md lists them); use with --nodes 5 --krum-f 1")
    demo.add_argument("--data", choices=["sim", "synthetic"], default="sim",
                      help="node datasets: MuJoCo scripted-expert demonstrations (default) or the synthetic generator")
    demo.add_argument("--episodes", type=at_least(1), default=4, help="episodes per node dataset (default 4)")
    demo.add_argument("--model", default="learn",
                      help="SmolVLA spec: learn (default: trains its vision; can learn reach), tiny, local:<dir>, ...")
    demo.add_argument("--task", choices=["reach", "pick_place"], default="reach",
                      help="simulated task the nodes record and the server evaluates in closed loop (default reach)")
    demo.add_argument("--eval-episodes", type=at_least(0), default=2,
                      help="closed-loop held-out episodes in the simulator after each round (default 2; 0 = off)")
    demo.add_argument("--eval-max-steps", type=at_least(1), default=150,
                      help="step limit of a closed-loop episode (default 150, 5 s at 30 Hz)")
    demo.add_argument("--lora-rank", type=at_least(0), default=0, metavar="R",
                      help="LoRA mode: nodes train and send rank-R adapters of the model (default 0: off)")
    demo.add_argument("--no-verify", action="store_true", help="plain Krum federation: no proofs, signatures, chain")
    demo.add_argument("--stake", type=float, default=1.0, metavar="ETH",
                      help="ETH each node wallet stakes, the registry's min stake (default 1; 0: approval alone)")
    demo.add_argument("--no-validation", action="store_true",
                      help="no validation set: updates are not scored (the gate as it was before HARMFUL)")
    _add_privacy_flags(demo)
    add_wandb_flag(demo)


def _add_privacy_flags(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--dp-epsilon", type=float, metavar="EPS",
                      help="client-side differential privacy: each node's privacy budget ε over the run's rounds at "
                      "δ = 1e-5 (the noise is calibrated to it; docs/privacy.md)")
    demo.add_argument("--dp-noise-multiplier", type=float, metavar="SIGMA", help="DP noise multiplier σ, instead "
                      "of --dp-epsilon")
    demo.add_argument("--dp-clip", type=float, metavar="C", help="DP clipping bound C of an update's L2 norm "
                      "(default 0.01 with DP; alone: clipping without noise)")


def _demo(args: argparse.Namespace) -> int:
    from aggregator.config import FederationConfig
    from aggregator.tools.demo import DemoConfig, run_demo

    fed = FederationConfig(local_steps=args.local_steps, krum_f=args.krum_f, krum_m=args.krum_m, model=args.model,
                           sim_task=args.task, lora_rank=args.lora_rank,
                           wandb=wandb_wanted(args), dp_epsilon=args.dp_epsilon or 0.0,
                           dp_noise_multiplier=args.dp_noise_multiplier or 0.0, dp_clip=args.dp_clip or 0.0)
    demo = DemoConfig(nodes=args.nodes, rounds=args.rounds, out=args.out or "", verify=not args.no_verify,
                      adversary=args.adversary, data=args.data, episodes=args.episodes,
                      eval_episodes=args.eval_episodes, engine=args.engine, validation=not args.no_validation,
                      stake=args.stake)
    print(f"log: {tee_output(Path(demo.out) / 'zk0agg-demo.log')}", flush=True)
    fed.sim_max_steps = args.eval_max_steps
    summary = run_demo(demo, fed)
    if summary.get("interrupted_after") is not None:
        return 130  # Ctrl-C, as run_command's "interrupted"
    return 0 if summary.get("rounds") else 1
