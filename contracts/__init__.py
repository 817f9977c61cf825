"""zk0 contracts: the ContributionRegistry (Solidity + committed artifacts) and its Python side.

- typed_data: the EIP-712 Contribution a node signs, sign_contribution / recover_signer
- registry:   Registry, the web3 client of the deployed contract (ChainError on reverts); runs, records
- records:    what it holds as Python values (Record, RoundInfo, Params, ...) with their on-chain encodings
- outcomes:   Status and Reason codes stored per reply
- evm_proof:  EZKL proof / VKA files as the on-chain verifier's arguments
- wallet:     the node's encrypted keystore
- local_chain: LocalChain, anvil for development and tests
"""

from contracts.artifacts import Artifact, load_artifact
from contracts.evm_proof import EvmProof, read_vka
from contracts.local_chain import ChainStartError, LocalChain
from contracts.npm import ToolNotFound
from contracts.outcomes import UNSIGNED_REASONS, Reason, Status, is_valid_signed_outcome
from contracts.records import (
    CircuitInfo,
    Entry,
    Params,
    Record,
    RoundInfo,
    StakeInfo,
    circuit_id_of,
    new_run_id,
    parse_amount,
)
from contracts.registry import ChainError, ChainUnavailable, Registry, connect
from contracts.typed_data import (
    LOSS_SCALE,
    Contribution,
    from_fixed,
    recover_signer,
    score_to_fixed,
    sign_contribution,
    to_fixed,
    weight_to_fixed,
)
from contracts.wallet import (
    WalletError,
    create_keystore,
    load_account,
    read_address,
    resolve_password,
    wallet_new,
    wallet_show,
)

__all__ = [
    "LOSS_SCALE",
    "UNSIGNED_REASONS",
    "Artifact",
    "ChainError",
    "ChainStartError",
    "ChainUnavailable",
    "CircuitInfo",
    "Contribution",
    "Entry",
    "EvmProof",
    "LocalChain",
    "Params",
    "Reason",
    "Record",
    "Registry",
    "RoundInfo",
    "StakeInfo",
    "Status",
    "ToolNotFound",
    "WalletError",
    "connect",
    "create_keystore",
    "from_fixed",
    "is_valid_signed_outcome",
    "load_account",
    "load_artifact",
    "new_run_id",
    "circuit_id_of",
    "parse_amount",
    "read_address",
    "read_vka",
    "recover_signer",
    "resolve_password",
    "score_to_fixed",
    "weight_to_fixed",
    "sign_contribution",
    "to_fixed",
    "wallet_new",
    "wallet_show",
]
