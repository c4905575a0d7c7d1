// Shared by the libFuzzer targets: read every byte a parsed model claims (first and last byte of each
// tensor, every metadata value) so that a missed bounds check becomes an ASan report, and stop on
// any broken invariant. Expected refusals are cq::Error; anything else escaping is a finding.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cq/io/gguf.h"
#include "cq/io/safetensors.h"
#include "cq/tensor.h"

namespace cq::fuzz {

inline volatile uint8_t g_sink = 0;

[[noreturn]] inline void finding(const std::string& what) {
    std::fprintf(stderr, "FUZZ INVARIANT BROKEN: %s\n", what.c_str());
    std::abort();
}

inline void touch_bytes(const Tensor& t, uint64_t expected_nbytes, const std::string& name) {
    if (t.nbytes() != expected_nbytes) finding("tensor '" + name + "' view size differs from its info");
    if (t.nbytes() == 0) return;
    const auto* p = static_cast<const uint8_t*>(t.data());
    g_sink = g_sink + p[0] + p[t.nbytes() - 1];
}

// Every tensor must lie inside the file, zero-sized ones included.
inline void check_extent(uint64_t file_offset, uint64_t nbytes, uint64_t file_size, const std::string& name) {
    if (file_offset > file_size || nbytes > file_size - file_offset)
        finding("tensor '" + name + "' (" + std::to_string(nbytes) + " bytes at " + std::to_string(file_offset) +
                ") lies outside the " + std::to_string(file_size) + "-byte file");
}

inline void touch_value(const gguf::Value& v) {
    g_sink = g_sink + static_cast<uint8_t>(v.to_display_string(4).size());
    (void)v.as_int();
    (void)v.as_double();
    (void)v.is_number();
    if (const auto* s = v.as_string(); s && !s->empty()) g_sink = g_sink + static_cast<uint8_t>(s->front() ^ s->back());
    if (const auto* a = v.as_array())
        for (const auto& item : a->items) {
            if (item.type != a->element_type) finding("array item type differs from the array's element type");
            touch_value(item);
        }
}

inline void touch(const gguf::File& f) {
    for (const auto& kv : f.metadata()) {
        touch_value(kv.value);
        if (f.find(kv.key) != &kv.value) finding("find() does not return key '" + kv.key + "'");
        if (kv.file_offset >= f.file_size()) finding("key '" + kv.key + "' starts past the end of the file");
    }
    (void)f.architecture();
    (void)f.get_int("general.alignment");
    (void)f.get_string("general.name");
    if (f.alignment() == 0 || (f.alignment() & (f.alignment() - 1))) finding("alignment is not a power of two");
    for (const auto& t : f.tensors()) {
        check_extent(t.file_offset, t.nbytes, f.file_size(), t.name);
        if (f.find_tensor(t.name) != &t) finding("find_tensor() does not return '" + t.name + "'");
        if (t.info_offset >= f.file_size()) finding("tensor info of '" + t.name + "' starts past the end of the file");
        touch_bytes(f.tensor(t), t.nbytes, t.name);
    }
}

inline void touch(const safetensors::File& f) {
    for (const auto& [k, v] : f.metadata()) g_sink = g_sink + static_cast<uint8_t>(k.size() + v.size());
    if (f.data_section_offset() > f.file_size()) finding("data section starts past the end of the file");
    for (const auto& t : f.tensors()) {
        check_extent(t.file_offset, t.nbytes, f.file_size(), t.name);
        if (t.file_offset < f.data_section_offset()) finding("tensor '" + t.name + "' starts inside the header");
        if (f.find_tensor(t.name) != &t) finding("find_tensor() does not return '" + t.name + "'");
        touch_bytes(f.tensor(t), t.nbytes, t.name);
    }
}

inline void touch(const safetensors::Model& m) {
    for (const auto& shard : m.shards()) touch(shard);
    for (const auto* t : m.tensors()) {
        const auto* shard = m.shard_of(t->name);
        if (!shard) finding("shard_of() lost '" + t->name + "'");
        touch_bytes(m.tensor(t->name), t->nbytes, t->name);
    }
}

}  // namespace cq::fuzz
