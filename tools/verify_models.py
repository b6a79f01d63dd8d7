"""Converted vs original: runs each ONNX model and its original on 5 real frames (dev only).

    python tools/verify_models.py [--models DIR] [--sources DIR] [--write-reference]

Originals run in their own runtime's semantics: TFJS graph models as a TensorFlow graph
built from the package's model JSON and weight shards (float16 weights widened to float32
as TFJS does), TFLite models in ai-edge-litert. Prints the max abs difference per output.
--write-reference also saves tests/data/perception_ref.npz: for each shipped model, its
input/output names and shapes and its onnxruntime outputs on one real frame, so the
project's tests can check the runtime path without TensorFlow.

Inputs are made by tools/perception_ref.py (P here), the reference form of the pipeline,
not by daemon/stages/perception.py: NanoDet is compared at the original's 416 x 416 input
(P.letterbox takes a side); the shipped file takes any multiple of 32 and gives the same
outputs at that size (tests/test_perception_models.py), and the daemon's own code is held
to the recorded reference by tests/test_perception.py. The half without TensorFlow runs
in tests/test_verify_models_tool.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_models as C
import perception_ref as P

MEDIA = C.REPO.parent / "shared" / "media"
FRAMES = (
    ("one-by-one-person-detection.mp4", 300),
    ("walk.mkv", 40),
    ("person-bicycle-car-detection.mp4", 20),
    ("head-pose-face-detection-male.mp4", 30),
    ("eat.mkv", 30),
)
REFERENCE_FRAME = 3  # index into FRAMES used for tests/data/perception_ref.npz
REFERENCE_NPZ = C.REPO / "tests" / "data" / "perception_ref.npz"
REFERENCE_CELLS = 64


def read_frame(clip: str, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(MEDIA / clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    if not ok:
        raise SystemExit(f"cannot read frame {index} of {MEDIA / clip}")
    return frame


def model_input(name: str, frame: np.ndarray) -> np.ndarray:
    """The preprocessed input a model gets in the pipeline (perception_ref)."""
    if name.startswith("nanodet"):
        return P.nanodet_input(frame)[0]
    if name == "movenet-lightning.onnx":
        h, w = frame.shape[:2]
        box = np.array([w * 0.25, h * 0.05, w * 0.75, h * 0.95], np.float32)
        return P.movenet_crop_input(frame, P.pose_crop(box, frame.shape))
    if name == "movenet-multipose.onnx":
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return P.letterbox(rgb, P.MOVENET_MULTI_INPUT_PX)[0].astype(np.int32)[None]
    if name == "pose_detection.onnx":
        img = P.letterbox(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), P.BLAZEPOSE_DET_INPUT_PX)[0]
        return img.astype(np.float32)[None] / 127.5 - 1.0
    if name == "pose_landmark_lite.onnx":
        img = P.letterbox(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), 256)[0]
        return img.astype(np.float32)[None] / 255.0
    if name == "centernet.onnx":
        return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (512, 512)).astype(np.float32)[
            None
        ]
    raise SystemExit(f"no input recipe for {name}")


def tfjs_graph_def(model_json: Path) -> tuple[Any, list[str], list[str]]:
    """A TF GraphDef from a TFJS graph model: its nodes, plus its weights as Const values."""
    import tensorflow as tf
    from google.protobuf import json_format

    model = json.loads(model_json.read_text())
    C.patch_tfjs_dict(model)
    data = b"".join(
        (model_json.parent / p).read_bytes() for g in model["weightsManifest"] for p in g["paths"]
    )
    weights, offset = {}, 0
    for g in model["weightsManifest"]:
        for w in g["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            quant = (w.get("quantization") or {}).get("dtype")
            dtype = np.float16 if quant == "float16" else np.dtype(w["dtype"])
            arr = np.frombuffer(data, dtype, n, offset).reshape(w["shape"])
            offset += n * np.dtype(dtype).itemsize
            weights[w["name"]] = arr.astype(np.dtype(w["dtype"]))
    gd = tf.compat.v1.GraphDef()
    for node in model["modelTopology"]["node"]:
        nd = json_format.ParseDict(node, tf.compat.v1.NodeDef())
        if nd.op == "FusedDepthwiseConv2dNative":  # TFJS-only op: unfuse it for TF
            gd.node.extend(unfuse_depthwise(nd))
            continue
        if nd.op == "Const" and nd.name in weights:
            # TFJS stores int64 constants as int32: widen to the node's own dtype.
            value = weights[nd.name].astype(tf.as_dtype(nd.attr["dtype"].type).as_numpy_dtype)
            nd.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        gd.node.append(nd)
    sig = model["signature"]
    ins = [v["name"] for v in sig["inputs"].values()]
    outs = [v["name"] for v in sig["outputs"].values()]
    return gd, ins, outs


def unfuse_depthwise(nd: Any) -> list[Any]:
    """TFJS's FusedDepthwiseConv2dNative -> DepthwiseConv2dNative [+ BiasAdd] [+ activation]."""
    import tensorflow as tf

    fused = [f.decode() for f in nd.attr["fused_ops"].list.s]
    dw = tf.compat.v1.NodeDef(
        name=nd.name + "/unfused", op="DepthwiseConv2dNative", input=list(nd.input[:2])
    )
    for key in ("T", "strides", "padding", "dilations", "data_format", "explicit_paddings"):
        if key in nd.attr:
            dw.attr[key].CopyFrom(nd.attr[key])
    nodes, last = [dw], dw.name
    for i, op in enumerate(fused):
        if op == "BiasAdd":
            n = tf.compat.v1.NodeDef(
                name=f"{nd.name}/unfused_{i}", op="BiasAdd", input=[last, nd.input[2]]
            )
        elif op in ("Relu", "Relu6", "Sigmoid", "Tanh", "Elu"):
            n = tf.compat.v1.NodeDef(name=f"{nd.name}/unfused_{i}", op=op, input=[last])
        else:
            raise SystemExit(f"{nd.name}: fused op {op} not handled")
        n.attr["T"].CopyFrom(nd.attr["T"])
        nodes.append(n)
        last = n.name
    nodes.append(tf.compat.v1.NodeDef(name=nd.name, op="Identity", input=[last]))
    nodes[-1].attr["T"].CopyFrom(nd.attr["T"])
    return nodes


