"""A deterministic stand-in for the dlib encoder, for fast tests of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from identity.embeddings import Box

Fraction = tuple[float, float, float, float]


@dataclass
class FakeEncoder:
    """Finds "faces" at fixed fractions of the image, so boxes follow any rescaling.

    The encoding is the crop's mean colour, so differently tinted pictures stand for
    different people. With `min_brightness` set, it is blind in the dark, like HOG.
    """

    faces: list[Fraction] = field(default_factory=lambda: [(0.25, 0.75, 0.75, 0.25)])
    min_brightness: float = 0.0
    model_name: str = "fake"
    model_version: str = "1"
    located_shapes: list[tuple[int, ...]] = field(default_factory=list)
    encoded: list[tuple[tuple[int, ...], Box]] = field(default_factory=list)

    def locate(self, rgb: np.ndarray) -> list[Box]:
        self.located_shapes.append(rgb.shape)
        if rgb.mean() < self.min_brightness:
            return []
        height, width = rgb.shape[:2]
        return [
            (round(top * height), round(right * width), round(bottom * height), round(left * width))
            for top, right, bottom, left in self.faces
        ]

    def encode(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        self.encoded.append((rgb.shape, box))
        top, right, bottom, left = box
        encoding = np.zeros(128)
        encoding[:3] = rgb[top:bottom, left:right].reshape(-1, 3).mean(axis=0) / 255.0
        return encoding
