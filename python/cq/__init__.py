"""cq: compress trained neural networks (quantize, prune, distill) and measure what it cost.

The toolkit's Python surface over cq's C++ core (the extension ``cq._core``). It keeps the seed's names:

    quantizer = cq.ModelQuantizer(cq.QuantizationConfig(quantization_type="int8",
                                                         calibration_dataset="stories_calib.txt",
                                                         num_calibration_samples=100))
    quantized = quantizer.quantize("model_dir_or.gguf")
    quantizer.get_model_size(quantized)

Every heavy call runs in C++ with the GIL released; errors are the C++ errors' messages as ValueError (bad
argument), cq.FormatError (a broken file, a ValueError too), NotImplementedError and OSError.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Callable, Optional, Union

from . import _core
from ._core import EncoderModel, FormatError, LanguageModel, Model, Tensor

__all__ = [
    "load", "Model", "LanguageModel", "EncoderModel", "Tensor", "FormatError",
    "QuantizationConfig", "ModelQuantizer", "CompressionConfig", "CompressionPipeline", "evaluate", "benchmark", "compare", "get_model_size", "presets",
    "profile_memory", "layer_stats", "qat",
]

ModelLike = Union[str, os.PathLike, Model, Any]

# The seed's quantization_type names for decoder LLMs → cq's presets. "dynamic" is Q8_0: ggml quantizes each
# activation row to 8 bits on the fly, which is what dynamic quantization means for these kernels.
_LLM_TYPES = {"int8": "q8_0", "dynamic": "q8_0", "int4": "q4_k_m", "fp16": "f16", "bf16": "bf16", "fp32": "f32"}


def load(path: Union[str, os.PathLike]) -> Model:
    """Loads a model: an HF directory (config.json + safetensors + tokenizer), a GGUF file, or cq's W8A8 container."""
    return _core.load(os.fspath(path))


def presets() -> list:
    """cq's quantization presets and plain types (q4_k_m, q8_0, q4_0, ...)."""
    return list(_core.quant_presets())


_PROCESSOR_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "vocab.json", "merges.txt", "spiece.model", "spm.model", "preprocessor_config.json")


