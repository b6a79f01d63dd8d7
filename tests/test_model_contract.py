"""The action-model contract: small ONNX models built with onnx.helper for each layout,
read with metadata and config overrides, fed by make_input, and rejected with clear
errors when they do not fit."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from daemon.config import ConfigError, InferenceConfig, load_config
from daemon.stages.contract import ModelContract, ModelError
from daemon.stages.model import DYNAMIC_MAX_BATCH, ActionModel, prepare_input, sample_shape

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent
T, H, W = 4, 6, 8  # clip length and model input size of the test models
CFG = InferenceConfig()


def build_model(
    path: Path,
    shape: list,
    meta: dict[str, object] | None = None,
    outputs: int = 3,
    inputs: int = 1,
) -> Path:
    """A model whose score k for each row of the input is (k + 1) * mean(row).

    Rows are the input's leading axis (for NT_CHW: one row per frame, which the daemon
    averages back to one per clip), so a test can predict every score from the input.
    """
    names = [f"x{i}" for i in range(inputs)]
    declared = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in names]
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [shape[0], outputs])
    weights = np.arange(1, outputs + 1, dtype=np.float32)[None]
    nodes = [
        helper.make_node("Flatten", ["x0"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat", "axes"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "w"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "contract_test",
        declared,
        [out],
        initializer=[
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(weights, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# layout -> (input shape with batch axis "N", metadata needed to read it)
LAYOUT_SHAPES = {
    "NCTHW": (["N", 3, T, H, W], {}),
    "NTCHW": (["N", T, 2, H, W], {}),
    "NT_CHW": (["NT", 5, H, W], {"layout": "NT_CHW", "clip_length": str(T)}),
    "NCHW": (["N", 2 * T, H, W], {"input": "flow"}),
}
KINDS = {"NCTHW": "rgb", "NTCHW": "flow", "NT_CHW": "rgb+flow", "NCHW": "flow"}


def clip(seed: int = 0, size: tuple[int, int] = (H, W)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, *size, 3), dtype=np.uint8)
    flow = rng.normal(0, 2, (T, *size, 2)).astype(np.float16)  # as the clips ring holds it
    return frames, flow


def model_error(path: Path, cfg: InferenceConfig = CFG) -> str:
    with pytest.raises(ModelError) as info:
        ActionModel(cfg, str(path))
    return str(info.value)


@pytest.mark.parametrize("fixed", [False, True], ids=["dynamic-batch", "batch-1"])
@pytest.mark.parametrize("layout", list(LAYOUT_SHAPES))
def test_each_layout_reads_runs_and_batches(tmp_path: Path, layout: str, fixed: bool) -> None:
    shape, meta = LAYOUT_SHAPES[layout]
    lead = (T if layout == "NT_CHW" else 1) if fixed else shape[0]
    model = ActionModel(CFG, str(build_model(tmp_path / "m.onnx", [lead, *shape[1:]], meta)))
    c = model.contract
    assert (c.layout, c.inputs, c.clip_length, c.height, c.width) == (
        layout,
        KINDS[layout],
        T,
        H,
        W,
    )
    assert c.labels == ("class_0", "class_1", "class_2")
    assert model.max_batch == (1 if fixed else DYNAMIC_MAX_BATCH)
    clips = [model.make_input(*clip(seed)) for seed in range(3)]
    assert all(x.shape == (1, *sample_shape(c)) for x in clips)
    scores = model.run(np.concatenate(clips))
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    expected = np.array([x.mean() for x in clips])[:, None] * np.array([1, 2, 3])
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_more_clips_than_max_batch_run_in_chunks_and_fixed_batches_are_padded(
    tmp_path: Path,
) -> None:
    model = ActionModel(CFG, str(build_model(tmp_path / "m.onnx", [4, 3, T, H, W])))
    assert model.max_batch == 4
    clips = np.concatenate([model.make_input(*clip(seed)) for seed in range(6)])
    scores = model.run(clips)
    np.testing.assert_allclose(scores[:, 0], clips.reshape(6, -1).mean(axis=1), rtol=1e-4)
    assert model.run(clips[:1]).shape == (1, 3)


@pytest.mark.parametrize(
    ("shape", "wanted", "expected"),
    [
        (["N", 3, T, H, W], 1, 1),  # one clip per run: faster on some CPUs
        (["N", 3, T, H, W], 16, 16),  # a GPU may want larger batches than the default
        ([4, 3, T, H, W], 2, 2),  # fewer than a fixed batch: runs are padded
    ],
)
def test_inference_max_batch_sets_the_clips_per_run(
    tmp_path: Path, shape: list, wanted: int, expected: int
) -> None:
    cfg = dataclasses.replace(CFG, max_batch=wanted)
    model = ActionModel(cfg, str(build_model(tmp_path / "m.onnx", shape)))
    assert model.max_batch == expected
    clips = np.concatenate([model.make_input(*clip(seed)) for seed in range(5)])
    np.testing.assert_allclose(model.run(clips)[:, 0], clips.reshape(5, -1).mean(axis=1), rtol=1e-4)


def test_max_batch_above_a_fixed_batch_names_both(tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, max_batch=8)
    with pytest.raises(
        ModelError,
        match="max_batch = 8, but model m.onnx takes batches of "
        "exactly 4: set max_batch = 0 or at most 4",
    ):
        ActionModel(cfg, str(build_model(tmp_path / "m.onnx", [4, 3, T, H, W])))


def test_metadata_is_read(tmp_path: Path) -> None:
    meta = {
        "labels": ["walk", "run", "sit"],
        "layout": "NCTHW",
        "input": "rgb",
        "colour_order": "bgr",
        "mean": [1, 2, 3],
        "std": "2",
        "activation": "softmax",
    }
    c = ActionModel(CFG, str(build_model(tmp_path / "m.onnx", ["N", 3, T, H, W], meta))).contract
    assert c == ModelContract(
        ("walk", "run", "sit"), "NCTHW", "rgb", T, H, W, "bgr", (1.0, 2.0, 3.0), (2.0,), "softmax"
    )


def test_comma_separated_labels_and_free_sizes_from_metadata(tmp_path: Path) -> None:
    meta = {"labels": "a, b,c", "clip_length": "5", "height": "12", "width": "10"}
    path = build_model(tmp_path / "m.onnx", ["N", 2, "T", "H", "W"], meta)
    c = ActionModel(CFG, str(path)).contract
    assert (c.labels, c.clip_length, c.height, c.width) == (("a", "b", "c"), 5, 12, 10)


def test_config_overrides_the_metadata(tmp_path: Path) -> None:
    meta = {"labels": ["a", "b", "c"], "layout": "NCTHW", "mean": "0", "clip_length": "4"}
    path = build_model(tmp_path / "m.onnx", ["N", 3, "T", H, W], meta)
    cfg = dataclasses.replace(
        CFG,
        labels=("x", "y", "z"),
        colour_order="bgr",
        mean=(9.0,),
        std=(1.0, 2.0, 4.0),
        activation="sigmoid",
        clip_length=6,
    )
    c = ActionModel(cfg, str(path)).contract
    assert c == ModelContract(
        ("x", "y", "z"), "NCTHW", "rgb", 6, H, W, "bgr", (9.0,), (1.0, 2.0, 4.0), "sigmoid"
    )


def test_layout_and_input_overrides_read_an_unlabelled_model(tmp_path: Path) -> None:
    # 5 channels on axis 1 and 5 frames on axis 2: ambiguous without a layout.
    path = build_model(tmp_path / "m.onnx", ["N", 5, 5, H, W])
    assert "cannot tell the layout" in model_error(path)
    c = ActionModel(dataclasses.replace(CFG, layout="NTCHW"), str(path)).contract
    assert (c.layout, c.inputs, c.clip_length) == ("NTCHW", "rgb+flow", 5)


def test_activation_is_applied(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.onnx", ["N", 2, T, H, W], {"activation": "softmax"})
    model = ActionModel(CFG, str(path))
    scores = model.run(model.make_input(*clip(1)))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.diff(scores[0]) != 0)


# (name, input shape, metadata, config changes, text the error must contain)
MISMATCHES = [
    ("rank-3", ["N", 3, 8], {}, {}, "rank 3"),
    ("bad-layout", ["N", 3, T, H, W], {"layout": "NHWC"}, {}, "layout 'NHWC' is not one of"),
    ("layout-rank", ["N", 3, H, W], {"layout": "NCTHW"}, {}, "needs a rank-5 input"),
    (
        "channels",
        ["N", 4, T, H, W],
        {"input": "rgb"},
        {},
        "has 4 channels per frame: expected 3 for input rgb",
    ),
    ("channels-unknown", ["N", 4, T, H, W], {"layout": "NCTHW"}, {}, "cannot tell whether input"),
    ("nchw-channels", ["N", 7, H, W], {"input": "flow"}, {}, "not a multiple of 2"),
    (
        "labels-count",
        ["N", 3, T, H, W],
        {"labels": ["a", "b"]},
        {},
        "has 2 labels (a, b) but its output has 3 scores",
    ),
    (
        "labels-override-count",
        ["N", 3, T, H, W],
        {},
        {"labels": ("a", "b", "c", "d")},
        "has 4 labels",
    ),
    (
        "clip-config",
        ["N", 3, T, H, W],
        {},
        {"clip_length": 8},
        f"inference.clip_length = 8 but model m.onnx takes T = {T}",
    ),
    (
        "clip-metadata",
        ["N", 3, T, H, W],
        {"clip_length": "16"},
        {},
        "metadata clip_length 16 conflicts with its input shape",
    ),
    ("clip-unknown", ["N", 3, "T", H, W], {}, {}, "the clip length is not fixed"),
    (
        "tsm-clip",
        [10, 3, H, W],
        {"layout": "NT_CHW", "clip_length": "4"},
        {},
        "leading axis 10 is not a multiple of the clip length 4",
    ),
    (
        "size-metadata",
        ["N", 3, T, H, W],
        {"height": "99"},
        {},
        f"metadata height 99 conflicts with its input height {H}",
    ),
    ("mean-count", ["N", 3, T, H, W], {"mean": [1, 2]}, {}, "mean has 2 values: expected 1 or 3"),
    ("std-zero", ["N", 2, T, H, W], {"std": "0"}, {}, "std must not be 0"),
    ("bad-number", ["N", 2, T, H, W], {"mean": "grey"}, {}, "must be a number"),
    (
        "duplicate-labels",
        ["N", 3, T, H, W],
        {"labels": ["a", "a", "b"]},
        {},
        "distinct and non-empty",
    ),
    ("bad-activation", ["N", 3, T, H, W], {"activation": "relu"}, {}, "activation 'relu'"),
]


@pytest.mark.parametrize(
    "shape, meta, changes, message", [m[1:] for m in MISMATCHES], ids=[m[0] for m in MISMATCHES]
)
def test_models_that_do_not_fit_are_named(
    tmp_path: Path, shape: list, meta: dict, changes: dict, message: str
) -> None:
    path = build_model(tmp_path / "m.onnx", shape, meta)
    assert message in model_error(path, dataclasses.replace(CFG, **changes))


def test_two_inputs_are_rejected(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.onnx", ["N", 3, T, H, W], inputs=2)
    assert "has 2 inputs (x0, x1)" in model_error(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    assert "model file not found" in model_error(tmp_path / "absent.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 50)
    assert "cannot be loaded" in model_error(corrupt)


def test_a_batch_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    model = ActionModel(CFG, str(build_model(tmp_path / "m.onnx", ["N", 3, T, H, W])))
    with pytest.raises(ModelError, match=r"batch of shape \[1, 3, 4, 6, 9\] does not fit"):
        model.run(np.zeros((1, 3, T, H, W + 1), np.float32))
    with pytest.raises(ModelError, match="clip has 3 frames but the model takes 4"):
        model.make_input(*(a[:3] for a in clip()))


def contract(layout: str, inputs: str, **kw: object) -> ModelContract:
    base = {
        "labels": ("a",),
        "layout": layout,
        "inputs": inputs,
        "clip_length": T,
        "height": H,
        "width": W,
    }
    return ModelContract(**{**base, **kw})  # type: ignore[arg-type]


def marked_clip() -> tuple[np.ndarray, np.ndarray]:
    """Zero clip with one marked pixel: frame 2, (y 3, x 5), BGR (10, 20, 30), flow (7, -9)."""
    frames, flow = np.zeros((T, H, W, 3), np.uint8), np.zeros((T, H, W, 2), np.float32)
    frames[2, 3, 5] = (10, 20, 30)
    flow[2, 3, 5] = (7, -9)
    return frames, flow


@pytest.mark.parametrize(
    "layout, index",
    [
        ("NCTHW", lambda c: (0, c, 2, 3, 5)),
        ("NTCHW", lambda c: (0, 2, c, 3, 5)),
        ("NT_CHW", lambda c: (0, 2, c, 3, 5)),
        ("NCHW", lambda c: (0, 2 * 5 + c, 3, 5)),
    ],
)
def test_make_input_puts_a_known_pixel_at_its_index(layout: str, index) -> None:
    c = contract(layout, "rgb+flow", mean=(1, 2, 3, 0, 0), std=(1, 2, 4, 1, 0.5))
    x = prepare_input(c, *marked_clip())
    assert x.shape == (1, *sample_shape(c))
    # rgb order: R=30, G=20, B=10, then flow x, y; each (v - mean) / std
    for channel, value in enumerate([29.0, 9.0, 1.75, 7.0, -18.0]):
        assert x[index(channel)] == pytest.approx(value)
    background = [-1.0, -1.0, -0.75, 0.0, 0.0]
    for channel, value in enumerate(background):
        assert x[index(channel)[:-1] + (4,)] == pytest.approx(value)


@pytest.mark.parametrize("layout", ["NCTHW", "NTCHW", "NT_CHW", "NCHW"])
def test_make_input_into_a_batch_row_writes_what_it_would_return(layout: str) -> None:
    # The infer stage prepares clips straight into rows of a reused batch buffer.
    c = contract(layout, "rgb+flow", mean=(1, 2, 3, 0, 0), std=(1, 2, 4, 1, 0.5))
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    flow = rng.normal(0, 3, (T, H, W, 2)).astype(np.float32)
    batch = np.full((3, *sample_shape(c)), np.nan, np.float32)
    row = prepare_input(c, frames, flow, batch[1])
    assert row is batch[1] or np.shares_memory(row, batch[1])
    np.testing.assert_array_equal(batch[1], prepare_input(c, frames, flow)[0])
    assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all(), "wrote outside its row"


def test_make_input_into_a_row_of_another_shape_names_both_shapes() -> None:
    c = contract("NCTHW", "flow")
    frames, flow = marked_clip()
    with pytest.raises(
        ModelError,
        match=r"shape \[2, 4, 6, 8\] does not fit a batch row "
        r"of shape \[2, 4, 6, 9\]",
    ):
        prepare_input(c, frames, flow, np.zeros((2, T, H, W + 1), np.float32))


def test_make_input_needs_only_the_kind_the_model_takes() -> None:
    # Clips carry only what the model takes (records.clip_record): the other is None.
    frames, flow = marked_clip()
    flow_only = contract("NCTHW", "flow")
    np.testing.assert_array_equal(
        prepare_input(flow_only, None, flow), prepare_input(flow_only, frames, flow)
    )
    rgb_only = contract("NCTHW", "rgb")
    np.testing.assert_array_equal(
        prepare_input(rgb_only, frames, None), prepare_input(rgb_only, frames, flow)
    )
    with pytest.raises(ModelError, match="clip has no flows but the model takes input rgb\\+flow"):
        prepare_input(contract("NCTHW", "rgb+flow"), frames, None)


def test_make_input_keeps_bgr_and_uses_the_newest_frames() -> None:
    c = contract("NTCHW", "rgb", colour_order="bgr", clip_length=2)
    frames, flow = marked_clip()
    x = prepare_input(c, frames[:3], flow[:3])  # frames 1, 2: the marked one is last
    assert list(x[0, 1, :, 3, 5]) == [10.0, 20.0, 30.0]
    assert x[0, 0].max() == 0.0


def test_make_input_resizes_frames_and_rescales_flow() -> None:
    c = contract("NCTHW", "flow", height=H // 2, width=W // 2)
    flow = np.zeros((T, H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0  # pixels/frame at clip size
    x = prepare_input(c, np.zeros((T, H, W, 3), np.uint8), flow)
    assert x.shape == (1, 2, T, H // 2, W // 2)
    np.testing.assert_allclose(x[0, 0], 2.0)  # halved with the frame
    np.testing.assert_allclose(x[0, 1], -1.0)
    rgb = contract("NCTHW", "rgb", height=H * 2, width=W * 2)
    frames = np.full((T, H, W, 3), (0, 100, 200), np.uint8)
    y = prepare_input(rgb, frames, flow)
    assert y.shape == (1, 3, T, H * 2, W * 2)
    assert (y[0, 0].min(), y[0, 2].max()) == (200.0, 0.0)


BAD_OVERRIDES = [
    ("layout", '"NHWC"', "must be one of NCTHW"),
    ("input", '"depth"', "must be one of rgb, flow, rgb+flow"),
    ("colour_order", '"grb"', "must be one of rgb, bgr"),
    ("activation", '"relu"', "must be one of none"),
    ("mean", "[1, 2, 3, 4]", "1 value or one per input channel"),
    ("std", "[1, 0, 1]", "must be > 0"),
    ("labels", '["a", "a"]', "distinct, non-empty"),
]


@pytest.mark.parametrize("key, value, message", BAD_OVERRIDES, ids=[b[0] for b in BAD_OVERRIDES])
def test_bad_contract_overrides_in_config_name_the_key(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[inference]\n{key} = {value}\n[[cameras]]\nname = "c"\nsource = "test:bars"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == f"inference.{key}" and message in info.value.reason


def check_config(tmp_path: Path, model: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[inference]\nmodel = "{model}"\n[[cameras]]\nname = "c"\nsource = "test:bars"\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_check_config_names_a_model_that_does_not_fit(tmp_path: Path) -> None:
    bad = build_model(tmp_path / "bad.onnx", ["N", 4, T, H, W], {"input": "rgb"})
    result = check_config(tmp_path, bad)
    assert result.returncode == 2, result.stderr
    assert "model error" in result.stderr
    assert "has 4 channels per frame: expected 3 for input rgb" in result.stderr
    good = build_model(tmp_path / "good.onnx", ["N", 3, T, H, W], {"labels": "p,q,r"})
    result = check_config(tmp_path, good)
    assert result.returncode == 0, result.stderr
    assert "pipeline clip (model good.onnx), actions p, q, r" in result.stdout
