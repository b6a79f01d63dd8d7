"""Writes movenet-lightning-batch.onnx: MoveNet Lightning with a free batch dimension, so
one onnxruntime call runs the pose model on every person crop a detect replica holds
(development only; tools/convert_models.py runs it after converting MoveNet, and writes
its row in ATTRIBUTION.md).

    python tools/batch_pose_model.py [--model daemon/assets/models/movenet-lightning.onnx]

The TFJS conversion fixes the batch at 1 in two places: a Reshape of the centre heatmap
to (1, 48, 48, 1), and the keypoint decoding after the heads (GatherND with a batch
index of 0, reshapes to 17 rows). The batched model is the same graph cut where the
decoding starts: the Reshape gets -1 for its batch, the input's batch becomes symbolic,
and the outputs are the four (N, 48, 48, C) head tensors the decoding reads (the centre
map already weighted by the model's own prior, the keypoint regression and offsets, the
keypoint heatmap). daemon/stages/pose_decode.py does the decoding, in numpy, op for op as
the graph did; tests/test_pose_batch.py checks the pair against the original model.
The weights are those of the original file (float16 initialisers, Cast to float32).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference

MODELS = Path(__file__).resolve().parent.parent / "daemon" / "assets" / "models"
SOURCE = MODELS / "movenet-lightning.onnx"
OUT = MODELS / "movenet-lightning-batch.onnx"
BATCH_DIM = "persons"
# The cut: the tensors the TFJS graph's keypoint decoding starts from, and the output
# names the batched model gives them (daemon/stages/pose_decode.py reads them by name).
HEADS = (
    ("StatefulPartitionedCall/truediv_2:0", "centre"),
    ("StatefulPartitionedCall/kpt_regress_0/conv2d_6/BiasAdd_BiasAdd__307__627:0", "regress"),
    ("StatefulPartitionedCall/kpt_offset_0/conv2d_7/BiasAdd_BiasAdd__309__636:0", "offset"),
    ("Transpose__811:0", "heatmap"),
)
CENTRE_RESHAPE = "StatefulPartitionedCall/center_0/conv2d_4/BiasAdd_BiasAdd__308__654:0"


def batched(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph up to the heads, batch free; raises ValueError if it is not the expected one."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    reshape = producers.get(CENTRE_RESHAPE)
    if reshape is None or reshape.op_type != "Reshape":
        raise ValueError(f"{CENTRE_RESHAPE} is not a Reshape: not the expected MoveNet graph")
    shapes = {init.name: init for init in graph.initializer}
    target = numpy_helper.to_array(shapes[reshape.input[1]]).copy()
    if target[0] != 1:
        raise ValueError(f"the centre Reshape's target is {target.tolist()}, expected batch 1")
    target[0] = -1
    shapes[reshape.input[1]].CopyFrom(numpy_helper.from_array(target, reshape.input[1]))
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    keep = _needed(graph, [name for name, _ in HEADS])
    renames = dict(HEADS)
    nodes = [node for i, node in enumerate(graph.node) if i in keep]  # in the graph's order
    for node in nodes:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]
    used = {i for node in nodes for i in node.input}
    cut = onnx.helper.make_model(
        onnx.helper.make_graph(
            nodes,
            "movenet_lightning_batch",
            list(graph.input),
            [
                onnx.helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT, None)
                for _, new in HEADS
            ],
            [init for init in graph.initializer if init.name in used],
        ),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
    )
    cut = shape_inference.infer_shapes(cut, strict_mode=True)
    for out in cut.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(cut, full_check=True)
    return cut


def _needed(graph: onnx.GraphProto, outputs: list[str]) -> set[int]:
    """The indices of the nodes the tensors `outputs` are computed from."""
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    keep: set[int] = set()
    todo = list(outputs)
    while todo:
        i = producers.get(todo.pop())
        if i is not None and i not in keep:
            keep.add(i)
            todo.extend(graph.node[i].input)
    return keep


def write(source: Path, out: Path) -> str:
    """Writes the batched model of `source` to `out`; returns its ATTRIBUTION.md row."""
    model = batched(onnx.load(str(source)))
    onnx.save(model, str(out))
    shapes = [
        [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    ]
    print(f"wrote {out} ({out.stat().st_size} bytes), outputs {shapes}")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return (
        f"### {out.name}\n\n"
        f"- model: `{source.name}` above with a free batch dimension, cut before its keypoint "
        "decoding (which daemon/stages/pose_decode.py does), by tools/batch_pose_model.py; "
        "the same weights\n"
        f"- licence: as `{source.name}`\n"
        f"- ONNX: `{out.name}` ({out.stat().st_size} bytes) sha256 `{digest}`\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    write(args.model, args.out)


if __name__ == "__main__":
    main()
