// ONNX Runtime's half of tests/test_onnx_qdq_import.cpp: runs the QDQ graph cq writes for an imported MNIST classifier
// (cq quantize mnist-8.onnx OUT.onnx --type w8a8-static ...) and records the graph's CRC-32, its outputs on the first
// test images (fused kernels, and the graph run unoptimized as the spec defines it), the kernels ORT's profile shows,
// and ORT's accuracy over the whole test set (QDQ and the FP32 original).
// Usage: NODE_PATH=~/.cache/cq-peers/ort/node_modules node scripts/onnx_qdq_reference.js QDQ.onnx FP32.onnx IMAGES.gz LABELS.gz N OUT.json
//   Prints median ms / image of both graphs (1 thread) for same-run speed ratios; timings are not written to OUT.json.
// Or:    node scripts/onnx_qdq_reference.js --jobs QDQ.onnx JOBS.json OUT.json (the YOLO detector; see jobs() below).
// scripts/onnx_qdq_reference runs both as the committed references were made.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const ort = require('onnxruntime-node');

const argmax = (a, o, n) => { let b = 0; for (let i = 1; i < n; ++i) if (a[o + i] > a[o + b]) b = i; return b; };

// the kernels ORT chose: node op names in one profiled run
async function kernelsOf(model, x) {
  const profDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cq-qdq-prof-'));
  const opts = { intraOpNumThreads: 1, graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: path.join(profDir, 'p') };
  const prof = await ort.InferenceSession.create(model, opts);
  await prof.run({ [prof.inputNames[0]]: x });
  await prof.endProfiling();  // onnxruntime-node returns no name: the one file under the prefix
  const events = JSON.parse(fs.readFileSync(path.join(profDir, fs.readdirSync(profDir).find((f) => f.startsWith('p'))), 'utf8'));
  const kernels = {};
  for (const e of events)
    if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) kernels[e.args.op_name] = (kernels[e.args.op_name] || 0) + 1;
  fs.rmSync(profDir, { recursive: true, force: true });
  return kernels;
}

// --jobs QDQ.onnx JOBS.json OUT.json: the graph's CRC-32, its kernels and its first output on each job's input (as
// scripts/onnx_run.js takes them), rounded to 1e-5 — the YOLO detector's reference.
async function jobs(qdq, jobsPath, out) {
  const list = JSON.parse(fs.readFileSync(jobsPath, 'utf8'));
  const s = await ort.InferenceSession.create(qdq, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const feed = (j) => new ort.Tensor('float32', Float32Array.from(j.input), j.dims);
  const results = [];
  for (const j of list) {
    const y = (await s.run({ [s.inputNames[0]]: feed(j) }))[s.outputNames[0]];
    results.push({ dims: y.dims, output: Array.from(y.data, (v) => Math.round(v * 1e5) / 1e5) });
  }
  const kernels = await kernelsOf(qdq, feed(list[0]));
  fs.writeFileSync(out, JSON.stringify({ ort_version: require('onnxruntime-node/package.json').version, model: path.basename(qdq),
                                         onnx_crc32: zlib.crc32(fs.readFileSync(qdq)), kernels, results }) + '\n');
  console.log(`${path.basename(qdq)}: ORT kernels ${JSON.stringify(kernels)}`);
}

async function main() {
  if (process.argv[2] === '--jobs') return jobs(...process.argv.slice(3));
  const [qdq, fp32, images, labels, nStr, out] = process.argv.slice(2);
  const n = Number(nStr);
  const img = zlib.gunzipSync(fs.readFileSync(images)), lab = zlib.gunzipSync(fs.readFileSync(labels));
  const count = img.readUInt32BE(4);
  const image = (i) => new ort.Tensor('float32', Float32Array.from(img.subarray(16 + i * 784, 16 + (i + 1) * 784)), [1, 1, 28, 28]);
  const opts = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' };

  const kernels = await kernelsOf(qdq, image(0));

  const sessions = { qdq: await ort.InferenceSession.create(qdq, opts), fp32: await ort.InferenceSession.create(fp32, opts) };
  const outputs = [];
  const stats = {};
  const ms = {};
  const pred = {};
  for (const [form, s] of Object.entries(sessions)) {
    let correct = 0;
    const times = [];
    pred[form] = [];
    for (let i = 0; i < count; ++i) {
      const t0 = process.hrtime.bigint();
      const y = (await s.run({ [s.inputNames[0]]: image(i) }))[s.outputNames[0]].data;
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (form === 'qdq' && i < n) outputs.push(Array.from(y));
      const p = argmax(y, 0, 10);
      pred[form].push(p);
      correct += p === lab[8 + i];
    }
    times.sort((a, b) => a - b);
    ms[form] = times[times.length >> 1];
    stats[form] = { samples: count, correct, accuracy: correct / count };
  }
  // the same graph with ORT's optimizations off: QuantizeLinear / DequantizeLinear and float Conv / Gemm as the ONNX
  // spec defines them, no fused integer kernels (whose u8 × s8 pairs saturate at int16 on AVX2 CPUs without VNNI)
  const plain = await ort.InferenceSession.create(qdq, { intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
  const unfused = [];
  for (let i = 0; i < n; ++i) unfused.push(Array.from((await plain.run({ [plain.inputNames[0]]: image(i) }))[plain.outputNames[0]].data));
  const agree = pred.qdq.filter((p, i) => p === pred.fp32[i]).length;
  const ref = {
    ort_version: require('onnxruntime-node/package.json').version,
    model: path.basename(qdq), onnx_crc32: zlib.crc32(fs.readFileSync(qdq)), images: [0, n], outputs, outputs_unfused: unfused, kernels,
    test_set: { qdq: stats.qdq, fp32: stats.fp32, agreement: agree / count },
  };
  fs.writeFileSync(out, JSON.stringify(ref) + '\n');
  console.log(`ORT ${ref.ort_version}, 1 thread: kernels ${JSON.stringify(kernels)}`);
  console.log(`accuracy qdq ${(100 * stats.qdq.accuracy).toFixed(2)} %, fp32 ${(100 * stats.fp32.accuracy).toFixed(2)} %, agreement ${(100 * agree / count).toFixed(2)} %`);
  console.log(`median ms / image: qdq ${ms.qdq.toFixed(4)}, fp32 ${ms.fp32.toFixed(4)}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
