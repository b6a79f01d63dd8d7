"""The benchmark's generated action model: an R(2+1)D-like stack of Conv3D + ReLU layers
with random weights, of realistic size (rgb 8x112x112, about 2 GFLOPs per clip), written
with onnx.helper so that the benchmark needs no download. onnx is in the bench extra, not
a dependency of the daemon: it is imported when a model is built."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from daemon.bench.extras import require


@dataclass(frozen=True)
class ConvNet:
    """Shape of the generated R(2+1)D-like model: factorised (1,k,k) spatial and (3,1,1)
    temporal convolutions, each followed by ReLU, then global pooling and a classifier."""

    clip_length: int = 8
    size: int = 112
    widths: tuple[int, ...] = (48, 96, 192)
    labels: int = 5
    seed: int = 0


# One convolution: input channels, output channels, kernel (t, h, w), stride (t, h, w).
Layer = tuple[int, int, tuple[int, int, int], tuple[int, int, int]]


def build_conv3d_model(path: Path, batch: int | str, net: ConvNet = ConvNet()) -> float:
    """Write the model to `path` (batch: 1, or a name for a free dimension); its GFLOPs.

    Raises MissingExtra when onnx is not installed.
    """
    onnx = require("onnx", "the generated Conv3D model of `actiond bench inference`")
    helper, TensorProto = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(net.seed)
    nodes, weights, x, macs = _conv_stack(onnx, net, rng)
    head_nodes, head_weights = _classifier(onnx, net, rng, x)
    shape = [batch, 3, net.clip_length, net.size, net.size]
    graph = helper.make_graph(
        nodes + head_nodes,
        "r2plus1d_like",
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, net.labels])],
        weights + head_weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds on edge boxes
    labels = [f"action_{i}" for i in range(net.labels)]
    helper.set_model_props(
        model,
        {
            "labels": json.dumps(labels),
            "layout": "NCTHW",
            "input": "rgb",
            "clip_length": str(net.clip_length),
            "mean": "127.5",
            "std": "64.0",
        },
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return 2 * macs / 1e9


def _layers(net: ConvNet) -> list[Layer]:
    """A strided 7x7 stem, then per width step a temporal and a strided spatial
    convolution, and a last temporal one that halves T."""
    layers: list[Layer] = [(3, net.widths[0], (1, 7, 7), (1, 2, 2))]
    for a, b in zip(net.widths, net.widths[1:]):
        layers += [(a, a, (3, 1, 1), (1, 1, 1)), (a, b, (1, 3, 3), (1, 2, 2))]
    layers.append((net.widths[-1], net.widths[-1], (3, 1, 1), (2, 1, 1)))
    return layers


def _conv_stack(
    onnx: ModuleType, net: ConvNet, rng: np.random.Generator
) -> tuple[list[Any], list[Any], str, int]:
    """The Conv + ReLU nodes with He-initialised weights: (nodes, weights, the name of
    the last output, multiply-adds per clip)."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes: list[Any] = []
    weights: list[Any] = []
    x = "clip"
    dims, macs = [net.clip_length, net.size, net.size], 0
    for i, (cin, cout, kernel, stride) in enumerate(_layers(net)):
        fan_in = cin * int(np.prod(kernel))
        weights += [
            numpy_helper.from_array(
                (rng.standard_normal((cout, cin, *kernel)) * np.sqrt(2 / fan_in)).astype(
                    np.float32
                ),
                f"w{i}",
            ),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        pads = [k // 2 for k in kernel] * 2
        nodes += [
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=kernel,
                strides=stride,
                pads=pads,
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        dims = [(d + 2 * (k // 2) - k) // s + 1 for d, k, s in zip(dims, kernel, stride)]
        macs += cout * int(np.prod(dims)) * fan_in
        x = f"r{i}"
    return nodes, weights, x, macs


def _classifier(
    onnx: ModuleType, net: ConvNet, rng: np.random.Generator, x: str
) -> tuple[list[Any], list[Any]]:
    """Global average pooling, a linear layer and softmax over the labels: "scores"."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    weights = [
        numpy_helper.from_array(
            (rng.standard_normal((net.widths[-1], net.labels)) * 0.1).astype(np.float32), "fc_w"
        ),
        numpy_helper.from_array(np.zeros(net.labels, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    return nodes, weights
