#!/usr/bin/python3
"""Tests of tools/convert_tflite.py on small TFLite flatbuffers written here.

The graphs use every op and pattern the converter translates (CONV_2D and DEPTHWISE_CONV_2D
with SAME and VALID padding, strides, biases and a fused RELU, the ADD/SUB/MUL/RELU/ABS form
of PReLU, an ADD of a per-channel constant, RESHAPE to [N, D]). Each is checked three ways: the
numpy interpreter against values worked out by hand, the ONNX file in OpenCV against the
interpreter (NHWC numpy against NCHW OpenCV), and the refusals (unknown op, not a TFLite file)
with their messages. The files are written with python3-flatbuffers' Builder in the layout of
TensorFlow's schema.fbs, field slot by field slot, independently of the converter's reader.

Run: /usr/bin/python3 tests/convert_tflite_test.py (needs python3-flatbuffers, python3-numpy,
python3-onnx, python3-opencv).
"""

import os
import subprocess
import sys
import tempfile
import unittest

import flatbuffers
import numpy as np

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")
sys.path.insert(0, TOOLS)
import convert_tflite as conv  # noqa: E402

SCRIPT = os.path.join(TOOLS, "convert_tflite.py")

OPS = {"ADD": 0, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4, "MUL": 18, "RELU": 19, "RESHAPE": 22,
       "SOFTMAX": 25, "SUB": 41, "ABS": 101}
# BuiltinOptions union types of schema.fbs.
OPTIONS_TYPE = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 2, "ADD": 11, "MUL": 21, "RESHAPE": 17,
                "SUB": 28}


