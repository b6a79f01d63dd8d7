"""Makes nanodet-g.onnx run at any input size that is a multiple of 32, so that a 16:9
frame goes in as 416 x 256 instead of letterboxed into a 416 x 416 square, 44 % of it
padding (development only; tools/convert_models.py runs it on the converted file and
writes its lines in ATTRIBUTION.md).

    python tools/free_size_detector.py [--model daemon/assets/models/nanodet-g.onnx]

Run alone it rewrites the file in place and updates the file's section of
ATTRIBUTION.md beside it. The TFJS conversion fixes the input at (1, 3, 416, 416), but
nothing in the graph depends on that: its Resize ops take scales and its Reshapes take
shapes computed from their inputs. The input's height and width become symbolic
(`height`, `width`), each output's cell dimension symbolic too (`cells_stride<N>`:
(height / N) x (width / N) cells, row by row), and the shapes tf2onnx inferred for the
416 x 416 input (value_info) are dropped. The nodes and weights are unchanged. The tool
checks the result: at the source's size its outputs equal the source's (within
MAX_DIFF), and at a rectangular size every output has the cells its stride gives.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MODELS = Path(__file__).resolve().parent.parent / "daemon" / "assets" / "models"
SOURCE = MODELS / "nanodet-g.onnx"
ATTRIBUTION = MODELS / "ATTRIBUTION.md"
HEIGHT_DIM, WIDTH_DIM = "height", "width"
GRID_PX = 32  # the coarsest stride: the input's height and width are multiples of it
CHECK_HW = (256, 416)  # a 16:9 frame fitted in 416 px, height padded to a multiple of 32
MAX_DIFF = 1e-5  # at the source's size: only the order of float operations may differ
NOTE_PREFIX = "- free input size:"


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    return {meta.name: out for meta, out in zip(sess.get_outputs(), outs)}


def free_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with free input height and width; ValueError if the input is not
    (1, 3, H, W) with H and W fixed multiples of GRID_PX, or the outputs are not
    (1, cells, C) with (H / stride) x (W / stride) cells."""
    shape = _dims(model.graph.input[0])
    if len(shape) != 4 or shape[:2] != [1, 3] or not all(isinstance(d, int) for d in shape[2:]):
        raise ValueError(f"input shape {shape}: expected (1, 3, H, W) with H and W fixed")
    h, w = int(shape[2]), int(shape[3])
    if h % GRID_PX or w % GRID_PX:
        raise ValueError(f"input {h} x {w}: expected multiples of {GRID_PX}")
    x = np.zeros((1, 3, h, w), np.float32)
    cells = {name: out.shape[1] for name, out in _run(model, x).items()}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = HEIGHT_DIM, WIDTH_DIM
    for value in graph.output:
        stride = round((h * w / cells[value.name]) ** 0.5)
        if (h // stride) * (w // stride) != cells[value.name]:
            raise ValueError(f"output {value.name}: {cells[value.name]} cells, not a stride's")
        od = value.type.tensor_type.shape.dim
        od[0].dim_value = 1
        od[1].dim_param = f"cells_stride{stride}"
    del graph.value_info[:]
    onnx.checker.check_model(out, full_check=True)
    return out


def fixed_size(model: onnx.ModelProto, size_hw: tuple[int, int]) -> onnx.ModelProto:
    """A copy of a free-size `model` with its input fixed at size_hw: the file before this
    tool's change, for comparisons (tests, tools/eval_perception.py --input-sizes)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dims = out.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size_hw
    return out


def check(source: onnx.ModelProto, freed: onnx.ModelProto) -> float:
    """The largest difference between the two at the source's size (ValueError above
    MAX_DIFF), after checking the cells of every output at CHECK_HW."""
    _, _, h, w = (int(d) for d in _dims(source.graph.input[0]))
    x = np.random.default_rng(0).normal(size=(1, 3, h, w)).astype(np.float32)
    before, after = _run(source, x), _run(freed, x)
    diff = max(float(np.abs(before[k] - after[k]).max()) for k in before)
    if diff > MAX_DIFF:
        raise ValueError(f"outputs at {h} x {w} differ by {diff:g} from the source's")
    rect = _run(freed, x[:, :, : CHECK_HW[0], : CHECK_HW[1]])
    for value in freed.graph.output:
        stride = int(str(_dims(value)[1]).removeprefix("cells_stride"))
        want = (CHECK_HW[0] // stride) * (CHECK_HW[1] // stride)
        if rect[value.name].shape[1] != want:
            raise ValueError(f"{value.name} at {CHECK_HW}: {rect[value.name].shape}, want {want}")
    return diff


def write(source: Path, out: Path) -> str:
    """Writes the free-size model of `source` to `out` (may be the same path); returns the
    line ATTRIBUTION.md gives it in the model's section."""
    original = onnx.load(str(source))
    source_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    freed = free_size(original)
    diff = check(original, freed)
    onnx.save(freed, str(out))
    h, w = _dims(original.graph.input[0])[2:]
    print(f"wrote {out}: input {_dims(freed.graph.input[0])}, outputs at {h} x {w} within {diff:g}")
    return (
        f"{NOTE_PREFIX} the converted file (sha256 `{source_sha}`, input fixed at {h} x {w}) "
        f"with its input height and width made free (`{HEIGHT_DIM}`, `{WIDTH_DIM}`: any "
        f"multiple of {GRID_PX}), each output's cell dimension with them and the inferred "
        "shapes (value_info) dropped, by tools/free_size_detector.py; the same nodes and "
        f"weights; its outputs at {h} x {w} equal the converted file's within {diff:.1g}\n"
    )


def update_attribution(path: Path, model: Path, note: str) -> None:
    """Puts `note` and the new sha256 of `model` in the model's section of `path`."""
    text = path.read_text()
    head = f"### {model.name}\n"
    start = text.index(head)
    end = text.find("\n### ", start + len(head))
    section = text[start : len(text) if end < 0 else end + 1]
    lines = [line for line in section.splitlines(True) if not line.startswith(NOTE_PREFIX)]
    size, digest = model.stat().st_size, hashlib.sha256(model.read_bytes()).hexdigest()
    for i, line in enumerate(lines):
        if line.startswith("- ONNX:"):
            line = re.sub(r"\(\d+ bytes\)", f"({size} bytes)", line)
            lines[i] = re.sub(r"sha256 `[0-9a-f]{64}`", f"sha256 `{digest}`", line)
            lines.insert(i, note)
            break
    else:
        raise ValueError(f"{path}: no '- ONNX:' line in the section of {model.name}")
    path.write_text(text.replace(section, "".join(lines)))
    print(f"updated {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=SOURCE)
    parser.add_argument("--attribution", type=Path, default=ATTRIBUTION)
    args = parser.parse_args()
    try:
        note = write(args.model, args.model)
    except ValueError as exc:
        raise SystemExit(f"{args.model}: {exc}") from None
    update_attribution(args.attribution, args.model, note)


if __name__ == "__main__":
    main()
