"""Train the bundled demo action model (daemon/assets/demo-actions.onnx).

A small (2+1)D CNN over the optical-flow clip (layout NCTHW, input flow, T = 16 frames at
48 x 48), plus the per-frame mean flow and mean |flow| of the clip, answering softmax
probabilities over tests/media.ACTIONS. It is trained only on synthetic scenes from
tests/media.action_frames (random rooms, figures, speeds, frame rates, noise, JPEG),
turned into model inputs exactly as the daemon does it (source resize, DIS flow at the
motion size, clips at 48 x 48 by daemon.stages.clipmaker, ActionModel.make_input), kept
as float16 to halve the dataset's memory: see tools/eval_demo_model.py for
the real-clip numbers and eval/README.md for what the model can and cannot tell apart.

Development tool: needs torch (CPU is enough) besides the runtime dependencies; the ONNX
file is written with onnx.helper from the trained weights (batch norm folded in).

    python tools/train_demo_model.py --out daemon/assets/demo-actions.onnx
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from media import ACTIONS, action_frames

from daemon.config import CameraConfig, InferenceConfig, MotionConfig
from daemon.stages.clipmaker import FrameClips
from daemon.stages.contract import ModelContract
from daemon.stages.model import ActionModel, prepare_input

CLIP_LENGTH = 16
INPUT_SIZE_PX = 48
# Camera sizes (the source stage's resize) and motion sizes (flow) met in training: the
# config defaults (640x360, 224) most often, the small sizes the tests run at too.
CAMERA_SIZES = ((640, 360), (640, 360), (320, 240), (160, 120), (640, 480))
MOTION_SIZES_PX = (224, 224, 224, 160, 112, 64)
# (in, out, kernel, stride) of each Conv3d; spatial kernels then temporal ones: (2+1)D.
CONVS = (
    (2, 12, (1, 3, 3), (1, 2, 2)),
    (12, 24, (1, 3, 3), (1, 2, 2)),
    (24, 24, (3, 1, 1), (2, 1, 1)),
    (24, 48, (1, 3, 3), (1, 2, 2)),
    (48, 48, (3, 1, 1), (2, 1, 1)),
)
GLOBAL_FEATURES = 4 * CLIP_LENGTH  # per frame: mean flow x, y and mean |x|, |y|
# Mirror images and time reversal map each action to another (used as augmentation).
MIRRORED = {"walk_left": "walk_right", "walk_right": "walk_left"}
REVERSED = {
    "walk_left": "walk_right",
    "walk_right": "walk_left",
    "walk_towards": "walk_away",
    "walk_away": "walk_towards",
}


def demo_contract() -> ModelContract:
    return ModelContract(ACTIONS, "NCTHW", "flow", CLIP_LENGTH, INPUT_SIZE_PX, INPUT_SIZE_PX)


def clip_input(job: tuple[int, int]) -> np.ndarray:
    """Model input (2, T, H, W) float16 for one synthetic clip: job = (action index, seed)."""
    action, seed = job
    rng = np.random.default_rng(seed)
    width, height = CAMERA_SIZES[int(rng.integers(len(CAMERA_SIZES)))]
    motion = int(MOTION_SIZES_PX[int(rng.integers(len(MOTION_SIZES_PX)))])
    feeder = FrameClips(
        CameraConfig(name="train", source="", width=width, height=height),
        MotionConfig(width=motion, height=motion),
        CLIP_LENGTH,
        1,
        (INPUT_SIZE_PX, INPUT_SIZE_PX),
    )
    clip = None
    for frame in action_frames(ACTIONS[action], seed, CLIP_LENGTH + 1):
        clip = feeder.push(frame)
    assert clip is not None, "a clip of T + 1 frames always ends with a full window"
    return prepare_input(demo_contract(), *clip)[0].astype(np.float16)


def make_dataset(per_class: int, first_seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    jobs = [
        (a, first_seed + a * per_class + i) for i in range(per_class) for a in range(len(ACTIONS))
    ]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        inputs = pool.map(clip_input, jobs, chunksize=16)
    return np.stack(inputs), np.array([a for a, _ in jobs], np.int64)


class DemoNet(nn.Module):
    """Conv3d + BN + ReLU stack, pooled, joined with the clip's global flow statistics."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout, kernel, stride in CONVS:
            pad = tuple(k // 2 for k in kernel)
            layers += [
                nn.Conv3d(cin, cout, kernel, stride, pad, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(CONVS[-1][1] + GLOBAL_FEATURES, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3, 4))
        stats = torch.cat([x.mean(dim=(3, 4)).flatten(1), x.abs().mean(dim=(3, 4)).flatten(1)], 1)
        return self.head(self.dropout(torch.cat([pooled, stats], 1)))


def permutation(mapping: dict[str, str]) -> torch.Tensor:
    return torch.tensor([ACTIONS.index(mapping.get(a, a)) for a in ACTIONS])


def augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror (x -> -x), time reversal (flows reversed and negated) and speed scaling."""
    n = x.shape[0]
    mirror = torch.rand(n, generator=gen) < 0.5
    x[mirror] = x[mirror].flip(-1)
    x[mirror, 0] = -x[mirror, 0]
    y = torch.where(mirror, permutation(MIRRORED)[y], y)
    rev = torch.rand(n, generator=gen) < 0.3
    x[rev] = -x[rev].flip(2)
    y = torch.where(rev, permutation(REVERSED)[y], y)
    scale = torch.empty(n, 1, 1, 1, 1).uniform_(0.6, 1.6, generator=gen)
    return x * scale, y


def train(net: DemoNet, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    data, labels = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = epochs * ((len(data) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(epochs):
        net.train()
        order, total, correct, started = (
            torch.randperm(len(data), generator=gen),
            0.0,
            0,
            time.time(),
        )
        for i in range(0, len(data), 64):
            idx = order[i : i + 64]
            xb, yb = augment(data[idx].float(), labels[idx], gen)
            out = net(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / len(data):.3f}, train accuracy "
            f"{correct / len(data):.3f} ({time.time() - started:.0f} s)",
            flush=True,
        )


def predict(net: DemoNet, x: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return torch.cat(
            [
                torch.softmax(net(torch.from_numpy(x[i : i + 256]).float()), 1)
                for i in range(0, len(x), 256)
            ]
        ).numpy()


def confusion_text(truth: np.ndarray, predicted: np.ndarray) -> str:
    lines = [" " * 13 + "".join(f"{a[:7]:>8}" for a in ACTIONS)]
    for i, action in enumerate(ACTIONS):
        row = [int(((truth == i) & (predicted == j)).sum()) for j in range(len(ACTIONS))]
        lines.append(f"{action:<13}" + "".join(f"{n:>8}" for n in row))
    return "\n".join(lines)


def folded(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights and bias with the (eval-mode) batch norm folded in."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    return weight.detach().numpy(), bias.detach().numpy()


def to_onnx(net: DemoNet, meta: dict[str, str]) -> onnx.ModelProto:
    """The trained net as an ONNX graph with a free batch dimension."""
    t, s = CLIP_LENGTH, INPUT_SIZE_PX
    x = helper.make_tensor_value_info("flow_clip", TensorProto.FLOAT, ["N", 2, t, s, s])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", len(ACTIONS)])
    inits = [numpy_helper.from_array(np.array([3, 4], np.int64), "hw_axes")]
    nodes, prev = [], "flow_clip"
    mods = list(net.features)
    for i in range(0, len(mods), 3):
        conv, bn = mods[i], mods[i + 1]
        w, b = folded(conv, bn)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        pads = list(conv.padding) * 2
        nodes += [
            helper.make_node(
                "Conv",
                [prev, f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=list(conv.kernel_size),
                strides=list(conv.stride),
                pads=pads,
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev = f"r{i}"
    head_w = net.head.weight.detach().numpy().T.copy()
    inits += [
        numpy_helper.from_array(head_w, "head_w"),
        numpy_helper.from_array(net.head.bias.detach().numpy(), "head_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["pooled"], axis=1),
        helper.make_node("ReduceMean", ["flow_clip", "hw_axes"], ["mean_hw"], keepdims=0),
        helper.make_node("Flatten", ["mean_hw"], ["mean_flat"], axis=1),
        helper.make_node("Abs", ["flow_clip"], ["abs_flow"]),
        helper.make_node("ReduceMean", ["abs_flow", "hw_axes"], ["abs_hw"], keepdims=0),
        helper.make_node("Flatten", ["abs_hw"], ["abs_flat"], axis=1),
        helper.make_node("Concat", ["pooled", "mean_flat", "abs_flat"], ["joined"], axis=1),
        helper.make_node("Gemm", ["joined", "head_w", "head_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(nodes, "demo_actions", [x], [y], initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18)],
        producer_name="actiond tools/train_demo_model.py",
    )
    model.ir_version = 8
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def metadata(train_acc: float, val_acc: float, clips: int) -> dict[str, str]:
    c = demo_contract()
    return {
        "labels": json.dumps(list(c.labels)),
        "layout": c.layout,
        "input": c.inputs,
        "clip_length": str(c.clip_length),
        "mean": "0",
        "std": "1",
        "activation": "none",
        "description": "actiond demo: motion-only actions from optical flow, trained on "
        f"{clips} synthetic clips (tools/train_demo_model.py); "
        f"synthetic accuracy train {train_acc:.3f}, held out {val_acc:.3f}; "
        "real-clip numbers in eval/README.md",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "daemon/assets/demo-actions.onnx")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=22)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="reuse / keep the generated clips here (.npz)")
    return parser.parse_args(argv)


def dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    if args.cache and args.cache.exists():
        data = np.load(args.cache)
        return data["x"], data["y"]
    started = time.time()
    x, y = make_dataset(args.per_class, args.seed * 1_000_000, args.workers)
    print(f"generated {len(x)} clips in {time.time() - started:.0f} s", flush=True)
    if args.cache:
        np.savez(args.cache, x=x, y=y)
    return x, y


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.workers)
    x, y = dataset(args)
    held = np.random.default_rng(args.seed).random(len(x)) < 0.15
    net = DemoNet(len(ACTIONS))
    train(net, x[~held], y[~held], args.epochs, args.seed)
    train_acc = float((predict(net, x[~held]).argmax(1) == y[~held]).mean())
    val_pred = predict(net, x[held])
    val_acc = float((val_pred.argmax(1) == y[held]).mean())
    print(f"synthetic accuracy: train {train_acc:.3f}, held out {val_acc:.3f}")
    print(confusion_text(y[held], val_pred.argmax(1)))
    args.out.write_bytes(to_onnx(net, metadata(train_acc, val_acc, len(x))).SerializeToString())
    model = ActionModel(InferenceConfig(), str(args.out))  # the daemon's own loader
    onnx_scores = model.run(x[held][:64].astype(np.float32))
    diff = float(np.abs(onnx_scores - val_pred[:64]).max())
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes); ONNX vs torch max |diff| {diff:.2e}"
    )
    return 0 if diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
