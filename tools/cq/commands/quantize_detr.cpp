// The DETR branch of `cq quantize`: W8A8 (static ranges from MNIST canvases) or a weight-only block type into cq's DETR
// container, and the file sizes in and out.
#include <cstdio>

#include "commands/format.h"
#include "commands/json_reports.h"
#include "commands/quantize_w8a8.h"
#include "cq/detr.h"
#include "cq/error.h"

namespace cq::cli {

int run_quantize_detr(W8A8CliOptions& o, const std::string& input, const std::string& output, const std::string& type, bool json) {
    DetrQuantizeOptions q;
    q.type = type;
    q.calib_images = o.quant.calib_data;
    const auto method = calib::parse_method(o.calib_method);
    if (!method) throw InvalidArgument("--calib-method '" + o.calib_method + "' is not one of minmax, percentile, mse, entropy");
    q.method = *method;
    q.percentile = o.quant.percentile;
    const auto [calib_first, calib_count] = parse_sample_range(o.calib_range, "--calib-range");
    q.calib_first = calib_first;
    if (calib_count > 0) q.calib_count = calib_count;

    Progress progress("quantize", !json);
    const DetrQuantizeReport r = quantize_detr(input, output, q);
    progress.finish();
    if (json) {
        print_json({{"quantize",
                     {{"input", r.input}, {"output", r.output}, {"type", r.type}, {"linears", r.linears}, {"quantized", r.quantized},
                      {"fallbacks", r.fallbacks}, {"file_bytes_in", r.file_bytes_in}, {"file_bytes_out", r.file_bytes_out}, {"seconds", r.seconds}}}});
        return 0;
    }
    std::printf("%s → %s (%s), %.2f s\n%lld of %lld Linear layers quantized (the backbone blocks' path convs and the transformer "
                "layers; stem, shortcuts, input projection and heads stay f32)",
                r.input.c_str(), r.output.c_str(), r.type.c_str(), r.seconds, static_cast<long long>(r.quantized), static_cast<long long>(r.linears));
    if (!r.fallbacks.empty()) std::printf("; %zu stayed f32 (rows not whole blocks)", r.fallbacks.size());
    std::printf("\n");
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "÷%.2f", static_cast<double>(r.file_bytes_in) / static_cast<double>(std::max<uint64_t>(1, r.file_bytes_out)));
    print_table({{"", "original", r.type, "change"}, {"file bytes", group_digits(r.file_bytes_in), group_digits(r.file_bytes_out), ratio}},
                {false, true, true, true}, 2);
    return 0;
}

}  // namespace cq::cli
