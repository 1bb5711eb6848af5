// face-api in Node.js as a peer of facelogin's per-frame pipeline (tools/peer_bench.sh):
// @vladmandic/face-api 1.7.15 on @tensorflow/tfjs 4.22 with the WebAssembly backend (one thread),
// SSD MobileNet v1 detector (face-api's default and most accurate), 68 landmarks, and the dlib
// ResNet descriptor (the same network facelogin's dlib model comes from). Prints the median
// milliseconds per frame (decode included) as JSON.
//
//   node bench/peers/faceapi.mjs [--repeat N] FRAME.jpg...

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const jpeg = require('jpeg-js');

const args = process.argv.slice(2);
let repeat = 3;
const frames = [];
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--repeat') repeat = Math.max(1, Number(args[++i]));
  else frames.push(args[i]);
}
if (frames.length === 0) {
  console.error('usage: node faceapi.mjs [--repeat N] FRAME.jpg...');
  process.exit(2);
}

const here = path.dirname(fileURLToPath(import.meta.url));
wasm.setThreadsCount(1);
wasm.setWasmPaths(`${path.join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist')}/`);
await tf.setBackend('wasm');
await tf.ready();
const modelDir = path.join(here, 'node_modules/@vladmandic/face-api/model');
await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
const options = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 });

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : 0; };
const total = [];
let found = 0;
let runs = 0;
// One warm-up frame: the first inference compiles kernels.
for (let r = 0; r <= repeat; r += 1) {
  for (const file of frames) {
    const t0 = performance.now();
    const raw = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: false });
    const tensor = tf.tensor3d(raw.data, [raw.height, raw.width, 3], 'int32');
    const result = await faceapi.detectSingleFace(tensor, options).withFaceLandmarks().withFaceDescriptor();
    tensor.dispose();
    const ms = performance.now() - t0;
    if (r === 0) continue;
    runs += 1;
    total.push(ms);
    if (result && result.descriptor.length === 128) found += 1;
  }
}
console.log(JSON.stringify({
  pipeline: 'face-api (Node.js, tfjs wasm, SSD MobileNet v1 + 68 landmarks + dlib ResNet)',
  backend: tf.getBackend(),
  frames: runs,
  faces_found: found,
  median_ms: { total: median(total) },
}));
