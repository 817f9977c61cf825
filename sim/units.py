"""Joint units: MuJoCo radians <-> LeRobot ``so100_follower`` units (``use_degrees=True``).

LeRobot calibrates each motor by recording its range of motion and reports, in degrees, the distance from the
middle of that range; the gripper is reported as 0..100 over its range (0 closed, 100 open). We do the same
with the MJCF joint ranges, so simulated numbers have the real robot's scale and orientation of zero. The signs
of the real arm's axes depend on its calibration and are not matched (see docs/simulation.md).
"""

from __future__ import annotations

import numpy as np

# Joint ranges of the SO-ARM100 MJCF (radians), order = node.so100.JOINTS.
JOINT_LOW = np.array([-2.2, -3.14158, 0.0, -2.0, -3.14158, -0.2])
JOINT_HIGH = np.array([2.2, 0.2, 3.14158, 1.8, 3.14158, 2.0])
JOINT_MID = (JOINT_LOW + JOINT_HIGH) / 2
GRIPPER = 5


def to_so100(q: np.ndarray) -> np.ndarray:
    """Joint positions in radians (..., 6) -> so100_follower units: degrees from mid-range, gripper 0..100."""
    q = np.asarray(q, dtype=np.float64)
    out = np.rad2deg(q - JOINT_MID)
    out[..., GRIPPER] = (q[..., GRIPPER] - JOINT_LOW[GRIPPER]) / (JOINT_HIGH[GRIPPER] - JOINT_LOW[GRIPPER]) * 100
    return out.astype(np.float32)


def from_so100(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_so100`: so100_follower units (..., 6) -> radians (float64)."""
    x = np.asarray(x, dtype=np.float64)
    q = np.deg2rad(x) + JOINT_MID
    q[..., GRIPPER] = JOINT_LOW[GRIPPER] + x[..., GRIPPER] / 100 * (JOINT_HIGH[GRIPPER] - JOINT_LOW[GRIPPER])
    return q


SO100_LOW = to_so100(JOINT_LOW)
SO100_HIGH = to_so100(JOINT_HIGH)
