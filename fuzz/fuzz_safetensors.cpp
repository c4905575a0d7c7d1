// libFuzzer target for the safetensors reader: the input is a whole .safetensors file (u64 header
// length, JSON header, data), parsed from memory. Success means every tensor byte range is readable.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cq/error.h"
#include "cq/io/safetensors.h"
#include "cq/mapped_file.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto source = cq::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
    try {
        cq::fuzz::touch(cq::safetensors::File::parse(source));
    } catch (const cq::Error&) {
    }
    cq::safetensors::Limits tight;
    tight.max_header_bytes = 256;
    tight.max_json_depth = 3;
    tight.max_rank = 2;
    try {
        cq::fuzz::touch(cq::safetensors::File::parse(source, tight));
    } catch (const cq::Error&) {
    }
    return 0;
}
