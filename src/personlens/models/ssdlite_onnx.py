"""The person detector's convolutional part as an ONNX graph, for ONNX Runtime.

Why: OpenCV's DNN module runs the SSDLite-MobileNetV2 graph in about 30 ms a frame on two
cores, which alone keeps ``index VIDEO`` under real time at 25 fps; ONNX Runtime runs the
same convolutions several times faster.

How, without TensorFlow: the topology comes from the text graph ``ssdlite`` already cuts
(node names, ops, inputs, strides, padding, epsilon) and the weights from the layers OpenCV
read from the binary graph, by the same names (``net.getLayer(name).blobs``: OpenCV has
already turned TensorFlow's HWIO kernels into OIHW and folded each predictor's ``BiasAdd``
into its convolution). Seven TensorFlow ops occur and map one to one: ``Conv2D`` and
``DepthwiseConv2dNative`` to ``Conv`` (``SAME`` padding is ONNX's ``SAME_UPPER``),
``FusedBatchNorm`` to ``BatchNormalization``, ``Relu6`` to ``Clip(0, 6)``, ``Add`` to
``Add``, ``Identity`` and a folded ``BiasAdd`` to nothing. Any other op is an error, so
a different graph cannot be converted silently wrong; the detector then stays on OpenCV.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

INPUT = "image"
_OPS = {"Placeholder", "Identity", "Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm",
        "Relu6", "Add", "AddV2", "BiasAdd"}


@dataclass
class TFNode:
    name: str
    op: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)


def parse_nodes(blocks) -> list[TFNode]:
    """The ``node { ... }`` blocks of a text graph -> nodes with the attributes we use."""
    nodes = []
    for b in blocks:
        name = re.search(r'name: "([^"]+)"', b).group(1)
        op = re.search(r'op: "([^"]+)"', b).group(1)
        inputs = [i.split(":")[0].lstrip("^") for i in re.findall(r'input: "([^"]+)"', b)]
        attrs = {}
        for key in ("strides", "dilations"):
            m = re.search(r'key: "%s"\s*value \{\s*list \{([^}]*)\}' % key, b)
            if m:
                attrs[key] = [int(v) for v in re.findall(r"i: (\d+)", m.group(1))]
        m = re.search(r'key: "padding"\s*value \{\s*s: "(\w+)"', b)
        if m:
            attrs["padding"] = m.group(1)
        m = re.search(r'key: "epsilon"\s*value \{\s*f: ([0-9.eE+-]+)', b)
        if m:
            attrs["epsilon"] = float(m.group(1))
        nodes.append(TFNode(name, op, inputs, attrs))
    return nodes


def _ordered(nodes: list[TFNode]) -> list[TFNode]:
    """Nodes with every data input before its consumer (GraphDef order is not promised)."""
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    out: list[TFNode] = []

    def visit(n: TFNode, stack: set[str]):
        if n.name in done:
            return
        if n.name in stack:
            raise ValueError(f"cycle at {n.name}")
        stack.add(n.name)
        for i in n.inputs:
            if i in by_name:
                visit(by_name[i], stack)
        stack.discard(n.name)
        done.add(n.name)
        out.append(n)

    for n in nodes:
        visit(n, set())
    return out


def build_onnx(nodes: list[TFNode], net, outputs: list[str], opset: int = 17) -> bytes:
    """An ONNX model (serialised) computing ``outputs`` from ``image`` (N, 3, H, W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    unknown = sorted({n.op for n in nodes} - _OPS)
    if unknown:
        raise ValueError(f"ops the ONNX conversion does not know: {', '.join(unknown)}")
    alias: dict[str, str] = {}      # Identity / folded BiasAdd -> the tensor it passes on
    produced = {INPUT}
    onodes, inits = [], []

    def src(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def const(name: str, arr: np.ndarray) -> str:
        a = np.asarray(arr, np.float32)       # Clip's bounds must stay 0-d
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a) if a.ndim else a, name))
        return name

    for n in _ordered(nodes):
        data = [src(i) for i in n.inputs if src(i) in produced]
        if n.op == "Placeholder":
            continue
        if n.op in ("Identity", "BiasAdd"):
            if data:                 # a constant's `read` is not data: weights come from OpenCV
                if n.op == "BiasAdd" and len(net.getLayer(data[0]).blobs) < 2:
                    raise ValueError(f"{n.name}: a bias OpenCV did not fold into the convolution")
                alias[n.name] = data[0]
            continue
        if n.op in ("Conv2D", "DepthwiseConv2dNative"):
            blobs = net.getLayer(n.name).blobs
            w = blobs[0]
            ins = [data[0], const(n.name + "/W", w)]
            if len(blobs) > 1:
                ins.append(const(n.name + "/B", blobs[1].ravel()))
            s = n.attrs.get("strides", [1, 1, 1, 1])
            d = n.attrs.get("dilations", [1, 1, 1, 1])
            pad = {"SAME": "SAME_UPPER", "VALID": "VALID"}[n.attrs.get("padding", "VALID")]
            group = w.shape[0] if n.op == "DepthwiseConv2dNative" else 1
            onodes.append(helper.make_node("Conv", ins, [n.name], name=n.name, strides=s[1:3],
                                           dilations=d[1:3], auto_pad=pad, group=group,
                                           kernel_shape=list(w.shape[2:])))
        elif n.op == "FusedBatchNorm":
            mean, var, gamma, beta = (b.ravel() for b in net.getLayer(n.name).blobs)
            ins = [data[0]] + [const(f"{n.name}/{k}", v) for k, v in
                               (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var))]
            onodes.append(helper.make_node("BatchNormalization", ins, [n.name], name=n.name,
                                           epsilon=n.attrs.get("epsilon", 1e-3)))
        elif n.op == "Relu6":
            ins = [data[0], const(n.name + "/min", np.float32(0)), const(n.name + "/max", np.float32(6))]
            onodes.append(helper.make_node("Clip", ins, [n.name], name=n.name))
        else:  # Add / AddV2: a residual connection
            onodes.append(helper.make_node("Add", data[:2], [n.name], name=n.name))
        produced.add(n.name)
    missing = [o for o in outputs if src(o) not in produced]
    if missing:
        raise ValueError(f"outputs not in the graph: {missing}")
    # an output that is an alias gets an Identity so that it keeps the name asked for
    for o in outputs:
        if src(o) != o:
            onodes.append(helper.make_node("Identity", [src(o)], [o]))
    graph = helper.make_graph(
        onodes, "ssdlite_conv",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, None, None])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * 4) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="personlens")
    model.ir_version = min(model.ir_version, 8)   # what every ONNX Runtime since 1.10 reads
    onnx.checker.check_model(model)
    return model.SerializeToString()
