// ONNX Runtime's outputs for cq's exports of the tiny family models (tests/data/families/*), on the inputs their
// reference.json holds (transformers' own inputs): tests/expected/onnx/families/*.json, run by scripts/onnx_reference_encoders.
// Usage: node scripts/onnx_reference_encoders.js MODEL_DIR OUT.json GRAPH.onnx [GRAPH.onnx ...]
//   Each graph's inputs are fed by name: input_ids, attention_mask, token_type_ids (zeros where reference.json has
//   none), bbox, and pixel_values (reference.json's pixels_u8 normalised as preprocessor_config.json says, in float32
//   as cq does). OUT.json: {graphs: {FILE: {OUTPUT: {dims, values}}}, ort_version}; scripts/onnx_reference_encoders adds the
//   CRC-32s of the graphs and of reference.json.
// Needs NODE_PATH to onnxruntime-node.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const f32 = Math.fround;
const i64 = (rows, dims) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(2).map(BigInt)), dims);

// (u8 · rescale − mean) / std per channel, each step rounded to float32 as cq's normalize_pixels; EfficientNet's
// processor folds rescale_offset (x·r − 1) into the mean and include_top (a second division by the std) into the std,
// as cq's loader does.
function normalise(images, cfg, pre) {
  const C = cfg.num_channels ?? cfg.vision_config?.num_channels ?? 3;
  const plane = images[0].length / C;
  const rescale = pre.do_rescale !== false, normalize = pre.do_normalize !== false;
  if (normalize && (!pre.image_mean || !pre.image_std)) throw new Error('preprocessor_config.json has no image_mean / image_std');
  const scale = f32(rescale ? (pre.rescale_factor ?? 1 / 255) : 1);
  const mean = [], std = [];
  for (let c = 0; c < C; ++c) {
    let m = normalize ? f32(pre.image_mean[c]) : 0, s = normalize ? f32(pre.image_std[c]) : 1;
    if (pre.image_processor_type === 'EfficientNetImageProcessor') {
      if (rescale && pre.rescale_offset) m = f32(m + 1);
      if (pre.include_top !== false) s = f32(s * f32(pre.image_std[c]));
    }
    mean.push(m);
    std.push(s);
  }
  const x = new Float32Array(images.length * images[0].length);
  images.forEach((img, b) => img.forEach((v, i) => {
    const c = Math.floor(i / plane);
    x[b * img.length + i] = f32(f32(f32(v * scale) - mean[c]) / std[c]);
  }));
  const side = Math.round(Math.sqrt(plane));
  return new ort.Tensor('float32', x, [images.length, C, side, side]);
}

(async () => {
  const [dir, outPath, ...graphs] = process.argv.slice(2);
  if (!graphs.length) throw new Error('usage: node scripts/onnx_reference_encoders.js MODEL_DIR OUT.json GRAPH.onnx [GRAPH.onnx ...]');
  const ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const prePath = path.join(dir, 'preprocessor_config.json');
  const pre = fs.existsSync(prePath) ? JSON.parse(fs.readFileSync(prePath, 'utf8')) : null;
  const result = { graphs: {} };
  for (const g of graphs) {
    const s = await ort.InferenceSession.create(g, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
    const feeds = {};
    for (const name of s.inputNames) {
      if (name === 'pixel_values') feeds[name] = normalise(ref.pixels_u8, cfg, pre);
      else if (name === 'bbox') feeds[name] = i64(ref.bbox, [ref.bbox.length, ref.bbox[0].length, 4]);
      else if (name === 'token_type_ids' && !ref.token_type_ids) feeds[name] = i64(ref.input_ids.map((r) => r.map(() => 0)), [ref.input_ids.length, ref.input_ids[0].length]);
      else if (ref[name]) feeds[name] = i64(ref[name], [ref[name].length, ref[name][0].length]);
      else throw new Error(`${g}: no reference input for '${name}'`);
    }
    const o = await s.run(feeds);
    result.graphs[path.basename(g)] = Object.fromEntries(s.outputNames.map((n) => [n, { dims: o[n].dims, values: Array.from(o[n].data) }]));
  }
  result.ort_version = require('onnxruntime-node/package.json').version;
  fs.writeFileSync(outPath, JSON.stringify(result) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
