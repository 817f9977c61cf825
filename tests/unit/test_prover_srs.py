"""SRS handling: clear errors for missing or wrong files, a loud warning for dev SRS."""

from __future__ import annotations

import logging

import pytest

from prover.circuit import CircuitConfig
from prover.errors import SRSError
from prover.srs import dev_srs, load_srs
from prover.statement import SliceShape


def test_missing_srs_says_what_to_do(tmp_path):
    with pytest.raises(SRSError, match=r"no SRS file .*logrows=14.*get-srs"):
        load_srs(tmp_path / "kzg14.srs", 14)


def test_dev_srs_is_cached_and_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="prover.srs"):
        srs = dev_srs(4, tmp_path)
    assert srs.kind == "dev" and srs.logrows == 4 and srs.path.is_file()
    assert "NEVER use it in production" in caplog.text
    assert dev_srs(4, tmp_path).sha256 == srs.sha256  # same file, not a new random one
    assert load_srs(srs.path, 4, sha256=srs.sha256).kind == "public"


def test_wrong_size_or_digest_is_refused(tmp_path):
    srs = dev_srs(4, tmp_path)
    with pytest.raises(SRSError, match="logrows=4, the circuit needs logrows=5"):
        load_srs(srs.path, 5)
    with pytest.raises(SRSError, match="not the same file"):
        load_srs(srs.path, 4, sha256="0x" + "00" * 32)
    short = tmp_path / "short.srs"
    short.write_bytes(b"\x01")
    with pytest.raises(SRSError, match="too short"):
        load_srs(short, 4)


def test_circuit_config_validation():
    assert CircuitConfig().run_args().input_visibility == "polycommit"
    with pytest.raises(ValueError, match="decomp_base"):
        CircuitConfig(decomp_base=1000)
    with pytest.raises(ValueError, match="input_scale"):
        CircuitConfig(input_scale=0)
    with pytest.raises(ValueError, match="input_scale"):
        CircuitConfig(input_scale=15)  # outputs at 30 bits: more than the registry reads
    # m·A·loss at 4·scale must stay below 4096^5 = 2^60: at real size (m = 32) losses up to 2^12 / 192.
    assert CircuitConfig().loss_bound(SliceShape(6, 720, 32)) == 4096 / 192
    assert CircuitConfig(decomp_legs=8).loss_bound(SliceShape(6, 720, 32)) == 4096 / 192  # EZKL's 64-bit limit


def test_a_second_builder_waits_for_the_first_and_builds_nothing(tmp_path):
    """Two processes sharing a cache (the suite's workers, two nodes on a machine): the second asks while the first
    builds, waits for it, and finds the product built (``prover.build_lock``)."""
    import threading

    from prover.build_lock import building

    product, events = tmp_path / "specs" / "x" / "settings.json", []
    inside = threading.Event()

    def first():
        with building(product, tmp_path / "specs") as missing:
            inside.set()
            events.append(("first", missing))
            product.parent.mkdir(parents=True)
            product.write_text("built")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(10)
    with building(product, tmp_path / "specs") as missing:
        events.append(("second", missing))
    thread.join()
    assert events == [("first", True), ("second", False)]
    with building(product, tmp_path / "specs") as missing:  # built: no lock taken, nothing to do
        assert not missing
