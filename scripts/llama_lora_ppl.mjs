// Peer check for cq's LoRA adapters: llama.cpp (npm node-llama-cpp, prebuilt CPU addon) loads MODEL.gguf with the adapter
// GGUF that `cq finetune --lora R --lora-output adapter` wrote and measures perplexity the way llama-perplexity (and
// `cq perplexity`) does: chunks of --ctx tokens, BOS first, the second half of each chunk scored, full-vocab softmax.
// Compare with `cq perplexity MODEL.gguf -f TEXT -c CTX --lora ADAPTER.gguf`.
// Setup once: mkdir -p ~/.cache/cq-peers/llama && cd ~/.cache/cq-peers/llama && npm init -y && npm i -E node-llama-cpp@3.21.1
// Run: node scripts/llama_lora_ppl.mjs MODEL.gguf --text TEXT [--lora ADAPTER.gguf] [--scale 1] [--ctx 128] [--chunks N]
import fs from "fs"; import os from "os"; import path from "path"; import {createRequire} from "module";
const argv = process.argv.slice(2), opt = (k, d) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : d; };
const PEERS = process.env.CQ_PEERS || path.join(os.homedir(), ".cache", "cq-peers");
const require = createRequire(path.join(process.env.LLAMA_NODE_DIR || path.join(PEERS, "llama"), "package.json"));
const {getLlama} = await import(require.resolve("node-llama-cpp"));
const MODEL = argv[0], TEXT = opt("--text"), LORA = opt("--lora"), SCALE = +opt("--scale", 1);
const CTX = +opt("--ctx", 128), MAX_CHUNKS = +opt("--chunks", -1);
if (!MODEL || !TEXT) throw new Error("usage: node llama_lora_ppl.mjs MODEL.gguf --text TEXT [--lora ADAPTER.gguf] [--ctx 128]");

const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: MODEL});
const context = await model.createContext({contextSize: CTX, batchSize: CTX, threads: 2,
                                           ...(LORA ? {lora: {adapters: [{filePath: LORA, scale: SCALE}]}} : {})});
const seq = context.getSequence();
let text = fs.readFileSync(TEXT, "utf8");
if (text.endsWith("\n")) text = text.slice(0, -1);  // as llama-perplexity -f and cq perplexity do
// BOS only where the model adds one (llama-perplexity's add_bos: LLaMA yes, GPT-2 no), and then at every chunk's start.
const addBos = model.tokens.shouldPrependBosToken;
const toks = [...(addBos ? [model.tokens.bos] : []), ...model.tokenize(text, false)];
let nChunks = Math.floor(toks.length / CTX);
if (MAX_CHUNKS > 0) nChunks = Math.min(nChunks, MAX_CHUNKS);
const first = CTX / 2, sampler = {temperature: 1, topK: 0, topP: 1, minP: 0};
let nll = 0, cnt = 0;
for (let c = 0; c < nChunks; c++) {
  const chunk = toks.slice(c * CTX, (c + 1) * CTX);
  if (addBos) chunk[0] = model.tokens.bos;
  await seq.clearHistory();
  const input = chunk.map((tk, i) => (i >= first && i < CTX - 1) ? [tk, {generateNext: {probabilities: true, options: sampler}}] : tk);
  const res = await seq.controlledEvaluate(input);
  for (let i = first; i < CTX - 1; i++) { nll -= Math.log(res[i].next.probabilities.get(chunk[i + 1]) ?? 1e-30); cnt++; }
}
console.log(JSON.stringify({model: MODEL, lora: LORA ?? null, scale: SCALE, ctx: CTX, chunks: nChunks, scored: cnt, ppl: Math.exp(nll / cnt)}));
await context.dispose(); await model.dispose();
