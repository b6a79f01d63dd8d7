"""Small ONNX models built for tests with onnx.helper (no weights to download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BRIGHTNESS_LABELS = ("dark", "bright")


def brightness_model(path: Path, clip_length: int = 4, size: int = 32) -> Path:
    """scores = [1 - b, b] with b the clip's mean RGB value / 255: a deterministic
    "action" (the scene lights up) for testing events end to end."""
    x = helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["N", 3, clip_length, size, size])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3, 4], np.int64), "axes"),
        numpy_helper.from_array(np.array([[-1 / 255, 1 / 255]], np.float32), "w"),
        numpy_helper.from_array(np.array([1.0, 0.0], np.float32), "b"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["clip", "axes"], ["mean"], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "one"], ["mean2"]),
        helper.make_node("Mul", ["mean2", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["scores"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    graph = helper.make_graph(nodes, "brightness", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in {
        "labels": json.dumps(list(BRIGHTNESS_LABELS)),
        "layout": "NCTHW",
        "input": "rgb",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
