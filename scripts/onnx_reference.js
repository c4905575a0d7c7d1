// ONNX Runtime's outputs for cq's ONNX exports (tests/expected/onnx/*.json), run by scripts/onnx_reference.
// Usage: node scripts/onnx_reference.js KIND MODEL.onnx CONFIG_JSON OUT.json [CQ_RUN_JSON]
//   KIND decoder: MODEL.onnx and MODEL_with_past.onnx; logits of a seeded token sequence (full graph), the same
//                 sequence as a prompt + one token at a time through the decode graph, and greedy tokens
//                 from CQ_RUN_JSON's prompt (`cq run --json` output; its tokens are recorded beside ORT's).
//   KIND text:    a padded batch of two seeded sequences (token types 0/1) → logits.
//   KIND vision:  two seeded u8 images, normalised as the model's preprocessor_config.json says → logits.
//   KIND cnn:     an imported ONNX CNN on seeded inputs in [0, 1) (CONFIG_JSON unused: pass -).
//   KIND mnist:   node scripts/onnx_reference.js mnist MODEL.onnx IMAGES.gz OUT.json LABELS.gz: predictions on MNIST.
// CONFIG_JSON: the model's config.json (vocab size, image size, ...). Needs NODE_PATH to onnxruntime-node.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

// A small deterministic generator (mulberry32), so the inputs are reproducible and recorded with the outputs.
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const i64 = (values, dims) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), dims);
const argmax = (a, off, n) => { let b = 0; for (let i = 1; i < n; ++i) if (a[off + i] > a[off + b]) b = i; return b; };
// Logits of a large vocabulary are kept at ~1024 evenly spaced columns plus every row's argmax, so the files stay small.
function compact(values, rows, vocab) {
  const cols = new Set();
  const step = vocab <= 4096 ? 1 : Math.ceil(vocab / 1024);
  for (let c = 0; c < vocab; c += step) cols.add(c);
  for (let r = 0; r < rows; ++r) cols.add(argmax(values, r * vocab, vocab));
  const list = [...cols].sort((a, b) => a - b);
  const kept = [];
  for (let r = 0; r < rows; ++r) for (const c of list) kept.push(values[r * vocab + c]);
  return { rows, vocab, cols: list, values: kept };
}
const opts = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' };

async function decoder(path, cfg, run) {
  const vocab = cfg.vocab_size, r = rng(1234);
  const T = 12, prompt = 8, gen = 24;
  const ids = Array.from({ length: T }, () => Math.floor(r() * vocab));
  const full = await ort.InferenceSession.create(path, opts);
  const past = await ort.InferenceSession.create(path.replace(/\.onnx$/, '_with_past.onnx'), opts);
  const pos = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);
  const run_full = (toks) => full.run({ input_ids: i64(toks, [1, toks.length]), attention_mask: i64(toks.map(() => 1), [1, toks.length]),
                                         position_ids: i64(pos(0, toks.length), [1, toks.length]) });
  const out = await run_full(ids);
  const logits = Array.from(out.logits.data);
  // the decode graph: past from the prompt (full graph), then one token at a time
  const presents = (o) => Object.fromEntries(Object.keys(o).filter((k) => k.startsWith('present.')).map((k) => [k.replace('present.', 'past_key_values.'), o[k]]));
  let state = presents(await run_full(ids.slice(0, prompt)));
  const step_logits = [];
  for (let t = prompt; t < T; ++t) {
    const o = await past.run({ input_ids: i64([ids[t]], [1, 1]), attention_mask: i64(Array(t + 1).fill(1), [1, t + 1]),
                               position_ids: i64([t], [1, 1]), ...state });
    step_logits.push(...o.logits.data);
    state = presents(o);
  }
  // greedy generation from the prompt through the decode graph, first step included (past of length 0)
  const empty = {};
  for (const name of past.inputNames.filter((n) => n.startsWith('past_key_values.'))) {
    const like = out[name.replace('past_key_values.', 'present.')];
    empty[name] = new ort.Tensor('float32', new Float32Array(0), [1, like.dims[1], 0, like.dims[3]]);
  }
  const greedy_prompt = run ? run.prompt_tokens : ids.slice(0, prompt);
  const n_prompt = greedy_prompt.length;
  let o = await past.run({ input_ids: i64(greedy_prompt, [1, n_prompt]), attention_mask: i64(Array(n_prompt).fill(1), [1, n_prompt]),
                           position_ids: i64(pos(0, n_prompt), [1, n_prompt]), ...empty });
  const greedy = [];
  for (let n = n_prompt; greedy.length < gen; ++n) {
    const next = argmax(o.logits.data, (o.logits.dims[1] - 1) * vocab, vocab);
    greedy.push(next);
    o = await past.run({ input_ids: i64([next], [1, 1]), attention_mask: i64(Array(n + 1).fill(1), [1, n + 1]),
                         position_ids: i64([n], [1, 1]), ...presents(o) });
  }
  return { input_ids: ids, logits: compact(logits, T, vocab), prompt, step_logits: compact(step_logits, T - prompt, vocab), greedy_prompt, greedy, cq_run_tokens: run ? run.tokens : null };
}

