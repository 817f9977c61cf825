// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";

import {IHalo2VerifierReusable} from "./IHalo2VerifierReusable.sol";
import {RewardToken} from "./RewardToken.sol";
import {VkaStore} from "./VkaStore.sol";

/// @title zk0 contribution registry
/// @notice Public audit trail of a zk0 federation: which nodes may contribute, which runs and rounds ran on which
///         global model and circuit, and what happened to every node's reply in every round. The node's EIP-712
///         signature is checked here, so the aggregator cannot attribute an update to a node that did not sign
///         it; optionally the node's EZKL proof is verified here too, against the round's circuit and the
///         signed losses.
/// @dev Runs: a run is a bytes32 id the aggregator chooses off chain; rounds and records are keyed by
///      (runId, round), and a node signs the runId, so a reply signed in one run is refused in any other, and a
///      second run on the same registry never meets the first one's rounds or records.
///      Storage: one hash per record (keccak256 of the abi-encoded Record) and the per-round reward totals; the
///      records themselves are in the ContributionRecorded events. Who needs a record later (claim, rewardOf)
///      passes its fields, checked against the stored hash. So a record costs one storage slot, not twelve.
///      Invariants: a wallet's (run, round, wallet) slot is filled only with that wallet's signature (unsigned
///      rejections live under addresses derived from a hash, see rejectionKey); a proof is accepted only with
///      the exact length of its circuit, and only for the instances that encode the signed losses.
///      One piece of work is recorded once: within a round, no two SELECTED/NOT_SELECTED records share an update
///      hash or a proof hash (a copy sent from another wallet is recorded REJECTED, DUPLICATE).
///      Incentives: wallets stake ETH to take part; a closed round's emission is shared among its SELECTED
///      wallets in proportion to the weights they had in the round's average, as the aggregator attests them
///      (totals kept as records arrive, claimed per wallet: no loop over nodes); anyone may slash the stake of a
///      wallet that signed a proof that does not verify.
///      Bounded powers: a circuit's id is derived from its verifying key (circuitIdOf), and a node signs the id
///      of the circuit it proved for, so its proof is judged by that key and no other; registering a circuit
///      is open to anyone (an id cannot name someone else's key). The owner's parameter changes are capped
///      (MAX_SLASH_BPS, MAX_BOUNTY_BPS, MAX_UNSTAKE_DELAY) and take effect paramsDelay seconds after they are
///      set (at once only before any round or stake exists); a round keeps the minStake, circuit and emission
///      it opened with. A stake leaves unstakeDelay seconds after both its exit request and its last record,
///      and a slash pays its bounty only to who committed to the evidence a block before (commitSlash).
contract ContributionRegistry is Ownable2Step, EIP712, ReentrancyGuard {
    // ---------------------------------------------------------------- constants
    uint256 public constant LOSS_SCALE = 1e9; // losses and scores are fixed-point: value * LOSS_SCALE
    uint256 public constant WEIGHT_SCALE = 1e9; // a record's weight: its share of the round's average * WEIGHT_SCALE

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
    uint8 public constant DUPLICATE = 11;

    uint8 public constant ROUND_NONE = 0;
    uint8 public constant ROUND_OPEN = 1;
    uint8 public constant ROUND_CLOSED = 2;

    bytes32 public constant CONTRIBUTION_TYPEHASH = keccak256(
        "Contribution(bytes32 runId,uint64 round,bytes32 globalHash,bytes32 circuitId,bytes32 updateHash,"
        "bytes32 proofHash,bytes32 dataCommitment,uint256 lossBefore,uint256 lossAfter)"
    );
    /// @notice Largest fixed-point scale of a circuit's outputs: up to 2^29 < LOSS_SCALE, a signed loss
    ///         (1e-9 steps) determines its field element uniquely, so nobody can pick other instances for it.
    uint8 public constant MAX_OUTPUT_SCALE = 29;
    uint16 public constant BPS = 10_000; // fractions are in basis points
    /// @notice The owner's bounds: at most half a wallet's stake per bad proof, at most half of that as bounty
    ///         (so a slasher never gains more than a quarter of a stake: no profit in baiting), and a stake is
    ///         never locked for more than 30 days after its exit request and last record.
    uint16 public constant MAX_SLASH_BPS = 5_000;
    uint16 public constant MAX_BOUNTY_BPS = 5_000;
    uint64 public constant MAX_UNSTAKE_DELAY = 30 days;

    // ---------------------------------------------------------------- types
    /// @notice What a node signs (EIP-712 primary type).
    struct Contribution {
        bytes32 runId;
        uint64 round;
        bytes32 globalHash;
        bytes32 circuitId; // the circuit the node proved for (circuitIdOf its verifying key): judged by it alone
        bytes32 updateHash;
        bytes32 proofHash;
        bytes32 dataCommitment;
        uint256 lossBefore;
        uint256 lossAfter;
    }

    /// @notice The outcome of one node's reply in one round of one run (stored as its hash, emitted whole).
    struct Record {
        bytes32 runId;
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
        uint256 weight; // its share of the round's new global model, * WEIGHT_SCALE (0 unless SELECTED)
    }

    /// @notice One signed reply's outcome, as recordContributions takes it.
    struct Entry {
        Contribution c;
        bytes signature;
        uint8 status;
        uint8 reason;
        int256 score;
        uint256 weight;
    }

    struct Round {
        uint8 state; // ROUND_NONE, ROUND_OPEN, ROUND_CLOSED
        uint64 openedAt; // block timestamps
        uint64 closedAt;
        bool approvalRequired; // whether its signers need the owner's approval (as when it opened: fixed for the round)
        bytes32 globalHash;
        bytes32 circuitId;
        bytes32 newGlobalHash;
        uint256 emission; // reward tokens the round shares out (the emission per round when it opened)
        uint256 weightTotal; // sum of its SELECTED records' weights: each earns emission * weight / weightTotal
        uint256 minStake; // the stake a signer needs in this round (minStake when it opened: fixed for the round)
    }

    /// @notice Participation rules, set by the owner and readable by anyone.
    struct Params {
        uint256 minStake; // wei a wallet must have staked to take part
        uint256 emissionPerRound; // reward token units (18 decimals) shared by each round opened from now on
        uint16 slashBps; // fraction of a wallet's stake slashed for a signed bad proof (<= MAX_SLASH_BPS)
        uint16 bountyBps; // fraction of the slashed amount paid to whoever submitted the evidence (rest: burned)
        uint64 unstakeDelay; // seconds after its exit request and its last record before a stake can leave
        bool approvalRequired; // permissioned federation: the owner also approves each wallet
    }

    /// @dev One storage slot: a record reads it (the stake) and writes lastRecordAt in it, ~3 k gas, not a fresh slot.
    struct Stake {
        uint128 amount; // wei
        uint64 exitAt; // when the unstake was requested (block timestamp; 0: not exiting): the wallet takes no part
        //                in rounds opened later, and can still be slashed
        uint64 lastRecordAt; // when the wallet's last signed record was written (block timestamp)
    }

    /// @notice A circuit proofs can be verified against: registered once under circuitIdOf(its fields), never
    ///         changed.
    struct Circuit {
        address verifier; // an EZKL reusable verifier
        uint32 proofLength; // the only accepted proof length (a proof hash then identifies one proof)
        uint8 scaleBefore; // fixed-point scales (2^scale) of the two public outputs: lossBefore, lossAfter
        uint8 scaleAfter;
        address vkaStore; // a VkaStore holding the circuit's VKA
        bytes32 vkaDigest; // keccak256 of the VKA words (the reusable verifier's own digest)
    }

    // ---------------------------------------------------------------- storage
    RewardToken public immutable rewardToken;
    uint64 public immutable paramsDelay; // seconds between setParams and the new parameters taking effect
    address public aggregator;
    Params private _params;
    Params private _pendingParams; // setParams' latest change, in force from pendingParamsAt
    uint64 public pendingParamsAt; // 0: no change pending
    uint64 public roundsOpened; // rounds opened in all runs
    uint256 public totalStaked; // wei held as stakes (the contract's balance is totalStaked + totalBurned)
    uint256 public totalBurned; // slashed wei not paid as bounties: locked here for good

    mapping(address => bool) private _approved;
    mapping(address => Stake) private _stakes;
    mapping(bytes32 => mapping(uint64 => mapping(address => bool))) private _rewardSettled; // claimed or slashed
    mapping(bytes32 => bool) public slashed; // slashKey(contribution digest, signer) => already slashed
    mapping(bytes32 => uint256) public slashCommitments; // commitSlash's commitment => block number it was made in
    mapping(bytes32 => Circuit) private _circuits;
    mapping(bytes32 => uint64) public runOpenedAt; // runId => block timestamp of its first openRound (0: unknown)
    mapping(bytes32 => mapping(uint64 => Round)) private _rounds;
    mapping(bytes32 => mapping(uint64 => mapping(address => bytes32))) private _recordHash;
    mapping(bytes32 => mapping(uint64 => mapping(bytes32 => bool))) private _workRecorded; // update/proof hashes

    // ---------------------------------------------------------------- events
    event AggregatorChanged(address indexed previousAggregator, address indexed newAggregator);
    event CircuitRegistered(
        bytes32 indexed circuitId, address verifier, bytes32 vkaDigest, uint32 proofLength, uint8 scaleBefore,
        uint8 scaleAfter
    );
    event ParamsChanged(Params params, uint64 effectiveAt);
    event SlashCommitted(bytes32 indexed commitment, address indexed by);
    event Staked(address indexed node, uint256 amount, uint256 total);
    event UnstakeRequested(address indexed node, uint256 amount, uint64 unlockAt);
    event StakeWithdrawn(address indexed node, uint256 amount);
    event RewardClaimed(address indexed node, bytes32[] runIds, uint64[] rounds, uint256 amount);
    event Slashed(
        address indexed node,
        address indexed by,
        bytes32 indexed runId,
        uint64 round,
        bytes32 digest,
        uint256 amount,
        uint256 bounty
    );
    event NodeApproved(address indexed node);
    event NodeRevoked(address indexed node);
    event RunOpened(bytes32 indexed runId, address indexed aggregator, uint64 firstRound);
    event RoundOpened(bytes32 indexed runId, uint64 indexed round, bytes32 globalHash, bytes32 circuitId);
    event RoundClosed(bytes32 indexed runId, uint64 indexed round, bytes32 newGlobalHash);
    event ContributionRecorded(
        bytes32 indexed runId,
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
        int256 score,
        uint256 weight
    );

    // ---------------------------------------------------------------- errors
    error NotAggregator(address caller);
    error ZeroAddress();
    error ZeroHash();
    error RoundAlreadyOpened(bytes32 runId, uint64 round);
    error RoundNotOpen(bytes32 runId, uint64 round);
    error GlobalHashMismatch(uint64 round, bytes32 expected, bytes32 signed);
    error RunMismatch(bytes32 expected, bytes32 signed, uint64 expectedRound, uint64 signedRound);
    error CircuitMismatch(bytes32 expected, bytes32 signed);
    error MalformedSignature();
    error SignerNotApproved(address signer);
    error AlreadyRecorded(bytes32 runId, uint64 round, address node);
    error RecordMismatch(bytes32 runId, uint64 round, address node);
    error EmptyBatch();
    error InvalidOutcome(uint8 status, uint8 reason);
    error InvalidWeight(uint8 status, uint256 weight);
    error DuplicateWork(bytes32 runId, uint64 round, bytes32 hash);
    error InvalidCircuit();
    error CircuitAlreadyRegistered(bytes32 circuitId);
    error CircuitNotRegistered(bytes32 circuitId);
    error NonCanonicalProof(uint256 expectedLength, uint256 length);
    error ProofRejected();
    error ProofHashMismatch(bytes32 signed, bytes32 actual);
    error InvalidParams();
    error NothingStaked(address node);
    error AlreadyExiting(address node);
    error NotExiting(address node);
    error UnstakeLocked(uint64 unlockAt, uint64 now);
    error RoundNotClosed(bytes32 runId, uint64 round);
    error NoReward(uint64 round, address node);
    error AlreadyClaimed(uint64 round, address node);
    error ProofValid();
    error VerifierOutOfGas();
    error AlreadySlashed(bytes32 digest);
    error NoSlashCommitment(bytes32 commitment);
    error NotAParticipant(address signer);
    error TransferFailed(address to, uint256 amount);

    modifier onlyAggregator() {
        if (msg.sender != aggregator) revert NotAggregator(msg.sender);
        _;
    }

    /// @param paramsDelay_ seconds a parameter change waits before it applies (nodes read it before staking)
    constructor(address aggregator_, uint64 paramsDelay_) Ownable(msg.sender) EIP712("zk0 ContributionRegistry", "1") {
        if (aggregator_ == address(0)) revert ZeroAddress();
        aggregator = aggregator_;
        paramsDelay = paramsDelay_;
        rewardToken = new RewardToken("zk0 Reward", "ZK0");
        emit AggregatorChanged(address(0), aggregator_);
        _setParams(
            Params({
                minStake: 0,
                emissionPerRound: 100 ether,
                slashBps: 5_000,
                bountyBps: 5_000,
                unstakeDelay: 1 days,
                approvalRequired: true
            }),
            0
        );
    }

    // ---------------------------------------------------------------- owner
    function setAggregator(address newAggregator) external onlyOwner {
        if (newAggregator == address(0)) revert ZeroAddress();
        emit AggregatorChanged(aggregator, newAggregator);
        aggregator = newAggregator;
    }

    /// @notice Change the participation rules, within the caps. They apply paramsDelay seconds from now (at
    ///         once while no round was ever opened and nothing is staked: nobody is bound by the old ones yet),
    ///         to rounds opened from then on; a later call replaces a change still pending.
    function setParams(Params calldata p) external onlyOwner {
        if (pendingParamsAt != 0 && block.timestamp >= pendingParamsAt) _params = _pendingParams;
        if (roundsOpened == 0 && totalStaked == 0) {
            pendingParamsAt = 0;
            _setParams(p, uint64(block.timestamp));
        } else {
            _checkParams(p);
            _pendingParams = p;
            pendingParamsAt = uint64(block.timestamp) + paramsDelay;
            emit ParamsChanged(p, pendingParamsAt);
        }
    }

    /// @notice In a permissioned federation (approvalRequired), the owner's approval; a wallet also needs
    ///         minStake staked (see isApproved).
    function approveNode(address node) external onlyOwner {
        if (node == address(0)) revert ZeroAddress();
        _approved[node] = true;
        emit NodeApproved(node);
    }

    function revokeNode(address node) external onlyOwner {
        _approved[node] = false;
        emit NodeRevoked(node);
    }

    /// @notice Register a circuit's verifying key under its id, circuitIdOf(the verifier's code hash, the VKA's
    ///         digest, proofLength, the scales), and return the id: proofs of the circuit are verified by
    ///         `verifier_` (an EZKL reusable verifier) with `vka_` (`create_evm_vka`), are exactly `proofLength`
    ///         bytes, and their two public outputs are the losses at fixed-point scales `scaleBefore` and
    ///         `scaleAfter`. Anyone may register: the id names these fields and nothing else, so nobody (the owner
    ///         included) can put another key behind an id a node signed.
    function registerCircuit(
        address verifier_,
        bytes32[] calldata vka_,
        uint32 proofLength,
        uint8 scaleBefore,
        uint8 scaleAfter
    ) external returns (bytes32 circuitId) {
        if (verifier_.code.length == 0 || vka_.length == 0 || proofLength == 0 || scaleBefore > MAX_OUTPUT_SCALE || scaleAfter > MAX_OUTPUT_SCALE) {
            revert InvalidCircuit();
        }
        bytes32 digest = keccak256(abi.encodePacked(vka_));
        circuitId = circuitIdOf(verifier_.codehash, digest, proofLength, scaleBefore, scaleAfter);
        Circuit storage k = _circuits[circuitId];
        if (k.verifier != address(0)) revert CircuitAlreadyRegistered(circuitId);
        k.verifier = verifier_;
        k.proofLength = proofLength;
        k.scaleBefore = scaleBefore;
        k.scaleAfter = scaleAfter;
        k.vkaStore = address(new VkaStore(vka_));
        k.vkaDigest = digest;
        // the verifier must compute the digest the registry does: another kind or version of verifier is refused
        if (IHalo2VerifierReusable(verifier_).registerVka(vka_) != digest) revert InvalidCircuit();
        emit CircuitRegistered(circuitId, verifier_, digest, proofLength, scaleBefore, scaleAfter);
    }

    /// @notice A circuit's id: what a node signs and a round names. Derived from everything that judges a proof
    ///         (the verifier's code, not its address: one id on every chain).
    function circuitIdOf(bytes32 verifierCodehash, bytes32 vkaDigest, uint32 proofLength, uint8 scaleBefore,
        uint8 scaleAfter) public pure returns (bytes32) {
        return keccak256(abi.encode("zk0:circuit", verifierCodehash, vkaDigest, proofLength, scaleBefore, scaleAfter));
    }

    // ---------------------------------------------------------------- aggregator
    /// @notice Open round `round` of run `runId` on global model `globalHash`; the first round opened under a
    ///         runId registers the run (RunOpened). No earlier call is needed: a run can start while the chain is
    ///         down and its aggregator's journal sends this later.
    function openRound(bytes32 runId, uint64 round, bytes32 globalHash, bytes32 circuitId) external onlyAggregator {
        if (globalHash == bytes32(0) || runId == bytes32(0)) revert ZeroHash();
        Round storage r = _rounds[runId][round];
        if (r.state != ROUND_NONE) revert RoundAlreadyOpened(runId, round);
        if (runOpenedAt[runId] == 0) {
            runOpenedAt[runId] = uint64(block.timestamp);
            emit RunOpened(runId, msg.sender, round);
        }
        r.state = ROUND_OPEN;
        r.openedAt = uint64(block.timestamp);
        r.globalHash = globalHash;
        r.circuitId = circuitId;
        Params memory p = _current();
        r.emission = p.emissionPerRound;
        r.minStake = p.minStake;
        r.approvalRequired = p.approvalRequired;
        roundsOpened += 1;
        emit RoundOpened(runId, round, globalHash, circuitId);
    }

    function closeRound(bytes32 runId, uint64 round, bytes32 newGlobalHash) external onlyAggregator {
        if (newGlobalHash == bytes32(0)) revert ZeroHash();
        Round storage r = _requireOpen(runId, round);
        r.state = ROUND_CLOSED;
        r.closedAt = uint64(block.timestamp);
        r.newGlobalHash = newGlobalHash;
        emit RoundClosed(runId, round, newGlobalHash);
    }

    /// @notice Record the outcomes of replies signed by approved nodes for open round (`runId`, `round`), with
    ///         the validation score the aggregator attests for each (fixed point, LOSS_SCALE; negative: the update
    ///         hurt) and its weight in the round's average (WEIGHT_SCALE; SELECTED only). Each node's signature is
    ///         checked here; each record is stored as one hash and emitted whole. All or nothing: one refused entry
    ///         reverts the batch.
    function recordContributions(bytes32 runId, uint64 round, Entry[] calldata entries) external onlyAggregator {
        if (entries.length == 0) revert EmptyBatch();
        Round storage r = _requireOpen(runId, round);
        uint256 weightTotal = r.weightTotal;
        for (uint256 i = 0; i < entries.length; i++) {
            Entry calldata e = entries[i];
            _checkRound(e.c, runId, round, r);
            weightTotal += e.weight;
            _store(_signedRecord(e.c, e.signature, e.status, e.reason, e.score, e.weight, false));
        }
        r.weightTotal = weightTotal;
    }

    /// @notice As one entry of recordContributions, and verify the node's EZKL proof first: against the round's
    ///         circuit, with exactly the circuit's proof length, and with the public instances that encode the
    ///         signed losses (derived here from them, so a proof of other losses or of another circuit fails). The
    ///         proof must be the one the node signed: c.proofHash == sha256(proof).
    function recordContributionWithProof(
        Contribution calldata c,
        bytes calldata signature,
        uint8 status,
        uint8 reason,
        int256 score,
        uint256 weight,
        bytes calldata proof
    ) external onlyAggregator {
        Round storage r = _requireOpen(c.runId, c.round);
        _checkRound(c, c.runId, c.round, r);
        Circuit storage k = _registeredCircuit(c.circuitId);
        _requireSignedProof(c, proof);
        if (proof.length != k.proofLength) revert NonCanonicalProof(k.proofLength, proof.length);
        if (!_proofHolds(k, c, proof)) revert ProofRejected();
        r.weightTotal += weight;
        _store(_signedRecord(c, signature, status, reason, score, weight, true));
    }

    /// @notice Record a reply that failed before a valid signature for this round existed (MALFORMED,
    ///         UNKNOWN_NODE, BAD_SIGNATURE, STALE) under rejectionKey(flowerNodeId), an address nobody holds
    ///         the key of: an unsigned rejection can never take a wallet's slot. `evidenceHash` identifies
    ///         what was received.
    function recordRejection(bytes32 runId, uint64 round, uint256 flowerNodeId, uint8 reason, bytes32 evidenceHash)
        external
        onlyAggregator
    {
        if (reason == NONE || reason > STALE) revert InvalidOutcome(REJECTED, reason);
        _requireOpen(runId, round);
        Record memory rec;
        rec.runId = runId;
        rec.round = round;
        rec.node = rejectionKey(flowerNodeId);
        rec.status = REJECTED;
        rec.reason = reason;
        rec.dataCommitment = evidenceHash;
        _store(rec);
    }

    // ---------------------------------------------------------------- nodes: stake, rewards
    /// @notice Add msg.value to the sender's stake (not while it is exiting).
    function stake() external payable {
        Stake storage st = _stakes[msg.sender];
        if (msg.value == 0) revert NothingStaked(msg.sender);
        if (st.exitAt != 0) revert AlreadyExiting(msg.sender);
        st.amount = SafeCast.toUint128(st.amount + msg.value);
        totalStaked += msg.value;
        emit Staked(msg.sender, msg.value, st.amount);
    }

    /// @notice Take no part in rounds opened from now on (the rounds already open may still record this wallet's
    ///         replies); the stake can be withdrawn unstakeDelay seconds after both this request and the wallet's
    ///         last record (unlockTime), so a wallet cannot flee the slash of a bad proof it signed.
    function requestUnstake() external {
        Stake storage st = _stakes[msg.sender];
        if (st.amount == 0) revert NothingStaked(msg.sender);
        if (st.exitAt != 0) revert AlreadyExiting(msg.sender);
        st.exitAt = uint64(block.timestamp);
        emit UnstakeRequested(msg.sender, st.amount, unlockTime(msg.sender));
    }

    function withdrawStake() external nonReentrant {
        Stake storage st = _stakes[msg.sender];
        if (st.exitAt == 0) revert NotExiting(msg.sender);
        uint64 unlockAt = unlockTime(msg.sender);
        if (block.timestamp < unlockAt) revert UnstakeLocked(unlockAt, uint64(block.timestamp));
        uint256 amount = st.amount;
        totalStaked -= amount;
        delete _stakes[msg.sender];
        emit StakeWithdrawn(msg.sender, amount);
        _pay(msg.sender, amount);
    }

    /// @notice Mint to `node` what its `records` earned (anyone may call; the tokens go to `node`). Each record
    ///         is one of `node`'s, as emitted in ContributionRecorded (checked against its stored hash); each
    ///         (run, round, node) pays once, and only once its round is closed.
    function claim(address node, Record[] calldata records) external nonReentrant returns (uint256 amount) {
        bytes32[] memory runIds = new bytes32[](records.length);
        uint64[] memory rounds = new uint64[](records.length);
        for (uint256 i = 0; i < records.length; i++) {
            Record calldata rec = records[i];
            _requireRecord(rec, node);
            if (_rounds[rec.runId][rec.round].state != ROUND_CLOSED) revert RoundNotClosed(rec.runId, rec.round);
            if (_rewardSettled[rec.runId][rec.round][node]) revert AlreadyClaimed(rec.round, node);
            uint256 earned = _earned(rec);
            if (earned == 0) revert NoReward(rec.round, node);
            _rewardSettled[rec.runId][rec.round][node] = true;
            amount += earned;
            runIds[i] = rec.runId;
            rounds[i] = rec.round;
        }
        emit RewardClaimed(node, runIds, rounds, amount);
        rewardToken.mint(node, amount);
    }

    /// @notice Step 1 of a slash: commit to the evidence, keccak256(abi.encode(slasher, contribution digest,
    ///         salt)) (slashCommitment). Seeing the evidence in slashBadProof's transaction is then of no use to
    ///         a copier: the bounty goes to whoever committed to it in an earlier block.
    function commitSlash(bytes32 commitment) external {
        if (slashCommitments[commitment] == 0) slashCommitments[commitment] = block.number;
        emit SlashCommitted(commitment, msg.sender);
    }

    /// @notice Step 2: anyone who committed (commitSlash, an earlier block) may submit a signed contribution
    ///         whose proof does not verify against the circuit the node signed (with the signed losses, at the
    ///         circuit's exact length): the signer loses slashBps of its stake, bountyBps of that goes to the
    ///         caller, and its reward for the round is forfeited. Once per contribution and signer; a proof that
    ///         verifies is never slashable (ProofValid), nor one of a circuit nobody registered.
    function slashBadProof(Contribution calldata c, bytes calldata signature, bytes calldata proof, bytes32 salt)
        external
        nonReentrant
        returns (uint256 amount)
    {
        bytes32 digest = contributionDigest(c);
        _consumeCommitment(slashCommitment(msg.sender, digest, salt));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert MalformedSignature();
        bytes32 key = slashKey(digest, signer);
        if (slashed[key]) revert AlreadySlashed(digest);
        if (_stakes[signer].amount == 0 && !_approved[signer]) revert NotAParticipant(signer);
        _requireSignedProof(c, proof);
        if (_proofHolds(_registeredCircuit(c.circuitId), c, proof)) revert ProofValid();
        slashed[key] = true;
        _rewardSettled[c.runId][c.round][signer] = true;
        uint256 bounty;
        (amount, bounty) = _takeSlash(signer);
        emit Slashed(signer, msg.sender, c.runId, c.round, digest, amount, bounty);
        _pay(msg.sender, bounty);
    }

    // ---------------------------------------------------------------- views
    /// @notice The participation rules in force now (a pending change once its time has come).
    function params() external view returns (Params memory) {
        return _current();
    }

    /// @notice The last change setParams scheduled and when it applies (effectiveAt 0: none pending).
    function pendingParams() external view returns (Params memory p, uint64 effectiveAt) {
        if (pendingParamsAt == 0 || block.timestamp >= pendingParamsAt) return (p, 0);
        return (_pendingParams, pendingParamsAt);
    }

    /// @notice When `node`'s exiting stake can be withdrawn: unstakeDelay seconds after the later of its exit
    ///         request and its last record (0 if it is not exiting).
    function unlockTime(address node) public view returns (uint64) {
        Stake storage st = _stakes[node];
        if (st.exitAt == 0) return 0;
        uint64 from = st.exitAt > st.lastRecordAt ? st.exitAt : st.lastRecordAt;
        return from + _current().unstakeDelay;
    }

    /// @notice What commitSlash takes: keccak256(abi.encode(slasher, digest, salt)).
    function slashCommitment(address slasher, bytes32 digest, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(slasher, digest, salt));
    }

    function stakeOf(address node) external view returns (Stake memory) {
        return _stakes[node];
    }

    /// @notice Whether `node` may contribute now: minStake staked and not exiting, and the owner's approval
    ///         where the federation requires it.
    function isApproved(address node) public view returns (bool) {
        Params memory p = _current();
        Stake storage st = _stakes[node];
        return (!p.approvalRequired || _approved[node]) && st.exitAt == 0 && (p.minStake == 0 || st.amount >= p.minStake);
    }

    /// @dev Whether `node` may be recorded in round `r`, judged by the rules the round opened with (the owner
    ///      changing them mid-round cannot make an honest reply of it unrecordable: N13): approved if the round
    ///      requires it, `r.minStake` staked, and no exit requested before it opened. (A revocation applies at once.)
    function _takesPart(address node, Round storage r) private view returns (bool) {
        if (r.approvalRequired && !_approved[node]) return false;
        Stake storage st = _stakes[node];
        if (st.exitAt != 0 && st.exitAt < r.openedAt) return false; // (the same second counts as after the opening)
        return r.minStake == 0 || st.amount >= r.minStake;
    }

    /// @notice What `rec` (one of the records emitted in ContributionRecorded) earns and has not been paid:
    ///         emission * weight / weightTotal for a SELECTED record in a closed round (0
    ///         otherwise, or once claimed or slashed). Reverts RecordMismatch for a record that is not the chain's.
    function rewardOf(Record calldata rec) external view returns (uint256) {
        _requireRecord(rec, rec.node);
        if (_rounds[rec.runId][rec.round].state != ROUND_CLOSED || _rewardSettled[rec.runId][rec.round][rec.node]) {
            return 0;
        }
        return _earned(rec);
    }

    /// @notice The hash of `node`'s record in (`runId`, `round`), 0 if none: keccak256(abi.encode(record)).
    function recordHash(bytes32 runId, uint64 round, address node) external view returns (bytes32) {
        return _recordHash[runId][round][node];
    }

    function hasRecord(bytes32 runId, uint64 round, address node) public view returns (bool) {
        return _recordHash[runId][round][node] != bytes32(0);
    }

    /// @notice The hash a record is stored as (what clients compare their copy of a record with).
    function hashRecord(Record memory rec) public pure returns (bytes32) {
        return keccak256(abi.encode(rec));
    }

    function roundInfo(bytes32 runId, uint64 round) external view returns (Round memory) {
        return _rounds[runId][round];
    }

    function circuit(bytes32 circuitId) external view returns (Circuit memory) {
        return _circuits[circuitId];
    }

    /// @notice The VKA proofs of `circuitId` are verified with (empty before registerCircuit).
    function vka(bytes32 circuitId) public view returns (bytes32[] memory) {
        address store = _circuits[circuitId].vkaStore;
        if (store == address(0)) return new bytes32[](0);
        return abi.decode(store.code, (bytes32[]));
    }

    /// @notice The on-chain key of an unsigned rejection of Flower node `flowerNodeId`: the last 20 bytes of
    ///         sha256("zk0:flower-node:" ‖ decimal id). Nobody knows a private key for it, so it is never a
    ///         wallet's address.
    function rejectionKey(uint256 flowerNodeId) public pure returns (address) {
        return address(uint160(uint256(sha256(abi.encodePacked("zk0:flower-node:", Strings.toString(flowerNodeId))))));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 digest a node signs for `c` (eth-account's encode_typed_data gives the same).
    function contributionDigest(Contribution calldata c) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CONTRIBUTION_TYPEHASH,
                    c.runId,
                    c.round,
                    c.globalHash,
                    c.circuitId,
                    c.updateHash,
                    c.proofHash,
                    c.dataCommitment,
                    c.lossBefore,
                    c.lossAfter
                )
            )
        );
    }

    /// @notice The key of `slashed`: a bad contribution is slashed once per signer, so Sybil wallets signing the same
    ///         bad contribution are each slashed (keyed by the digest alone, the second went free: N9).
    function slashKey(bytes32 digest, address signer) public pure returns (bytes32) {
        return keccak256(abi.encode(digest, signer));
    }

    /// @notice The address that signed `c`, or a MalformedSignature revert (wrong length, bad v, high s).
    function recoverSigner(Contribution calldata c, bytes calldata signature) public view returns (address) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(contributionDigest(c), signature);
        if (err != ECDSA.RecoverError.NoError) revert MalformedSignature();
        return signer;
    }

    // ---------------------------------------------------------------- internals
    /// @dev The signed reply must be for this run, round, global model and circuit (a reply signed in another
    ///      run, replayed from another round, or proved for another circuit, is refused).
    function _checkRound(Contribution calldata c, bytes32 runId, uint64 round, Round storage r) private view {
        if (c.runId != runId || c.round != round) revert RunMismatch(runId, c.runId, round, c.round);
        if (c.globalHash != r.globalHash) revert GlobalHashMismatch(round, r.globalHash, c.globalHash);
        if (c.circuitId != r.circuitId) revert CircuitMismatch(r.circuitId, c.circuitId);
    }

    function _signedRecord(
        Contribution calldata c,
        bytes calldata signature,
        uint8 status,
        uint8 reason,
        int256 score,
        uint256 weight,
        bool proofVerified
    ) private view returns (Record memory rec) {
        _checkOutcome(status, reason);
        if (weight > WEIGHT_SCALE || (weight != 0 && status != SELECTED)) revert InvalidWeight(status, weight);
        address node = recoverSigner(c, signature);
        if (!_takesPart(node, _rounds[c.runId][c.round])) revert SignerNotApproved(node);
        rec.runId = c.runId;
        rec.round = c.round;
        rec.node = node;
        rec.status = status;
        rec.reason = reason;
        rec.signed = true;
        rec.proofVerified = proofVerified;
        rec.updateHash = c.updateHash;
        rec.proofHash = c.proofHash;
        rec.dataCommitment = c.dataCommitment;
        rec.lossBefore = c.lossBefore;
        rec.lossAfter = c.lossAfter;
        rec.score = score;
        rec.weight = weight;
    }

    /// @dev One piece of work, one record that can be paid: a second verified record of a round with the same
    ///      update or proof hash (a copy sent from another wallet) is refused; the aggregator records it
    ///      REJECTED, DUPLICATE instead.
    function _claimWork(bytes32 runId, uint64 round, bytes32 updateHash, bytes32 proofHash) private {
        mapping(bytes32 => bool) storage seen = _workRecorded[runId][round];
        if (seen[updateHash]) revert DuplicateWork(runId, round, updateHash);
        if (seen[proofHash]) revert DuplicateWork(runId, round, proofHash);
        seen[updateHash] = true;
        seen[proofHash] = true;
    }

    /// @dev `rec` is the chain's record of `node` (its hash is the stored one).
    function _requireRecord(Record calldata rec, address node) private view {
        bytes32 stored = _recordHash[rec.runId][rec.round][node];
        if (rec.node != node || stored == bytes32(0) || stored != keccak256(abi.encode(rec))) {
            revert RecordMismatch(rec.runId, rec.round, node);
        }
    }

    function _earned(Record calldata rec) private view returns (uint256) {
        if (rec.status != SELECTED || rec.weight == 0) return 0;
        Round storage r = _rounds[rec.runId][rec.round];
        return r.emission * rec.weight / r.weightTotal;
    }

    /// @dev Signed replies end SELECTED, NOT_SELECTED (NONE, or NO_QUORUM when the round kept the global
    ///      model) or REJECTED by a check that needs a valid signature to reach.
    function _checkOutcome(uint8 status, uint8 reason) private pure {
        bool ok = (status == SELECTED && reason == NONE)
            || (status == NOT_SELECTED && (reason == NONE || reason == NO_QUORUM))
            || (status == REJECTED
                && (reason == MALFORMED || (reason >= INTEGRITY && reason <= NO_IMPROVEMENT) || reason == HARMFUL
                    || reason == DUPLICATE));
        if (!ok) revert InvalidOutcome(status, reason);
    }

    function _checkParams(Params memory p) private pure {
        if (p.slashBps > MAX_SLASH_BPS || p.bountyBps > MAX_BOUNTY_BPS || p.unstakeDelay > MAX_UNSTAKE_DELAY) {
            revert InvalidParams();
        }
    }

    function _setParams(Params memory p, uint64 effectiveAt) private {
        _checkParams(p);
        _params = p;
        emit ParamsChanged(p, effectiveAt);
    }

    function _current() private view returns (Params memory) {
        return pendingParamsAt != 0 && block.timestamp >= pendingParamsAt ? _pendingParams : _params;
    }

    /// @dev A commitment made in an earlier block, used once.
    function _consumeCommitment(bytes32 commitment) private {
        uint256 committedAt = slashCommitments[commitment];
        if (committedAt == 0 || committedAt >= block.number) revert NoSlashCommitment(commitment);
        delete slashCommitments[commitment];
    }

    /// @dev Take slashBps of `node`'s stake: bountyBps of it is the bounty, the rest is burned (kept here).
    function _takeSlash(address node) private returns (uint256 amount, uint256 bounty) {
        Params memory p = _current();
        Stake storage st = _stakes[node];
        amount = st.amount * p.slashBps / BPS;
        st.amount -= uint128(amount); // at most the stake
        totalStaked -= amount;
        bounty = amount * p.bountyBps / BPS;
        totalBurned += amount - bounty;
    }

    function _pay(address to, uint256 amount) private {
        if (amount == 0) return;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    function _requireOpen(bytes32 runId, uint64 round) private view returns (Round storage r) {
        r = _rounds[runId][round];
        if (r.state != ROUND_OPEN) revert RoundNotOpen(runId, round);
    }

    /// @dev The circuit a node signed; it must be registered for a proof to be judged.
    function _registeredCircuit(bytes32 circuitId) private view returns (Circuit storage k) {
        k = _circuits[circuitId];
        if (k.verifier == address(0)) revert CircuitNotRegistered(circuitId);
    }

    function _requireSignedProof(Contribution calldata c, bytes calldata proof) private pure {
        bytes32 proofHash = sha256(proof);
        if (proofHash != c.proofHash) revert ProofHashMismatch(c.proofHash, proofHash);
    }

    /// @dev Whether `proof` verifies with circuit `k` for the instances that encode c's signed losses. A
    ///      verifier that runs out of gas is not a failed proof (a caller could starve it to slash an honest
    ///      node): then this reverts instead of answering false.
    function _proofHolds(Circuit storage k, Contribution calldata c, bytes calldata proof) private view returns (bool) {
        if (proof.length != k.proofLength) return false;
        uint256[] memory instances = new uint256[](2);
        bool encodable;
        (encodable, instances[0]) = _lossInstance(c.lossBefore, k.scaleBefore);
        if (!encodable) return false;
        (encodable, instances[1]) = _lossInstance(c.lossAfter, k.scaleAfter);
        if (!encodable) return false;
        bytes32[] memory words = abi.decode(k.vkaStore.code, (bytes32[]));
        uint256 gasBefore = gasleft();
        try IHalo2VerifierReusable(k.verifier).verifyProof(proof, instances, words) returns (bool ok) {
            return ok;
        } catch {
            // Out of gas leaves at most 1/64 of gasBefore here; a real verification failure leaves far more.
            if (gasleft() <= gasBefore / 63) revert VerifierOutOfGas();
            return false;
        }
    }

    /// @dev The field element m = round(loss * 2^scale / LOSS_SCALE) the circuit outputs for a signed loss,
    ///      and whether the signed loss is m / 2^scale rounded to LOSS_SCALE (the node's own encoding). For
    ///      scale <= MAX_OUTPUT_SCALE at most one m qualifies.
    function _lossInstance(uint256 loss, uint8 scale) private pure returns (bool, uint256) {
        if (loss > type(uint128).max) return (false, 0);
        uint256 scaled = loss << scale;
        uint256 m = (scaled + LOSS_SCALE / 2) / LOSS_SCALE;
        uint256 back = m * LOSS_SCALE;
        uint256 diff = back > scaled ? back - scaled : scaled - back;
        return (2 * diff <= (uint256(1) << scale), m);
    }

    function _store(Record memory rec) private {
        mapping(address => bytes32) storage slots = _recordHash[rec.runId][rec.round];
        if (slots[rec.node] != bytes32(0)) revert AlreadyRecorded(rec.runId, rec.round, rec.node);
        if (rec.signed && rec.status != REJECTED) _claimWork(rec.runId, rec.round, rec.updateHash, rec.proofHash);
        if (rec.signed) {
            Stake storage st = _stakes[rec.node];
            if (st.amount != 0) st.lastRecordAt = uint64(block.timestamp); // its stake waits for slashers
        }
        slots[rec.node] = keccak256(abi.encode(rec));
        emit ContributionRecorded(
            rec.runId,
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
            rec.score,
            rec.weight
        );
    }
}
