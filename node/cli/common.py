"""What several ``zk0node`` commands share: the chain flags, the wallet and registry
look-ups and the lines that describe a stake or a transaction."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.errors import UserError

WEI = 10**18


def password_flag(parser: argparse.ArgumentParser) -> None:
    """``--password-file``: the wallet password never comes from the command line itself."""
    parser.add_argument("--password-file", metavar="FILE", help="file holding the wallet password (default: "
                        "ZK0_WALLET_PASSWORD, else a prompt)")


def chain_flags(parser: argparse.ArgumentParser, signing: bool = True) -> None:
    """Which chain and registry; the wallet, and its password when the command sends a transaction."""
    parser.add_argument("--chain-rpc", required=True, metavar="URL", help="the federation's Ethereum JSON-RPC endpoint")
    parser.add_argument("--registry", required=True, metavar="ADDRESS", help="the federation's registry address")
    parser.add_argument("--wallet", metavar="FILE", help="your keystore (default ~/.zk0/wallet.json)")
    if signing:
        password_flag(parser)


def wallet_path(args: argparse.Namespace) -> Path:
    """``--wallet``, else the default keystore."""
    from contracts.wallet import DEFAULT_WALLET

    return Path(args.wallet or DEFAULT_WALLET).expanduser()


def open_registry(args: argparse.Namespace, signing: bool):
    """The registry, sending as the node's wallet when ``signing`` (the password from a file, env or prompt)."""
    from web3 import Web3

    from contracts import Registry, connect
    from contracts.wallet import load_account, resolve_password

    if not Web3.is_address(args.registry):
        raise UserError(f"bad --registry address {args.registry!r}: expected 0x followed by 40 hex digits")
    wallet = wallet_path(args)
    key = load_account(wallet, resolve_password(args.password_file)).key if signing else None
    return Registry.at(connect(args.chain_rpc), args.registry, key)


def wallet_address(args: argparse.Namespace) -> str:
    """The keystore's address, read without its password."""
    from contracts.wallet import read_address

    return read_address(wallet_path(args))


def stake_line(registry, address: str) -> str:
    """One line: the wallet's stake and whether the registry lets it take part."""
    info, params = registry.stake_of(address), registry.params()
    state = f"exiting, withdrawable from {unlock_text(info.unlock_at)}" if info.exiting else (
        "approved: takes part" if registry.is_approved(address) else
        f"not admitted yet (min stake {params.min_stake / WEI:g} ETH"
        f"{', and the owner approves each wallet' if params.approval_required else ''})")
    return f"{address} stakes {info.amount / WEI:g} ETH in registry {registry.address}: {state}"


def unlock_text(timestamp: int) -> str:
    """A stake's unlock time (a block timestamp) in UTC, for people."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def tx_text(receipt) -> str:
    """``tx 0x…``: the hash a user can look up in a block explorer."""
    return f"tx 0x{bytes(receipt['transactionHash']).hex()}"