async function text(path, cfg) {
  const r = rng(99), vocab = cfg.vocab_size, lens = [9, 5], S = 9;
  const ids = [], mask = [], types = [];
  for (const len of lens)
    for (let t = 0; t < S; ++t) {
      const real = t < len;
      ids.push(real ? (t === 0 ? 101 % vocab : 1000 + Math.floor(r() * (vocab - 1000))) : (cfg.pad_token_id || 0));
      mask.push(real ? 1 : 0);
      types.push(real && t >= 4 ? 1 : 0);
    }
  const s = await ort.InferenceSession.create(path, opts);
  const feeds = { input_ids: i64(ids, [2, S]), attention_mask: i64(mask, [2, S]) };
  if (s.inputNames.includes('token_type_ids')) feeds.token_type_ids = i64(types, [2, S]);
  const o = await s.run(feeds);
  return { batch: 2, seq: S, input_ids: ids, attention_mask: mask, token_type_ids: types, logits: Array.from(o.logits.data), dims: o.logits.dims };
}

async function vision(path, cfg, pre) {
  const r = rng(7), C = cfg.num_channels, H = cfg.image_size, B = 2;
  const pixels = Array.from({ length: B * C * H * H }, () => Math.floor(r() * 256));
  const mean = pre.image_mean, std = pre.image_std, scale = pre.rescale_factor ?? 1 / 255;
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; ++i) {
    const c = Math.floor(i / (H * H)) % C;
    x[i] = (Math.fround(pixels[i] * Math.fround(scale)) - mean[c]) / std[c];
  }
  const s = await ort.InferenceSession.create(path, opts);
  const o = await s.run({ pixel_values: new ort.Tensor('float32', x, [B, C, H, H]) });
  return { batch: B, pixels, logits: Array.from(o.logits.data), dims: o.logits.dims };
}

// An imported CNN: seeded inputs in [0, 1) of the graph input's fixed shape (batch 2 where it is open) → first output.
async function cnn(path) {
  const s = await ort.InferenceSession.create(path, opts);
  const meta = s.inputMetadata.find((m) => m.name === s.inputNames[0]);
  const dims = meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 2));
  const r = rng(31), n = dims.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, () => r());
  const o = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, dims) });
  const y = o[s.outputNames[0]];
  return { dims, input: Array.from(x), output: Array.from(y.data), output_dims: y.dims };
}

// mnist-8 on the MNIST test set (raw 0..255 pixels, as the model zoo's model expects): ORT's predictions.
async function mnist(path, images, labels) {
  const zlib = require('zlib');
  const img = zlib.gunzipSync(fs.readFileSync(images)), lab = zlib.gunzipSync(fs.readFileSync(labels));
  const count = img.readUInt32BE(4), s = await ort.InferenceSession.create(path, opts);
  const predictions = [];
  let correct = 0;
  for (let i = 0; i < count; ++i) {
    const x = Float32Array.from(img.subarray(16 + i * 784, 16 + (i + 1) * 784));
    const o = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x, [1, 1, 28, 28]) });
    const p = argmax(o[s.outputNames[0]].data, 0, 10);
    predictions.push(p);
    correct += p === lab[8 + i];
  }
  return { samples: count, accuracy: correct / count, predictions };
}

(async () => {
  const [kind, path, config, outPath, runJson] = process.argv.slice(2);
  const cfg = kind === 'cnn' || kind === 'mnist' ? {} : JSON.parse(fs.readFileSync(config, 'utf8'));
  let result;
  if (kind === 'decoder') result = await decoder(path, cfg, runJson ? JSON.parse(fs.readFileSync(runJson, 'utf8')) : null);
  else if (kind === 'text') result = await text(path, cfg);
  else if (kind === 'vision') result = await vision(path, cfg, JSON.parse(fs.readFileSync(config.replace(/config\.json$/, 'preprocessor_config.json'), 'utf8')));
  else if (kind === 'cnn') result = await cnn(path);
  else if (kind === 'mnist') result = await mnist(path, config, runJson);
  else throw new Error('unknown kind ' + kind);
  result.ort_version = require('onnxruntime-node/package.json').version;
  fs.writeFileSync(outPath, JSON.stringify(result) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
