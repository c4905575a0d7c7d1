// Which kernels ONNX Runtime runs for an ONNX file after its graph optimizations: one run with profiling on a
// batch of zeros-and-ones inputs, then the count of executed nodes per op type (e.g. QGemm and DynamicQuantizeMatMul
// rather than float MatMul fallbacks); a 4-D float input is an image batch of 0.5s. Usage: NODE_PATH=.../node_modules node scripts/onnx_ops.js MODEL.onnx [BATCH] [SEQ]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const ort = require('onnxruntime-node');
(async () => {
  const [model, batch = '2', seq = '16'] = process.argv.slice(2);
  const prefix = path.join(os.tmpdir(), 'cq_onnx_ops_' + process.pid);
  const s = await ort.InferenceSession.create(model, { enableProfiling: true, profileFilePrefix: prefix, intraOpNumThreads: 1 });
  const B = Number(batch), S = Number(seq), feeds = {};
  for (const name of s.inputNames) {
    const meta0 = s.inputMetadata ? s.inputMetadata.find((m) => m.name === name) : null;
    if (name === 'pixel_values' || (meta0 && meta0.type === 'float32' && meta0.shape && meta0.shape.length === 4)) {  // images
      const meta = s.inputMetadata ? s.inputMetadata.find((m) => m.name === name) : null;
      const dims = meta && meta.shape ? meta.shape.map((d, i) => (typeof d === 'number' ? d : B)) : [B, 1, 28, 28];
      feeds[name] = new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.5), dims);
    } else if (name.startsWith('past_key_values.')) {
      throw new Error('decode graphs: profile the full-sequence graph instead');
    } else {
      const v = name === 'position_ids' ? Array.from({ length: B * S }, (_, i) => i % S) : Array(B * S).fill(name === 'token_type_ids' ? 0 : 1);
      feeds[name] = new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [B, S]);
    }
  }
  await s.run(feeds);
  await s.endProfiling();  // writes <prefix>_<time>.json
  const base = path.basename(prefix);
  const file = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(base)).map((f) => path.join(os.tmpdir(), f))[0];
  if (!file) throw new Error('ONNX Runtime wrote no profile');
  const counts = {};
  for (const e of JSON.parse(fs.readFileSync(file, 'utf8')))
    if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) counts[e.args.op_name] = (counts[e.args.op_name] || 0) + 1;
  fs.unlinkSync(file);
  console.log(JSON.stringify(counts));
})().catch((e) => { console.error(e); process.exit(1); });
