"""The router's head: standardised features, a logistic regression, written as a tiny ONNX graph."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinf.route.logistic import Logistic


def fit(x: npt.NDArray[np.floating], y: npt.NDArray[np.floating], l2: float) -> Logistic:
    """L2-regularised logistic regression by Newton's method (a few hundred rows, ~400 columns)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    n, d = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-3  # the bias is barely shrunk: enough to stay finite when y is constant
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + reg * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Logistic(mean, scale, w[:-1], float(w[-1]))


def to_onnx(model: Logistic) -> bytes:
    """features [N, D] float32 -> score [N] float32, the same numbers as `predict`."""

    def const(name: str, value: npt.NDArray[np.floating]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    d = model.weights.shape[0]
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["features", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "scale"], ["z"]),
            helper.make_node("MatMul", ["z", "weights"], ["dot"]),
            helper.make_node("Add", ["dot", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["score"]),
        ],
        "edgeinf_router_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"])],
        [
            const("mean", model.mean),
            const("scale", model.scale),
            const("weights", model.weights),
            const("bias", np.asarray([model.bias])),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())
