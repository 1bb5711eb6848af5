#!/usr/bin/python3
"""Convert face-api's dlib face descriptor (tfjs weights) to an ONNX model for OpenCV.

Input: the `face_recognition_model-weights_manifest.json` and its `.bin` shard(s) from the npm
package `@vladmandic/face-api` (1.7.15). That network is dlib's
`dlib_face_recognition_resnet_model_v1` (a ResNet-29 with 128-d output) re-packed as a tfjs weight
map; its forward pass is defined in the package's `src/faceRecognitionNet/`, which this script
follows layer by layer.

Output: an ONNX model (opset 11) that OpenCV 4.6's `cv::dnn::readNetFromONNX` loads.
  input  "image"      float32 [1, 3, 150, 150], NCHW, RGB order, raw 0..255 pixel values of an
                      aligned 150x150 dlib face chip (no mean, no scaling: done inside the graph)
  output "descriptor" float32 [1, 128], not normalised; compare with Euclidean distance (dlib's
                      usual threshold 0.6) or cosine similarity.
The per-pixel normalisation (x - mean_rgb) / 256 with mean_rgb = (122.782, 117.001, 104.298) is
folded into the first convolution, which is exact because that convolution has no padding.
dlib divides by 256 (`input_rgb_image_sized`); face-api divides by 255. The weights were trained
by dlib, so 256 is used here.

Requires Debian's python3-numpy and python3-onnx; `--verify` also needs python3-opencv.
Run with /usr/bin/python3. The output is byte-for-byte deterministic for a given input.
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_DIVISOR = 256.0
INPUT_SIZE = 150
DESCRIPTOR_SIZE = 128
OPSET = 11
# IR version 6 is the one that goes with opset 11; pinned so the bytes do not follow the onnx
# package's default.
IR_VERSION = 6

# (name, kind) in forward order, as in face-api's FaceRecognitionNet.forwardInput.
# "res" keeps the resolution and channel count; "down" halves the resolution (and may widen).
RESIDUAL_BLOCKS = (
    ("conv32_1", "res"), ("conv32_2", "res"), ("conv32_3", "res"),
    ("conv64_down", "down"), ("conv64_1", "res"), ("conv64_2", "res"), ("conv64_3", "res"),
    ("conv128_down", "down"), ("conv128_1", "res"), ("conv128_2", "res"),
    ("conv256_down", "down"), ("conv256_1", "res"), ("conv256_2", "res"),
    ("conv256_down_out", "down"),
)

_QUANTISED_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}
_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32}


def load_weight_map(manifest_path):
    """Reads a tfjs weights manifest file and its shards into {name: float32 ndarray}.

    Mirrors tfjs' io.decodeWeights: the shards of a group are concatenated in order, tensors are
    packed back to back, and uint8/uint16 values decode as q * scale + min.
    """
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    return load_weights_manifest(manifest, os.path.dirname(manifest_path))


def load_weights_manifest(manifest, base):
    """The weights of a parsed tfjs weights manifest (a list of groups) whose shard paths are
    relative to `base`; also used for graph models, whose JSON embeds the manifest."""
    weights = {}
    for group in manifest:
        blob = b"".join(_read_bytes(os.path.join(base, p)) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = tuple(spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            quant = spec.get("quantization")
            if quant:
                qdtype = quant["dtype"]
                if qdtype not in _QUANTISED_BYTES:
                    raise ValueError(f"{spec['name']}: unsupported quantisation {qdtype}")
                nbytes = count * _QUANTISED_BYTES[qdtype]
                _check_room(spec, offset, nbytes, blob)
                raw = np.frombuffer(blob, dtype=np.dtype(qdtype).newbyteorder("<"),
                                    count=count, offset=offset)
                if qdtype == "float16":
                    values = raw.astype(np.float32)
                else:
                    # tfjs computes this in double precision and stores float32.
                    values = (raw.astype(np.float64) * quant["scale"] + quant["min"])
                    values = values.astype(np.float32)
            else:
                dtype = _PLAIN_DTYPES.get(spec["dtype"])
                if dtype is None:
                    raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
                nbytes = count * np.dtype(dtype).itemsize
                _check_room(spec, offset, nbytes, blob)
                values = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<"),
                                       count=count, offset=offset).astype(np.float32)
            weights[spec["name"]] = values.reshape(shape)
            offset += nbytes
        if offset != len(blob):
            raise ValueError(f"{len(blob) - offset} unused bytes after the last weight of "
                             f"{group['paths']}: the manifest does not match the shard(s)")
    return weights


def _check_room(spec, offset, nbytes, blob):
    if offset + nbytes > len(blob):
        raise ValueError(f"{spec['name']}: weight data ends past the shard(s)")


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def check_weight_map(w):
    """Fails early, with the offending name, if the weight map is not the expected network."""
    expected = {"fc": (256, DESCRIPTOR_SIZE)}
    layers = [("conv32_down", 7, 3, 32)]
    in_ch = 32
    for name, _ in RESIDUAL_BLOCKS:
        out_ch = int(re.match(r"conv(\d+)", name).group(1))
        layers.append((f"{name}/conv1", 3, in_ch, out_ch))
        layers.append((f"{name}/conv2", 3, out_ch, out_ch))
        in_ch = out_ch
    for prefix, k, cin, cout in layers:
        expected[f"{prefix}/conv/filters"] = (k, k, cin, cout)
        for leaf in ("conv/bias", "scale/weights", "scale/biases"):
            expected[f"{prefix}/{leaf}"] = (cout,)
    for name, shape in expected.items():
        if name not in w:
            raise ValueError(f"weight {name} missing from the manifest")
        if w[name].shape != shape:
            raise ValueError(f"weight {name} has shape {w[name].shape}, expected {shape}")
    extra = sorted(set(w) - set(expected))
    if extra:
        raise ValueError(f"unexpected weights in the manifest: {extra[:5]}")


# --------------------------------------------------------------------------------------------
# Reference forward pass: a literal numpy transcription of face-api's tfjs code (NHWC, unfolded
# conv + bias + scale, avgPool + zero-concat shortcuts), in float64. It shares only the weight
# loading with the ONNX builder below, so agreement between the two checks the graph. With the
# divisor set to face-api's 255 it matched face-api 1.7.15 itself (tfjs cpu backend) to 1.5e-7.


def _ref_conv(x, filters, stride, padding):
    """tf.conv2d on one NHWC image (batch dim dropped): filters [kh, kw, in, out]."""
    kh, kw, _, cout = filters.shape
    h, wd, _ = x.shape
    if padding == "same":
        out_h, out_w = -(-h // stride), -(-wd // stride)
        pad_h = max((out_h - 1) * stride + kh - h, 0)
        pad_w = max((out_w - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out_h = (x.shape[0] - kh) // stride + 1
    out_w = (x.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w, cout))
    for i in range(kh):
        for j in range(kw):
            patch = x[i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out += patch @ filters[i, j]
    return out


def _ref_pool(x, k, stride, op):
    out_h = (x.shape[0] - k) // stride + 1
    out_w = (x.shape[1] - k) // stride + 1
    windows = [x[i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
               for i in range(k) for j in range(k)]
    return op(np.stack(windows), axis=0)


def _ref_conv_layer(x, w, prefix, stride, relu, padding="same"):
    g = lambda leaf: w[f"{prefix}/{leaf}"].astype(np.float64)  # noqa: E731
    out = _ref_conv(x, g("conv/filters"), stride, padding) + g("conv/bias")
    out = out * g("scale/weights") + g("scale/biases")
    return np.maximum(out, 0) if relu else out


def reference_forward(w, image_rgb):
    """Descriptor of one HWC RGB 150x150 image with raw 0..255 values, as face-api computes it
    (but with dlib's divisor INPUT_DIVISOR)."""
    x = (image_rgb.astype(np.float64) - np.array(MEAN_RGB)) / INPUT_DIVISOR
    x = _ref_conv_layer(x, w, "conv32_down", 2, True, "valid")
    x = _ref_pool(x, 3, 2, np.max)
    for name, kind in RESIDUAL_BLOCKS:
        if kind == "res":
            out = _ref_conv_layer(x, w, f"{name}/conv1", 1, True)
            out = _ref_conv_layer(out, w, f"{name}/conv2", 1, False)
            x = np.maximum(out + x, 0)
        else:
            out = _ref_conv_layer(x, w, f"{name}/conv1", 2, True, "valid")
            out = _ref_conv_layer(out, w, f"{name}/conv2", 1, False)
            pooled = _ref_pool(x, 2, 2, np.mean)
            # face-api zero-extends the conv path at the bottom/right when the pooled shortcut is
            # larger, and zero-extends the shortcut's channels when the conv path is wider.
            dh, dw = pooled.shape[0] - out.shape[0], pooled.shape[1] - out.shape[1]
            out = np.pad(out, ((0, dh), (0, dw), (0, 0)))
            pooled = np.pad(pooled, ((0, 0), (0, 0), (0, out.shape[2] - pooled.shape[2])))
            x = np.maximum(out + pooled, 0)
    return x.mean(axis=(0, 1)) @ w["fc"].astype(np.float64)


# --------------------------------------------------------------------------------------------
# ONNX graph builder.


class _Graph:
    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def _folded_conv(w, prefix):
    """Conv weights in OIHW with face-api's per-channel scale folded into weights and bias:
    ((x * W) + b) * s + t == x * (W s) + (b s + t)."""
    s = w[f"{prefix}/scale/weights"].astype(np.float64)
    filters = w[f"{prefix}/conv/filters"].astype(np.float64)  # HWIO
    weight = filters.transpose(3, 2, 0, 1) * s[:, None, None, None]
    bias = w[f"{prefix}/conv/bias"].astype(np.float64) * s + w[f"{prefix}/scale/biases"]
    return weight, bias


def _add_conv(g, x, name, weight, bias, stride, pad):
    k = weight.shape[2]
    return g.node("Conv", [x, g.const(f"{name}.weight", weight.astype(np.float32)),
                           g.const(f"{name}.bias", bias.astype(np.float32))], name,
                  kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)


def build_model(w):
    g = _Graph()

    # Stem: fold (x - mean) / 256 into the 7x7 stride-2 'valid' conv. With no padding every
    # output sees only real pixels, so the fold is exact.
    weight, bias = _folded_conv(w, "conv32_down")
    mean = np.broadcast_to(np.array(MEAN_RGB)[:, None, None], weight.shape[1:])
    # math.fsum is exactly rounded, so the bytes written never depend on numpy's summation order.
    shift = np.array([math.fsum((k * mean).ravel()) for k in weight])
    bias = bias - shift / INPUT_DIVISOR
    weight = weight / INPUT_DIVISOR
    x = _add_conv(g, "image", "conv32_down", weight, bias, 2, 0)
    x = g.node("Relu", [x], "conv32_down.relu")
    x = g.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2])

    size = (INPUT_SIZE - 7) // 2 + 1
    size = (size - 3) // 2 + 1
    channels = 32
    for name, kind in RESIDUAL_BLOCKS:
        w1, b1 = _folded_conv(w, f"{name}/conv1")
        w2, b2 = _folded_conv(w, f"{name}/conv2")
        out_ch = w1.shape[0]
        if kind == "res":
            out = _add_conv(g, x, f"{name}.conv1", w1, b1, 1, 1)
            out = g.node("Relu", [out], f"{name}.relu1")
            out = _add_conv(g, out, f"{name}.conv2", w2, b2, 1, 1)
            shortcut = x
        else:
            out = _add_conv(g, x, f"{name}.conv1", w1, b1, 2, 0)
            out = g.node("Relu", [out], f"{name}.relu1")
            out = _add_conv(g, out, f"{name}.conv2", w2, b2, 1, 1)
            conv_size, size = (size - 3) // 2 + 1, size // 2
            if conv_size < size:
                # face-api concatenates zero rows/columns at the bottom/right (dlib's add_prev
                # does the same), here as a constant Pad after the bias has been added.
                d = size - conv_size
                pads = g.const(f"{name}.pads", np.array([0, 0, 0, 0, 0, 0, d, d], np.int64))
                out = g.node("Pad", [out, pads], f"{name}.pad", mode="constant")
            # The shortcut is a 2x2 stride-2 average pool whose channels are zero-extended to
            # out_ch. One 2x2 stride-2 conv with weight 1/4 on the channel diagonal computes
            # exactly that, without a Pad along the channel axis.
            sc = np.zeros((out_ch, channels, 2, 2))
            sc[np.arange(channels), np.arange(channels)] = 0.25
            shortcut = _add_conv(g, x, f"{name}.shortcut", sc, np.zeros(out_ch), 2, 0)
        x = g.node("Add", [out, shortcut], f"{name}.add")
        x = g.node("Relu", [x], f"{name}.relu2")
        channels = out_ch

    x = g.node("GlobalAveragePool", [x], "gap")
    x = g.node("Flatten", [x], "flatten", axis=1)
    # OpenCV 4.6 imports a fully-connected layer reliably only as Gemm with transB=1.
    fc_t = np.ascontiguousarray(w["fc"].T)  # [128, 256]
    g.node("Gemm", [x, g.const("fc.weight", fc_t),
                    g.const("fc.bias", np.zeros(DESCRIPTOR_SIZE, np.float32))],
           "descriptor", transB=1)

    graph = helper.make_graph(
        g.nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, [1, DESCRIPTOR_SIZE])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facelogin convert_faceapi.py", producer_version="1")
    model.ir_version = IR_VERSION
    model.doc_string = (
        "dlib face descriptor (ResNet-29, 128-d), converted from @vladmandic/face-api 1.7.15 "
        "face_recognition_model. Input: 1x3x150x150 RGB, raw 0..255, an aligned dlib face chip "
        "(get_face_chip_details(shape, 150, 0.25)). The normalisation (x - [122.782, 117.001, "
        "104.298]) / 256 is inside the graph. Output: 1x128 descriptor, Euclidean threshold 0.6.")
    for key, value in (("input_colour_order", "RGB"), ("input_range", "0..255"),
                       ("input_mean_rgb", "122.782,117.001,104.298"), ("input_divisor", "256"),
                       ("source", "npm @vladmandic/face-api@1.7.15 model/face_recognition_model")):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    return model