def run_tfjs(model_json: Path, x: np.ndarray) -> list[np.ndarray]:
    import tensorflow as tf

    gd, ins, outs = tfjs_graph_def(model_json)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    fix = [o if ":" in o else o + ":0" for o in outs]
    with tf.compat.v1.Session(graph=graph) as sess:
        return list(sess.run(fix, {ins[0] if ":" in ins[0] else ins[0] + ":0": x}))


def run_tflite(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def original_outputs(
    spec: C.ModelSpec, work: Path, sources: Path, x: np.ndarray
) -> list[np.ndarray]:
    archive = C.fetch(spec.source, sources)
    if spec.kind == "tfjs":
        C.extract(archive, C.tfjs_members(archive, spec.member, work), work)
        return run_tfjs(work / spec.member, x)
    C.extract(archive, [spec.member], work)
    return run_tflite(work / spec.member, x)


def match(onnx_outs: list[np.ndarray], orig: list[np.ndarray]) -> list[float]:
    """Pairs outputs by shape (names differ between runtimes) and returns max abs diffs."""
    diffs, pool = [], list(orig)
    for o in onnx_outs:
        cands = [i for i, r in enumerate(pool) if r.shape == o.shape]
        best = min(cands, key=lambda i: float(np.abs(pool[i] - o).max()))
        diffs.append(float(np.abs(pool.pop(best).astype(np.float64) - o).max()))
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, default=C.REPO / "daemon" / "assets" / "models")
    ap.add_argument(
        "--sources", type=Path, default=Path(tempfile.gettempdir()) / "actiond-model-sources"
    )
    ap.add_argument("--write-reference", action="store_true")
    args = ap.parse_args()
    frames = [read_frame(c, i) for c, i in FRAMES]
    reference: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in C.SPECS:
            path = args.models / spec.out
            if not path.exists():
                continue
            sess = P.session(path)
            worst: list[float] = []
            for k, frame in enumerate(frames):
                x = model_input(spec.out, frame)
                onnx_outs = sess.run(None, {sess.get_inputs()[0].name: x})
                d = match(onnx_outs, original_outputs(spec, Path(tmp) / spec.out, args.sources, x))
                worst = d if not worst else [max(a, b) for a, b in zip(worst, d)]
                if spec.ship and k == REFERENCE_FRAME:
                    add_reference(reference, spec.out, sess, frame, onnx_outs)
            names = [o.name for o in sess.get_outputs()]
            print(
                f"{spec.out}: max abs diff over {len(frames)} frames: "
                + ", ".join(f"{n} {v:.3g}" for n, v in zip(names, worst)),
                flush=True,
            )
    if args.write_reference:
        REFERENCE_NPZ.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(REFERENCE_NPZ, **cast(dict[str, Any], reference))
        print(f"wrote {REFERENCE_NPZ} ({REFERENCE_NPZ.stat().st_size} bytes)")


def reference_image(name: str, frame: np.ndarray) -> np.ndarray:
    """The uint8 image a shipped model's input is made from (before normalisation)."""
    if name == "nanodet-g.onnx":
        return P.letterbox(frame, P.NANODET_INPUT_PX)[0]  # BGR
    x = model_input(name, frame)  # movenet: already the RGB crop, int32 0..255
    return np.asarray(x[0], np.uint8)


def add_reference(
    ref: dict[str, np.ndarray],
    name: str,
    sess: ort.InferenceSession,
    frame: np.ndarray,
    outs: list[np.ndarray],
) -> None:
    """Keeps the test data small: the uint8 input image, the I/O names and shapes, and per
    output its values at REFERENCE_CELLS positions (the largest ones and an even spread)."""
    stem = name.removesuffix(".onnx")
    ref[f"{stem}/image"] = reference_image(name, frame)
    ref[f"{stem}/input_name"] = np.array(sess.get_inputs()[0].name)
    ref[f"{stem}/input_shape"] = np.array(sess.get_inputs()[0].shape)
    for o, v in zip(sess.get_outputs(), outs):
        flat = v.reshape(-1)
        top = np.argsort(-np.abs(flat))[: REFERENCE_CELLS // 2]
        spread = np.linspace(0, flat.size - 1, REFERENCE_CELLS // 2).astype(np.int64)
        idx = np.unique(np.concatenate([top, spread]))
        ref[f"{stem}/output/{o.name}/shape"] = np.array(v.shape)
        ref[f"{stem}/output/{o.name}/index"] = idx
        ref[f"{stem}/output/{o.name}/value"] = flat[idx]
    if name == "nanodet-g.onnx":
        x, lb = P.nanodet_input(frame)
        boxes, scores = P.nanodet_decode(P.nanodet_outputs_by_stride(sess, outs), lb, 0.3)
        ref[f"{stem}/frame_shape"] = np.array(frame.shape)
        ref[f"{stem}/person_boxes"] = boxes
        ref[f"{stem}/person_scores"] = scores


if __name__ == "__main__":
    main()
