// Included first by every AVX-512 kernel file: GCC 12 warns falsely of (maybe-)uninitialized values
// inside its own AVX-512 headers when their masked intrinsics are inlined (built from a deliberately
// undefined vector), so those two warnings are off for the rest of the file.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