def _path_of(model: ModelLike, what: str) -> str:
    """A loadable path for `model`: a path as given, a cq model's own file, or a transformers model saved once."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if isinstance(model, Model):
        return model.path
    if hasattr(model, "save_pretrained"):  # a transformers model: its config and state_dict as safetensors
        out = tempfile.mkdtemp(prefix="cq-hf-")
        model.save_pretrained(out, safe_serialization=True)
        # The tokenizer / image processor files are not part of the model object: take them from the directory it was
        # loaded from, where that is a local one (its config's name_or_path).
        source = getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", "")
        if source and os.path.isdir(source):
            for name in _PROCESSOR_FILES:
                if os.path.isfile(os.path.join(source, name)) and not os.path.exists(os.path.join(out, name)):
                    shutil.copyfile(os.path.join(source, name), os.path.join(out, name))
        return out
    raise TypeError(f"{what}: expected a path, a cq model or a transformers model, got {type(model).__name__}")


@dataclasses.dataclass
class QuantizationConfig:
    """What to quantize to and how, with the seed's names.

    quantization_type: the seed's "int8", "int4", "dynamic", "fp16", "bf16", or any cq preset / type
        ("q4_k_m", "q3_k_s", "iq4_xs", ...; see presets()). Encoder classifiers (BERT family, ViT) take
        "int8" (W8A8, static when a calibration dataset is given, else dynamic) and "dynamic". Decoder LLMs take
        "w8a8-static" (ranges from the calibration text) and "w8a8-dynamic" too: int8 block Linears, u8 activations.
    calibration_dataset: calibration data: text for LLMs (e.g. stories_calib.txt), labelled data for encoders
        (a TSV, MNIST idx file or image folder). None: round to nearest (LLMs) / dynamic activations (encoders).
    num_calibration_samples: chunks of `calibration_ctx` tokens (LLMs) or samples (encoders) used. Default 100.
    method: LLMs: "rtn", "imatrix", "gptq", "awq", "awq+gptq", "auto"; None: cq's default for the data given.
    calibration_method: static W8A8 ranges: "minmax", "percentile", "mse", "entropy" (None: percentile).
    target_size / target_bpw: LLMs: automatic mixed precision under a file-size (bytes) or bits-per-weight budget.
    output_path: where the quantized file goes (None: a new temporary file).
    attention: encoders' W8A8: "f32", or "int8" to run the self-attention's QKᵀ and PV as u8·s8 products too (about
        2× faster attention on AVX-512 VNNI, within 2–3 % of f32 per head; compare the accuracy before shipping).
    """
    quantization_type: str = "int8"
    calibration_dataset: Optional[str] = None
    num_calibration_samples: int = 100
    method: Optional[str] = None
    calibration_method: Optional[str] = None
    calibration_ctx: int = 512
    target_size: int = 0
    target_bpw: float = 0.0
    tensor_types: list = dataclasses.field(default_factory=list)
    output_path: Optional[str] = None
    attention: str = "f32"


class ModelQuantizer:
    """Quantizes models by a QuantizationConfig. quantize() returns the quantized model, loaded by cq; its report
    (sizes, bits per weight, method, calibration, timings) is `last_report`."""

    def __init__(self, config: Optional[QuantizationConfig] = None, progress: Optional[Callable] = None):
        self.config = config or QuantizationConfig()
        self.progress = progress  # called as progress(done, total, value) from the C++ side
        self.last_report: Optional[dict] = None

    def quantize(self, model: ModelLike) -> Model:
        c = self.config
        source = _path_of(model, "ModelQuantizer.quantize")
        output = c.output_path
        if output is None:
            output = os.path.join(tempfile.mkdtemp(prefix="cq-quant-"), "model.gguf")
        if _core.is_encoder_model(source):
            qtype = c.quantization_type.lower()
            if qtype in ("int8", "w8a8", "w8a8-static") and c.calibration_dataset:
                mode = "static"
            elif qtype in ("int8", "dynamic", "w8a8", "w8a8-dynamic"):
                mode = "dynamic"
            else:
                raise ValueError(f"QuantizationConfig.quantization_type '{c.quantization_type}': encoder classifiers "
                                 "quantize to 'int8' (W8A8 static with a calibration dataset, else dynamic) or 'dynamic'")
            self.last_report = _core.quantize_encoder(source, output, mode, c.calibration_dataset or "",
                                                      c.num_calibration_samples, c.calibration_method or "", 99.99,
                                                      self.progress, c.attention)
        elif c.attention != "f32":
            raise ValueError(f"QuantizationConfig.attention '{c.attention}': INT8 attention applies to encoder classifiers' W8A8")
        elif c.quantization_type.lower() in ("w8a8-static", "w8a8-dynamic"):
            # decoder LLMs' W8A8 (int8 block Linears, u8 activations), as cq quantize --type w8a8-* writes it
            static = c.quantization_type.lower() == "w8a8-static"
            if static and not c.calibration_dataset:
                raise ValueError("QuantizationConfig: w8a8-static needs a calibration_dataset (text)")
            self.last_report = _core.quantize_llm_w8a8(source, output, "static" if static else "dynamic",
                                                       c.calibration_dataset or "", c.calibration_ctx,
                                                       c.num_calibration_samples, c.calibration_method or "",
                                                       list(c.tensor_types), self.progress)
        else:
            qtype = _LLM_TYPES.get(c.quantization_type.lower(), c.quantization_type)
            self.last_report = _core.quantize_model(source, output, qtype, c.method or "", c.calibration_dataset or "",
                                                    c.calibration_ctx, c.num_calibration_samples, "", c.target_size,
                                                    c.target_bpw, list(c.tensor_types), self.progress)
        return _core.load(output)

    @staticmethod
    def get_model_size(model: ModelLike) -> int:
        return get_model_size(model)


def get_model_size(model: ModelLike) -> int:
    """Bytes of the model's weights as it holds them (every layer with weights); for a path, the file's bytes."""
    if isinstance(model, Model):
        return sum(layer["bytes"] for layer in model.layers())
    path = _path_of(model, "get_model_size")
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    return os.path.getsize(path)


def _as_model(model: ModelLike) -> Model:
    return model if isinstance(model, Model) else load(_path_of(model, "evaluate"))


def evaluate(model: ModelLike, data: str, *, n_ctx: int = 512, max_chunks: int = -1, first: int = 0, count: int = -1,
             batch: int = 32, max_len: int = 128, progress: Optional[Callable] = None) -> dict:
    """Quality on `data`: perplexity (llama-perplexity's method, n_ctx tokens per chunk) for language models, whose
    `data` is a text file; accuracy for classifiers, whose `data` is a labelled file (TSV, MNIST idx, image folder)."""
    m = _as_model(model)
    if isinstance(m, LanguageModel):
        return m.perplexity(_core.read_text(data), n_ctx, max_chunks, "", "", progress)
    return m.evaluate(data, first, count, batch, max_len, progress)


def benchmark(model: ModelLike, *, n_prompt: int = 512, n_gen: int = 128, batch: int = 8, seq: int = 128,
              repetitions: int = 3) -> dict:
    """Speed: prompt and generation tokens/s for language models; batch latency (ms) for classifiers."""
    m = _as_model(model)
    if isinstance(m, LanguageModel):
        return m.bench(n_prompt, n_gen, repetitions)
    return m.bench(batch, seq, repetitions)


def profile_memory(model: ModelLike, *, n_prompt: int = 128, n_gen: int = 32, n_ctx: int = 0,
                   calibration_text: Optional[str] = None, calib_ctx: int = 128, calib_chunks: int = 4,
                   train_batch: int = 0, train_ctx: int = 128, train_checkpoint: str = "none") -> dict:
    """Memory of a language model, as `cq bench --memory` measures it: weights by format, KV cache, workspace (and
    calibration statistics with `calibration_text`; with `train_batch` > 0 a training step's f32 weights, gradients,
    AdamW moments and activations, under `train_checkpoint` none / block / every:K) beside this process's RSS and its
    peak per phase (load, prompt, generation, calibration, training step). The model is loaded afresh from its file,
    so the baseline is this process before it."""
    path = _path_of(model, "profile_memory")
    return _core.profile_memory(path, n_prompt, n_gen, n_ctx, calibration_text or "", calib_ctx, calib_chunks,
                                train_batch, train_ctx, train_checkpoint)


def compare(a: ModelLike, b: ModelLike, data: str, *, n_ctx: int = 512, max_chunks: int = -1, first: int = 0,
            count: int = -1, batch: int = 32, max_len: int = 128) -> dict:
    """The same evaluation of two models in one run, and how far b is from a: for language models both perplexities
    and the KL-divergence of b's next-token distributions from a's; for classifiers both accuracies and the
    fraction of samples whose prediction agrees."""
    ma, mb = _as_model(a), _as_model(b)
    if isinstance(ma, LanguageModel) != isinstance(mb, LanguageModel):
        raise ValueError("compare: one model is a language model and the other is not")
    if isinstance(ma, LanguageModel):
        text = _core.read_text(data)
        with tempfile.TemporaryDirectory(prefix="cq-cmp-") as tmp:
            base = os.path.join(tmp, "base.logits")
            ra = ma.perplexity(text, n_ctx, max_chunks, base, "", None)
            rb = mb.perplexity(text, n_ctx, max_chunks, "", base, None)
        return {"a": ra, "b": rb, "kld": rb.get("kld")}
    ra = ma.evaluate(data, first, count, batch, max_len, None)
    rb = mb.evaluate(data, first, count, batch, max_len, None)
    same = sum(int(x == y) for x, y in zip(ra["predictions"], rb["predictions"]))
    return {"a": ra, "b": rb, "agreement": same / max(1, len(ra["predictions"]))}


def layer_stats(model: ModelLike, data: str, *, n_ctx: int = 512, max_chunks: int = -1, first: int = 0, count: int = -1,
                batch: int = 32, max_len: int = 128, top: int = 8, progress: Optional[Callable] = None) -> dict:
    """Input-activation statistics of every Linear on real data, as `cq stats` gathers them: per Linear its rows,
    max |x| and mean x² over all channels, per channel (`channel_absmax`, `channel_mean_square`, lists of n_in) and
    the `top` outlier channels as (channel, max |x|, mean x²); the output's mean, mean square and max |x|. `data` is
    text for language models (chunks of n_ctx tokens, BOS first), a labelled file for classifiers (first / count)."""
    return _core.layer_stats(_as_model(model), os.fspath(data), n_ctx, max_chunks, first, count, batch, max_len, top, progress)


def qat(model: ModelLike, data: str, *, quantization_type: str = "q4_0", steps: int = 100, batch: int = 8, ctx: int = 128,
        lr: float = 1e-4, init: str = "rtn", teacher: bool = True, seed: int = 1, tensor_types: Optional[list] = None,
        output_path: Optional[str] = None, ptq_output_path: Optional[str] = None, progress: Optional[Callable] = None) -> dict:
    """Quantization-aware training of a decoder LLM, as `cq qat` runs it: post-training quantization to
    `quantization_type` by `init` (rtn, imatrix, gptq, awq; the calibrated ones on `data`), then `steps` steps of
    training through the format's codecs on `data` (KL to the full-precision model when `teacher`). Returns the report:
    `output` (the QAT GGUF), `ptq_output` (its PTQ start), `loss_curve`, `quantized_tensors`, `seconds`."""
    source = _path_of(model, "qat")
    tmp = None
    if output_path is None or ptq_output_path is None:
        tmp = tempfile.mkdtemp(prefix="cq-qat-")
    output = output_path or os.path.join(tmp, "qat.gguf")
    ptq = ptq_output_path or os.path.join(tmp, "ptq.gguf")
    qtype = _LLM_TYPES.get(quantization_type.lower(), quantization_type)
    return _core.qat_lm(source, output, ptq, qtype, os.fspath(data), init, steps, batch, ctx, lr, teacher, seed,
                        list(tensor_types or []), progress)


@dataclasses.dataclass
class CompressionConfig:
    """A whole compression recipe with the seed's names: prune -> distill -> quantize, each stage measured against the
    original in the same run (cq compress's CompressionPipeline; decoder LLMs and encoder classifiers).

    apply_pruning / pruning_ratio / pruning_method: unstructured pruning to `pruning_ratio` sparsity with "magnitude",
        "wanda" or "sparsegpt" (default wanda); or `pruning_structured="heads=0.25,ffn=0.25"` to remove KV groups and FFN
        neurons (the model gets physically smaller).
    apply_distillation / distillation_steps: recover by distilling from the original model (the teacher is always the
        model being compressed: `teacher_model` may only name it, and `student_model` is not supported here; use
        `cq distill` for a separate student).
    quantization_type / quantization_method: as QuantizationConfig (None: no quantize stage).
    Encoder classifiers (BERT family, ViT): pruning_structured="heads=0.3,ffn=0.3" only; the datasets are labelled data
        (TSV / images); quantization_type "int8" is static W8A8 calibrated on num_calibration_samples of train_dataset,
        "dynamic" W8A8 with dynamic activations; eval_samples: the first N evaluation samples (-1: all).
    recipe: a YAML/JSON recipe file instead of all of the above (docs/pipeline.md).
    """
    quantization_type: Optional[str] = "int4"
    quantization_method: Optional[str] = None
    apply_pruning: bool = False
    pruning_ratio: float = 0.5
    pruning_method: str = "wanda"
    pruning_structured: Optional[str] = None
    apply_distillation: bool = False
    distillation_steps: int = 100
    distillation_lr: float = 3e-4
    teacher_model: Optional[Any] = None
    student_model: Optional[Any] = None
    calibration_ctx: int = 128
    num_calibration_samples: int = 128
    eval_ctx: int = 128
    eval_chunks: int = -1
    eval_samples: int = -1
    bench: bool = True
    recipe: Optional[str] = None

    def to_recipe(self, train_dataset: Optional[str], eval_dataset: Optional[str], encoder: bool = False) -> dict:
        if self.student_model is not None:
            raise ValueError("CompressionConfig.student_model: the pipeline distils into the compressed model itself; "
                             "use `cq distill --teacher T --student S` for a separate student")
        if encoder:
            return self._encoder_recipe(train_dataset, eval_dataset)
        stages = []
        if self.apply_pruning:
            if self.pruning_structured:
                stages.append({"prune": {"structured": self.pruning_structured}})
            else:
                stages.append({"prune": {"method": self.pruning_method, "sparsity": float(self.pruning_ratio)}})
        if self.apply_distillation:
            stages.append({"distill": {"steps": int(self.distillation_steps), "lr": float(self.distillation_lr)}})
        if self.quantization_type:
            q = {"type": _LLM_TYPES.get(self.quantization_type.lower(), self.quantization_type)}
            if self.quantization_method:
                q["method"] = self.quantization_method
            stages.append({"quantize": q})
        stages.append({"export": {"format": "gguf"}})
        recipe = {"stages": stages}
        if train_dataset:
            recipe["calibration"] = {"text": os.path.abspath(train_dataset), "ctx": int(self.calibration_ctx),
                                     "chunks": int(self.num_calibration_samples)}
        if eval_dataset:
            recipe["evaluation"] = {"text": os.path.abspath(eval_dataset), "ctx": int(self.eval_ctx),
                                    "chunks": int(self.eval_chunks), "bench": bool(self.bench)}
        return recipe

    def _encoder_recipe(self, train_dataset: Optional[str], eval_dataset: Optional[str]) -> dict:
        stages = []
        if self.apply_pruning:  # unstructured pruning is left to the pipeline to refuse, naming the key
            stages.append({"prune": {"structured": self.pruning_structured} if self.pruning_structured else
                           {"method": self.pruning_method, "sparsity": float(self.pruning_ratio)}})
        if self.apply_distillation:
            stages.append({"distill": {"steps": int(self.distillation_steps), "lr": float(self.distillation_lr)}})
        if self.quantization_type:
            w8a8 = {"int8": "w8a8-static", "static": "w8a8-static", "dynamic": "w8a8-dynamic"}.get(
                self.quantization_type.lower(), self.quantization_type)
            if w8a8 not in ("w8a8-static", "w8a8-dynamic"):
                raise ValueError(f"CompressionConfig.quantization_type {self.quantization_type!r}: an encoder classifier is "
                                 "quantized as 'int8' (static W8A8) or 'dynamic' (W8A8, dynamic activations)")
            q = {"type": w8a8}
            if w8a8 == "w8a8-static":
                q["calib_samples"] = int(self.num_calibration_samples)
            stages += [{"quantize": q}, {"export": {"format": "gguf"}}]
        recipe = {"stages": stages}
        if train_dataset:
            recipe["calibration"] = {"data": os.path.abspath(train_dataset), "samples": int(self.num_calibration_samples)}
        if eval_dataset:
            recipe["evaluation"] = {"data": os.path.abspath(eval_dataset), "samples": int(self.eval_samples), "bench": bool(self.bench)}
        return recipe


class CompressionPipeline:
    """Runs a CompressionConfig on a model: compress(model, train_dataset, eval_dataset) returns the report (a dict:
    the original and every stage with bytes, PPL, KLD, same-top and tokens/s beside the original); the final model is
    `report["final_model"]`, loadable with cq.load. `output_dir` keeps every stage and resumes a killed run."""

    def __init__(self, config: Optional[CompressionConfig] = None, progress: Optional[Callable] = None):
        self.config = config or CompressionConfig()
        self.progress = progress  # progress(stage, done, total)
        self.markdown: Optional[str] = None

    def compress(self, model: ModelLike, train_dataset: Optional[str] = None, eval_dataset: Optional[str] = None,
                 output_dir: Optional[str] = None, resume: bool = False) -> dict:
        import json
        source = _path_of(model, "CompressionPipeline.compress")
        c = self.config
        if c.teacher_model is not None and os.path.realpath(_path_of(c.teacher_model, "teacher_model")) != os.path.realpath(source):
            raise ValueError("CompressionConfig.teacher_model: the pipeline's teacher is the model being compressed")
        if c.recipe:
            with open(c.recipe, encoding="utf-8") as f:
                text, name = f.read(), c.recipe
        else:
            recipe = c.to_recipe(train_dataset, eval_dataset, encoder=_core.is_encoder_model(source))
            text, name = json.dumps(recipe, indent=1), "<python CompressionConfig>"
        out = output_dir or os.path.join(tempfile.mkdtemp(prefix="cq-compress-"), "run")
        report_json, self.markdown = _core.compress(source, out, text, name, resume, self.progress)
        return json.loads(report_json)
