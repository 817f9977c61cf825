// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title zk0 reward token
/// @notice The ERC-20 a zk0 federation pays contributions in. Only its minter, the ContributionRegistry that
///         deployed it, can create tokens: when a wallet claims the rewards its scored contributions earned.
contract RewardToken is ERC20 {
    address public immutable minter;

    error NotMinter(address caller);

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) {
        minter = msg.sender;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _mint(to, amount);
    }
}
