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

    assert fmt_amount(15 * 10**17) == "1.5 ×10¹⁸" and fmt_amount(42) == "42" and fmt_amount(True) == "yes"

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
