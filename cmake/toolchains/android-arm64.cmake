# Cross-compiling cq's minimal runtime for Android arm64-v8a with the NDK (docs/edge.md; not built in CI).
# Usage: cmake -S . -B build-android -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/android-arm64.cmake \
#          -DANDROID_NDK=$HOME/android-ndk-r26d -DCQ_MINIMAL=ON -DCQ_BUILD_TESTS=OFF
# It wraps the NDK's own toolchain file with cq's choices: arm64-v8a, API 28 (getauxval and AT_HWCAP2 exist from
# API 18), libc++ linked statically so cq-run is one file to `adb push`.
if(NOT ANDROID_NDK)
  if(DEFINED ENV{ANDROID_NDK_HOME})
    set(ANDROID_NDK $ENV{ANDROID_NDK_HOME})
  elseif(DEFINED ENV{ANDROID_NDK})
    set(ANDROID_NDK $ENV{ANDROID_NDK})
  else()
    message(FATAL_ERROR "android-arm64.cmake: set -DANDROID_NDK=<ndk dir> (or ANDROID_NDK_HOME)")
  endif()
endif()
set(ANDROID_ABI arm64-v8a CACHE STRING "")
set(ANDROID_PLATFORM android-28 CACHE STRING "")
set(ANDROID_STL c++_static CACHE STRING "")
include(${ANDROID_NDK}/build/cmake/android.toolchain.cmake)
