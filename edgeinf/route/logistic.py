"""A logistic regression over standardised features: the form of every learned rule the
router runs (its head, as ONNX; the deferral rule, as numbers in JSON)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Logistic:
    mean: Array
    scale: Array
    weights: Array
    bias: float

    def predict(self, x: npt.NDArray[np.floating]) -> Array:
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)
