"""Issue 33: ``zk0node stake`` from a wallet without ETH printed the node's raw answer,
``{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}``. Now one line says the wallet has no
ETH for the stake and the gas, and how to fund it on a dev chain (zk0agg chain fund, i.e. anvil_setBalance, or
cast send). Real anvil."""

from __future__ import annotations

import logging
import re

import pytest

PASSWORD = "funding-test-password"


@pytest.fixture(scope="module")
def registry():
    from eth_account import Account

    from contracts import LocalChain, Registry, connect

    with LocalChain() as chain:
        owner_key, aggregator_key = chain.private_keys[:2]
        yield chain, Registry.deploy(connect(chain.rpc_url), owner_key, Account.from_key(aggregator_key).address)


def node_command(*args: str) -> int:
    """``zk0node ARGS`` in this process, its logging set-up undone afterwards."""
    from node.cli import main

    root, flwr = logging.getLogger(), logging.getLogger("flwr")
    saved = (root.handlers[:], root.level, flwr.propagate, flwr.filters[:], flwr.level)
    try:
        return main(list(args))
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        flwr.propagate, flwr.filters[:], flwr.level = saved[2], saved[3], saved[4]


def test_stake_from_an_empty_wallet_says_how_to_fund_it(registry, tmp_path, capsys, monkeypatch):
    from contracts import create_keystore
    from contracts.local_chain import fund_main

    chain, reg = registry
    wallet = tmp_path / "wallet.json"
    address = create_keystore(wallet, PASSWORD)
    monkeypatch.setenv("ZK0_WALLET_PASSWORD", PASSWORD)
    node = ["--chain-rpc", chain.rpc_url, "--registry", reg.address, "--wallet", str(wallet)]
    assert node_command("stake", "1", *node) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zk0node: error: stake: "), err
    line = err[0]
    assert f"wallet {address} has 0 ETH, not enough for the 1 ETH it sends and the gas" in line
    fund = re.search(r"(zk0agg chain fund \S+ --rpc \S+),", line)
    assert fund and fund.group(1) == f"zk0agg chain fund {address} --rpc {chain.rpc_url}", line
    assert "anvil_setBalance" in line and f"cast send {address} --value 10ether" in line
    assert "-32003" not in line and "{" not in line  # not the node's raw JSON-RPC error
    # the line's own dev-chain command works: funded, the same stake goes through
    assert fund_main(fund.group(1).split()[3:]) == 0
    assert node_command("stake", "1", *node) == 0, capsys.readouterr().err
    assert reg.stake_of(address).amount == 10**18
