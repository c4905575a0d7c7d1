"""cq.profile_memory against sizes computed here: the weights from the safetensors header (each tensor's byte range),
the KV cache from config.json (2 · layers · ctx · kv heads · head dim · 4 bytes), and the weights and KV cache
against the RSS this process gives back (read from /proc here) when the profiled model is released."""
import json
import os
import struct
import subprocess
import sys
import unittest

import cq

FIXTURES = os.environ.get("CQ_FIXTURES", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures"))
LLAMA = os.path.join(FIXTURES, "models", "llama-256d-stories")
CALIB = os.path.join(FIXTURES, "data", "stories_calib.txt")


def safetensors_bytes_by_dtype(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        out[t["dtype"].lower()] = out.get(t["dtype"].lower(), 0) + end - begin
    return out


def vm_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class ProfileMemory(unittest.TestCase):
    def test_analytic_sizes_and_measured_phases(self):
        p = cq.profile_memory(LLAMA, n_prompt=64, n_gen=16, n_ctx=256, calibration_text=CALIB, calib_ctx=64, calib_chunks=2)
        self.assertEqual(p["weights"], safetensors_bytes_by_dtype(os.path.join(LLAMA, "model.safetensors")))
        with open(os.path.join(LLAMA, "config.json")) as f:
            c = json.load(f)
        head_dim = c["hidden_size"] // c["num_attention_heads"]
        self.assertEqual(p["kv_cache_bytes"], 2 * c["num_hidden_layers"] * 256 * c["num_key_value_heads"] * head_dim * 4)
        self.assertEqual([ph["phase"] for ph in p["phases"]], ["load", "prompt", "generation", "calibration"])
        self.assertGreater(p["calibration_stats_bytes"], 0)
        self.assertLessEqual(p["final_rss"], p["peak_rss"])
        # The model is released when the call returns: measured here, the RSS falls by at least (nearly) its mapped
        # weights and its KV cache, so those figures were resident memory.
        drop = p["final_rss"] - vm_rss()
        self.assertGreater(drop, 0.9 * (p["weight_bytes"] + p["kv_cache_bytes"]), f"RSS fell by {drop} bytes only")
        self.assertGreater(p["peak_rss"], p["baseline_rss"])
        self.assertIn("pp64 (one cold run)", p["tokens_per_second"])

    def test_training_step_phase(self):
        # Full fine-tuning: every tensor of the file trains; f32 value + gradient (4 + 4 bytes) and AdamW's m and v (8).
        with open(os.path.join(LLAMA, "model.safetensors"), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        params = 0
        for name, t in header.items():
            if name != "__metadata__":
                count = 1
                for d in t["shape"]:
                    count *= d
                params += count
        # In a fresh interpreter: in this one, memory freed by earlier tests stays resident in the allocator's arenas and
        # is reused by the trainer, so RSS would not grow by what the phase allocates.
        code = ("import json, cq; print(json.dumps(cq.profile_memory(%r, n_prompt=32, n_gen=8, train_batch=2, train_ctx=64, "
                "train_checkpoint='block')))" % LLAMA)
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
        self.assertEqual(run.returncode, 0, run.stderr)
        p = json.loads(run.stdout)
        self.assertEqual([ph["phase"] for ph in p["phases"]], ["load", "prompt", "generation", "training step"])
        t = p["training"]
        self.assertEqual(t["parameters"], params)
        self.assertEqual((t["values_bytes"], t["gradient_bytes"], t["optimizer_bytes"]), (4 * params, 4 * params, 8 * params))
        ph = p["phases"][-1]
        self.assertAlmostEqual(ph["rss_after"] - ph["rss_before"], ph["analytic"], delta=0.1 * ph["analytic"])

    def test_errors_become_exceptions(self):
        with self.assertRaises(Exception) as e:
            cq.profile_memory(LLAMA, n_prompt=64, n_gen=16, n_ctx=32)
        self.assertIn("do not fit a context of 32", str(e.exception))
        with self.assertRaises(ValueError) as e:
            cq.profile_memory(LLAMA, n_prompt=8, n_gen=0, train_batch=1, train_checkpoint="sometimes")
        self.assertIn("sometimes", str(e.exception))


if __name__ == "__main__":
    unittest.main()
