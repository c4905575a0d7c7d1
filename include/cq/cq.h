// cq's public API in one include: models (LLMs, encoders), their layers and observers, quantization,
// calibration, evaluation, model files, kernels. No third-party types appear in any of these headers.
#pragma once

#include "cq/error.h"
#include "cq/dtype.h"
#include "cq/tensor.h"
#include "cq/mapped_file.h"
#include "cq/atomic_file.h"
#include "cq/thread_pool.h"
#include "cq/cpu_features.h"
#include "cq/kernels.h"
#include "cq/int8_gemm.h"
#include "cq/w8a8.h"

#include "cq/io/gguf.h"
#include "cq/io/gguf_writer.h"
#include "cq/io/safetensors.h"

#include "cq/tokenizer.h"
#include "cq/model.h"
#include "cq/llm.h"
#include "cq/encoder.h"
#include "cq/datasets.h"

#include "cq/inspect.h"
#include "cq/eval.h"
#include "cq/compare.h"
#include "cq/classify.h"
#include "cq/layer_stats.h"
#include "cq/calibration.h"
#include "cq/rules.h"
#include "cq/quantize.h"
#include "cq/quantize_encoder.h"
#include "cq/weighted_quant.h"
#include "cq/imatrix.h"
#include "cq/gptq.h"
#include "cq/prune.h"
#include "cq/distill.h"
