"""What a node checks in a round's terms before it signs (issue 30, N2): the circuit key it derives itself, and the
registry and chain it pinned."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from contracts import circuit_id_of
from node.contribution import RoundTerms, check_circuit_key, check_pinned, circuit_key
from node.errors import UserError
from prover.evm import REUSABLE_VERIFIER_CODEHASH, VKA_FILE

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WORDS = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)


def config(**changes) -> dict:
    base = {"run-id": "0x" + "aa" * 32, "server-round": 2, "global-hash": "0x" + "11" * 32,
            "circuit-id": "0x" + "cc" * 32, "circuit-key": "0x" + "dd" * 32, "chain-id": 31337,
            "registry": REGISTRY, "slice-rows": 16, "srs-logrows": 13}  # fmt: skip
    return {**base, **changes}


@pytest.fixture()
def circuit(tmp_path):
    """A circuit as the node holds it: its folder with the VKA words (cached there by prover.evm.circuit_vka)."""
    (tmp_path / VKA_FILE).write_bytes(len(WORDS).to_bytes(8, "little") + b"".join(WORDS))
    return SimpleNamespace(dir=tmp_path, output_scales=[12, 12], circuit_id="0x" + "cc" * 32)


def test_the_node_signs_the_circuit_key_it_derives_and_refuses_another(circuit):
    key = circuit_key(circuit, 4_320)
    assert key == circuit_id_of(REUSABLE_VERIFIER_CODEHASH, WORDS, 4_320, (12, 12))
    assert check_circuit_key(circuit, RoundTerms.from_config(config(**{"circuit-key": key})), 4_320) == key
    with pytest.raises(UserError, match="did not derive"):  # the round names a key this proof is not judged by
        check_circuit_key(circuit, RoundTerms.from_config(config()), 4_320)
    with pytest.raises(UserError, match="did not derive"):  # another proof length is another circuit
        check_circuit_key(circuit, RoundTerms.from_config(config(**{"circuit-key": key})), 4_352)


def test_a_round_without_a_circuit_key_is_another_version():
    with pytest.raises(UserError, match="circuit key"):
        RoundTerms.from_config({k: v for k, v in config().items() if k != "circuit-key"})


def test_the_node_signs_only_for_the_registry_and_chain_it_pinned():
    terms = RoundTerms.from_config(config())
    check_pinned(terms, None, None)  # nothing pinned: the round's
    check_pinned(terms, REGISTRY.lower(), 31337)
    with pytest.raises(UserError, match="registry"):
        check_pinned(terms, "0x" + "ab" * 20, None)
    with pytest.raises(UserError, match="chain"):
        check_pinned(terms, REGISTRY, 1)