class TfliteWriter:
    """Collects tensors and operators, then writes a one-subgraph model."""

    def __init__(self, input_shape):
        self.tensors = []  # (name, shape, np.float32 array or None)
        self.ops = []  # (op name, inputs, outputs, options dict)
        self.input = self.tensor("input", input_shape)

    def tensor(self, name, shape, value=None):
        self.tensors.append((name, list(shape), value))
        return len(self.tensors) - 1

    def const(self, value):
        value = np.asarray(value, dtype=np.float32)
        return self.tensor(f"const{len(self.tensors)}", value.shape, value)

    def op(self, kind, inputs, out_shape, **options):
        out = self.tensor(f"{kind.lower()}{len(self.ops)}", out_shape)
        self.ops.append((kind, list(inputs), [out], options))
        return out

    @staticmethod
    def _int_vector(b, values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    @staticmethod
    def _table_vector(b, offsets):
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def _options(self, b, kind, o):
        if kind == "CONV_2D":  # padding, stride_w, stride_h, fused_activation_function
            b.StartObject(6)
            b.PrependInt8Slot(0, o.get("padding", 0), 0)
            b.PrependInt32Slot(1, o.get("stride", 1), 0)
            b.PrependInt32Slot(2, o.get("stride", 1), 0)
            b.PrependInt8Slot(3, o.get("act", 0), 0)
            return b.EndObject()
        if kind == "DEPTHWISE_CONV_2D":  # ..., depth_multiplier (3), fused_activation (4)
            b.StartObject(7)
            b.PrependInt8Slot(0, o.get("padding", 0), 0)
            b.PrependInt32Slot(1, o.get("stride", 1), 0)
            b.PrependInt32Slot(2, o.get("stride", 1), 0)
            b.PrependInt32Slot(3, 1, 0)
            b.PrependInt8Slot(4, o.get("act", 0), 0)
            return b.EndObject()
        if kind in ("ADD", "SUB", "MUL"):
            b.StartObject(1)
            b.PrependInt8Slot(0, o.get("act", 0), 0)
            return b.EndObject()
        return None

    def save(self, path, output):
        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)  # every slot written, as TensorFlow's exporter does for these
        # Buffers: 0 is the empty one, by convention; each constant gets its own.
        buffer_of, buffers = {}, []
        b.StartObject(1)
        buffers.append(b.EndObject())
        for i, (_, _, value) in enumerate(self.tensors):
            if value is None:
                continue
            data = b.CreateByteVector(value.astype("<f4").tobytes())
            b.StartObject(1)
            b.PrependUOffsetTRelativeSlot(0, data, 0)
            buffer_of[i] = len(buffers)
            buffers.append(b.EndObject())
        tensors = []
        for i, (name, shape, _) in enumerate(self.tensors):
            name_off = b.CreateString(name)
            shape_off = self._int_vector(b, shape)
            b.StartObject(4)  # shape, type, buffer, name
            b.PrependUOffsetTRelativeSlot(0, shape_off, 0)
            b.PrependInt8Slot(1, 0, 0)  # FLOAT32
            b.PrependUint32Slot(2, buffer_of.get(i, 0), 0)
            b.PrependUOffsetTRelativeSlot(3, name_off, 0)
            tensors.append(b.EndObject())
        kinds = sorted({kind for kind, _, _, _ in self.ops})
        operators = []
        for kind, inputs, outputs, options in self.ops:
            ins, outs = self._int_vector(b, inputs), self._int_vector(b, outputs)
            opts = self._options(b, kind, options)
            b.StartObject(5)  # opcode_index, inputs, outputs, builtin_options_type, options
            b.PrependUint32Slot(0, kinds.index(kind), 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if opts is not None:
                b.PrependUint8Slot(3, OPTIONS_TYPE[kind], 0)
                b.PrependUOffsetTRelativeSlot(4, opts, 0)
            operators.append(b.EndObject())
        tensors_vec = self._table_vector(b, tensors)
        inputs_vec = self._int_vector(b, [self.input])
        outputs_vec = self._int_vector(b, [output])
        ops_vec = self._table_vector(b, operators)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
        b.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
        subgraph = b.EndObject()
        codes = []
        for kind in kinds:
            code = OPS[kind]
            b.StartObject(4)  # deprecated_builtin_code (int8), custom_code, version, builtin
            b.PrependInt8Slot(0, min(code, 127), 0)
            b.PrependInt32Slot(2, 1, 1)
            b.PrependInt32Slot(3, code, 0)
            codes.append(b.EndObject())
        codes_vec = self._table_vector(b, codes)
        subgraphs_vec = self._table_vector(b, [subgraph])
        buffers_vec = self._table_vector(b, buffers)
        b.StartObject(5)  # version, operator_codes, subgraphs, description, buffers
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
        b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
        model = b.EndObject()
        b.Finish(model, file_identifier=b"TFL3")
        with open(path, "wb") as f:
            f.write(b.Output())


def prelu(w, x, channels, alpha):
    """TensorFlow's PReLU as the TFLite exporter writes it: relu(x) + alpha * (x - |x|)."""
    relu = w.op("RELU", [x], w.tensors[x][1])
    absolute = w.op("ABS", [x], w.tensors[x][1])
    diff = w.op("SUB", [x, absolute], w.tensors[x][1])
    scaled = w.op("MUL", [w.const(np.full(channels, alpha)), diff], w.tensors[x][1])
    return w.op("ADD", [relu, scaled], w.tensors[x][1])


def small_network(rng):
    """8x8x3 -> conv 3x3 /2 SAME (4, RELU) -> - 1 -> PReLU -> depthwise 3x3 VALID -> + per-channel
    constant -> depthwise 2x2 VALID -> conv 1x1 (5) -> reshape [1, 5]."""
    w = TfliteWriter([1, 8, 8, 3])
    x = w.op("CONV_2D", [w.input, w.const(rng.normal(size=(4, 3, 3, 3))),
                         w.const(rng.normal(size=4))], [1, 4, 4, 4], stride=2, act=1)
    x = w.op("SUB", [x, w.const(np.full(4, 1.0))], [1, 4, 4, 4])  # negatives for the PReLU
    x = prelu(w, x, 4, 0.125)
    x = w.op("DEPTHWISE_CONV_2D", [x, w.const(rng.normal(size=(1, 3, 3, 4))),
                                   w.const(rng.normal(size=4))], [1, 2, 2, 4], padding=1)
    x = w.op("ADD", [x, w.const(rng.normal(size=4))], [1, 2, 2, 4])
    x = w.op("DEPTHWISE_CONV_2D", [x, w.const(rng.normal(size=(1, 2, 2, 4))), -1],
             [1, 1, 1, 4], padding=1)
    x = w.op("CONV_2D", [x, w.const(rng.normal(size=(5, 1, 1, 4))), w.const(rng.normal(size=5))],
             [1, 1, 1, 5])
    out = w.op("RESHAPE", [x, w.const([1, 5])], [1, 5])
    return w, out


class ConvertTfliteTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "model.tflite")

    def tearDown(self):
        self.dir.cleanup()

    def test_interpreter_matches_hand_computed_values(self):
        # A 1x1 convolution (weights 2, bias 1) then PReLU with alpha 0.25: 2x + 1 where that
        # is positive, else 0.5 * (2x + 1).
        w = TfliteWriter([1, 2, 2, 3])
        x = w.op("CONV_2D", [w.input, w.const(np.full((1, 1, 1, 3), 2.0)), w.const([1.0])],
                 [1, 2, 2, 1])
        x = prelu(w, x, 1, 0.25)
        out = w.op("RESHAPE", [w.op("DEPTHWISE_CONV_2D", [x, w.const(np.ones((1, 2, 2, 1))),
                                                          -1], [1, 1, 1, 1], padding=1),
                               w.const([1, 1])], [1, 1])
        w.save(self.path, out)
        graph = conv.TfliteGraph(self.path)
        image = np.array([1.0, -2.0, 0.5, -1.0]).reshape(1, 2, 2, 1).repeat(3, axis=3) / 3
        # Per pixel: 2 * (sum of three channels = the value) + 1 = 3, -3, 2, -1;
        # PReLU: 3, -1.5, 2, -0.5; the 2x2 depthwise sums them: 3.
        got = conv.reference_forward(graph, image)
        np.testing.assert_allclose(got, [[3.0]], atol=1e-9)

    def test_opencv_matches_the_interpreter(self):
        import cv2
        w, out = small_network(np.random.default_rng(7))
        w.save(self.path, out)
        onnx_path = os.path.join(self.dir.name, "model.onnx")
        result = subprocess.run([sys.executable, SCRIPT, self.path, onnx_path, "--verify"],
                                capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("verify: OpenCV vs numpy interpreter", result.stderr)
        graph = conv.TfliteGraph(self.path)
        net = cv2.dnn.readNetFromONNX(onnx_path)
        image = np.random.default_rng(3).uniform(-1, 1, (1, 8, 8, 3))
        net.setInput(image.transpose(0, 3, 1, 2).astype(np.float32))
        np.testing.assert_allclose(net.forward(), conv.reference_forward(graph, image),
                                   rtol=1e-4, atol=1e-4)
        # The PReLU pattern became one node; its RELU/ABS/SUB/MUL/ADD are gone.
        import onnx
        ops = [n.op_type for n in onnx.load(onnx_path).graph.node]
        self.assertEqual(ops.count("PRelu"), 1)
        self.assertNotIn("Abs", ops)

    def test_same_input_gives_the_same_bytes(self):
        w, out = small_network(np.random.default_rng(11))
        w.save(self.path, out)
        outputs = []
        for name in ("a.onnx", "b.onnx"):
            dest = os.path.join(self.dir.name, name)
            subprocess.run([sys.executable, SCRIPT, self.path, dest, "--source", "test"],
                           check=True)
            with open(dest, "rb") as f:
                outputs.append(f.read())
        self.assertEqual(outputs[0], outputs[1])

    def test_refuses_an_unknown_op_by_its_code(self):
        w = TfliteWriter([1, 2, 2, 3])
        out = w.op("SOFTMAX", [w.input], [1, 2, 2, 3])
        w.save(self.path, out)
        dest = os.path.join(self.dir.name, "out.onnx")
        result = subprocess.run([sys.executable, SCRIPT, self.path, dest],
                                capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("builtin op 25 not supported", result.stderr)
        self.assertFalse(os.path.exists(dest))

    def test_refuses_a_file_that_is_not_tflite(self):
        with open(self.path, "wb") as f:
            f.write(b"\x00" * 64)
        dest = os.path.join(self.dir.name, "out.onnx")
        result = subprocess.run([sys.executable, SCRIPT, self.path, dest],
                                capture_output=True, text=True, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("not a TFLite flatbuffer", result.stderr)
        self.assertFalse(os.path.exists(dest))


if __name__ == "__main__":
    unittest.main()
