#!/usr/bin/env python3
"""Convert a darknet network (cfg + weights) to ONNX: YOLOv4-tiny, as `models/fetch` needs it.

Usage: darknet2onnx.py CFG WEIGHTS OUT.onnx

Run by `models/fetch` with its private venv's python (onnx and numpy, pinned in manifest.toml
`[patcher]`); nothing else is imported and nothing is downloaded. With those versions the output
is byte-stable, and fetch checks it against the manifest's `patched_sha256`.

What it handles is what yolov4-tiny.cfg (and yolov3-tiny.cfg) use: [convolutional] with or
without batch normalisation (folded into the convolution's weights and bias), leaky or linear
activation; [maxpool]; [upsample] (nearest); [route] with one layer (and `groups`/`group_id`, a
channel slice) or several (concatenation); [shortcut]; [yolo]. Any other block, or a weights file
whose length does not match the cfg exactly, is an error.

The graph: input `input` float32 [1, 3, H, W] (RGB scaled to 0..1, H and W multiples of 32);
one output per [yolo] block, `yolo0`, `yolo1`, … the raw head [1, A·(5 + classes), H/s, W/s]
(not decoded: sigmoid, anchors and NMS are the caller's). The metadata property `yolo` (JSON)
gives each head's anchors (in input pixels of the cfg's network size), `scale_x_y` and class
count.

Written for covermap from the darknet cfg/weights format as AlexeyAB/darknet reads it
(`parse_network_cfg`, `load_weights`: header major, minor, revision as int32, then `seen` as
int64 from version 0.2 on; per convolution: biases, then BN scale, mean, variance when
`batch_normalize=1`, then the kernels). A first version was the scratch converter used to
research vehicle detectors for the plate backstop; this is that code, written out.
"""

import json
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
BN_EPSILON = 1e-6  # darknet: (x − mean) / (sqrt(variance) + .000001f)
LEAKY_SLOPE = 0.1


class ConversionError(Exception):
    pass


def parse_cfg(path):
    """The cfg's blocks, in order: a dict per `[type]` with its `key=value` lines."""
    blocks = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                blocks.append({"type": line.strip("[]").strip()})
            elif "=" in line and blocks:
                key, value = line.split("=", 1)
                blocks[-1][key.strip()] = value.strip()
            else:
                raise ConversionError(f"{path}:{number}: cannot read {raw.strip()!r}")
    if not blocks or blocks[0]["type"] not in ("net", "network"):
        raise ConversionError(f"{path}: the first block is not [net]")
    return blocks


def read_weights(path):
    """The weights file's float32 values, after its header."""
    with open(path, "rb") as f:
        major, minor, _revision = np.fromfile(f, np.int32, 3)
        seen_type = np.int64 if major * 10 + minor >= 2 else np.int32
        np.fromfile(f, seen_type, 1)
        return np.fromfile(f, np.float32)


class Weights:
    """Reads the weights in the order the cfg's layers consume them."""

    def __init__(self, values):
        self.values = values
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.values):
            raise ConversionError("the weights file is shorter than the cfg needs")
        out = self.values[self.pos:self.pos + n]
        self.pos += n
        return out


class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def convolutional(g, block, name, source, channels, weights):
    filters = int(block["filters"])
    k = int(block["size"])
    stride = int(block.get("stride", 1))
    pad = k // 2 if int(block.get("pad", 0)) else int(block.get("padding", 0))
    activation = block.get("activation", "linear")
    bias = weights.take(filters)
    if int(block.get("batch_normalize", 0)):
        scale = weights.take(filters)
        mean = weights.take(filters)
        var = weights.take(filters)
    kernel = weights.take(filters * channels * k * k).reshape(filters, channels, k, k)
    if int(block.get("batch_normalize", 0)):
        # In darknet's BN layer `bias` is beta: y = scale·(x − mean)/std + bias.
        factor = scale / (np.sqrt(var) + BN_EPSILON)
        kernel = kernel * factor[:, None, None, None]
        bias = bias - mean * factor
    w = g.constant(f"{name}.weight", kernel.astype(np.float32))
    b = g.constant(f"{name}.bias", bias.astype(np.float32))
    out = g.node("Conv", [source, w, b], f"{name}.conv", kernel_shape=[k, k],
                 strides=[stride, stride], pads=[pad] * 4)
    if activation == "leaky":
        out = g.node("LeakyRelu", [out], name, alpha=LEAKY_SLOPE)
    elif activation == "linear":
        out = g.node("Identity", [out], name)
    else:
        raise ConversionError(f"{name}: activation {activation!r} is not handled")
    return out, filters


