// The ISA rungs the kernel tests run every variant at (this architecture's; a CPU that lacks one skips it), and the
// fixture that gives each parameterized test the kernel table of its rung.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "cq/cpu_features.h"
#include "cq/kernels.h"

namespace cq::test {

inline std::vector<IsaLevel> isa_levels_of_this_arch() {
#if defined(__x86_64__)
    return {IsaLevel::ref, IsaLevel::avx2, IsaLevel::avx512, IsaLevel::avx512_vnni};
#elif defined(__aarch64__)
    return {IsaLevel::ref, IsaLevel::neon, IsaLevel::neon_dotprod, IsaLevel::neon_i8mm};
#else
    return {IsaLevel::ref};
#endif
}

class KernelTableAtLevel : public ::testing::TestWithParam<IsaLevel> {
protected:
    void SetUp() override {
        if (!cpu_supports(GetParam())) GTEST_SKIP() << "this CPU cannot run " << isa_level_name(GetParam());
        table_ = make_kernel_table(GetParam());
    }
    KernelTable table_;
};

}  // namespace cq::test
