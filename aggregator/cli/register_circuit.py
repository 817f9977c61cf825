"""``zk0agg register-circuit``: the owner deploys the EZKL verifier and registers the federation's circuit."""

from __future__ import annotations

import argparse
from pathlib import Path

from aggregator.cli.common import add_owner_key_flag, add_registry_flags, owner_registry
from node.cliargs import add_command
from node.errors import UserError

HELP = ("deploy the EZKL verifier and register the federation's circuit in the registry (owner only; once: a second "
        "time reuses it)")
DESCRIPTION = ("Build the circuit a run with these settings uses, its reusable Solidity verifier and VKA, deploy the "
               "verifier and call registerCircuit: from then on the chain can verify the circuit's proofs (on-chain "
               "verification) and slash a signed bad proof.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    register = add_command(sub, "register-circuit", _register_circuit, help=HELP, description=DESCRIPTION)
    register.add_argument("--dataset", required=True, metavar="URI",
                          help="a dataset with the federation's features, e.g. the held-out set (local:PATH)")
    register.add_argument("--model", default="learn", help="the runs' SmolVLA spec, as zk0agg run --model gives it "
                          "(default learn, the demo's; the circuit's shape comes from it)")
    register.add_argument("--slice-rows", type=int, default=16, help="the run's slice-rows (default 16)")
    register.add_argument("--srs", default="dev", metavar="FILE|dev", help="the federation's SRS (default dev)")
    register.add_argument("--cache-dir", default=".zk0/fixtures", help="model and circuit cache (default "
                          ".zk0/fixtures)")
    add_owner_key_flag(register)
    add_registry_flags(register)


def _register_circuit(args: argparse.Namespace) -> int:
    """Deploy the EZKL verifier and register the federation's circuit (once; a second time reuses it). Anyone
    may: the registry derives the circuit's id from its verifying key."""
    from aggregator.tools.circuit_registration import ensure_circuit_registered, federation_circuit

    owner = owner_registry(args)
    if args.slice_rows < 1:
        raise UserError(f"--slice-rows must be at least 1, got {args.slice_rows}")
    if args.srs != "dev" and not Path(args.srs).is_file():
        raise UserError(f"no SRS file at {args.srs}: give the federation's SRS (or dev for a development one)")
    circuit = federation_circuit(args.model, args.dataset, args.slice_rows, args.srs, args.cache_dir)
    info, new = ensure_circuit_registered(owner, circuit)
    print(f"circuit {circuit.circuit_id} {'registered' if new else 'was already registered'} in registry "
          f"{owner.address} as {info.circuit_id} (its id there, derived from its verifying key: what nodes sign) "
          f"for model {args.model}: verifier {info.verifier}, EVM proofs of {info.proof_length} "
          "bytes (nodes send each hex-encoded in a JSON artifact with its public values, about twice that: "
          f"summary.json's proof_bytes), output scales "
          f"{info.output_scales[0]}/{info.output_scales[1]}, VKA digest {info.vka_digest}")
    return 0