def maxpool(g, block, name, source):
    k = int(block["size"])
    stride = int(block.get("stride", 1))
    if stride == 1:  # darknet keeps the size: pad the extra pixel on the far side
        pads = [(k - 1) // 2, (k - 1) // 2, k // 2, k // 2]
        return g.node("MaxPool", [source], name, kernel_shape=[k, k], strides=[1, 1], pads=pads)
    return g.node("MaxPool", [source], name, kernel_shape=[k, k], strides=[stride, stride])


def route(g, block, name, index, outputs, channels):
    layers = [int(v) for v in block["layers"].split(",")]
    layers = [v if v >= 0 else index + v for v in layers]
    if len(layers) > 1:
        out = g.node("Concat", [outputs[v] for v in layers], name, axis=1)
        return out, sum(channels[v] for v in layers)
    source, c = outputs[layers[0]], channels[layers[0]]
    groups = int(block.get("groups", 1))
    if groups == 1:
        return g.node("Identity", [source], name), c
    group = int(block.get("group_id", 0))
    part = c // groups
    start = g.constant(f"{name}.start", np.array([part * group], np.int64))
    end = g.constant(f"{name}.end", np.array([part * (group + 1)], np.int64))
    axis = g.constant(f"{name}.axis", np.array([1], np.int64))
    return g.node("Slice", [source, start, end, axis], name), part


def convert(cfg_path, weights_path, out_path):
    blocks = parse_cfg(cfg_path)
    net, layers = blocks[0], blocks[1:]
    weights = Weights(read_weights(weights_path))
    g = Graph()
    outputs, channels, heads = [], [], []
    source, c = "input", int(net.get("channels", 3))
    for i, block in enumerate(layers):
        kind, name = block["type"], f"layer{i}"
        if kind == "convolutional":
            source, c = convolutional(g, block, name, source, c, weights)
        elif kind == "maxpool":
            source = maxpool(g, block, name, source)
        elif kind == "upsample":
            s = float(block.get("stride", 2))
            scales = g.constant(f"{name}.scales", np.array([1, 1, s, s], np.float32))
            source = g.node("Resize", [source, "", scales], name, mode="nearest")
        elif kind == "route":
            source, c = route(g, block, name, i, outputs, channels)
        elif kind == "shortcut":
            other = int(block["from"])
            other = other if other >= 0 else i + other
            source = g.node("Add", [source, outputs[other]], name)
        elif kind == "yolo":
            mask = [int(v) for v in block["mask"].split(",")]
            anchors = [float(v) for v in block["anchors"].split(",")]
            head = f"yolo{len(heads)}"
            heads.append({
                "output": head,
                "anchors": [[anchors[2 * m], anchors[2 * m + 1]] for m in mask],
                "scale_x_y": float(block.get("scale_x_y", 1)),
                "classes": int(block["classes"]),
            })
            source = g.node("Identity", [source], head)
        else:
            raise ConversionError(f"{name}: block [{kind}] is not handled")
        outputs.append(source)
        channels.append(c)
    if weights.pos != len(weights.values):
        raise ConversionError(f"the cfg used {weights.pos} of the weights file's "
                              f"{len(weights.values)} values")
    graph = helper.make_graph(
        g.nodes, "darknet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info(h["output"], TensorProto.FLOAT, [1, "c", "h", "w"])
         for h in heads],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="covermap models/darknet2onnx.py")
    model.ir_version = IR_VERSION
    model.metadata_props.add(key="yolo", value=json.dumps(heads, sort_keys=True))
    model.metadata_props.add(key="network_size", value=f"{net['width']}x{net['height']}")
    onnx.checker.check_model(model)
    onnx.save(model, out_path)
    return heads


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        heads = convert(argv[1], argv[2], argv[3])
    except (ConversionError, OSError, KeyError, ValueError) as e:
        print(f"darknet2onnx: error: {e}", file=sys.stderr)
        return 1
    print(f"darknet2onnx: {argv[3]}: {len(heads)} heads", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
