"""What several ``zk0agg`` commands share, written once: where ``zk0agg start`` keeps its state, how a key is read
(never from argv), how a command finds its chain, registry and SuperLink, and the flags that say so."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from node.errors import UserError

STATE_DIR = Path(".zk0/aggregator")
OWNER_KEY_ENV = "ZK0_OWNER_KEY"
AGGREGATOR_KEY_ENV = "ZK0_AGGREGATOR_KEY"  # also what the ServerApp reads (aggregator.config.SECRET_ENV)
VERIFIER_TOKEN_ENV = "ZK0_VERIFIER_TOKEN"
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


# ----------------------------------------------------------------------------------------------- keys


def read_key(key_file: str | None, env: str, what: str) -> str:
    """A hex private key from ``key_file`` (first line) or the ``env`` variable; never from argv."""
    if key_file:
        try:
            key = Path(key_file).expanduser().read_text().strip()
        except OSError as err:
            raise UserError(f"cannot read the {what} key file {key_file}: {err.strerror}") from None
    else:
        key = os.environ.get(env, "").strip()
        if not key:
            raise UserError(f"no {what} key: give --{what}-key-file FILE or set {env}")
    if not _KEY.match(key):
        raise UserError(f"the {what} key is not a hex private key (64 hex digits)")
    return key if key.startswith("0x") else "0x" + key


def owner_key(args: argparse.Namespace) -> str:
    """The registry owner's key: ``--owner-key-file`` or ``ZK0_OWNER_KEY``."""
    return read_key(args.owner_key_file, OWNER_KEY_ENV, "owner")


# ----------------------------------------------------------------------------------------------- datasets


def dataset_uri(text: str) -> str:
    """An argparse ``type``: a dataset URI (``node.datasets``) whose ``local:`` path is made absolute against this
    folder. The ServerApp that loads it runs in another folder (under the SuperLink's state dir), so a relative path
    would be looked up there. ``hf:`` URIs are kept as they are."""
    from node.datasets import DatasetURI

    try:
        parsed = DatasetURI.parse(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return f"local:{parsed.root}" if parsed.scheme == "local" else text


def check_dataset(uri: str, flag: str, hub: bool = False) -> None:
    """A ``local:`` dataset is a LeRobot dataset on this machine, now: one line naming ``flag`` if not, instead of a
    ServerApp traceback once the run has started. A Hub dataset is checked only with ``hub`` (else the ServerApp
    loads it)."""
    from node.datasets import load_metadata

    if hub or uri.startswith("local:"):
        try:
            load_metadata(uri)
        except UserError as err:
            raise UserError(f"{flag}: {err}") from None


# ----------------------------------------------------------------------------------------------- lookups


def start_state(args: argparse.Namespace) -> dict:
    """What ``zk0agg start`` wrote to ``--state-dir``: the defaults of the commands that follow it."""
    from aggregator.tools.deploy import read_state

    return read_state(Path(args.state_dir) / "federation.json")


def chain_of(args: argparse.Namespace, state: dict | None = None) -> tuple[str, str]:
    """(RPC URL, registry address): the flags first, else ``state`` (default: the ``--state-dir`` state)."""
    state = start_state(args) if state is None else state
    rpc, registry = args.chain_rpc or state.get("chain_rpc"), args.registry or state.get("registry")
    if not rpc or not registry:
        raise UserError("which chain? give --chain-rpc URL and --registry ADDRESS (or run zk0agg start with them)")
    return rpc, registry


def open_registry(rpc: str, address: str, key: str | None = None):
    """The registry at ``address``, read-only or, with ``key``, sending as that account."""
    from web3 import Web3

    from contracts import Registry, connect

    if not Web3.is_address(address):
        raise UserError(f"bad registry address {address!r}")
    return Registry.at(connect(rpc), address, key)


def read_registry(args: argparse.Namespace):
    """The command's registry, read-only (it needs no key)."""
    return open_registry(*chain_of(args))


def owner_registry(args: argparse.Namespace):
    """The command's registry, sending as its owner (the chain is looked up before the key is read)."""
    rpc, address = chain_of(args)
    return open_registry(rpc, address, owner_key(args))


def superlink_of(args: argparse.Namespace, state: dict) -> tuple[str, bool, Path | None]:
    """(address, insecure, CA file) of the SuperLink: the flags first, else what ``zk0agg start`` wrote."""
    address = args.superlink or state.get("superlink")
    if not address:
        raise UserError("which SuperLink? give --superlink HOST:PORT (or run zk0agg start first)")
    ca = args.root_certificates or (Path(state["root_certificates"]) if state.get("root_certificates") else None)
    insecure = args.insecure or (state.get("insecure", False) and ca is None)
    if not insecure and ca is None:
        raise UserError("give the CA certificate of the SuperLink (--root-certificates CA.pem), or --insecure")
    return address, insecure, ca


def wandb_wanted(args: argparse.Namespace) -> bool:
    """``--wandb``/``--no-wandb``, else on when a W&B key is set."""
    from aggregator.wandb_log import wandb_default

    return wandb_default() if args.wandb is None else args.wandb


# ----------------------------------------------------------------------------------------------- flags


def add_chain_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chain-rpc", metavar="URL", help="Ethereum JSON-RPC endpoint (default: from zk0agg start)")
    parser.add_argument("--registry", metavar="ADDRESS",
                        help="ContributionRegistry address (default: from zk0agg start)")


def add_state_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=str(STATE_DIR),
                        help=f"where zk0agg start keeps its state and logs (default {STATE_DIR})")


def add_registry_flags(parser: argparse.ArgumentParser) -> None:
    """``--chain-rpc``, ``--registry`` and ``--state-dir``: where a command finds the registry."""
    add_chain_flags(parser)
    add_state_flag(parser)


def add_owner_key_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owner-key-file", metavar="FILE", help=f"registry owner's key (default: env {OWNER_KEY_ENV})")


def add_wandb_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=None,
                        help="log every round to Weights & Biases (default: on when WANDB_API_KEY is set); "
                        "offline without a key or network: the run folder is <out>/wandb, upload it with wandb sync")
