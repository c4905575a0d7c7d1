// Uses cq as an installed library: load an LLM, list its Linears, observe one layer while the model
// runs, quantize that layer to Q8_0 in memory and run again, then (with OUT) save the changed model as a
// GGUF and check that the file runs the same. Exits non-zero if anything disagrees.
//   quantize_one_layer MODEL [LAYER] [OUT.gguf]   (LAYER: a Linear's name; default the first block's attn_q)
#include <cq/cq.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [LAYER]\n", argv[0]);
        return 2;
    }
    try {
        auto model = cq::LanguageModel::load(argv[1]);

        // 1. Every Linear, in execution order.
        const std::vector<cq::Linear*> linears = model->linears();
        std::printf("%s: %s, %zu linears\n", argv[1], model->architecture().c_str(), linears.size());
        for (const cq::Linear* l : linears)
            std::printf("  %-20s %-9s block %2lld  [%lld, %lld]  %s\n", l->name.c_str(), std::string(cq::role_name(l->role)).c_str(),
                        static_cast<long long>(l->block), static_cast<long long>(l->n_out()), static_cast<long long>(l->n_in()),
                        std::string(cq::dtype_name(l->weight.dtype())).c_str());

        cq::Linear* layer = argc > 2 ? model->find_linear(argv[2]) : nullptr;
        if (!layer) {
            for (cq::Linear* l : linears)
                if (l->role == cq::LayerRole::attn_q && l->block == 0) layer = l;
        }
        if (!layer) {
            std::fprintf(stderr, "no layer %s\n", argc > 2 ? argv[2] : "with role attn_q in block 0");
            return 1;
        }

        // 2. An observer on that layer: rows seen and the mean square of its inputs.
        int64_t rows = 0;
        double sum_sq = 0;
        const cq::ObserverId id = model->observe(*layer, [&](const cq::LinearEvent& e) {
            rows += e.rows;
            for (int64_t i = 0; i < e.rows * e.layer.n_in(); ++i) sum_sq += static_cast<double>(e.x[i]) * e.x[i];
        });

        const std::vector<int32_t> tokens = model->tokenizer().encode("Once upon a time, there was a little cat.", true);
        const int64_t n_vocab = model->config().n_vocab;
        std::vector<float> before(tokens.size() * static_cast<size_t>(n_vocab)), after(before.size());
        model->forward(tokens, 0, before, true);
        model->remove_observer(id);
        std::printf("observed %s: %lld rows (%zu tokens), input mean square %.6g\n", layer->name.c_str(), static_cast<long long>(rows),
                    tokens.size(), rows ? sum_sq / static_cast<double>(rows * layer->n_in()) : 0.0);

        // 3. Quantize that one layer in memory, and run the same tokens again.
        const std::string from(cq::dtype_name(layer->weight.dtype()));
        model->quantize_linear(*layer, cq::DType::Q8_0);
        model->forward(tokens, 0, after, true);
        double max_diff = 0;
        for (size_t i = 0; i < before.size(); ++i) max_diff = std::max(max_diff, std::fabs(static_cast<double>(after[i]) - before[i]));
        std::printf("quantized %s %s -> %s: max |delta logit| %.6g\n", layer->name.c_str(), from.c_str(),
                    std::string(cq::dtype_name(layer->weight.dtype())).c_str(), max_diff);

        bool ok = rows == static_cast<int64_t>(tokens.size()) && layer->weight.dtype() == cq::DType::Q8_0 &&
                  std::isfinite(max_diff) && max_diff < 1.0 && (from == "q8_0" || max_diff > 0);

        // 4. Save what is in memory, load the file and run it: the same logits.
        if (argc > 3) {
            model->save(argv[3]);
            auto saved = cq::LanguageModel::load(argv[3]);
            std::vector<float> reloaded(after.size());
            saved->forward(tokens, 0, reloaded, true);
            double file_diff = 0;
            for (size_t i = 0; i < after.size(); ++i) file_diff = std::max(file_diff, std::fabs(static_cast<double>(reloaded[i]) - after[i]));
            const std::string saved_format = saved->find_linear(layer->name)->format();
            std::printf("saved %s: %s is %s there, max |delta logit| against memory %.6g\n", argv[3], layer->name.c_str(),
                        saved_format.c_str(), file_diff);
            ok = ok && saved_format == "q8_0" && file_diff < 1e-3;
        }
        std::printf("%s\n", ok ? "ok" : "FAILED");
        return ok ? 0 : 1;
    } catch (const cq::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
