"""Tests of the Python package over the C++ core, against values computed apart from cq: the fixtures' PyTorch
reference outputs (reference.json), the safetensors files read here with numpy, llama-perplexity's method recomputed
in numpy from the model's logits, and the closed-form error bound of 8-bit block rounding."""
import importlib.util
import json
import os
import struct
import subprocess
import tempfile
import unittest

import numpy as np

import cq

FIXTURES = os.environ.get("CQ_FIXTURES", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures"))
STORIES = os.path.join(FIXTURES, "models", "stories260K-hf")
LLAMA = os.path.join(FIXTURES, "models", "llama-256d-stories")
BERT = os.path.join(FIXTURES, "models", "bert-tiny-sst2")
VALID = os.path.join(FIXTURES, "data", "tinystories_valid_subset.txt")
CALIB = os.path.join(FIXTURES, "data", "stories_calib.txt")
SST2_TRAIN = os.path.join(FIXTURES, "data", "sst2_train.tsv")
SST2_DEV = os.path.join(FIXTURES, "data", "sst2_dev.tsv")
CQ_CLI = os.environ.get("CQ_CLI")  # the built `cq` tool (ctest passes it), for checks against its output


def open_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_safetensors(path):
    """name -> float32 array, read with the format's own layout (8-byte header size, JSON header, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + a:8 + n + b], dtype=np.float32).reshape(info["shape"])
    return out


class LanguageModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = cq.load(STORIES)

    def test_logits_equal_pytorch_reference(self):
        ref = json.loads(open_text(os.path.join(STORIES, "reference.json")))
        for p in ref["prompts"]:
            ids = self.model.tokenize(p["prompt"])
            self.assertEqual(list(ids), p["ids"])
            logits = np.asarray(self.model.logits(ids))
            self.assertEqual(logits.shape, (len(ids), 512))
            np.testing.assert_allclose(logits[-1], np.array(p["last_logits"], dtype=np.float32), atol=1e-4, rtol=0)
            self.assertEqual(int(np.argmax(logits[-1])), p["argmax"])

    def test_weights_are_read_only_views_with_the_file_values(self):
        tensors = read_safetensors(os.path.join(STORIES, "model.safetensors"))
        w = self.model.weight("blk.1.ffn_down")
        a, b = np.asarray(w), np.asarray(w)
        self.assertEqual(a.__array_interface__["data"][0], b.__array_interface__["data"][0])  # a view, not a copy
        self.assertFalse(a.flags.writeable)
        np.testing.assert_array_equal(a, tensors["model.layers.1.mlp.down_proj.weight"])
        np.testing.assert_array_equal(np.asarray(w.dequantize()), a)
        names = [layer["name"] for layer in self.model.layers() if layer["is_linear"]]
        self.assertEqual(names, self.model.linear_names())

    def test_perplexity_equals_llama_perplexity_method_recomputed_in_numpy(self):
        n_ctx, chunks = 128, 3
        text = open_text(VALID)
        got = cq.evaluate(self.model, VALID, n_ctx=n_ctx, max_chunks=chunks)
        tokens = list(self.model.tokenize(text))
        bos = tokens[0]
        nll, count = 0.0, 0
        for c in range(chunks):
            chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
            chunk[0] = bos
            logits = np.asarray(self.model.logits(chunk)).astype(np.float64)
            for j in range(n_ctx // 2, n_ctx - 1):
                row = logits[j]
                log_z = row.max() + np.log(np.exp(row - row.max()).sum())
                nll += log_z - row[chunk[j + 1]]
                count += 1
        self.assertEqual(got["n_chunks"], chunks)
        self.assertAlmostEqual(got["ppl"], float(np.exp(nll / count)), delta=1e-4 * got["ppl"])

    def test_int8_quantizer_rounds_every_linear_within_half_a_step(self):
        # The GGUF layout of the same weights (llama.cpp permutes the rows of attn_q / attn_k for its RoPE).
        f32 = cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="fp32")).quantize(STORIES)
        originals = {n: np.asarray(f32.weight(n)).copy() for n in f32.linear_names()}
        quantizer = cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="int8"))
        q = quantizer.quantize(STORIES)
        self.assertEqual(quantizer.last_report["type"], "q8_0")
        for name, w in originals.items():
            t = q.weight(name)
            v = np.asarray(t.dequantize())
            if w.shape[1] % 32:  # rows that do not fill Q8_0's 32-value blocks fall back to f16, as in llama.cpp
                self.assertEqual(t.dtype, "f16", name)
                np.testing.assert_array_equal(v, w.astype(np.float16).astype(np.float32))
                continue
            self.assertEqual(t.dtype, "q8_0", name)
            blocks = w.reshape(-1, 32)
            # Q8_0: q = round(w / d) with d = amax / 127, and d is stored as f16, so |w - f16(d)·q| is at most
            # d / 2 + 127·|d - f16(d)|.
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127
            bound = 0.5 * step + 127 * np.abs(step - step.astype(np.float16).astype(np.float32))
            err = np.abs(v.reshape(-1, 32) - blocks)
            self.assertTrue(np.all(err <= bound * (1 + 1e-5) + 1e-9), name)
        self.assertLess(cq.get_model_size(q), 0.35 * cq.get_model_size(self.model))
        cmp = cq.compare(self.model, q, VALID, n_ctx=128, max_chunks=2)
        self.assertGreater(cmp["kld"]["mean"], 0.0)
        self.assertLess(cmp["kld"]["mean"], 0.01)

    def test_progress_reaches_python_from_the_core(self):
        seen = []
        cq.evaluate(self.model, VALID, n_ctx=128, max_chunks=2, progress=lambda d, t, v: seen.append((d, t)))
        self.assertTrue(seen)
        self.assertEqual(seen[-1][0], seen[-1][1])

    def test_bad_input_raises_with_the_cores_message(self):
        with self.assertRaisesRegex(OSError, "does-not-exist"):
            cq.load("/does-not-exist")
        with self.assertRaisesRegex(ValueError, "no Linear named"):
            self.model.weight("blk.99.nothing")
        with self.assertRaises(ValueError):
            self.model.set_weight("blk.0.attn_q", np.zeros((3, 5), dtype=np.float32))
        with self.assertRaisesRegex(ValueError, "float32"):
            self.model.set_weight("blk.0.attn_q", np.zeros((64, 64), dtype=np.float64))

    def test_set_weight_changes_the_forward_pass(self):
        m = cq.load(STORIES)
        ids = m.tokenize("Once upon a time")
        before = np.asarray(m.logits(ids)).copy()
        w = np.asarray(m.weight("blk.0.ffn_down")).copy()
        m.set_weight("blk.0.ffn_down", np.zeros_like(w))
        self.assertTrue(np.all(np.asarray(m.weight("blk.0.ffn_down")) == 0))
        self.assertGreater(np.abs(np.asarray(m.logits(ids)) - before).max(), 1e-3)
        m.set_weight("blk.0.ffn_down", w)
        np.testing.assert_array_equal(np.asarray(m.logits(ids)), before)


class BindingContractTest(unittest.TestCase):
    def test_numpy_views_stay_valid_after_the_model_object_is_dropped(self):
        tensors = read_safetensors(os.path.join(STORIES, "model.safetensors"))
        w = np.asarray(cq.load(STORIES).weight("blk.1.ffn_down"))  # the Model is unreachable from here on
        import gc
        gc.collect()
        churn = [np.random.default_rng(i).random(4096) for i in range(512)]  # reuse of freed memory would show
        self.assertEqual(len(churn), 512)
        np.testing.assert_array_equal(w, tensors["model.layers.1.mlp.down_proj.weight"])

    def test_llm_w8a8_static_quantizes_the_block_linears_and_stays_close_to_fp32(self):
        config = cq.QuantizationConfig(quantization_type="w8a8-static", calibration_dataset=CALIB, calibration_ctx=128,
                                       num_calibration_samples=8)
        quantizer = cq.ModelQuantizer(config)
        q = quantizer.quantize(LLAMA)
        report = quantizer.last_report
        self.assertEqual(report["type"], "w8a8-static")
        self.assertEqual(report["tensors_by_type"]["i8"], 42)  # 6 blocks x q k v o gate up down; the head stays f32
        base = cq.evaluate(cq.load(LLAMA), VALID, n_ctx=128, max_chunks=8)["ppl"]
        got = cq.evaluate(q, VALID, n_ctx=128, max_chunks=8)["ppl"]
        self.assertNotEqual(got, base)
        self.assertLess(abs(got / base - 1), 0.02)  # W8A8 static costs well under 1 % of perplexity on this model
        with self.assertRaises(ValueError):
            cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="w8a8-static")).quantize(LLAMA)

    def test_a_quantize_in_one_thread_does_not_block_another(self):
        import threading
        import time
        stamps, stop = [], threading.Event()

        def tick():
            while not stop.is_set():
                stamps.append(time.perf_counter())
                time.sleep(0.001)

        t = threading.Thread(target=tick)
        t.start()
        t0 = time.perf_counter()
        cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="q4_k_m")).quantize(LLAMA)
        t1 = time.perf_counter()
        stop.set()
        t.join()
        inside = [s for s in stamps if t0 <= s <= t1]
        gaps = np.diff([t0] + inside + [t1])
        # Held GIL: the other thread would stall for the whole C++ call (one gap of about t1 - t0).
        self.assertLess(float(gaps.max()), 0.5 * (t1 - t0), f"longest stall {gaps.max():.3f} s of {t1 - t0:.3f} s")


class CompressionPipelineTest(unittest.TestCase):
    def test_prune_then_quantize_keeps_the_zeros_and_reports_the_artifact(self):
        import tempfile
        config = cq.CompressionConfig(quantization_type="int8", apply_pruning=True, pruning_ratio=0.5,
                                      pruning_method="magnitude", num_calibration_samples=4, calibration_ctx=64,
                                      eval_ctx=64, eval_chunks=2, bench=False)
        recipe = config.to_recipe(CALIB, VALID)
        self.assertEqual([next(iter(s)) for s in recipe["stages"]], ["prune", "quantize", "export"])
        seen = []
        with tempfile.TemporaryDirectory() as d:
            pipeline = cq.CompressionPipeline(config, progress=lambda stage, done, total: seen.append(stage))
            report = pipeline.compress(STORIES, train_dataset=CALIB, eval_dataset=VALID, output_dir=os.path.join(d, "run"))
            self.assertIn("| original |", pipeline.markdown)
            self.assertTrue(seen)
            final = cq.load(report["final_model"])
            # Magnitude pruning at 0.5 zeroes the smaller half of each pruned matrix (numpy's own count on the
            # original weights), and Q8_0 rounds a zero to exactly zero: the final file keeps every pruned zero.
            original = cq.load(STORIES)
            pruned_any = False
            for name in final.linear_names():
                t = final.weight(name)
                v = np.asarray(t.dequantize()) if t.dtype != "f32" else np.asarray(t)
                zeros = float(np.mean(v == 0))
                w = np.asarray(original.weight(name))
                if zeros > 0.4:
                    pruned_any = True
                    self.assertGreaterEqual(zeros, 0.5 - 1e-3, name)
                    # the survivors are the larger magnitudes: the smallest kept |w| is at least the median |w|
                    self.assertGreaterEqual(np.abs(v[v != 0]).min() * 1.01 + 1e-6,
                                            np.quantile(np.abs(w), 0.5) * 0.98, name)
            self.assertTrue(pruned_any)
            # the report's PPL is the final artifact's (recomputed by loading it apart from the pipeline)
            last = report["stages"][-1]
            ppl = cq.evaluate(final, VALID, n_ctx=64, max_chunks=2)["ppl"]
            self.assertAlmostEqual(last["ppl"], ppl, delta=1e-6 * ppl)
            self.assertLess(last["bytes"], report["original"]["bytes"])

    def test_encoder_prune_distill_int8_reports_the_artifact(self):
        import tempfile
        config = cq.CompressionConfig(quantization_type="int8", apply_pruning=True, pruning_structured="heads=0.3,ffn=0.3",
                                      apply_distillation=True, distillation_steps=3, distillation_lr=1e-4,
                                      num_calibration_samples=16, eval_samples=32, bench=False)
        recipe = config.to_recipe(SST2_TRAIN, SST2_DEV, encoder=True)
        self.assertEqual([next(iter(s)) for s in recipe["stages"]], ["prune", "distill", "quantize", "export"])
        self.assertEqual(recipe["stages"][2]["quantize"]["type"], "w8a8-static")
        with tempfile.TemporaryDirectory() as d:
            report = cq.CompressionPipeline(config).compress(BERT, train_dataset=SST2_TRAIN, eval_dataset=SST2_DEV,
                                                             output_dir=os.path.join(d, "run"))
            self.assertTrue(report["encoder"])
            last = report["stages"][-1]
            self.assertEqual(os.path.getsize(report["final_model"]), last["bytes"])
            self.assertLess(last["bytes"], report["original"]["bytes"] / 3)
            # the reported accuracy is the written file's (evaluated apart from the pipeline, same 32 samples)
            if CQ_CLI:
                out = subprocess.run([CQ_CLI, "eval", report["final_model"], "--data", SST2_DEV, "--range", "0:32", "--json"],
                                     capture_output=True, text=True, check=True).stdout
                self.assertEqual(json.loads(out[out.index("{"):])["result"]["accuracy"], last["accuracy"])
            # unstructured pruning does not apply to an encoder: one error naming the key, before anything is written
            bad = cq.CompressionConfig(quantization_type="int8", apply_pruning=True, pruning_method="wanda")
            with self.assertRaisesRegex(Exception, r"stages\[0\]\.prune\.method"):
                cq.CompressionPipeline(bad).compress(BERT, SST2_TRAIN, SST2_DEV, output_dir=os.path.join(d, "bad"))
            self.assertFalse(os.path.exists(os.path.join(d, "bad")))

    def test_onnx_export_stage_says_where_it_works(self):
        # The extension carries no protobuf (python/src/onnx_ir_unavailable.cpp): an ONNX stage fails with one error
        # naming the command-line tool, after the stages before it ran.
        import tempfile
        recipe = {"stages": [{"quantize": {"type": "w8a8-dynamic"}}, {"export": {"format": "onnx", "onnx_format": "dynamic"}}],
                  "evaluation": {"data": SST2_DEV, "samples": 8, "bench": False}}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            with open(path, "w") as f:
                json.dump(recipe, f)
            with self.assertRaisesRegex(Exception, "command-line tool"):
                cq.CompressionPipeline(cq.CompressionConfig(recipe=path)).compress(BERT, output_dir=os.path.join(d, "run"))

    def test_bad_configs_are_refused_before_anything_runs(self):
        with self.assertRaisesRegex(ValueError, "student_model"):
            cq.CompressionPipeline(cq.CompressionConfig(student_model=STORIES)).compress(STORIES, CALIB, VALID)
        with self.assertRaisesRegex(ValueError, "teacher"):
            cq.CompressionPipeline(cq.CompressionConfig(teacher_model=BERT)).compress(STORIES, CALIB, VALID)


def gguf_tensor_data(path):
    """The tensor-data section of a GGUF file and its tensor table (name, dims, type, offset), read with the format's own
    layout, leaving out the metadata (which carries the input's path and hash as provenance)."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = 4 + 4  # magic, version
    n_tensors, n_kv = struct.unpack_from("<QQ", blob, pos)
    pos += 16

    def string(p):
        (n,) = struct.unpack_from("<Q", blob, p)
        return blob[p + 8:p + 8 + n].decode(), p + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t, p):
        if t == 8:
            return string(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", blob, p)
            p += 12
            for _ in range(n):
                p = skip_value(et, p)
            return p
        return p + sizes[t]

    alignment = 32
    for _ in range(n_kv):
        key, pos = string(pos)
        (t,) = struct.unpack_from("<I", blob, pos)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", blob, pos + 4)
        pos = skip_value(t, pos + 4)
    table = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (nd,) = struct.unpack_from("<I", blob, pos)
        dims = struct.unpack_from("<%dQ" % nd, blob, pos + 4)
        ttype, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * nd)
        pos += 4 + 8 * nd + 12
        table.append((name, dims, ttype, offset))
    start = (pos + alignment - 1) // alignment * alignment
    return table, blob[start:]


class TransformersInteropTest(unittest.TestCase):
    @unittest.skipUnless(importlib.util.find_spec("transformers") and importlib.util.find_spec("torch"),
                         "needs PyTorch and transformers (e.g. Debian's python3-torch and transformers from PyPI)")
    def test_a_transformers_model_object_quantizes_to_the_bytes_of_its_directory(self):
        import transformers
        model = transformers.AutoModelForCausalLM.from_pretrained(LLAMA)
        with tempfile.TemporaryDirectory() as out:
            for qtype in ("q4_k_m", "q8_0"):
                a = os.path.join(out, f"dir-{qtype}.gguf")
                b = os.path.join(out, f"object-{qtype}.gguf")
                cq.ModelQuantizer(cq.QuantizationConfig(qtype, output_path=a)).quantize(LLAMA)
                cq.ModelQuantizer(cq.QuantizationConfig(qtype, output_path=b)).quantize(model)
                table_a, data_a = gguf_tensor_data(a)
                table_b, data_b = gguf_tensor_data(b)
                self.assertEqual(table_a, table_b, qtype)
                self.assertEqual(data_a, data_b, f"{qtype}: the tensor bytes differ")
                self.assertGreater(len(table_a), 50)


class LayerStatsTest(unittest.TestCase):
    """cq.layer_stats against the first Linear's input recomputed in numpy (token embeddings → RMSNorm, from the
    safetensors file and config.json) and, where the CLI is built, against `cq stats --json --channels`."""
    N_CTX, CHUNKS = 64, 3

    @classmethod
    def setUpClass(cls):
        cls.model = cq.load(STORIES)
        cls.stats = cq.layer_stats(cls.model, VALID, n_ctx=cls.N_CTX, max_chunks=cls.CHUNKS)

    def test_first_linear_input_equals_rmsnorm_of_embeddings(self):
        config = json.loads(open_text(os.path.join(STORIES, "config.json")))
        tensors = read_safetensors(os.path.join(STORIES, "model.safetensors"))
        tokens = list(self.model.tokenize(open_text(VALID)))
        rows = []
        for c in range(self.CHUNKS):
            chunk = tokens[c * self.N_CTX:(c + 1) * self.N_CTX]
            chunk[0] = tokens[0]  # BOS first in every chunk
            rows.extend(chunk)
        x = tensors["model.embed_tokens.weight"][rows].astype(np.float64)
        x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + config["rms_norm_eps"])
        x = x * tensors["model.layers.0.input_layernorm.weight"]
        first = self.stats["linears"][0]
        self.assertEqual(first["name"], "blk.0.attn_q")
        self.assertEqual(first["rows"], self.N_CTX * self.CHUNKS)
        self.assertEqual(self.stats["units"], self.CHUNKS)
        np.testing.assert_allclose(first["channel_absmax"], np.abs(x).max(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(first["channel_mean_square"], (x * x).mean(axis=0), rtol=1e-4)
        self.assertAlmostEqual(first["input_absmax"], float(np.abs(x).max()), delta=1e-4 * float(np.abs(x).max()))
        top = [c for c, _, _ in first["outliers"]]
        self.assertEqual(top, list(np.argsort(-np.abs(x).max(axis=0), kind="stable")[:len(top)]))

    @unittest.skipUnless(CQ_CLI, "CQ_CLI (the built cq tool) is not set")
    def test_equals_cq_stats(self):
        out = subprocess.run([CQ_CLI, "stats", STORIES, "--data", VALID, "--ctx", str(self.N_CTX), "--chunks", str(self.CHUNKS),
                              "--json", "--channels"], check=True, capture_output=True, text=True).stdout
        cli = json.loads(out)["linears"]
        self.assertEqual([l["name"] for l in cli], [l["name"] for l in self.stats["linears"]])
        for a, b in zip(cli, self.stats["linears"]):
            self.assertEqual(a["rows"], b["rows"], a["name"])
            np.testing.assert_allclose(b["channel_absmax"], a["input"]["channel_absmax"], rtol=1e-6, err_msg=a["name"])
            np.testing.assert_allclose(b["channel_mean_square"], a["input"]["channel_mean_square"], rtol=1e-6, err_msg=a["name"])
            self.assertAlmostEqual(b["output_absmax"], a["output"]["absmax"], delta=1e-6 * a["output"]["absmax"])


class QatTest(unittest.TestCase):
    """cq.qat: the output keeps its PTQ start's formats, the weights moved, the KL-divergence it trains on went down
    (measured apart from the trainer, by cq.compare), and where the CLI is built its PTQ start is `cq quantize`'s file."""

    def test_qat_lowers_the_kl_divergence_it_trains_on(self):
        with tempfile.TemporaryDirectory() as tmp:
            steps = 16
            r = cq.qat(LLAMA, CALIB, quantization_type="q4_0", steps=steps, batch=4, ctx=64, lr=1e-4,
                       output_path=os.path.join(tmp, "qat.gguf"), ptq_output_path=os.path.join(tmp, "ptq.gguf"))
            self.assertEqual(r["steps"], steps)
            self.assertEqual(len(r["loss_curve"]), steps)
            ptq, q = cq.load(r["ptq_output"]), cq.load(r["output"])
            self.assertEqual([(l["name"], l["format"]) for l in ptq.layers()], [(l["name"], l["format"]) for l in q.layers()])
            n_q4 = sum(1 for l in q.layers() if l["is_linear"] and l["format"] == "q4_0")
            self.assertGreater(n_q4, 0)
            self.assertGreaterEqual(r["quantized_tensors"], n_q4)
            moved = sum(int(not np.array_equal(np.asarray(ptq.weight(n)), np.asarray(q.weight(n)))) for n in q.linear_names())
            self.assertGreater(moved, 0)
            kld_ptq = cq.compare(LLAMA, ptq, CALIB, n_ctx=64, max_chunks=8)["kld"]["mean"]
            kld_qat = cq.compare(LLAMA, q, CALIB, n_ctx=64, max_chunks=8)["kld"]["mean"]
            self.assertLess(kld_qat, kld_ptq)
            if CQ_CLI:
                ref = os.path.join(tmp, "cli.gguf")
                subprocess.run([CQ_CLI, "quantize", LLAMA, ref, "--type", "q4_0"], check=True, capture_output=True)
                with open(ref, "rb") as a, open(r["ptq_output"], "rb") as b:
                    self.assertEqual(a.read(), b.read(), "the PTQ start differs from cq quantize --type q4_0")


class EncoderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = cq.load(BERT)

    def test_logits_equal_pytorch_reference(self):
        ref = json.loads(open_text(os.path.join(BERT, "reference.json")))
        rows = ref["reference_first8"]
        logits = np.asarray(self.model.classify_texts([r["sentence"] for r in rows], 64))
        np.testing.assert_allclose(logits, np.array([r["logits"] for r in rows], dtype=np.float32), atol=1e-4, rtol=0)

    def test_static_int8_keeps_predictions(self):
        config = cq.QuantizationConfig(quantization_type="int8", calibration_dataset=SST2_TRAIN, num_calibration_samples=64)
        quantizer = cq.ModelQuantizer(config)
        q = quantizer.quantize(BERT)
        self.assertEqual(quantizer.last_report["type"], "w8a8-static")
        cmp = cq.compare(self.model, q, SST2_DEV, count=200, max_len=64)
        self.assertGreaterEqual(cmp["agreement"], 0.95)
        self.assertLess(abs(cmp["a"]["accuracy"] - cmp["b"]["accuracy"]), 0.03)
        self.assertLess(quantizer.get_model_size(q), 0.5 * quantizer.get_model_size(self.model))
        with self.assertRaisesRegex(ValueError, "encoder classifiers"):
            cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="int4")).quantize(BERT)

    def test_int8_attention_is_reported_and_keeps_predictions(self):
        quantizer = cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="dynamic", attention="int8"))
        q = quantizer.quantize(BERT)
        self.assertEqual(quantizer.last_report["attention"], "int8")
        cmp = cq.compare(self.model, q, SST2_DEV, count=200, max_len=64)
        self.assertGreaterEqual(cmp["agreement"], 0.98)
        self.assertLess(abs(cmp["a"]["accuracy"] - cmp["b"]["accuracy"]), 0.02)
        with self.assertRaisesRegex(ValueError, "'bf16'"):
            cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="dynamic", attention="bf16")).quantize(BERT)
        with self.assertRaisesRegex(ValueError, "INT8 attention applies"):
            cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="q8_0", attention="int8")).quantize(STORIES)


if __name__ == "__main__":
    unittest.main()
