// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice The EZKL-generated reusable Halo2 verifier (`create_evm_verifier(..., reusable=True)`): one contract
///         for any circuit, each circuit described by its verifying-key artifact (VKA), registered once.
/// @dev Its verifyProof returns (bool, bytes32, int256[]) but writes the array without an ABI offset word, so
///      only the first word (success) is decoded here. A failing proof reverts inside it. It only reads (declared
///      view here, the registry calls it with STATICCALL): a verifier registered by anyone cannot call back into
///      the registry with a state change in the middle of a slash.
interface IHalo2VerifierReusable {
    function registerVka(bytes32[] calldata vka) external returns (bytes32 vkaDigest);

    function verifyProof(bytes calldata proof, uint256[] calldata instances, bytes32[] memory vka)
        external
        view
        returns (bool success);
}
