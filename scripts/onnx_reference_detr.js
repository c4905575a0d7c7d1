// ONNX Runtime's outputs for cq's exports of the tiny DETR models (tests/data/families/detr-*), on the images their
// reference.json holds (transformers' own inputs): run by scripts/onnx_reference_detr.
// Usage: node scripts/onnx_reference_detr.js MODEL_DIR OUT.json GRAPH.onnx
//   pixel_values: reference.json's pixels_hex (u8 [batch][C·H·W]) normalised as preprocessor_config.json says, each step
//   rounded to float32 as cq does. OUT.json: {graphs: {FILE: {OUTPUT: {dims, values}}}, ort_version}; the script adds the
//   CRC-32s of the graph and of reference.json.
// Needs NODE_PATH to onnxruntime-node.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const f32 = Math.fround;
const IMAGENET_MEAN = [0.485, 0.456, 0.406], IMAGENET_STD = [0.229, 0.224, 0.225];  // DetrImageProcessor's defaults

(async () => {
  const [dir, outPath, graph] = process.argv.slice(2);
  if (!graph) throw new Error('usage: node scripts/onnx_reference_detr.js MODEL_DIR OUT.json GRAPH.onnx');
  const ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const prePath = path.join(dir, 'preprocessor_config.json');
  const pre = fs.existsSync(prePath) ? JSON.parse(fs.readFileSync(prePath, 'utf8')) : {};
  const C = cfg.backbone_config.num_channels ?? 3, H = ref.height, W = ref.width, plane = H * W, B = ref.pixels_hex.length;
  const scale = f32(pre.do_rescale !== false ? (pre.rescale_factor ?? 1 / 255) : 1);
  const normalize = pre.do_normalize !== false;
  const mean = [], std = [];
  for (let c = 0; c < C; ++c) {
    mean.push(normalize ? f32((pre.image_mean ?? IMAGENET_MEAN)[c]) : 0);
    std.push(normalize ? f32((pre.image_std ?? IMAGENET_STD)[c]) : 1);
  }
  const x = new Float32Array(B * C * plane);
  ref.pixels_hex.forEach((hex, b) => {
    for (let i = 0; i < C * plane; ++i) {
      const v = parseInt(hex.substr(2 * i, 2), 16), c = Math.floor(i / plane);
      x[b * C * plane + i] = f32(f32(f32(v * scale) - mean[c]) / std[c]);
    }
  });
  const s = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const o = await s.run({ pixel_values: new ort.Tensor('float32', x, [B, C, H, W]) });
  const result = { graphs: { [path.basename(graph)]: Object.fromEntries(s.outputNames.map((n) => [n, { dims: o[n].dims, values: Array.from(o[n].data) }])) } };
  result.ort_version = require('onnxruntime-node/package.json').version;
  fs.writeFileSync(outPath, JSON.stringify(result) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
