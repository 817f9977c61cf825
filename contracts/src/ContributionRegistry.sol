// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice The EZKL-generated reusable Halo2 verifier (`create_evm_verifier(..., reusable=True)`).
/// @dev Its verifyProof returns (bool, bytes32, int256[]) but writes the array without an ABI offset
///      word, so only the first word (success) is decoded here. Failing proofs revert inside it.
interface IHalo2VerifierReusable {
    function registerVka(bytes32[] calldata vka) external returns (bytes32 vkaDigest);
    function verifyProof(bytes calldata proof, uint256[] calldata instances, bytes32[] memory vka)
        external
        returns (bool success);
}

/// @notice Holds an EZKL verifying-key artifact (VKA) as its code: reading it back costs a few thousand gas,
///         where reading its ~160 words from storage would cost ~340 k gas per verified proof.
contract VkaStore {
    constructor(bytes32[] memory vka) {
        // The runtime code is abi.encode(vka). It starts with a zero byte (STOP), so calling it does nothing.
        bytes memory code = abi.encode(vka);
        assembly {
            return(add(code, 32), mload(code))
        }
    }
}

/// @title zk0 contribution registry
/// @notice Public audit trail of a zk0 federation: which nodes may contribute, which rounds ran on which
///         global model, and what happened to every node's reply in every round. The node's EIP-712
///         signature is checked here, so the aggregator cannot attribute an update to a node that did not
///         sign it; optionally the node's EZKL proof is verified here too.
contract ContributionRegistry {
    // ---------------------------------------------------------------- constants
    uint256 public constant LOSS_SCALE = 1e9; // losses are fixed-point: loss * LOSS_SCALE

    uint8 public constant SELECTED = 1;
    uint8 public constant NOT_SELECTED = 2;
    uint8 public constant REJECTED = 3;

    uint8 public constant NONE = 0;
    uint8 public constant MALFORMED = 1;
    uint8 public constant UNKNOWN_NODE = 2;
    uint8 public constant BAD_SIGNATURE = 3;
    uint8 public constant STALE = 4;
    uint8 public constant INTEGRITY = 5;
    uint8 public constant BAD_PROOF = 6;
    uint8 public constant UNBOUND = 7;
    uint8 public constant NO_IMPROVEMENT = 8;
    uint8 public constant NO_QUORUM = 9;
    uint8 public constant HARMFUL = 10;

    uint8 public constant ROUND_NONE = 0;
    uint8 public constant ROUND_OPEN = 1;
    uint8 public constant ROUND_CLOSED = 2;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant CONTRIBUTION_TYPEHASH = keccak256(
        "Contribution(uint64 round,bytes32 globalHash,bytes32 updateHash,bytes32 proofHash,"
        "bytes32 dataCommitment,uint256 lossBefore,uint256 lossAfter)"
    );
    bytes32 private constant NAME_HASH = keccak256("zk0 ContributionRegistry");
    bytes32 private constant VERSION_HASH = keccak256("1");
    // secp256k1n / 2: signatures with a larger s are the malleable twin of a valid one (EIP-2).
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ---------------------------------------------------------------- types
    /// @notice What a node signs (EIP-712 primary type).
    struct Contribution {
        uint64 round;
        bytes32 globalHash;
        bytes32 updateHash;
        bytes32 proofHash;
        bytes32 dataCommitment;
        uint256 lossBefore;
        uint256 lossAfter;
    }

    /// @notice The outcome of one node's reply in one round.
    struct Record {
        uint64 round;
        address node;
        uint8 status;
        uint8 reason;
        bool signed; // the node's signature was checked here (false: recordRejection)
        bool proofVerified; // the EZKL proof was verified here
        bytes32 updateHash;
        bytes32 proofHash;
        bytes32 dataCommitment; // for rejections: the aggregator's evidence hash
        uint256 lossBefore;
        uint256 lossAfter;
        int256 score; // the aggregator's validation score L_val(global) - L_val(update), * LOSS_SCALE (0: unsigned)
    }

    struct Round {
        uint8 state; // ROUND_NONE, ROUND_OPEN, ROUND_CLOSED
        uint64 openedAt; // block timestamps
        uint64 closedAt;
        bytes32 globalHash;
        bytes32 circuitId;
        bytes32 newGlobalHash;
    }

    // ---------------------------------------------------------------- storage
    address public owner;
    address public aggregator;
    IHalo2VerifierReusable public verifier;
    address public vkaStore; // a VkaStore with the current circuit's VKA, registered in `verifier`

    mapping(address => bool) public isApproved;
    mapping(uint64 => Round) private _rounds;
    mapping(uint64 => mapping(address => Record)) private _records;
    mapping(uint64 => address[]) private _roundNodes;
    mapping(address => uint64[]) private _nodeRounds;

    // ---------------------------------------------------------------- events
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event AggregatorChanged(address indexed previousAggregator, address indexed newAggregator);
    event VerifierChanged(address indexed verifier, bytes32 vkaDigest);
    event NodeApproved(address indexed node);
    event NodeRevoked(address indexed node);
    event RoundOpened(uint64 indexed round, bytes32 globalHash, bytes32 circuitId);
    event RoundClosed(uint64 indexed round, bytes32 newGlobalHash);
    event ContributionRecorded(
        uint64 indexed round,
        address indexed node,
        uint8 status,
        uint8 reason,
        bool signed,
        bool proofVerified,
        bytes32 updateHash,
        bytes32 proofHash,
        bytes32 dataCommitment,
        uint256 lossBefore,
        uint256 lossAfter,
        int256 score
    );

    // ---------------------------------------------------------------- errors
    error NotOwner(address caller);
    error NotAggregator(address caller);
    error ZeroAddress();
    error ZeroHash();
    error RoundAlreadyOpened(uint64 round);
    error RoundNotOpen(uint64 round);
    error GlobalHashMismatch(uint64 round, bytes32 expected, bytes32 signed);
    error MalformedSignature();
    error SignerNotApproved(address signer);
    error AlreadyRecorded(uint64 round, address node);
    error InvalidOutcome(uint8 status, uint8 reason);
    error VerifierNotSet();
    error ProofRejected();
    error ProofHashMismatch(bytes32 signed, bytes32 actual);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier onlyAggregator() {
        if (msg.sender != aggregator) revert NotAggregator(msg.sender);
        _;
    }

    constructor(address aggregator_) {
        if (aggregator_ == address(0)) revert ZeroAddress();
        owner = msg.sender;
        aggregator = aggregator_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit AggregatorChanged(address(0), aggregator_);
    }

    // ---------------------------------------------------------------- owner
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setAggregator(address newAggregator) external onlyOwner {
        if (newAggregator == address(0)) revert ZeroAddress();
        emit AggregatorChanged(aggregator, newAggregator);
        aggregator = newAggregator;
    }

    function approveNode(address node) external onlyOwner {
        if (node == address(0)) revert ZeroAddress();
        isApproved[node] = true;
        emit NodeApproved(node);
    }

    function revokeNode(address node) external onlyOwner {
        isApproved[node] = false;
        emit NodeRevoked(node);
    }

    /// @notice Use `verifier_` (an EZKL reusable verifier) with `vka_` (the circuit's verifying-key artifact,
    ///         from `create_evm_vka`) for recordContributionWithProof. Registers the VKA in the verifier.
    function setVerifier(address verifier_, bytes32[] calldata vka_) external onlyOwner {
        if (verifier_ == address(0)) revert ZeroAddress();
        verifier = IHalo2VerifierReusable(verifier_);
        vkaStore = address(new VkaStore(vka_));
        bytes32 digest = verifier.registerVka(vka_);
        emit VerifierChanged(verifier_, digest);
    }

    /// @notice The VKA proofs are verified with (empty before setVerifier).
    function vka() public view returns (bytes32[] memory) {
        if (vkaStore == address(0)) return new bytes32[](0);
        return abi.decode(vkaStore.code, (bytes32[]));
    }

    // ---------------------------------------------------------------- aggregator
    function openRound(uint64 round, bytes32 globalHash, bytes32 circuitId) external onlyAggregator {
        if (globalHash == bytes32(0)) revert ZeroHash();
        Round storage r = _rounds[round];
        if (r.state != ROUND_NONE) revert RoundAlreadyOpened(round);
        r.state = ROUND_OPEN;
        r.openedAt = uint64(block.timestamp);
        r.globalHash = globalHash;
        r.circuitId = circuitId;
        emit RoundOpened(round, globalHash, circuitId);
    }

    function closeRound(uint64 round, bytes32 newGlobalHash) external onlyAggregator {
        if (newGlobalHash == bytes32(0)) revert ZeroHash();
        Round storage r = _rounds[round];
        if (r.state != ROUND_OPEN) revert RoundNotOpen(round);
        r.state = ROUND_CLOSED;
        r.closedAt = uint64(block.timestamp);
        r.newGlobalHash = newGlobalHash;
        emit RoundClosed(round, newGlobalHash);
    }

    /// @notice Record the outcome of a reply signed by an approved node for an open round, with the validation
    ///         score the aggregator attests for it (fixed point, LOSS_SCALE; negative: the update hurt).
    function recordContribution(
        Contribution calldata c,
        bytes calldata signature,
        uint8 status,
        uint8 reason,
        int256 score
    ) external onlyAggregator {
        _recordSigned(c, signature, status, reason, score, false);
    }

    /// @notice As recordContribution, and verify the node's EZKL proof with the registered verifier first.
    ///         The proof must be the one the node signed: c.proofHash == sha256(proof).
    function recordContributionWithProof(
        Contribution calldata c,
        bytes calldata signature,
        uint8 status,
        uint8 reason,
        int256 score,
        bytes calldata proof,
        uint256[] calldata instances
    ) external onlyAggregator {
        if (address(verifier) == address(0)) revert VerifierNotSet();
        bytes32 proofHash = sha256(proof);
        if (proofHash != c.proofHash) revert ProofHashMismatch(c.proofHash, proofHash);
        // The verifier reverts without data on a bad proof: name the failure instead.
        try verifier.verifyProof(proof, instances, vka()) returns (bool ok) {
            if (!ok) revert ProofRejected();
        } catch {
            revert ProofRejected();
        }
        _recordSigned(c, signature, status, reason, score, true);
    }

    /// @notice Record a reply that failed before a valid signature for this round existed
    ///         (MALFORMED, UNKNOWN_NODE, BAD_SIGNATURE, STALE). `evidenceHash` identifies what was received.
    function recordRejection(uint64 round, address node, uint8 reason, bytes32 evidenceHash)
        external
        onlyAggregator
    {
        if (node == address(0)) revert ZeroAddress();
        if (reason == NONE || reason > STALE) revert InvalidOutcome(REJECTED, reason);
        _requireOpen(round);
        Record memory rec;
        rec.round = round;
        rec.node = node;
        rec.status = REJECTED;
        rec.reason = reason;
        rec.dataCommitment = evidenceHash;
        _store(rec);
    }

    // ---------------------------------------------------------------- views
    function getRecord(uint64 round, address node) external view returns (Record memory) {
        return _records[round][node];
    }

    function hasRecord(uint64 round, address node) public view returns (bool) {
        return _records[round][node].node != address(0);
    }

    function roundRecords(uint64 round) external view returns (Record[] memory out) {
        address[] storage nodes = _roundNodes[round];
        out = new Record[](nodes.length);
        for (uint256 i = 0; i < nodes.length; i++) {
            out[i] = _records[round][nodes[i]];
        }
    }

    function nodeHistory(address node) external view returns (Record[] memory out) {
        uint64[] storage rounds = _nodeRounds[node];
        out = new Record[](rounds.length);
        for (uint256 i = 0; i < rounds.length; i++) {
            out[i] = _records[rounds[i]][node];
        }
    }

    function roundInfo(uint64 round) external view returns (Round memory) {
        return _rounds[round];
    }

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice The EIP-712 digest a node signs for `c` (eth-account's encode_typed_data gives the same).
    function contributionDigest(Contribution calldata c) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                CONTRIBUTION_TYPEHASH,
                c.round,
                c.globalHash,
                c.updateHash,
                c.proofHash,
                c.dataCommitment,
                c.lossBefore,
                c.lossAfter
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @notice The address that signed `c`, or a MalformedSignature revert (wrong length, bad v, high s).
    function recoverSigner(Contribution calldata c, bytes calldata signature) public view returns (address) {
        if (signature.length != 65) revert MalformedSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v != 27 && v != 28) revert MalformedSignature();
        if (uint256(s) > HALF_N) revert MalformedSignature();
        address signer = ecrecover(contributionDigest(c), v, r, s);
        if (signer == address(0)) revert MalformedSignature();
        return signer;
    }

    // ---------------------------------------------------------------- internals
    function _recordSigned(
        Contribution calldata c,
        bytes calldata signature,
        uint8 status,
        uint8 reason,
        int256 score,
        bool proofVerified
    ) private {
        _checkOutcome(status, reason);
        Round storage r = _requireOpen(c.round);
        if (c.globalHash != r.globalHash) revert GlobalHashMismatch(c.round, r.globalHash, c.globalHash);
        address node = recoverSigner(c, signature);
        if (!isApproved[node]) revert SignerNotApproved(node);
        _store(
            Record({
                round: c.round,
                node: node,
                status: status,
                reason: reason,
                signed: true,
                proofVerified: proofVerified,
                updateHash: c.updateHash,
                proofHash: c.proofHash,
                dataCommitment: c.dataCommitment,
                lossBefore: c.lossBefore,
                lossAfter: c.lossAfter,
                score: score
            })
        );
    }

    /// @dev Signed replies end SELECTED, NOT_SELECTED (NONE, or NO_QUORUM when the round kept the global
    ///      model) or REJECTED by a check that needs a valid signature to reach.
    function _checkOutcome(uint8 status, uint8 reason) private pure {
        bool ok = (status == SELECTED && reason == NONE)
            || (status == NOT_SELECTED && (reason == NONE || reason == NO_QUORUM))
            || (status == REJECTED
                    && (reason == MALFORMED || (reason >= INTEGRITY && reason <= NO_IMPROVEMENT) || reason == HARMFUL));
        if (!ok) revert InvalidOutcome(status, reason);
    }

    function _requireOpen(uint64 round) private view returns (Round storage r) {
        r = _rounds[round];
        if (r.state != ROUND_OPEN) revert RoundNotOpen(round);
    }

    function _store(Record memory rec) private {
        if (hasRecord(rec.round, rec.node)) revert AlreadyRecorded(rec.round, rec.node);
        _records[rec.round][rec.node] = rec;
        _roundNodes[rec.round].push(rec.node);
        _nodeRounds[rec.node].push(rec.round);
        emit ContributionRecorded(
            rec.round,
            rec.node,
            rec.status,
            rec.reason,
            rec.signed,
            rec.proofVerified,
            rec.updateHash,
            rec.proofHash,
            rec.dataCommitment,
            rec.lossBefore,
            rec.lossAfter,
            rec.score
        );
    }
}