def verify_with_opencv(model_path, w, trials=3, tolerance=1e-3):
    """Runs the ONNX file in OpenCV and the numpy reference on random images; returns the
    largest absolute difference, raising if it exceeds `tolerance`."""
    import cv2  # Only needed here: conversion itself must work without OpenCV.

    net = cv2.dnn.readNetFromONNX(model_path)
    rng = np.random.default_rng(1234)
    worst = 0.0
    for _ in range(trials):
        image = rng.uniform(0, 255, (INPUT_SIZE, INPUT_SIZE, 3))
        net.setInput(image.transpose(2, 0, 1)[None].astype(np.float32))
        got = net.forward().reshape(-1)
        want = reference_forward(w, image)
        if got.shape != (DESCRIPTOR_SIZE,):
            raise RuntimeError(f"OpenCV output has shape {got.shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst >= tolerance:
        raise RuntimeError(f"OpenCV output differs from the reference by {worst:.3g}")
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="face_recognition_model-weights_manifest.json "
                                         "(its .bin shard(s) must sit beside it)")
    parser.add_argument("output", help="ONNX file to write")
    parser.add_argument("--verify", action="store_true",
                        help="compare OpenCV's output with a numpy reference on random input")
    args = parser.parse_args(argv)

    try:
        weights = load_weight_map(args.manifest)
        check_weight_map(weights)
        model = build_model(weights)
        # Write to a temporary name first so a failed run never leaves a plausible-looking file.
        tmp = args.output + ".tmp"
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        if args.verify:
            diff = verify_with_opencv(tmp, weights)
            print(f"verify: OpenCV vs numpy reference max abs diff {diff:.2e}", file=sys.stderr)
        os.replace(tmp, args.output)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"convert_faceapi: error: {e}", file=sys.stderr)
        if os.path.exists(args.output + ".tmp"):
            os.remove(args.output + ".tmp")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
