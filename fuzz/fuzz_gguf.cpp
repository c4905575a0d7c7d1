// libFuzzer target for the GGUF reader: the input is a whole .gguf file, parsed from memory. A parse
// either succeeds (then every value and every tensor byte range is read back) or throws cq::Error.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cq/error.h"
#include "cq/io/gguf.h"
#include "cq/mapped_file.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // An exact-size heap copy: ASan reports any read one byte past the end.
    auto source = cq::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.gguf");
    try {
        cq::fuzz::touch(cq::gguf::File::parse(source));
    } catch (const cq::Error&) {
    }
    // Tight caps take other paths through the same checks.
    cq::gguf::Limits tight;
    tight.max_string_bytes = 64;
    tight.max_key_bytes = 32;
    tight.max_array_items = 16;
    tight.max_array_depth = 2;
    tight.max_tensors = 8;
    tight.max_kv = 16;
    try {
        cq::fuzz::touch(cq::gguf::File::parse(source, tight));
    } catch (const cq::Error&) {
    }
    return 0;
}
