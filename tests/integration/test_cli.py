"""The operators' commands: bad input ends in one line on stderr and exit code 2, never a traceback; the help
explains every flag; the app bundle and its guard behave as the operator guides say."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from dataclasses import fields
from pathlib import Path

import pytest

from aggregator.config import SECRET_ENV, FederationConfig
from aggregator.operator import OPERATOR_KEYS
from contracts import create_keystore
from node.app_guard import HASHES_ENV, UntrustedApp, check_bundle, pinned_hashes
from node.trust import SOURCE_ROOT, build_app_bundle, bundle_hash

PASSWORD = "cli-test-password"
GOOD_HASH = "ab" * 32


def cli(tmp_path: Path, program: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``zk0node`` / ``zk0agg`` as a user would, in an empty folder with a throwaway FLWR_HOME.

    The command's own ``main`` runs in this process (a process per call would import torch and LeRobot again: up to
    a minute each on a loaded machine); its environment, working folder, streams and logging are the command's
    alone and restored afterwards. An exception it lets escape is printed as the traceback its own process would
    print, so ``assert_user_error`` fails on it the same way. Process-level behaviour (a closed pipe, Ctrl-C) is
    tested with real processes below.
    """
    from aggregator.cli import main as agg_main
    from node.cli import main as node_main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root, flwr = logging.getLogger(), logging.getLogger("flwr")
    saved_logging = (root.handlers[:], root.level, flwr.propagate, flwr.filters[:], flwr.level)
    os.environ.update({"FLWR_HOME": str(tmp_path / "flwr-home"), "HF_HUB_OFFLINE": "1",
                       "FLWR_TELEMETRY_ENABLED": "0"})
    os.environ.pop("ZK0_WALLET_PASSWORD", None)
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = {"zk0node": node_main, "zk0agg": agg_main}[program](list(args))
            except SystemExit as exit_:  # argparse's usage errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], flwr.filters[:] = saved_logging[0], saved_logging[3]
        root.setLevel(saved_logging[1])
        flwr.propagate = saved_logging[2]
        flwr.setLevel(saved_logging[4])
    return subprocess.CompletedProcess([program, *args], code, out.getvalue(), err.getvalue())


