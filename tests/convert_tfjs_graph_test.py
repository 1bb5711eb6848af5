#!/usr/bin/python3
"""Tests of tools/convert_tfjs_graph.py on small tfjs graph models written here.

The graphs use every op and pattern the converter translates. Each is checked three ways: the
numpy interpreter against values worked out by hand, the ONNX file in OpenCV against the
interpreter (two independent implementations: NHWC numpy against NCHW OpenCV), and the refusals
(unknown op, wrong format) with their messages.

Run: /usr/bin/python3 tests/convert_tfjs_graph_test.py (needs python3-numpy, python3-onnx,
python3-opencv).
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")
sys.path.insert(0, TOOLS)
import convert_tfjs_graph as conv  # noqa: E402

SCRIPT = os.path.join(TOOLS, "convert_tfjs_graph.py")


def _s(text):
    return {"s": base64.b64encode(text.encode()).decode()}


class GraphWriter:
    """Writes a graph model in the layout tfjs-converter produces: model.json with the node list
    and a weights manifest, and one .bin shard (float32, or float16 where asked)."""

    def __init__(self, h, w):
        self.nodes = [{"name": "image", "op": "Placeholder", "attr": {
            "dtype": {"type": "DT_FLOAT"},
            "shape": {"shape": {"dim": [{"size": "-1"}, {"size": str(h)}, {"size": str(w)},
                                        {"size": "3"}]}}}}]
        self.weights = []
        self.count = 0

    def const(self, value, dtype="float32", float16=False):
        self.count += 1
        name = f"c{self.count}"
        self.nodes.append({"name": name, "op": "Const", "attr": {}})
        self.weights.append((name, np.asarray(value), dtype, float16))
        return name

    def op(self, op, inputs, **attr):
        self.count += 1
        name = f"{op.lower()}_{self.count}"
        self.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": attr})
        return name

    def save(self, directory, fmt="graph-model"):
        blob, specs = b"", []
        for name, value, dtype, float16 in self.weights:
            spec = {"name": name, "shape": list(value.shape), "dtype": dtype}
            if float16:
                spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
                blob += value.astype("<f2").tobytes()
            else:
                blob += value.astype("<i4" if dtype == "int32" else "<f4").tobytes()
            specs.append(spec)
        with open(os.path.join(directory, "m.bin"), "wb") as f:
            f.write(blob)
        path = os.path.join(directory, "model.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"format": fmt, "generatedBy": "test",
                       "modelTopology": {"node": self.nodes},
                       "weightsManifest": [{"paths": ["m.bin"], "weights": specs}]}, f)
        return path


def conv_attrs(stride, padding):
    return {"strides": {"list": {"i": ["1", str(stride), str(stride), "1"]}},
            "padding": _s(padding), "data_format": _s("NHWC")}


def fused(*ops):
    return {"fused_ops": {"list": {"s": [base64.b64encode(o.encode()).decode() for o in ops]}}}


def prelu(g, x, channels, rng):
    zero = g.const(np.array(0.0))
    mx = g.op("Maximum", [zero, x])
    mn = g.op("Minimum", [zero, x])
    return g.op("AddV2", [mx, g.op("Mul", [g.const(rng.uniform(0.05, 0.5, channels)), mn])])


def relu6(g, x):
    return g.op("Maximum", [g.op("Minimum", [x, g.const(np.array(6.0))]), g.const(np.array(0.0))])


def build_network(directory, rng):
    """A network of the shapes the human-models descriptors have, with both kinds of head:
    returns (model.json path, flatten head output, pooled head output)."""
    g = GraphWriter(12, 12)
    x = g.op("Mul", [g.op("Sub", ["image", g.const(np.array(127.5))]),
                     g.const(np.array(1 / 128))])
    x = g.op("Pad", [x, g.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]]), dtype="int32")])
    x = g.op("Conv2D", [x, g.const(rng.normal(0, 0.3, (3, 3, 3, 4)))], **conv_attrs(2, "VALID"))
    x = prelu(g, x, 4, rng)
    d = g.op("DepthwiseConv2dNative", [x, g.const(rng.normal(0, 0.5, (3, 3, 4, 1)))],
             **conv_attrs(1, "SAME"))
    x = g.op("AddV2", [relu6(g, d), x])
    # 6x6 here: with stride 2 and SAME, TensorFlow pads one row/column at the bottom/right only.
    y = g.op("_FusedConv2D", [x, g.const(rng.normal(0, 0.3, (3, 3, 4, 6)), float16=True),
                              g.const(rng.normal(0, 0.1, 6), float16=True)],
             **conv_attrs(2, "SAME"), **fused("BiasAdd", "Relu"))
    y = g.op("FusedDepthwiseConv2dNative", [y, g.const(rng.normal(0, 0.5, (3, 3, 6, 1))),
                                            g.const(rng.normal(0, 0.1, 6))],
             **conv_attrs(1, "SAME"), **fused("BiasAdd", "Relu6"))
    # The PReLU form of human-models' MobileFaceNet: relu(x) + alpha * (x - |x|).
    y = g.op("Add", [g.op("Relu", [y]), g.op("Mul", [g.op("Sub", [y, g.op("Abs", [y])]),
                                                     g.const(rng.uniform(0.05, 0.3, 6))])])
    # Head 1: flatten (TensorFlow's NHWC order matters to the dense layer) and a batch norm.
    flat = g.op("Reshape", [y, g.const(np.array([-1, 54]), dtype="int32")])
    h1 = g.op("MatMul", [flat, g.const(rng.normal(0, 0.2, (54, 8)))],
              transpose_a={"b": False}, transpose_b={"b": False})
    h1 = g.op("AddV2", [g.op("Mul", [h1, g.const(rng.uniform(0.5, 2, 8))]),
                        g.const(rng.normal(0, 0.1, 8))])
    # Head 2: global average pooling and a fused dense layer.
    pooled = g.op("Mean", [y, g.const(np.array([1, 2]), dtype="int32")])
    h2 = g.op("_FusedMatMul", [pooled, g.const(rng.normal(0, 0.3, (6, 5))),
                               g.const(rng.normal(0, 0.1, 5))], **fused("BiasAdd"))
    # Head 3: a convolution down to 1x1 and a squeeze of the spatial dimensions.
    h3 = g.op("Conv2D", [y, g.const(rng.normal(0, 0.3, (3, 3, 6, 7)))], **conv_attrs(1, "VALID"))
    h3 = g.op("Squeeze", [h3], squeeze_dims={"list": {"i": ["1", "2"]}})
    return g.save(directory), h1, h2, h3


class Interpreter(unittest.TestCase):
    """The numpy interpreter on cases small enough to work out by hand."""

    def test_prelu_and_clip_patterns(self):
        with tempfile.TemporaryDirectory() as d:
            g = GraphWriter(1, 2)
            zero = g.const(np.array(0.0))
            x = g.op("Sub", ["image", g.const(np.array(10.0))])
            mx, mn = g.op("Maximum", [zero, x]), g.op("Minimum", [zero, x])
            p = g.op("AddV2", [mx, g.op("Mul", [g.const(np.array([0.5, 0.25, 0.1])), mn])])
            c = relu6(g, p)
            graph = conv.TfjsGraph(g.save(d))
            image = np.array([[[[2.0, 14.0, 30.0], [18.0, 6.0, 10.0]]]])
            want_p = [[[[-4.0, 4.0, 20.0], [8.0, -1.0, 0.0]]]]
            np.testing.assert_allclose(conv.reference_forward(graph, p, image), want_p)
            np.testing.assert_allclose(conv.reference_forward(graph, c, image),
                                       [[[[0.0, 4.0, 6.0], [6.0, 0.0, 0.0]]]])

    def test_same_padding_puts_the_extra_row_at_the_bottom(self):
        with tempfile.TemporaryDirectory() as d:
            g = GraphWriter(4, 4)
            # Sums a 2x2 window of channel 0 at stride 2 ... with SAME on an even size no
            # padding is needed; with a 3x3 window one row/column goes at the bottom/right.
            k = np.zeros((3, 3, 3, 1))
            k[:, :, 0, 0] = 1
            y = g.op("Conv2D", ["image", g.const(k)], **conv_attrs(2, "SAME"))
            graph = conv.TfjsGraph(g.save(d))
            image = np.zeros((1, 4, 4, 3))
            image[0, :, :, 0] = np.arange(16).reshape(4, 4)
            got = conv.reference_forward(graph, y, image)[0, :, :, 0]
            # Windows start at rows/columns 0 and 2: rows 0-2 and 2-3 (+ padding).
            a = np.arange(16).reshape(4, 4)
            want = [[a[0:3, 0:3].sum(), a[0:3, 2:4].sum()], [a[2:4, 0:3].sum(), a[2:4, 2:4].sum()]]
            np.testing.assert_allclose(got, want)


class Conversion(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.model_json, self.h1, self.h2, self.h3 = build_network(self.dir.name,
                                                                   np.random.default_rng(7))

    def convert(self, output, *extra):
        out = os.path.join(self.dir.name, "out.onnx")
        run = subprocess.run([sys.executable, SCRIPT, self.model_json, out, "--output", output,
                              *extra], capture_output=True, text=True, check=False)
        return run, out

    def test_opencv_runs_the_converted_graph_as_the_interpreter_does(self):
        import cv2
        graph = conv.TfjsGraph(self.model_json)
        for head, size in ((self.h1, 8), (self.h2, 5), (self.h3, 7)):
            run, out = self.convert(head)
            self.assertEqual(run.returncode, 0, run.stderr)
            net = cv2.dnn.readNetFromONNX(out)
            rng = np.random.default_rng(3)
            for _ in range(3):
                image = rng.uniform(0, 255, (1, 12, 12, 3))
                net.setInput(image.transpose(0, 3, 1, 2).astype(np.float32))
                got = net.forward().reshape(-1)
                want = conv.reference_forward(graph, head, image).reshape(-1)
                self.assertEqual(got.shape, (size,))
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    def test_verify_flag_passes_and_output_is_deterministic(self):
        run, out = self.convert(self.h2, "--verify")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("max relative diff", run.stderr)
        with open(out, "rb") as f:
            first = f.read()
        run, out = self.convert(self.h2)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), first)

    def test_the_prelu_and_clip_patterns_become_single_nodes(self):
        import onnx
        run, out = self.convert(self.h1)
        self.assertEqual(run.returncode, 0, run.stderr)
        ops = [n.op_type for n in onnx.load(out).graph.node]
        self.assertEqual(ops.count("PRelu"), 1)
        self.assertNotIn("Max", ops)
        self.assertNotIn("Min", ops)
        self.assertEqual(ops.count("Clip"), 2)  # relu6 pattern and the fused Relu6

    def test_unknown_node_is_refused_and_nothing_is_written(self):
        run, out = self.convert("no_such_node")
        self.assertEqual(run.returncode, 1)
        self.assertIn("no_such_node", run.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tmp"))

    def test_unsupported_op_is_named(self):
        with open(self.model_json, encoding="utf-8") as f:
            model = json.load(f)
        for node in model["modelTopology"]["node"]:
            if node["op"] == "Mean":
                node["op"] = "Softplus"
        with open(self.model_json, "w", encoding="utf-8") as f:
            json.dump(model, f)
        run, out = self.convert(self.h2)
        self.assertEqual(run.returncode, 1)
        self.assertIn("op Softplus", run.stderr)
        self.assertFalse(os.path.exists(out))

    def test_a_layers_model_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            g = GraphWriter(2, 2)
            path = g.save(d, fmt="layers-model")
            run = subprocess.run([sys.executable, SCRIPT, path, os.path.join(d, "o.onnx"),
                                  "--output", "image"], capture_output=True, text=True,
                                 check=False)
            self.assertEqual(run.returncode, 1)
            self.assertIn("not a tfjs graph model", run.stderr)

    def test_truncated_weights_are_refused(self):
        with open(os.path.join(self.dir.name, "m.bin"), "r+b") as f:
            f.truncate(100)
        run, out = self.convert(self.h2)
        self.assertEqual(run.returncode, 1)
        self.assertIn("past the shard", run.stderr)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
