// Runs ONNX Runtime on given inputs and writes the first output of each run: the ORT half of the references that
// scripts/make_yolo_onnx.py commits (YOLO detectors and single-operator graphs, tests/data/yolo/).
// Usage: NODE_PATH=~/.cache/cq-peers/ort/node_modules node scripts/onnx_run.js JOBS.json OUT.json
//   JOBS.json: [{"model": "path.onnx", "dims": [1, 3, 64, 64], "input": [floats...]}, ...] (the graph's first input)
//   OUT.json:  [{"output": [...], "dims": [...], "type": "float32"}, ...] in the same order, plus the ORT version.
// Or:    node scripts/onnx_run.js --time MODEL.onnx N C H W [THREADS]: median ms of N single-image runs (one warm-up)
//        on a seeded input in [0, 1), for same-run speed ratios against cq eval's ms / image.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function time(model, n, dims, threads) {
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  let seed = 7;
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000));
  const feed = { [s.inputNames[0]]: new ort.Tensor('float32', x, dims) };
  await s.run(feed);
  const ms = [];
  for (let i = 0; i < n; ++i) {
    const t0 = process.hrtime.bigint();
    await s.run(feed);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  console.log(`${model}: ORT ${require('onnxruntime-node/package.json').version}, ${threads} thread(s), median ${ms[n >> 1].toFixed(3)} ms / image over ${n} runs`);
}

(async () => {
  if (process.argv[2] === '--time') {
    const [model, n, c, h, w, threads] = process.argv.slice(3);
    return time(model, +n, [1, +c, +h, +w], +(threads || 1));
  }
  const [jobsPath, outPath] = process.argv.slice(2);
  const jobs = JSON.parse(fs.readFileSync(jobsPath, 'utf8'));
  const opts = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' };
  const sessions = new Map();
  const results = [];
  for (const job of jobs) {
    if (!sessions.has(job.model)) sessions.set(job.model, await ort.InferenceSession.create(job.model, opts));
    const s = sessions.get(job.model);
    const x = new ort.Tensor('float32', Float32Array.from(job.input), job.dims);
    const o = await s.run({ [s.inputNames[0]]: x });
    const y = o[s.outputNames[0]];
    // int64 outputs (shape arithmetic) come back as BigInt64Array
    const values = Array.from(y.data, (v) => (typeof v === 'bigint' ? Number(v) : v));
    results.push({ output: values, dims: y.dims, type: y.type });
  }
  fs.writeFileSync(outPath, JSON.stringify({ ort_version: require('onnxruntime-node/package.json').version, results }) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
