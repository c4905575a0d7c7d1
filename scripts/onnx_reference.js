// ONNX Runtime's outputs for cq's ONNX exports (tests/expected/onnx/*.json), run by scripts/onnx_reference.
// Usage: node scripts/onnx_reference.js KIND MODEL.onnx CONFIG_JSON OUT.json [CQ_RUN_JSON]
//   KIND decoder: MODEL.onnx and MODEL_with_past.onnx; logits of a seeded token sequence (full graph), the same
//                 sequence as a prompt + one token at a time through the decode graph, and greedy tokens
//                 from CQ_RUN_JSON's prompt (`cq run --json` output; its tokens are recorded beside ORT's).
//   KIND text:    a padded batch of two seeded sequences (token types 0/1) → logits.
//   KIND vision:  two seeded u8 images, normalised as the model's preprocessor_config.json says → logits.
//   KIND cnn:     an imported ONNX CNN on seeded inputs in [0, 1) (CONFIG_JSON unused: pass -).
//   KIND mnist:   node scripts/onnx_reference.js mnist MODEL.onnx IMAGES.gz OUT.json LABELS.gz: predictions on MNIST.
//   KIND seq2seq: node scripts/onnx_reference.js seq2seq EXPORT_DIR MODEL_DIR/config.json OUT.json: an encoder–decoder
//                 export (see seq2seq below) on the inputs of MODEL_DIR/reference.json (scripts/make_family_references.py).
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

