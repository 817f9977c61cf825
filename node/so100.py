"""The SO-100 robot's data layout, as LeRobot's ``so100_follower`` records it.

One definition shared by the synthetic builder, the simulator's recorder and the dataset checks, so every
dataset a node trains on has the same feature names, dtypes and units.
"""

from __future__ import annotations

JOINTS: tuple[str, ...] = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)
"""Joint names in LeRobot's order. Units as ``so100_follower`` with ``use_degrees=True`` (LeRobot 0.6
default): the five arm joints in degrees, the gripper in 0..100 (closed..open)."""

ACTION_DIM = len(JOINTS)
ROBOT_TYPE = "so100_follower"
FPS = 30
CAMERAS: tuple[str, ...] = ("front", "wrist")
IMAGE_SHAPE: tuple[int, int, int] = (96, 128, 3)  # height, width, channels


def so100_features(cameras: tuple[str, ...] = CAMERAS, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
                   use_videos: bool = True) -> dict[str, dict]:
    """LeRobot feature spec for an SO-100 dataset: joint state, joint action and camera streams."""
    joint = {"dtype": "float32", "shape": (ACTION_DIM,), "names": list(JOINTS)}
    features: dict[str, dict] = {"observation.state": dict(joint), "action": dict(joint)}
    for cam in cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "video" if use_videos else "image",
            "shape": image_shape,
            "names": ["height", "width", "channels"],
        }
    return features
