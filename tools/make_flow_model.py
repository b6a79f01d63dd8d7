"""Build the bundled motion-direction model (daemon/assets/motion-direction.onnx).

A deliberately small, hand-weighted ONNX model over the optical-flow clip: the mean flow
(direction) and mean absolute flow (activity) of the clip feed a linear layer and a
softmax over: still, moving_left, moving_right, moving_up_down. It is what the pipeline
runs when no model is configured, and a template for the contract's metadata. Needs the
`onnx` package (a development dependency, not a runtime one).

    python tools/make_flow_model.py daemon/assets/motion-direction.onnx
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ("still", "moving_left", "moving_right", "moving_up_down")
CLIP_LENGTH = 8
SIZE_PX = 224
# Rows: mean dx, mean dy, mean |dx|, mean |dy| (pixels per frame at 224 px).
WEIGHTS = np.array([
    [0.0, -6.0, 6.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [-8.0, 2.0, 2.0, 0.0],
    [-8.0, 0.0, 0.0, 6.0],
], dtype=np.float32)
BIAS = np.array([1.0, -1.0, -1.0, -1.5], dtype=np.float32)


def build() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("flow_clip", TensorProto.FLOAT,
                                      [1, 2, CLIP_LENGTH, SIZE_PX, SIZE_PX])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, len(LABELS)])
    axes = numpy_helper.from_array(np.array([2, 3, 4], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["flow_clip", "axes"], ["mean"], keepdims=0),
        helper.make_node("Abs", ["flow_clip"], ["absflow"]),
        helper.make_node("ReduceMean", ["absflow", "axes"], ["activity"], keepdims=0),
        helper.make_node("Concat", ["mean", "activity"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(nodes, "motion_direction", [x], [y], initializer=[
        axes, numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in {"labels": json.dumps(list(LABELS)), "layout": "NCTHW",
                       "input": "flow", "clip_length": str(CLIP_LENGTH)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), sys.argv[1] if len(sys.argv) > 1 else "motion-direction.onnx")
