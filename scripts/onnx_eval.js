// Runs an ONNX classifier under ONNX Runtime over batches written by bench/bench_onnx_vs_ort (one JSON object per
// line: {"dims":[B,S], "input_ids":[...], "attention_mask":[...], "token_type_ids":[...]} or {"dims":[B,C,H,W],
// "pixel_values":[...]}), appending each batch's logits (float32) to OUT.bin.
// Usage: NODE_PATH=.../node_modules node scripts/onnx_eval.js MODEL.onnx BATCHES.jsonl OUT.bin [THREADS]
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');
(async () => {
  const [model, batches, out, threads] = process.argv.slice(2);
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: Number(threads || 1) });
  const fd = fs.openSync(out, 'w');
  for (const line of fs.readFileSync(batches, 'utf8').split('\n')) {
    if (!line) continue;
    const b = JSON.parse(line), feeds = {};
    for (const name of s.inputNames) {
      if (!(name in b)) throw new Error(model + ' wants input ' + name);
      feeds[name] = name === 'pixel_values' ? new ort.Tensor('float32', Float32Array.from(b[name]), b.dims)
                                            : new ort.Tensor('int64', BigInt64Array.from(b[name].map(BigInt)), b.dims);
    }
    const o = await s.run(feeds);
    fs.writeSync(fd, Buffer.from(o.logits.data.buffer, o.logits.data.byteOffset, o.logits.data.byteLength));
  }
  fs.closeSync(fd);
})().catch((e) => { console.error(e); process.exit(1); });
