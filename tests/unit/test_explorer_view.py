"""The explorer's pure pieces: what a visitor types, how chain values read, the charts, the ABI feature detection;
and its error pages when no chain answers (no chain needed: the RPC port is closed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from aggregator.explorer import ExplorerConfig, make_app
from aggregator.explorer.reader import run_metrics, scalar_views
from aggregator.explorer.view import (
    BadInput,
    fmt_time,
    fmt_value,
    label,
    line_chart_svg,
    parse_address,
    parse_round,
    parse_run,
    short,
)
from contracts import load_artifact
from contracts.local_chain import free_port
from node.errors import UserError

WALLET = "0x2c83A039456f75abA77E5a6f7DDFCEB899a6b63E"


def test_parse_round_accepts_uint64_only():
    assert parse_round("3") == 3 and parse_round(" 0 ") == 0
    for bad in ("abc", "-1", "1.5", "", "0x10", str(2**64)):
        with pytest.raises(BadInput):
            parse_round(bad)


def test_parse_run_takes_an_id_or_a_prefix():
    run = "0x" + "ab" * 32
    assert parse_run(run.upper().replace("0X", "0x")) == run and parse_run("0xAB12") == "0xab12"
    assert parse_run(None) is None and parse_run(" ") is None  # the default run
    for bad in ("ab12", "0x", "0xzz", run + "00", "1"):
        with pytest.raises(BadInput, match="not a run id"):
            parse_run(bad)


def test_parse_address_checksums_and_refuses_typos():
    assert parse_address(WALLET.lower()) == WALLET
    assert parse_address(WALLET) == WALLET
    typo = WALLET[:-1] + "e"  # mixed case with a wrong EIP-55 checksum
    for bad in ("0x123", "hello", WALLET[2:], WALLET + "00", typo):
        with pytest.raises(BadInput):
            parse_address(bad)


def test_short_keeps_both_ends_and_formats_read_plainly():
    assert short("0x" + "ab" * 32) == "0xabab…abab"
    assert short("0x12") == "0x12" and short(None) == "-" and short("") == "-"
    assert fmt_time(0) == "-" and fmt_time(86400) == "1970-01-02 00:00:00 UTC"
    assert fmt_value(b"\x01\xff") == "0x01ff" and fmt_value(True) == "yes" and fmt_value(7) == "7"
    assert label("emissionPerRound") == "emission per round" and label("LOSS_SCALE") == "LOSS_SCALE"


def test_line_chart_is_valid_svg_with_one_point_per_round():
    svg = line_chart_svg([(0, 1.5), (1, 1.2), (2, None), (3, 0.9)], "eval <loss>", "loss")
    root = ET.fromstring(svg)  # well-formed, title escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 3
    assert len(root.find(f"{ns}polyline").get("points").split()) == 3
    assert "eval &lt;loss&gt;" in svg
    flat = ET.fromstring(line_chart_svg([(1, 0.5)], "success", "rate", percent=True, y_range=(0, 1)))
    assert "50%" in "".join(flat.itertext())
    assert "no data yet" in line_chart_svg([], "success", "rate")


def test_scalar_views_detect_parameters_wallet_and_round_values():
    abi = load_artifact("ContributionRegistry").abi
    params = scalar_views(abi, "")
    assert {"owner", "aggregator"} <= set(params)
    assert "LOSS_SCALE" not in params and "roundRecords" not in params and "vka" not in params
    assert "isApproved" in scalar_views(abi, "address")
    richer = abi + [  # what a registry with stakes and rewards may add: found without code changes here
        {"type": "function", "name": "stakeOf", "stateMutability": "view",
         "inputs": [{"type": "address", "name": "node"}], "outputs": [{"type": "uint256", "name": ""}]},
        {"type": "function", "name": "minStake", "stateMutability": "view", "inputs": [],
         "outputs": [{"type": "uint256", "name": ""}]},
        {"type": "function", "name": "roundEmission", "stateMutability": "view",
         "inputs": [{"type": "uint64", "name": "round"}], "outputs": [{"type": "uint256", "name": ""}]},
        {"type": "function", "name": "claim", "stateMutability": "nonpayable", "inputs": [], "outputs": []},
        {"type": "function", "name": "rejectionKey", "stateMutability": "pure",  # a uint that is not a round
         "inputs": [{"type": "uint256", "name": "nodeId"}], "outputs": [{"type": "address", "name": ""}]},
    ]
    assert "stakeOf" in scalar_views(richer, "address") and "minStake" in scalar_views(richer, "")
    assert scalar_views(richer, "uint") == ["roundEmission"] and "claim" not in scalar_views(richer, "")
    assert "rejectionKey" not in scalar_views(abi, "uint")  # takes a Flower node id, not a round


def test_run_metrics_only_from_a_run_of_this_registry():
    summary = {"chain": {"registry": WALLET.lower(), "srs_sha256": "0xaa"}, "initial_eval_loss": 1.5,
               "rounds": [{"round": 1, "server_eval_loss": 1.2, "nodes": [{"address": WALLET, "detail": "ok"}]}]}
    mine = run_metrics(summary, WALLET)
    assert mine.by_round[1]["server_eval_loss"] == 1.2 and mine.initial_eval_loss == 1.5 and not mine.note
    assert mine.run_id is None and run_metrics({**summary, "chain": {**summary["chain"], "run_id": "0x01"}},
                                                 WALLET).run_id == "0x01"
    assert mine.nodes(1)[WALLET.lower()]["detail"] == "ok"
    other = run_metrics(summary, "0x" + "11" * 20)
    assert not other.by_round and "not this one" in other.note
    assert "unverified" in run_metrics({"chain": None, "rounds": []}, WALLET).note
    assert run_metrics(None, WALLET).by_round == {}


def test_config_refuses_bad_flags(tmp_path):
    with pytest.raises(UserError, match="--rpc"):
        ExplorerConfig("127.0.0.1:8545", WALLET)
    with pytest.raises(UserError, match="--registry"):
        ExplorerConfig("http://127.0.0.1:8545", "0x1234")
    with pytest.raises(UserError, match="--outputs"):
        ExplorerConfig("http://127.0.0.1:8545", WALLET, outputs=str(tmp_path / "missing"))
    assert ExplorerConfig("http://127.0.0.1:8545", WALLET.lower()).registry == WALLET


def test_pages_without_a_chain_say_so_and_bad_input_is_400():
    client = TestClient(make_app(ExplorerConfig(f"http://127.0.0.1:{free_port()}", WALLET, timeout=1.0)))
    down = client.get("/")
    assert down.status_code == 503 and "Chain unreachable" in down.text and 'class="banner banner-down"' in down.text
    assert client.get("/rounds/abc").status_code == 400  # input is checked before the chain is asked
    assert client.get("/wallets/0x12").status_code == 400
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "no page at /no/such/page" in missing.text
    assert client.get("/static/explorer.js").status_code == 200


def test_amounts_and_client_facts_read_plainly():
    from dataclasses import dataclass

    from aggregator.explorer.reader import facts
    from aggregator.explorer.view import fmt_amount

    assert fmt_amount(15 * 10**17, "minStake") == "1.5 ETH" and fmt_amount(42) == "42" and fmt_amount(True) == "yes"
    assert fmt_amount(15 * 10**17) == "1,500,000,000,000,000,000"  # no unit known: the exact integer, never ×10¹⁸

    @dataclass
    class Stake:  # the shape of a richer client's answer (e.g. StakeInfo)
        amount: int
        exiting: bool

    assert facts(Stake(10**18, False)) == [("amount", 10**18), ("exiting", False)]
    assert facts(Stake(1, True), frozenset({"amount"})) == [("exiting", True)]
    assert facts(None) == []


def test_summary_rounds_count_only_with_the_chains_models():
    from types import SimpleNamespace as RoundInfo  # the fields same_models reads (a richer RoundInfo has more)

    from aggregator.explorer.reader import same_models

    g, n = "0x" + "aa" * 32, "0x" + "bb" * 32
    closed = RoundInfo(state="closed", global_hash=g, new_global_hash=n)
    assert same_models({"global_hash": g.upper().replace("0X", "0x"), "new_global_hash": n}, closed)
    assert not same_models({"global_hash": g, "new_global_hash": "0x" + "dd" * 32}, closed)  # another run's round
    assert not same_models({"global_hash": "0x" + "ee" * 32, "new_global_hash": n}, closed)
    assert same_models({"global_hash": g}, RoundInfo(state="open", global_hash=g, new_global_hash="0x" + "00" * 32))


REWARD = 46_469_712_345_678_901_234  # 46.4697… reward tokens


def test_amounts_read_in_zk0_and_eth_as_the_cli_shows_them():
    from aggregator.explorer.view import amount_unit, fmt_amount, fmt_tokens

    assert fmt_tokens(REWARD, "ZK0") == "46.4697 ZK0" and fmt_tokens(10**18, "ETH") == "1 ETH"
    assert fmt_tokens(0, "ZK0") == "0 ZK0" and fmt_tokens(1, "ZK0") == "<0.0001 ZK0"  # a dust amount is not 0
    assert fmt_tokens(1_250_500_000_000_000_000_000, "ZK0") == "1,250.5 ZK0" and fmt_tokens(None, "ETH") == "-"
    for name in ("minStake", "min_stake", "stake amount", "totalBurned", "slashed_wei"):
        assert amount_unit(name) == "ETH", name
    for name in ("emissionPerRound", "emission_per_round", "unpaid rewards", "reward tokens held", "rewardOf"):
        assert amount_unit(name) == "ZK0", name
    for name in ("slash_bps", "bounty_bps", "unstake_delay", "stake unlock_at", "rewardToken", "roundsOpened",
                 "approval_required"):
        assert amount_unit(name) is None, name
    assert fmt_amount(REWARD, "emission_per_round") == "46.4697 ZK0" and fmt_amount(3, "unstake_delay") == "3"
    assert fmt_amount(REWARD, "amount", "RewardClaimed") == "46.4697 ZK0"
    assert fmt_amount(10**17, "bounty", "Slashed") == "0.1 ETH" and fmt_amount(7, "round", "Slashed") == "7"


def test_event_arguments_show_hex_never_a_bytes_repr():
    from aggregator.explorer.view import event_args

    run = bytes.fromhex("c0" * 31 + "2c")  # b'\xc0…,' : what web3 gives for a bytes32[] element
    args = {a["name"]: a for a in event_args({"event": "RewardClaimed", "args": {
        "node": WALLET, "runIds": [run, run], "rounds": [1, 2], "amount": REWARD}})}
    assert args["runIds"]["text"] == "[0xc0c0…c02c, 0xc0c0…c02c]" and "b'" not in str(args)
    assert args["runIds"]["title"] == f"[0x{run.hex()}, 0x{run.hex()}]"
    assert args["rounds"]["text"] == "[1, 2]" and args["amount"]["text"] == "46.4697 ZK0"
    assert args["node"]["text"] == short(WALLET) and args["node"]["title"] == WALLET
    params = event_args({"event": "ParamsChanged", "args": {"params": (10**18, REWARD, 5000, 1000, 2, True)}})
    assert params[0]["text"] == ("min stake 1 ETH, emission per round 46.4697 ZK0, slash bps 5000, bounty bps 1000, "
                                 "unstake delay 2, approval required yes")


class _RoundInfo:
    """``registry.contract.functions.roundInfo(run, round).call()``: (state, …, emission, score total)."""

    def __init__(self, rounds: dict):
        self.rounds, self.calls = rounds, 0

    def roundInfo(self, run: bytes, rnd: int):  # noqa: N802 - the contract's name
        self.calls += 1
        state, emission, total = self.rounds[rnd]
        return type("Call", (), {"call": lambda _: (state, 0, 0, True, b"", b"", b"", emission, total)})()


def _record(node: str, rnd: int, status, weight: int, run: str = "0x" + "ab" * 32):
    from contracts import Reason, Record

    return Record(run, rnd, node, status, Reason.NONE, True, False, "0x", "0x", "0x", 1.0, 0.5, 0.1, weight / 1e9,
                  chain=(bytes.fromhex(run[2:]), rnd, node, int(status), 0, True, False, b"", b"", b"", 0, 0, 10**8,
                         weight))


def test_a_claimed_round_still_shows_what_it_paid():
    from types import SimpleNamespace

    from aggregator.explorer.reader import Reward, Rewards
    from contracts import Status

    run, other = "0x" + "ab" * 32, "0x" + "cd" * 32
    functions = _RoundInfo({1: (2, 100 * 10**18, 3 * 10**9), 2: (2, 100 * 10**18, 10**9), 3: (1, 100 * 10**18, 0)})
    registry = SimpleNamespace(contract=SimpleNamespace(functions=functions))
    events = [{"event": "RewardClaimed", "args": {"node": WALLET, "runIds": [bytes.fromhex(run[2:])], "rounds": [1],
                                                  "amount": 1}},
              {"event": "RewardClaimed", "args": {"node": WALLET, "runIds": [bytes.fromhex(other[2:])],
                                                  "rounds": [2], "amount": 1}},  # another run's round 2
              {"event": "Slashed", "args": {"node": WALLET.lower(), "runId": run, "round": 3, "amount": 1}}]
    rewards = Rewards(registry, events)
    assert rewards.of(_record(WALLET, 1, Status.SELECTED, 10**9)) == Reward(100 * 10**18 // 3, "claimed")
    assert rewards.of(_record(WALLET, 2, Status.SELECTED, 10**9)) == Reward(100 * 10**18, "unclaimed")
    assert rewards.of(_record(WALLET, 3, Status.SELECTED, 10**9)) == Reward(None, "round open")
    assert rewards.of(_record(WALLET, 1, Status.NOT_SELECTED, 10**9)) is None
    assert rewards.of(_record(WALLET, 1, Status.SELECTED, 0)) is None  # no weight in the round's average: nothing
    assert functions.calls == 3  # one roundInfo per round, however many records
    functions.rounds[2] = (2, 100 * 10**18, 10**9)
    assert Rewards(registry, events[2:]).of(_record(WALLET, 2, Status.SELECTED, 10**9)).state == "unclaimed"
    slashed = Rewards(registry, [{"event": "Slashed", "args": {"node": WALLET, "runId": run, "round": 2, "amount": 1}}])
    assert slashed.of(_record(WALLET, 2, Status.SELECTED, 10**9)).state == "forfeited (slashed)"


def test_pages_render_amounts_rewards_and_the_wallets_table():
    from collections import Counter

    from aggregator.explorer.app import templates
    from aggregator.explorer.reader import Reply, Reward
    from contracts import Status

    env = templates()
    wallets = [{"address": WALLET, "approved": True, "stake": 10**18, "exiting": False, "records": 2,
                "statuses": Counter({"SELECTED": 1, "NOT_SELECTED": 1}), "mean_score": 0.0123, "pending": REWARD,
                "claimed": 2 * 10**18, "unsettled_rounds": 0, "slashes": 1, "slashed": 10**17, "last": "approved",
                "last_block": 3, "last_tx": "0x" + "11" * 32}]
    html = env.get_template("federation.html").render(
        wallets=wallets, has_stake=True, has_reward=True, run="0x" + "ab" * 32, runs=[], rounds=[1], circuits=[],
        parameters=[("min_stake", 10**18), ("emission_per_round", REWARD), ("slash_bps", 5000)], statuses={},
        event_counts={}, registry=WALLET, rpc_url="http://x", refresh=0, updated="now")
    row = html[html.index('<tr class="wallet"'):]
    row = row[:row.index("</tr>")]
    for cell in ("1 ETH", "46.4697 ZK0", "2 ZK0", "1 selected · 1 not selected", "0.0123", "0.1 ETH taken"):
        assert cell in row, cell
    assert "×10¹⁸" not in html and "5000" in html
    assert f'<code title="{REWARD}">46.4697 ZK0</code>' in html  # a parameter in ZK0, the exact units on hover

    record = _record(WALLET, 1, Status.SELECTED, 10**9)
    replies = [Reply(record, "0x" + "22" * 32, 9, 1.0, Reward(REWARD, "claimed"), "")]
    html = env.get_template("round.html").render(
        info=type("Info", (), {"round": 1, "state": "closed", "global_hash": "0x", "new_global_hash": "0x1",
                               "circuit_id": "0x", "opened_at": 0, "closed_at": 0})(), replies=replies,
        has_score=True, has_reward=True, emission=100 * 10**18, paid=REWARD, claimed_total=REWARD, weight_total=1.0,
        eval_loss=None, success_rate=None,
        run="0x" + "ab" * 32, registry=WALLET, rpc_url="http://x", refresh=0, updated="now", views=[])
    cell = html[html.index('<td class="num reward">'):]
    assert "46.4697 ZK0" in cell[:300] and "claimed" in cell[:300]  # not 0 after the claim
    assert "100 ZK0 to share · 46.4697 ZK0 earned by its selected wallets, 46.4697 ZK0 claimed" in html
    weight = html[html.index('<td class="num weight">'):]
    assert weight.startswith('<td class="num weight">100.0 %</td>')  # issue 29: each reply's weight is shown
    assert "its weight in the round's average" in html


def test_wallets_table_counts_the_runs_records_scores_rewards_and_slashes():
    from types import SimpleNamespace

    from aggregator.explorer.reader import Rewards, wallet_rows
    from contracts import Reason, Registry, StakeInfo, Status

    run, other = "0x" + "ab" * 32, "0x" + "cd" * 32
    honest, forger, key = WALLET, "0x" + "11" * 20, "0x" + "22" * 20

    def recorded(node, rnd, status, reason, score, signed=True, run_id=run):
        return {"event": "ContributionRecorded", "block": rnd, "tx_hash": "0x", "args": {
            "runId": run_id, "round": rnd, "node": node, "status": int(status), "reason": int(reason),
            "signed": signed, "proofVerified": False, "updateHash": b"\0" * 32, "proofHash": b"\0" * 32,
            "dataCommitment": b"\0" * 32, "lossBefore": 10**9, "lossAfter": 5 * 10**8, "score": score,
            "weight": score if status == Status.SELECTED else 0}}  # here a SELECTED record weighs its score

    events = [{"event": "NodeApproved", "block": 3, "tx_hash": "0x03", "args": {"node": honest}},
              {"event": "NodeApproved", "block": 4, "tx_hash": "0x04", "args": {"node": forger}},
              {"event": "Staked", "block": 5, "tx_hash": "0x05", "args": {"node": honest, "amount": 1, "total": 1}},
              recorded(honest, 1, Status.SELECTED, Reason.NONE, 10**9),
              recorded(honest, 2, Status.SELECTED, Reason.NONE, 10**9),
              recorded(honest, 1, Status.SELECTED, Reason.NONE, 10**9, run_id=other),  # another run: not counted
              recorded(forger, 1, Status.REJECTED, Reason.BAD_PROOF, 0),  # rejected before scoring: no score
              recorded(forger, 2, Status.REJECTED, Reason.HARMFUL, -5 * 10**8),
              recorded(key, 2, Status.REJECTED, Reason.BAD_SIGNATURE, 0, signed=False),  # a reply key, no wallet
              {"event": "RewardClaimed", "block": 9, "tx_hash": "0x09",
               "args": {"node": honest, "runIds": [bytes.fromhex(run[2:])], "rounds": [1], "amount": 1}},
              {"event": "Slashed", "block": 9, "tx_hash": "0x0a",
               "args": {"node": forger, "runId": run, "round": 1, "amount": 5 * 10**17, "bounty": 1}}]
    functions = _RoundInfo({1: (2, 100 * 10**18, 2 * 10**9), 2: (2, 100 * 10**18, 10**9)})
    registry = SimpleNamespace(contract=SimpleNamespace(functions=functions), record_of_event=Registry.record_of_event,
                               is_approved=lambda a: a.lower() == honest.lower(),
                               stake_of=lambda a: StakeInfo(10**18 if a.lower() == honest.lower() else 0, 0, 0))
    rows = {w["address"].lower(): w for w in wallet_rows(registry, events, run, Rewards(registry, events))}
    assert list(rows) == [honest.lower(), forger.lower()]  # in the order the chain met them; no reply key
    w = rows[honest.lower()]
    assert (w["approved"], w["stake"], w["records"], w["statuses"]["SELECTED"]) == (True, 10**18, 2, 2)
    assert w["mean_score"] == 1.0 and w["claimed"] == 50 * 10**18 and w["pending"] == 100 * 10**18
    assert (w["last"], w["last_block"]) == ("approved", 3)
    f = rows[forger.lower()]
    assert f["mean_score"] == -0.5  # the BAD_PROOF record's 0 is not a score
    assert (f["slashes"], f["slashed"], f["pending"], f["claimed"]) == (1, 5 * 10**17, 0, 0)


def test_a_reply_rejected_before_scoring_shows_no_score():
    from aggregator.explorer.reader import RunMetrics, _reply
    from contracts import Reason, Record, Status

    def record(status, reason, score):
        return Record("0x" + "ab" * 32, 1, WALLET, status, reason, True, False, "0x", "0x", "0x", 1.0, 0.5, score,
                      0.0)

    assert _reply(record(Status.REJECTED, Reason.BAD_PROOF, 0.0), {}, RunMetrics(), None).score is None
    assert _reply(record(Status.REJECTED, Reason.BAD_SIGNATURE, 0.0), {}, RunMetrics(), None).score is None
    assert _reply(record(Status.REJECTED, Reason.HARMFUL, -0.3), {}, RunMetrics(), None).score == -0.3
    assert _reply(record(Status.NOT_SELECTED, Reason.NONE, 0.0), {}, RunMetrics(), None).score == 0.0


def test_every_reason_the_registry_records_has_words():
    """A reason added to the registry (DUPLICATE, issue 29) is explained on the round pages, not shown bare."""
    from aggregator.explorer.view import REASON_TEXT
    from contracts import Reason

    assert set(REASON_TEXT) == set(Reason)
    assert all(REASON_TEXT[r] for r in Reason if r != Reason.NONE)
