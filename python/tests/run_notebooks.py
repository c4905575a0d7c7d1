"""Executes the tutorial notebooks (notebooks/*.ipynb) top to bottom with nbclient, as CI does (ctest -R python.notebooks).

A notebook fails on any cell error, on fewer PNG figures in its outputs than it should make, or on a summary whose
numbers do not make sense (the last cell prints `CQ_NOTEBOOK_SUMMARY {json}`). The kernel inherits this process's
environment: PYTHONPATH=<build>/python (the package) and CQ_FIXTURES (the models and data).

    python3 python/tests/run_notebooks.py [NOTEBOOK_DIR] [--only NAME] [--save DIR]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

MARKER = "CQ_NOTEBOOK_SUMMARY "


def check_01(s):
    b, kld, acc = s["bytes"], s["kld"], s["w8a8_accuracy"]
    assert b["int4 (q4_0)"] < b["int8 (q8_0)"] < b["f32"], b
    assert b["int8 (q8_0)"] < 0.3 * b["f32"], "Q8_0 is ~8.5 of 32 bits per weight"
    assert 0 <= kld["int8 (q8_0)"] < kld["int4 (q4_0)"] < 0.5, kld
    assert all(0.6 < a <= 1 for a in acc.values()), acc


def check_02(s):
    v = s["variants"]
    for name in ("RTN", "imatrix", "GPTQ", "AWQ", "QAT"):
        assert name in v, f"variant {name} missing"
        assert v[name]["bytes"] < 0.25 * v["f32"]["bytes"], (name, v[name]["bytes"])
        assert 0 <= v[name]["kld"] < 1.0, (name, v[name])
    assert v["prune wanda 50%"]["kld"] > 0 and v["structured + distill"]["kld"] < v["structured"]["kld"], "distillation recovers"
    assert v["structured + distill + q4_k_m"]["bytes"] < v["q4_k_m"]["bytes"], "structured pruning makes the model smaller"
    assert all(x["gen_tps"] > 0 for x in v.values()), "every variant has a speed"
    assert s["pareto"], "a Pareto front"


def check_03(s):
    g, o = s["gguf"], s["onnx"]
    assert g["q4_k_m"]["file_bytes"] < g["q8_0"]["file_bytes"] < g["f16"]["file_bytes"], g
    assert all(x["magic"] == "GGUF" and x["gen_tps"] > 0 and x["peak_rss"] > 0 for x in g.values()), g
    assert o["matmulnbits"]["file_bytes"] < 0.5 * o["fp32"]["file_bytes"], o
    assert all(x["file_bytes"] > 0 for x in o.values()), o
    assert s["bert"]["w8a8 dynamic"]["file_bytes"] < s["bert"]["f32"]["file_bytes"], s["bert"]


NOTEBOOKS = {  # name: (figures at least, summary check)
    "01_quantization_basics": (5, check_01),
    "02_compression_comparison": (3, check_02),
    "03_deployment_optimization": (3, check_03),
}


def run(path, save_dir):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell and the traceback
    seconds = time.monotonic() - start
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        nbformat.write(nb, os.path.join(save_dir, os.path.basename(path)))
    figures, summary = 0, None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                figures += 1
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if line.startswith(MARKER):
                    summary = json.loads(line[len(MARKER):])
    return seconds, figures, summary


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="?", default=os.path.join(here, "..", "..", "notebooks"))
    ap.add_argument("--only", action="append", help="run only this notebook (name without .ipynb); repeatable")
    ap.add_argument("--save", help="write the executed notebooks (with their outputs) into this folder")
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # ipykernel's debugger warns about frozen modules otherwise
    # The kernels run in the notebooks' folder: relative paths given here must still point where they did.
    for var in ("PYTHONPATH", "CQ_FIXTURES", "CQ_CLI"):
        if os.environ.get(var):
            os.environ[var] = os.pathsep.join(os.path.abspath(p) for p in os.environ[var].split(os.pathsep) if p)
    # The notebooks write into temporary folders; one TMPDIR for them all, removed afterwards.
    scratch = tempfile.mkdtemp(prefix="cq-notebooks-")
    os.environ["TMPDIR"] = scratch
    failed = []
    total = time.monotonic()
    for name, (min_figures, check) in NOTEBOOKS.items():
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.notebooks, name + ".ipynb")
        try:
            seconds, figures, summary = run(path, args.save)
            assert figures >= min_figures, f"{figures} PNG figures in the outputs, expected at least {min_figures}"
            assert summary is not None, f"no {MARKER.strip()} line in the outputs"
            assert summary.get("figures") == figures, f"the summary counts {summary.get('figures')} figures, outputs hold {figures}"
            check(summary)
            print(f"ok    {name}: {seconds:.1f} s, {figures} figures", flush=True)
        except Exception as e:  # report every notebook, then fail
            failed.append(name)
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(failed)} of the notebooks failed, {time.monotonic() - total:.1f} s in all", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
