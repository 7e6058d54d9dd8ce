"""The person detector's graph converted for ONNX Runtime: the same people as OpenCV finds,
the text-graph parsing it rests on, and refusal of anything it does not know."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.models.ssdlite import SSDLiteDetector
from personlens.models.ssdlite_onnx import TFNode, _ordered, build_onnx, parse_nodes

from test_detectors import STADTMITTE, iou

CONV_BLOCK = '''node {
  name: "net/conv/Conv2D"
  op: "Conv2D"
  input: "net/previous"
  input: "net/conv/weights/read"
  attr {
    key: "padding"
    value {
      s: "SAME"
    }
  }
  attr {
    key: "strides"
    value {
      list {
        i: 1
        i: 2
        i: 2
        i: 1
      }
    }
  }
}
'''
BN_BLOCK = '''node {
  name: "net/conv/BatchNorm/FusedBatchNorm"
  op: "FusedBatchNorm"
  input: "net/conv/Conv2D"
  input: "net/conv/BatchNorm/gamma/read"
  attr {
    key: "epsilon"
    value {
      f: 0.001
    }
  }
}
'''


@pytest.fixture(scope="module")
def frames():
    if not (STADTMITTE / "TUD-Stadtmitte.mp4").is_file():
        pytest.skip("needs ../shared/data/video/TUD-Stadtmitte")
    from personlens.data.video import VideoSource

    src = iter(VideoSource(STADTMITTE / "TUD-Stadtmitte.mp4", every=40))
    return [next(src).image for _ in range(4)]


def test_onnx_runtime_finds_the_same_people_as_opencv(frames):
    fast, ref = SSDLiteDetector(runtime="onnx"), SSDLiteDetector(runtime="torch")
    assert (fast.runtime, ref.runtime) == ("onnx", "opencv") and fast.session is not None
    found = 0
    for frame in frames:
        a, b = fast(frame), ref(frame)
        assert len(a.boxes) == len(b.boxes)
        found += len(a.boxes)
        if len(a.boxes):
            assert iou(a.boxes, b.boxes).diagonal().min() > 0.999
            np.testing.assert_allclose(a.scores, b.scores, atol=2e-3)
    assert found >= 8             # people are on these frames: the comparison is not empty


def test_parse_nodes_reads_ops_inputs_strides_padding_and_epsilon():
    conv, bn = parse_nodes([CONV_BLOCK, BN_BLOCK])
    assert (conv.name, conv.op, conv.inputs) == ("net/conv/Conv2D", "Conv2D",
                                                 ["net/previous", "net/conv/weights/read"])
    assert conv.attrs == {"strides": [1, 2, 2, 1], "padding": "SAME"}
    assert bn.op == "FusedBatchNorm" and bn.attrs == {"epsilon": 0.001}


def test_nodes_are_ordered_inputs_first():
    nodes = [TFNode("c", "Add", ["a", "b"]), TFNode("b", "Relu6", ["a"]), TFNode("a", "Placeholder", [])]
    assert [n.name for n in _ordered(nodes)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="cycle"):
        _ordered([TFNode("x", "Relu6", ["y"]), TFNode("y", "Relu6", ["x"])])


def test_an_unknown_op_or_output_is_refused_not_converted():
    nodes = [TFNode("image", "Placeholder", []), TFNode("pool", "MaxPool", ["image"])]
    with pytest.raises(ValueError, match="MaxPool"):
        build_onnx(nodes, net=None, outputs=["pool"])
    nodes = [TFNode("image", "Placeholder", []), TFNode("act", "Relu6", ["image"])]
    with pytest.raises(ValueError, match="not in the graph"):
        build_onnx(nodes, net=None, outputs=["missing"])
