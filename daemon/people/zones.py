"""A camera's zones (cameras[].zones): polygons in normalised coordinates, scaled to
the frame. cv2.pointPolygonTest answers "is this point inside" for any simple polygon
(concave too), and OpenCV is already a dependency; shapely would add a GEOS wheel for
one point-in-polygon test per person and frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from daemon.config import ZoneConfig


class Zones:
    """Include and exclude polygons of one camera, in frame pixels."""

    def __init__(self, zones: Sequence[ZoneConfig], frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        scale = np.array([width, height], dtype=np.float32)
        self._polygons = [
            (z.name, z.kind, (np.array(z.points, dtype=np.float32) * scale).reshape(-1, 1, 2))
            for z in zones
        ]
        self.has_include = any(kind == "include" for _, kind, _ in self._polygons)

    @property
    def polygons(self) -> list[tuple[str, str, np.ndarray]]:
        """(name, kind, (N, 1, 2) float32 pixel points) per zone, for drawing."""
        return list(self._polygons)

    def excluded(self, xy: tuple[float, float]) -> bool:
        """Whether the point lies in an exclude zone (edges count as inside)."""
        return any(kind == "exclude" and _inside(poly, xy) for _, kind, poly in self._polygons)

    def include_zones(self, xy: tuple[float, float]) -> list[str]:
        """The include zones the point lies in, in config order."""
        return [n for n, kind, poly in self._polygons if kind == "include" and _inside(poly, xy)]


def _inside(polygon: np.ndarray, xy: tuple[float, float]) -> bool:
    return cv2.pointPolygonTest(polygon, (float(xy[0]), float(xy[1])), False) >= 0
