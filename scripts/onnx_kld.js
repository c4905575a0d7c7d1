// KL-divergence of an exported decoder's ONNX Runtime logits against a base model's log-probabilities saved by
// `cq perplexity --save-logits` (same chunks, same scored positions: the second half of each chunk), and top-token
// agreement with another saved run (e.g. cq's own run of the same quantized model).
// Usage: NODE_PATH=.../onnxruntime-node/.. node scripts/onnx_kld.js MODEL.onnx BASE.bin [--compare OTHER.bin] [--bos ID]
//        [--threads N]; prints JSON {n, kld_mean, ppl, same_top_vs_base, same_top_vs_compare}.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function readLogits(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString('latin1', 0, 8) !== 'CQLOGPR1') throw new Error(path + ': not a cq logits file');
  const h = (i) => Number(buf.readBigInt64LE(8 + 8 * i));
  const [n_ctx, n_vocab, n_chunks, first] = [h(0), h(1), h(2), h(3)];
  const n_tok = n_ctx * n_chunks;
  const tokens = new Int32Array(buf.buffer, buf.byteOffset + 64, n_tok);
  const rows = new Float32Array(buf.buffer.slice(buf.byteOffset + 64 + 4 * n_tok, buf.byteOffset + buf.length));
  return { n_ctx, n_vocab, n_chunks, first, tokens, rows };
}

(async () => {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
  const [model, basePath] = args;
  const base = readLogits(basePath), cmpPath = opt('--compare'), cmp = cmpPath ? readLogits(cmpPath) : null;
  const bos = Number(opt('--bos', '-1')), V = base.n_vocab, per = base.n_ctx - 1 - base.first;
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: Number(opt('--threads', '1')) });
  let n = 0, kl = 0, nll = 0, sameBase = 0, sameCmp = 0;
  const argmax = (a, off) => { let b = 0; for (let j = 1; j < V; ++j) if (a[off + j] > a[off + b]) b = j; return b; };
  for (let c = 0; c < base.n_chunks; ++c) {
    const ids = Array.from(base.tokens.subarray(c * base.n_ctx, (c + 1) * base.n_ctx));
    if (bos >= 0) ids[0] = bos;
    const T = ids.length, big = (a) => BigInt64Array.from(a.map(BigInt));
    const o = await s.run({ input_ids: new ort.Tensor('int64', big(ids), [1, T]), attention_mask: new ort.Tensor('int64', big(ids.map(() => 1)), [1, T]),
                            position_ids: new ort.Tensor('int64', big(ids.map((_, i) => i)), [1, T]) });
    const L = o.logits.data;
    for (let i = base.first; i < T - 1; ++i) {
      const off = i * V;
      let mx = -Infinity;
      for (let j = 0; j < V; ++j) mx = Math.max(mx, L[off + j]);
      let sum = 0;
      for (let j = 0; j < V; ++j) sum += Math.exp(L[off + j] - mx);
      const lse = mx + Math.log(sum), r = (c * per + i - base.first) * V;
      let k = 0;
      for (let j = 0; j < V; ++j) { const b = base.rows[r + j]; k += Math.exp(b) * (b - (L[off + j] - lse)); }
      kl += Math.max(k, 0);
      nll -= L[off + ids[i + 1]] - lse;
      const top = argmax(L, off);
      sameBase += top === argmax(base.rows, r);
      if (cmp) sameCmp += top === argmax(cmp.rows, r);
      ++n;
    }
  }
  console.log(JSON.stringify({ n, kld_mean: kl / n, ppl: Math.exp(nll / n), same_top_vs_base: sameBase / n,
                               same_top_vs_compare: cmp ? sameCmp / n : null }));
})().catch((e) => { console.error(e); process.exit(1); });
