"""Dataset URIs and feature checks: every user mistake gives a one-line UserError, never a traceback."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pytest

from node.datasets import DatasetURI, check_features, load_metadata
from node.errors import UserError
from node.params import check_arrays
from node.so100 import so100_features


@pytest.mark.parametrize("uri", ["", "data/so100", "s3:bucket/x", "hf:", "local:", "hf:no-owner"])
def test_bad_uri_is_a_clear_error(uri):
    with pytest.raises(UserError, match="dataset URI|repo id"):
        DatasetURI.parse(uri)


def test_uri_forms():
    hub = DatasetURI.parse("hf:lerobot/svla_so100_pickplace")
    local = DatasetURI.parse("local:/data/my_arm")
    assert (hub.repo_id, hub.root) == ("lerobot/svla_so100_pickplace", None)
    assert (local.repo_id, str(local.root)) == ("local/my_arm", "/data/my_arm")


def test_hub_unreachable_fails_fast_with_hint():
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="Hub is unreachable.*local:"):
        load_metadata("hf:lerobot/svla_so100_pickplace")
    assert time.perf_counter() - t0 < 30


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_metadata(f"local:{tmp_path / 'nope'}")
    with pytest.raises(UserError, match="not a LeRobot dataset"):
        load_metadata(f"local:{tmp_path}")


def test_feature_checks():
    good = so100_features()
    check_features(good, "ok")
    no_action = {k: v for k, v in good.items() if k != "action"}
    with pytest.raises(UserError, match="no 'action'"):
        check_features(no_action, "x")
    wrong_shape = {**good, "action": {**good["action"], "shape": (7,)}}
    with pytest.raises(UserError, match=r"float32 \(6,\)"):
        check_features(wrong_shape, "x")
    wrong_names = {**good, "observation.state": {**good["observation.state"], "names": list("abcdef")}}
    with pytest.raises(UserError, match="SO-100's"):
        check_features(wrong_names, "x")
    no_camera = {k: v for k, v in good.items() if not k.startswith("observation.images")}
    with pytest.raises(UserError, match="no camera"):
        check_features(no_camera, "x")


def test_check_arrays_names_shapes_values():
    expected = OrderedDict(a=np.zeros(3, np.float32), b=np.zeros((2, 2), np.float32))
    check_arrays(expected, OrderedDict(a=np.ones(3, np.float32), b=np.ones((2, 2), np.float32)))
    with pytest.raises(ValueError, match="names differ"):
        check_arrays(expected, OrderedDict(b=np.ones((2, 2), np.float32), a=np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="shape"):
        check_arrays(expected, OrderedDict(a=np.ones(4, np.float32), b=np.ones((2, 2), np.float32)))
    with pytest.raises(ValueError, match="float64"):
        check_arrays(expected, OrderedDict(a=np.ones(3), b=np.ones((2, 2), np.float32)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_arrays(expected, OrderedDict(a=np.array([1, np.inf, 0], np.float32), b=np.ones((2, 2), np.float32)))
