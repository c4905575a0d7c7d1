// Same-run ONNX Runtime latency of several ONNX text classifiers (e.g. cq's dynamic / qdq exports and ORT's own
// quantizer's output of the same model): batch × seq ids as ../shared/peers/bench_bert_ort.js makes them, CPU EP,
// optimization "all", 1 warm-up per model, then ROUNDS rounds that each time every model RUNS times (interleaved, so
// all see the same load). Prints the median ms per model and /proc/loadavg before and after.
// Image models (--image C,H,W or H,W,C: the per-sample input dims in the file's layout): one float input of seeded
// uniform [0, --scale) values; a model whose batch dimension is fixed to 1 runs the batch as that many 1-sample runs,
// timed together (as cq runs such a graph).
// Usage: NODE_PATH=.../node_modules node scripts/onnx_time.js A.onnx B.onnx ... [--threads 2] [--batch 8] [--seq 128]
//        [--runs 5] [--rounds 2] [--image C,H,W [--scale 1]]
'use strict';
const os = require('os');
const ort = require('onnxruntime-node');
const argv = process.argv.slice(2), opt = (k, d) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : d; };
const files = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1].startsWith('--')));
const IMAGE = opt('--image', ''), SCALE = +opt('--scale', 1);
const THREADS = +opt('--threads', 2), B = +opt('--batch', 8), T = +opt('--seq', 128), RUNS = +opt('--runs', 5), ROUNDS = +opt('--rounds', 2);
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
(async () => {
  const ids = new BigInt64Array(B * T); let seed = 12345;
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    ids[b * T + t] = t === 0 ? 101n : t === T - 1 ? 102n : BigInt(1000 + seed % 29000);
  }
  const all = { input_ids: new ort.Tensor('int64', ids, [B, T]), attention_mask: new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]),
                token_type_ids: new ort.Tensor('int64', new BigInt64Array(B * T), [B, T]) };
  console.log(`onnxruntime-node ${require('onnxruntime-node/package.json').version}, ${os.cpus()[0].model}; ${IMAGE ? `batch ${B} x image ${IMAGE}` : `batch ${B} x seq ${T}`}, ${THREADS} threads; load before ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  const sessions = [];
  for (const f of files) {
    const s = await ort.InferenceSession.create(f, { intraOpNumThreads: THREADS, interOpNumThreads: 1, executionMode: 'sequential',
                                                     graphOptimizationLevel: 'all', logSeverityLevel: 3 });
    if (IMAGE) {
      const dims = IMAGE.split(',').map(Number), per = dims.reduce((a, b) => a * b, 1), x = new Float32Array(B * per);
      let seed = 12345;
      for (let i = 0; i < x.length; i++) { seed = (seed * 1103515245 + 12345) & 0x7fffffff; x[i] = (seed / 0x80000000) * SCALE; }
      let feeds = [{ [s.inputNames[0]]: new ort.Tensor('float32', x, [B, ...dims]) }];
      try { await s.run(feeds[0]); } catch (e) {  // a graph fixed to batch 1
        feeds = [...Array(B).keys()].map((i) => ({ [s.inputNames[0]]: new ort.Tensor('float32', x.slice(i * per, (i + 1) * per), [1, ...dims]) }));
        await s.run(feeds[0]);
      }
      sessions.push({ f, s, feeds, ts: [] });
      continue;
    }
    const feeds = [Object.fromEntries(s.inputNames.map((n) => [n, all[n]]))];
    await s.run(feeds[0]);
    sessions.push({ f, s, feeds, ts: [] });
  }
  for (let r = 0; r < ROUNDS; ++r)
    for (const x of sessions)
      for (let k = 0; k < RUNS; ++k) { const t = process.hrtime.bigint(); for (const feed of x.feeds) await x.s.run(feed); x.ts.push(Number(process.hrtime.bigint() - t) / 1e6); }
  for (const x of sessions) console.log(`${median(x.ts).toFixed(3).padStart(9)} ms  ${x.f}`);
  console.log(`load after ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
})().catch((e) => { console.error(e); process.exit(1); });