def assert_user_error(result, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and re.match(r"zk0(node|agg)( [a-z-]+)*: error: ", lines[0]), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def wallet(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("wallet") / "wallet.json"
    create_keystore(path, PASSWORD)
    return str(path)


def start_args(wallet: str, dataset: str, *extra: str) -> list[str]:
    return ["start", "--superlink", "127.0.0.1:9", "--insecure", "--wallet", wallet, "--dataset", dataset,
            "--app-hash", GOOD_HASH, "--state-dir", "node-state", *extra]


# ----------------------------------------------------------------------------------------------- zk0node start


def test_start_unknown_dataset(tmp_path, wallet):
    result = cli(tmp_path, "zk0node", *start_args(wallet, "local:/no/such/dataset"),
                 env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, "/no/such/dataset", "does not exist")


def test_start_bad_dataset_uri(tmp_path, wallet):
    result = cli(tmp_path, "zk0node", *start_args(wallet, "s3://bucket/data"), env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, "bad dataset URI")


def test_start_missing_wallet(tmp_path, synthetic):
    result = cli(tmp_path, "zk0node", *start_args(str(tmp_path / "none.json"), synthetic.nodes[0]),
                 env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, "no wallet at", "zk0node wallet new")


def test_start_wrong_password(tmp_path, wallet, synthetic):
    result = cli(tmp_path, "zk0node", *start_args(wallet, synthetic.nodes[0]), env={"ZK0_WALLET_PASSWORD": "nope"})
    assert_user_error(result, "wrong password")


def test_start_wrong_password_file(tmp_path, wallet, synthetic):
    password_file = tmp_path / "password"
    password_file.write_text("not-it\n")
    password_file.chmod(0o600)
    result = cli(tmp_path, "zk0node", *start_args(wallet, synthetic.nodes[0], "--password-file", str(password_file)))
    assert_user_error(result, "wrong password")


def test_start_without_password(tmp_path, wallet, synthetic):
    result = cli(tmp_path, "zk0node", *start_args(wallet, synthetic.nodes[0]))
    assert_user_error(result, "no wallet password", "ZK0_WALLET_PASSWORD")


@pytest.mark.parametrize(("extra", "words"), [
    (["--app-hash", "1234"], ["bad --app-hash"]),
    (["--srs", "/no/such.srs"], ["--srs", "/no/such.srs"]),
    (["--root-certificates", "/no/ca.pem"], ["cannot be combined"]),
])
def test_start_bad_flags(tmp_path, wallet, synthetic, extra, words):
    result = cli(tmp_path, "zk0node", *start_args(wallet, synthetic.nodes[0], *extra),
                 env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, *words)


def test_start_needs_tls_or_insecure(tmp_path, wallet, synthetic):
    args = [a for a in start_args(wallet, synthetic.nodes[0]) if a != "--insecure"]
    result = cli(tmp_path, "zk0node", *args, env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, "--root-certificates")


def test_start_bad_superlink_address(tmp_path, wallet, synthetic):
    args = start_args(wallet, synthetic.nodes[0])
    args[args.index("127.0.0.1:9")] = "http://example.org"
    result = cli(tmp_path, "zk0node", *args, env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(result, "HOST:PORT")


def test_start_requires_pinned_app(tmp_path, wallet, synthetic):
    args = start_args(wallet, synthetic.nodes[0])
    i = args.index("--app-hash")
    del args[i:i + 2]
    result = cli(tmp_path, "zk0node", *args)
    assert result.returncode == 2 and "--app-hash" in result.stderr  # argparse: a required flag


def broken_copy(synthetic, tmp_path, edit) -> str:
    """A copy of a node dataset, with ``edit(folder)`` applied: what a disk error or a bad copy leaves."""
    folder = tmp_path / "dataset"
    shutil.copytree(synthetic.nodes[0].removeprefix("local:"), folder)
    edit(folder)
    return f"local:{folder}"


BROKEN_DATASETS = {  # what goes wrong -> the words the one-line error must hold
    "corrupted data": (lambda d: (d / "data/chunk-000/file-000.parquet").write_bytes(b"PAR1 not really"),
                       ["data/chunk-000/file-000.parquet", "not a readable parquet"]),
    "no videos": (lambda d: shutil.rmtree(d / "videos"), ["videos/observation.images.", "is missing"]),
    "corrupted video": (lambda d: (d / "videos/observation.images.wrist/chunk-000/file-000.mp4").write_bytes(
        b"\x00" * 4096), ["camera wrist", "no decodable frame"]),
    "no tasks": (lambda d: (d / "meta/tasks.parquet").unlink(), ["lacks meta/tasks.parquet"]),
}


@pytest.mark.parametrize("what", sorted(BROKEN_DATASETS))
def test_broken_dataset_is_named_by_check_and_start(tmp_path, wallet, synthetic, what):
    edit, words = BROKEN_DATASETS[what]
    dataset = broken_copy(synthetic, tmp_path, edit)
    assert_user_error(cli(tmp_path, "zk0node", "dataset", "check", dataset), *words)
    assert_user_error(cli(tmp_path, "zk0node", *start_args(wallet, dataset), env={"ZK0_WALLET_PASSWORD": PASSWORD}),
                      *words)


def test_dataset_check_reads_a_frame(tmp_path, synthetic):
    result = cli(tmp_path, "zk0node", "dataset", "check", synthetic.nodes[0])
    assert result.returncode == 0, result.stderr
    assert "one frame read from data/chunk-000/file-000.parquet" in result.stdout
    assert "observation.images.front" in result.stdout and "observation.images.wrist" in result.stdout


def test_cli_survives_a_closed_pipe(tmp_path, wallet):
    """``zk0node wallet show W | head -1``: the reader is gone before the output is written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ZK0_WALLET_PASSWORD", None)  # an in-process demo of another test may have set it
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "wallet", "show", wallet], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err


@pytest.mark.parametrize(("program", "args", "words"), [
    ("zk0agg", ["demo", "--rounds", "-1"], ["--rounds", "-1", "minimum 1"]),
    ("zk0agg", ["demo", "--local-steps", "-3"], ["--local-steps", "-3"]),
    ("zk0agg", ["demo", "--nodes", "0"], ["--nodes"]),
    ("zk0agg", ["demo", "--krum-f", "-1"], ["--krum-f"]),
    ("zk0agg", ["run", "--heldout", "local:/x", "--rounds", "0"], ["--rounds"]),
    ("zk0agg", ["run", "--heldout", "local:/x", "--fraction-evaluate", "1.5"], ["--fraction-evaluate", "[0, 1]"]),
    ("zk0agg", ["run", "--heldout", "local:/x", "--timeout", "nan"], ["--timeout"]),
    ("zk0agg", ["start", "--port", "70000"], ["--port", "TCP port"]),
    ("zk0agg", ["contributions", "--round", "-2"], ["--round"]),
    ("zk0agg", ["fixtures", "--out", "x", "--frames", "abc"], ["--frames", "not an integer"]),
    ("zk0node", ["start", "--superlink", "127.0.0.1:9", "--dataset", "local:/x", "--app-hash", GOOD_HASH,
                 "--runtime-port", "0"], ["--runtime-port"]),
    ("zk0node", ["start", "--superlink", "127.0.0.1:9", "--dataset", "local:/x", "--app-hash", GOOD_HASH,
                 "--max-wait-time", "-5"], ["--max-wait-time"]),
])
def test_numeric_options_are_checked_before_anything_starts(tmp_path, program, args, words):
    started = time.monotonic()
    assert_user_error(cli(tmp_path, program, *args), *words)
    assert time.monotonic() - started < 60


# ----------------------------------------------------------------------------------------------- zk0agg


def test_run_checks_out_and_journal_before_submitting(tmp_path):
    (tmp_path / "not-a-folder").write_text("x")
    assert_user_error(cli(tmp_path, "zk0agg", "run", "--heldout", "local:/x", "--out", "not-a-folder"), "is a file")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "chain-journal.sqlite").write_bytes(b"garbage" * 100)
    assert_user_error(cli(tmp_path, "zk0agg", "run", "--heldout", "local:/x", "--out", "old", "--resume"),
                      "chain-journal.sqlite is corrupted")


def test_agg_bad_input(tmp_path):
    assert_user_error(cli(tmp_path, "zk0agg", "approve", "0x1234", "--chain-rpc", "http://127.0.0.1:9",
                          "--registry", "0x" + "11" * 20), "bad node address")
    assert_user_error(cli(tmp_path, "zk0agg", "run", "--heldout", "local:/x", "--no-verify"), "which SuperLink")
    assert_user_error(cli(tmp_path, "zk0agg", "contributions"), "which chain")
    assert_user_error(cli(tmp_path, "zk0agg", "contributions", "--chain-rpc", "http://127.0.0.1:9",
                          "--registry", "0x" + "11" * 20), "no Ethereum node answers")
    assert_user_error(cli(tmp_path, "zk0agg", "deploy-registry", "--chain-rpc", "http://127.0.0.1:9"), "owner key")
    assert_user_error(cli(tmp_path, "zk0agg", "deploy-registry", "--chain-rpc", "http://127.0.0.1:9",
                          env={"ZK0_OWNER_KEY": "0x1234"}), "not a hex private key")
    assert_user_error(cli(tmp_path, "zk0agg", "start", "--port", "9"), "TLS needs")


def test_help_explains_every_command(capsys):
    from aggregator.cli import main as zk0agg
    from node.cli import main as zk0node

    for main, argv in [(zk0node, ["start"]), (zk0node, ["app-hash"]), (zk0agg, ["start"]), (zk0agg, ["run"]),
                       (zk0agg, ["approve"]), (zk0agg, ["contributions"]), (zk0agg, ["fixtures"]),
                       (zk0agg, ["deploy-registry"]), (zk0agg, ["demo"]), (zk0agg, ["chain", "up"]),
                       (zk0agg, ["verifier", "serve"]), (zk0agg, ["status"]), (zk0agg, ["release"]),
                       (zk0agg, ["verify-model"]), (zk0node, ["status"])]:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and [w for w in out.split() if w.startswith("--")], (argv, out)


def test_fixtures_command(tmp_path):
    result = cli(tmp_path, "zk0agg", "fixtures", "--nodes", "2", "--out", "data", "--episodes", "1", "--frames", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("local:") == 4 and "held-out:" in result.stdout and "validation:" in result.stdout


# ----------------------------------------------------------------------------------------------- app bundle


def test_app_declares_every_run_config_key():
    """zk0agg run sends FederationConfig as Flower run config, and Flower refuses keys the app does not declare."""
    declared = tomllib.loads((SOURCE_ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    expected = {f.name.replace("_", "-") for f in fields(FederationConfig)
                if f.name not in SECRET_ENV and f.name not in OPERATOR_KEYS}
    assert sorted(expected - set(declared)) == []
    assert not {k.replace("-", "_") for k in declared} & set(SECRET_ENV)  # secrets travel by env only
    assert not {k.replace("-", "_") for k in declared} & set(OPERATOR_KEYS)  # the operator's, by file only


def test_bundle_hash_is_flowers(tmp_path):
    """Our faster file walk gives the bundle ``flwr build`` gives (same bytes, same hash)."""
    from flwr.cli.build import build_fab_from_disk

    app = tmp_path / "zk0app"
    (app / "pkg").mkdir(parents=True)
    (app / "pyproject.toml").write_text((SOURCE_ROOT / "pyproject.toml").read_text())
    (app / ".gitignore").write_text(".venv/\n__pycache__/\n")
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "mod.py").write_text("X = 1\n")
    (app / ".venv" / "lib").mkdir(parents=True)
    (app / ".venv" / "lib" / "big.py").write_text("ignored = True\n")
    assert build_app_bundle(app) == build_fab_from_disk(app)
    before = bundle_hash(build_app_bundle(app))
    (app / "pkg" / "mod.py").write_text("X = 2\n")  # one changed line of code: another app
    assert bundle_hash(build_app_bundle(app)) != before


def test_guard_fails_closed(monkeypatch):
    bundle = b"some bundle"
    digest = bundle_hash(bundle)
    monkeypatch.setenv(HASHES_ENV, f"0x{digest.upper()}, {GOOD_HASH}")
    assert pinned_hashes() == {digest, GOOD_HASH}
    assert check_bundle(bundle, pinned_hashes()) == digest
    with pytest.raises(UntrustedApp, match="refused app bundle"):
        check_bundle(b"another bundle", pinned_hashes())
    monkeypatch.setenv(HASHES_ENV, "")
    with pytest.raises(UntrustedApp, match="none pinned"):
        check_bundle(bundle, pinned_hashes())


def test_app_hash_command(tmp_path):
    fab = tmp_path / "app.fab"
    fab.write_bytes(b"bundle bytes")
    result = cli(tmp_path, "zk0node", "app-hash", str(fab))
    assert result.returncode == 0 and result.stdout.strip() == bundle_hash(b"bundle bytes")


# ----------------------------------------------------------------------------------------------- incentives


@pytest.fixture(scope="module")
def incentives_chain(tmp_path_factory, wallet):
    """anvil, a registry (min stake 1 ETH, permissionless) and the test wallet funded with 5 ETH."""
    from eth_account import Account

    from contracts import LocalChain, Registry, connect, read_address
    from contracts.local_chain import rpc_request

    with LocalChain() as chain:
        owner_key, aggregator_key = chain.private_keys[:2]
        registry = Registry.deploy(connect(chain.rpc_url), owner_key, Account.from_key(aggregator_key).address)
        registry.set_params(min_stake=10**18, approval_required=False)
        rpc_request(chain.rpc_url, "anvil_setBalance", [read_address(wallet), hex(5 * 10**18)])
        yield chain, registry, owner_key, aggregator_key


def chain_args(incentives_chain) -> list[str]:
    chain, registry, *_ = incentives_chain
    return ["--chain-rpc", chain.rpc_url, "--registry", registry.address]


def test_node_stake_rewards_claim_unstake_commands(tmp_path, wallet, incentives_chain):
    from contracts import read_address

    _, registry, *_ = incentives_chain
    node = [*chain_args(incentives_chain), "--wallet", wallet]
    env = {"ZK0_WALLET_PASSWORD": PASSWORD}
    assert_user_error(cli(tmp_path, "zk0node", "stake", "lots", *node, env=env), "bad stake amount")
    staked = cli(tmp_path, "zk0node", "stake", "1.5", *node, env=env)
    assert staked.returncode == 0 and "approved: takes part" in staked.stdout, staked.stderr
    assert registry.stake_of(read_address(wallet)).amount == 15 * 10**17
    shown = cli(tmp_path, "zk0node", "rewards", "--chain-rpc", node[1], "--registry", node[3], "--wallet", wallet)
    assert shown.returncode == 0 and "rewards pending 0.0000 ZK0" in shown.stdout and "stakes 1.5 ETH" in shown.stdout
    assert_user_error(cli(tmp_path, "zk0node", "claim", *node, env=env), "no unpaid rewards")
    asked = cli(tmp_path, "zk0node", "unstake", *node, env=env)
    assert asked.returncode == 0 and "stay slashable" in asked.stdout, asked.stderr
    assert_user_error(cli(tmp_path, "zk0node", "unstake", "--withdraw", *node, env=env), "UnstakeLocked")
    assert registry.stake_of(read_address(wallet)).exiting


def test_agg_params_and_slash_commands(tmp_path, incentives_chain, tiny_circuit):
    """params show/set (owner only), and zk0agg slash of a real signed contribution whose proof (a valid tiny proof)
    is not for the losses it signed: slashed once, then AlreadySlashed."""
    from aggregator.protocol.verification import evidence_record
    from contracts import Contribution, sign_contribution
    from contracts.testing import advance_time, deploy_contract

    chain, registry, owner_key, aggregator_key = incentives_chain
    args = chain_args(incentives_chain)
    owner = {"ZK0_OWNER_KEY": owner_key}
    assert_user_error(cli(tmp_path, "zk0agg", "params", "set", *args, env=owner), "nothing to set")
    assert_user_error(cli(tmp_path, "zk0agg", "params", "set", "--slash-bps", "20000", *args, env=owner),
                      "basis points")
    assert_user_error(cli(tmp_path, "zk0agg", "params", "set", "--min-stake", "2", *args,
                          env={"ZK0_OWNER_KEY": aggregator_key}), "only the registry owner")
    changed = cli(tmp_path, "zk0agg", "params", "set", "--min-stake", "2", "--slash-bps", "4000", *args, env=owner)
    assert changed.returncode == 0 and "min stake          2 ETH" in changed.stdout, changed.stderr
    shown = cli(tmp_path, "zk0agg", "params", "show", *args)
    assert "40 % of the stake" in shown.stdout and "stake alone admits" in shown.stdout
    advance_time(registry.w3, registry.params_delay())  # a scheduled change (wallets have staked) waits a day

    owner_registry = registry.with_sender(owner_key)
    verifier, _ = deploy_contract(registry.w3, owner_key, tiny_circuit.verifier_abi, tiny_circuit.verifier_bytecode)
    circuit_id, _ = owner_registry.register_circuit(verifier, tiny_circuit.vka, len(tiny_circuit.proof.proof),
                                                    tiny_circuit.output_scales)  # fmt: skip
    aggregator = registry.with_sender(aggregator_key)
    run = "0x" + "a1" * 32
    aggregator.open_round(run, 7, "0x" + "11" * 32, circuit_id)
    node_key = chain.private_keys[5]
    node = registry.with_sender(node_key)
    node.stake(2 * 10**18)
    c = Contribution(run, 7, "0x" + "11" * 32, "0x" + "22" * 32, tiny_circuit.proof.proof_hash, "0x" + "44" * 32,
                     999.0, 0.0, circuit_id)  # fmt: skip
    signature = sign_contribution(node_key, c, registry.chain_id, registry.address)
    path = tmp_path / "evidence" / "round_7" / f"{node.sender.address}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(evidence_record(registry.chain_id, registry.address, node.sender.address, c,
                                               signature, tiny_circuit.proof.proof)))  # fmt: skip
    (tmp_path / "junk.json").write_text("{}")
    slasher = {"ZK0_AGGREGATOR_KEY": chain.private_keys[6]}
    assert_user_error(cli(tmp_path, "zk0agg", "slash", "--evidence", "junk.json", *args, env=slasher),
                      "not slashing evidence")
    done = cli(tmp_path, "zk0agg", "slash", "--evidence", "evidence", "--chain-rpc", chain.rpc_url, env=slasher)
    assert done.returncode == 0 and "slashed " + node.sender.address in done.stdout, done.stderr
    assert registry.stake_of(node.sender.address).amount == 2 * 10**18 * 6 // 10  # 40 % slashed
    assert_user_error(cli(tmp_path, "zk0agg", "slash", "--evidence", str(path), *args, env=slasher), "AlreadySlashed")


# ----------------------------------------------------------------------------------------------- issue 34


def _altered_wallet(path: Path) -> tuple[str, str]:
    """A keystore whose clear ``address`` names another valid address than its key's: (claimed, real)."""
    from eth_account import Account

    keystore = Account.encrypt(Account.create().key, PASSWORD, kdf="scrypt", iterations=2)
    real, claimed = Account.from_key(Account.decrypt(keystore, PASSWORD)).address, Account.create().address
    keystore["address"] = claimed[2:].lower()
    path.write_text(json.dumps(keystore))
    return claimed, real


def test_wallet_show_checks_the_address_against_the_key_when_it_has_the_password(tmp_path, wallet):
    """Without a password ``wallet show`` prints the file's claim and says so on stderr; with one it decrypts and
    refuses a file whose address is not its key's, as every command that uses the key does."""
    altered = tmp_path / "altered.json"
    claimed, real = _altered_wallet(altered)
    unchecked = cli(tmp_path, "zk0node", "wallet", "show", str(altered))
    assert unchecked.returncode == 0 and unchecked.stdout.splitlines()[0] == f"address {claimed}", unchecked
    note = unchecked.stderr.strip().splitlines()
    assert len(note) == 1 and "not checked" in note[0] and "--password-file" in note[0], unchecked.stderr

    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    for how in ({"env": {"ZK0_WALLET_PASSWORD": PASSWORD}}, {"args": ("--password-file", str(password_file))}):
        result = cli(tmp_path, "zk0node", "wallet", "show", str(altered), *how.get("args", ()), env=how.get("env"))
        assert_user_error(result, "names address", claimed, real)
        assert result.stdout == ""
    assert_user_error(cli(tmp_path, "zk0node", "wallet", "show", str(altered), env={"ZK0_WALLET_PASSWORD": "no"}),
                      "wrong password")
    checked = cli(tmp_path, "zk0node", "wallet", "show", wallet, "--password-file", str(password_file))
    assert checked.returncode == 0 and checked.stdout.startswith("address 0x"), checked
    assert "checked" in checked.stderr and "not checked" not in checked.stderr

    started = cli(tmp_path, "zk0node", *start_args(str(altered), "local:/never/read"),
                  env={"ZK0_WALLET_PASSWORD": PASSWORD})
    assert_user_error(started, "names address", claimed)


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_start_that_cannot_connect_exits_with_one_line_and_leaves_no_process(tmp_path, wallet, synthetic):
    """``zk0node start`` against a port nobody listens on, giving up after 5 s: exit 2 with one line, and nothing it
    started (the warm ClientApp host, ~1 GB; the log copier; Flower's SuperExec) is left to print into the finished
    command's output later."""
    import psutil

    port = _unused_port()
    # unique: every process of this run names it or tmp_path, or descends from one that does; short, because the
    # warm host's Unix socket lives in it and is off for paths of 100 characters or more (pytest-xdist's tmp_path
    # is longer than that)
    state = Path(tempfile.mkdtemp(prefix="zk0-node-", dir="/tmp"))
    env = {**os.environ, "ZK0_WALLET_PASSWORD": PASSWORD, "HF_HUB_OFFLINE": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_HOME": str(tmp_path / "flwr-home")}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "start", "--superlink", f"127.0.0.1:{port}", "--insecure",
             "--max-wait-time", "5", "--wallet", wallet, "--dataset", synthetic.nodes[0], "--app-hash", GOOD_HASH,
             "--state-dir", str(state), "--runtime-port", str(_unused_port())],
            stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    seen: dict[int, tuple[psutil.Process, str]] = {}
    try:
        deadline = time.monotonic() + 600  # imports of torch & co. on busy cores; the wait itself is 5 s
        while proc.poll() is None:
            assert time.monotonic() < deadline, "zk0node start did not end"
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                for child in psutil.Process(proc.pid).children(recursive=True):
                    if child.pid not in seen:
                        with contextlib.suppress(psutil.Error):  # this one ended (or is a zombie): the others count
                            seen[child.pid] = (child, " ".join(child.cmdline()))
            time.sleep(0.1)
        stderr_text = err.read_text(errors="replace")
        errors = [line for line in stderr_text.splitlines() if "error:" in line and line.startswith("zk0node")]
        assert proc.returncode == 2, (proc.returncode, stderr_text[-3000:])
        assert "Traceback" not in stderr_text, stderr_text[-3000:]
        assert len(errors) == 1 and errors[0] == stderr_text.strip().splitlines()[-1], stderr_text[-3000:]
        assert f"could not connect to the SuperLink at 127.0.0.1:{port} within --max-wait-time 5 s" in errors[0]
        assert any("app_guard.py host" in cmdline for _, cmdline in seen.values()), seen  # the leak's scenario ran
        left = [f"{p.pid} {cmdline[:120]}" for p, cmdline in seen.values() if p.is_running()]
        for other in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(str(where) in " ".join(other.info["cmdline"] or []) for where in (tmp_path, state)):
                    left.append(f"{other.pid} {' '.join(other.info['cmdline'])[:120]}")
        assert left == [], left  # ended and reaped (not even a zombie) before the command returned
        size = err.stat().st_size
        time.sleep(2)
        assert err.stat().st_size == size, err.read_text(errors="replace")[size:]  # nothing prints afterwards
    finally:
        for p, _ in [*seen.values(), (psutil.Process(proc.pid) if proc.poll() is None else None, "")]:
            if p is not None:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- a run's edges
def started_here(tmp_path: Path, **facts) -> Path:
    """A ``zk0agg start`` state folder as ``run`` reads it, naming a SuperLink port where nothing listens: a run
    that got past its checks would fail there ("refused the run"), so a refusal that names the check ran first."""
    from aggregator.tools.deploy import free_port

    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "federation.json").write_text(json.dumps({
        "superlink": f"127.0.0.1:{free_port()}", "insecure": True, "operator_file": str(state / "operator.json"),
        **facts}))
    return state


@pytest.mark.parametrize("value,words", [
    ("local-steps=-3", "local-steps must be at least 1"), ("batch-size=0", "batch-size must be at least 1"),
    ("learning-rate=nan", "learning-rate must be a finite number"), ("local-steps=abc", "must be an integer"),
    ("timeout=-5", "timeout must be at least 1"), ("rounds=-1", "rounds must be at least 1"),
    ("krum-m=0", "krum_m >= 1"), ("slice-rows=-1", "slice-rows must be at least 1"),
])
def test_run_values_are_refused_before_anything_is_submitted(tmp_path, value, words):
    """Issue 34: `-c local-steps=-3` once exited 0 "completed" while every node failed (honest nodes recorded
    MALFORMED on chain); `rounds=-1` was refused by the ServerApp after submission, with a traceback."""
    state = started_here(tmp_path)
    assert_user_error(cli(tmp_path, "zk0agg", "run", "--heldout", "local:/x", "--no-verify", "--out", "run",
                          "--state-dir", str(state), "-c", value), words)
    assert not (tmp_path / "run").exists()  # nothing written either


def test_a_new_run_is_refused_in_a_folder_that_holds_a_run_and_a_second_resume_while_it_runs(tmp_path):
    from aggregator.run_folder import RunFolderLock

    state = started_here(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps({"rounds": []}))
    run = ["run", "--heldout", "local:/x", "--no-verify", "--state-dir", str(state), "--out"]
    assert_user_error(cli(tmp_path, "zk0agg", *run, "old"), "holds a run already: --resume continues it")
    with RunFolderLock(tmp_path / "old"):  # the run is still going
        assert_user_error(cli(tmp_path, "zk0agg", *run, "old", "--resume"), "another run is writing",
                          f"(pid {os.getpid()})")


def test_chain_or_verifier_down_is_refused_before_a_run_is_submitted_or_the_aggregator_starts(tmp_path):
    """Issue 34: the chain down at submission gave a ServerApp traceback; a verifier URL nobody answers was
    accepted by zk0agg start and crashed the run with round 1 left open on chain."""
    from aggregator.tools.deploy import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    run = ["run", "--heldout", "local:/x", "--out", "run"]
    assert_user_error(cli(tmp_path, "zk0agg", *run, "--state-dir", str(started_here(tmp_path, chain_rpc=dead))),
                      "no Ethereum node answers", "nothing was submitted")
    assert_user_error(cli(tmp_path, "zk0agg", *run, "--no-verify", "--state-dir",
                          str(started_here(tmp_path, verifier_url=dead))), "unreachable", "start the verifier")
    (tmp_path / "token").write_text("secret\n")
    assert_user_error(cli(tmp_path, "zk0agg", "start", "--insecure", "--port", str(free_port()), "--verifier-url",
                          dead, "--verifier-token-file", "token", "--state-dir", "agg"), "unreachable")
    assert not (tmp_path / "run").exists()


def test_sync_names_what_it_cannot_send(tmp_path):
    (tmp_path / "plain").mkdir()
    assert_user_error(cli(tmp_path, "zk0agg", "sync", "--out", "plain", "--chain-rpc", "http://127.0.0.1:9",
                          env={"ZK0_AGGREGATOR_KEY": "11" * 32}), "cannot read the run")