// An encoder–decoder export (encoder_model / decoder_model / decoder_with_past_model.onnx in dir) on the inputs of the
// model's transformers reference (ref): teacher-forced logits through encoder + decoder_model; the same decoder inputs
// again with the first `from` tokens through decoder_model and the rest one at a time through decoder_with_past; and
// greedy generation (encoder once, decoder_model for the start, then decoder_with_past), one source at a time, with
// cq's and transformers' stopping rules (eos, forced_bos at the first step, forced_eos at the last). BLIP: images in.
async function seq2seq(dir, cfg, ref, pre) {
  const image = cfg.model_type === 'blip', text = image ? cfg.text_config : cfg;
  const vocab = text.vocab_size ?? (image ? 30524 : cfg.model_type === 'bart' ? 50265 : undefined);
  const start = image ? (text.bos_token_id ?? 30522) : (cfg.decoder_start_token_id ?? (cfg.model_type === 'bart' ? 2 : cfg.pad_token_id ?? 0));
  const eos = image ? (text.sep_token_id ?? 102) : (cfg.eos_token_id ?? (cfg.model_type === 'bart' ? 2 : 1));
  // as cq's loaders (and transformers' configs): BART forces </s> at the last step unless its config says otherwise
  const forced_eos = image ? null : 'forced_eos_token_id' in cfg ? cfg.forced_eos_token_id : cfg.model_type === 'bart' ? 2 : null;
  const forced_bos = image ? null : cfg.forced_bos_token_id ?? null;
  const encoder = await ort.InferenceSession.create(dir + '/encoder_model.onnx', opts);
  const decoder = await ort.InferenceSession.create(dir + '/decoder_model.onnx', opts);
  const with_past = await ort.InferenceSession.create(dir + '/decoder_with_past_model.onnx', opts);
  const round = (a) => Array.from(a, (v) => Math.round(v * 1e6) / 1e6);
  const f32 = (t, b0, b1) => { const n = t.dims.slice(1).reduce((a, b) => a * b, 1);
                               return new ort.Tensor('float32', t.data.slice(b0 * n, b1 * n), [b1 - b0, ...t.dims.slice(1)]); };
  // the encoder's output for a batch of sources (token rows + masks, or u8 images)
  let n_image = 0;
  const encode = async (rows, masks) => {
    if (image) {
      const C = 3, H = cfg.vision_config.image_size, scale = pre.rescale_factor ?? 1 / 255;
      const x = new Float32Array(rows.length * C * H * H);
      rows.forEach((px, b) => px.forEach((p, i) => {
        const c = Math.floor(i / (H * H));
        x[b * C * H * H + i] = (Math.fround(p * Math.fround(scale)) - pre.image_mean[c]) / pre.image_std[c];
      }));
      n_image = rows.length;
      return (await encoder.run({ pixel_values: new ort.Tensor('float32', x, [rows.length, C, H, H]) })).last_hidden_state;
    }
    const S = rows[0].length;
    return (await encoder.run({ input_ids: i64(rows.flat(), [rows.length, S]), attention_mask: i64(masks.flat(), [rows.length, S]) })).last_hidden_state;
  };
  const mask_of = (masks) => (image ? {} : { encoder_attention_mask: i64(masks.flat(), [masks.length, masks[0].length]) });
  const pasts = (o, cross) => {
    const p = {};
    for (const k of Object.keys(o)) if (k.startsWith('present.')) p[k.replace('present.', 'past_key_values.')] = o[k];
    for (const k of Object.keys(cross)) if (k.endsWith('.encoder.key') || k.endsWith('.encoder.value')) p[k] = cross[k];
    return p;
  };
  // decoder ids [B, T] (equal lengths): logits [B, T·vocab] from decoder_model, and from decoder_model on the first `from`
  // then decoder_with_past one token at a time ([B, (T − from)·vocab])
  const teacher = async (hidden, masks, ids, from) => {
    const B = ids.length, T = ids[0].length, feeds = { ...mask_of(masks), encoder_hidden_states: hidden };
    const full = await decoder.run({ input_ids: i64(ids.flat(), [B, T]), ...feeds });
    const first = await decoder.run({ input_ids: i64(ids.map((r) => r.slice(0, from)).flat(), [B, from]), ...feeds });
    const cross = pasts(first, {});
    let state = cross;
    const steps = ids.map(() => []);
    for (let t = from; t < T; ++t) {
      const o = await with_past.run({ input_ids: i64(ids.map((r) => r[t]), [B, 1]), ...mask_of(masks), ...state });
      for (let b = 0; b < B; ++b) steps[b].push(...o.logits.data.slice(b * vocab, (b + 1) * vocab));
      state = pasts(o, cross);
    }
    return { logits: ids.map((_, b) => round(full.logits.data.slice(b * T * vocab, (b + 1) * T * vocab))), steps: steps.map(round) };
  };
  // greedy decoding of one source after `prefix`
  const greedy = async (hidden, masks, prefix, max_new) => {
    const seq = [...prefix], feeds = mask_of(masks);
    let o = await decoder.run({ input_ids: i64(seq, [1, seq.length]), ...feeds, encoder_hidden_states: hidden });
    const cross = pasts(o, {});
    for (let step = 0; ; ++step) {
      let next = argmax(o.logits.data, (o.logits.dims[1] - 1) * vocab, vocab);
      if (step === 0 && forced_bos !== null) next = forced_bos;
      if (step === max_new - 1 && forced_eos !== null) next = forced_eos;
      seq.push(next);
      if (next === eos || step === max_new - 1) break;
      o = await with_past.run({ input_ids: i64([next], [1, 1]), ...feeds, ...pasts(o, cross) });
    }
    return seq;
  };
  const from = 2, max_new = ref.max_new_tokens, out = { from, vocab, start, eos, forced_bos, forced_eos };
  if (image) {
    const hidden = await encode(ref.pixels_u8);
    out.image_embeds_0 = round(f32(hidden, 0, 1).data);
    out.logits = []; out.step_logits = []; out.greedy = []; out.greedy_with_prompt = [];
    for (let i = 0; i < n_image; ++i) {
      const h = f32(hidden, i, i + 1), r = await teacher(h, null, [ref.input_ids[i]], from);
      out.logits.push(r.logits[0]); out.step_logits.push(r.steps[0]);
      out.greedy.push(await greedy(h, null, [start], max_new));
      out.greedy_with_prompt.push(await greedy(h, null, ref.prompt_ids, max_new));
    }
  } else {
    // teacher forcing on the reference's padded batch of the first two sources (as transformers ran it)
    const masks = ref.attention_mask.slice(0, 2), r = await teacher(await encode(ref.input_ids.slice(0, 2), masks), masks, ref.decoder_input_ids, from);
    out.logits = r.logits; out.step_logits = r.steps; out.greedy = [];
    for (let i = 0; i < ref.input_ids.length; ++i) {
      const n = ref.attention_mask[i].reduce((a, b) => a + b, 0), ids = [ref.input_ids[i].slice(0, n)], m = [Array(n).fill(1)];
      out.greedy.push(await greedy(await encode(ids, m), m, [start], max_new));
    }
  }
  return out;
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
  else if (kind === 'seq2seq') {
    const dir = require('path').dirname(config), read = (f) => JSON.parse(fs.readFileSync(dir + '/' + f, 'utf8'));
    result = await seq2seq(path, cfg, read('reference.json'), cfg.model_type === 'blip' ? read('preprocessor_config.json') : null);
  }
  else throw new Error('unknown kind ' + kind);
  result.ort_version = require('onnxruntime-node/package.json').version;
  fs.writeFileSync(outPath, JSON.stringify(result) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
