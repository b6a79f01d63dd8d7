"""MoveNet Lightning's keypoint decoding, batched: what the TFJS graph does after its heads,
in numpy, for N person crops at once (daemon/assets/models/movenet-lightning-batch.onnx
is the graph cut before it, with a free batch dimension: tools/batch_pose_model.py).

Op for op as the graph: the person centre is the arg max of the centre map (already
weighted by the model's prior); the regression at that cell gives each keypoint's rough
position; each keypoint's heatmap is divided by (distance to that position + 1.8) and its
arg max is the keypoint's cell, refined by the offset there and scaled by 1/48 (both
constants as the graph stores them: float16). The result is the original model's output,
(N, 1, 17, 3) [y, x, score] as shares of the crop (tests/test_pose_batch.py compares).
"""

from __future__ import annotations

import numpy as np

HEATMAP_CELLS = 48  # MoveNet Lightning: 192 px input, stride 4
KEYPOINTS = 17
# The graph's constants, float16 in the TFJS weights: 1.8 and 1/48.
DISTANCE_BIAS = np.float32(np.float16(1.8))
CELL_SHARE = np.float32(np.float16(1 / 48))
OUTPUTS = ("centre", "regress", "offset", "heatmap")  # the batched model's outputs, by name


def decode(
    centre: np.ndarray, regress: np.ndarray, offset: np.ndarray, heatmap: np.ndarray
) -> np.ndarray:
    """(N, 48, 48, 1) centre, (N, 48, 48, 34) regress and offset, (N, 48, 48, 17) heatmap
    -> (N, 1, 17, 3) float32 [y, x, score] as shares of each crop."""
    n, cells = len(centre), HEATMAP_CELLS
    rows = np.arange(n)
    at = centre.reshape(n, -1).argmax(axis=1)
    cy, cx = at // cells, at - (at // cells) * cells
    reg = regress[rows, cy, cx].reshape(n, KEYPOINTS, 2)
    ry = cy.astype(np.float32)[:, None] + reg[:, :, 0]  # (N, 17)
    rx = cx.astype(np.float32)[:, None] + reg[:, :, 1]
    grid = np.arange(cells, dtype=np.float32)
    dy = grid[None, :, None, None] - ry[:, None, None, :]  # (N, 48, 1, 17)
    dx = grid[None, None, :, None] - rx[:, None, None, :]  # (N, 1, 48, 17)
    weighted = heatmap / (np.sqrt(dy * dy + dx * dx) + DISTANCE_BIAS)
    best = weighted.reshape(n, -1, KEYPOINTS).argmax(axis=1)  # (N, 17)
    ky, kx = best // cells, best - (best // cells) * cells
    kps = np.arange(KEYPOINTS)
    score = heatmap[rows[:, None], ky, kx, kps[None, :]]
    off = offset[rows[:, None], ky, kx].reshape(n, KEYPOINTS, KEYPOINTS, 2)[:, kps, kps]
    y = (ky.astype(np.float32) + off[:, :, 0]) * CELL_SHARE
    x = (kx.astype(np.float32) + off[:, :, 1]) * CELL_SHARE
    return np.stack([y, x, score], axis=2)[:, None].astype(np.float32)
