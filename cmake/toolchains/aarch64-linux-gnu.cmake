# Cross-compiling cq for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu (docs/edge.md).
# Binaries are linked statically, so qemu-aarch64 runs them without an arm64 sysroot and a board needs
# nothing installed; CMake runs the test discovery through qemu (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CQ_CROSS_PREFIX aarch64-linux-gnu- CACHE STRING "Prefix of the cross tools")
set(CMAKE_C_COMPILER ${CQ_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${CQ_CROSS_PREFIX}g++)
set(CMAKE_STRIP ${CQ_CROSS_PREFIX}strip CACHE FILEPATH "strip for the target")

# Libraries and headers come from the cross sysroot only; programs (protoc, python) from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
find_program(CQ_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(CQ_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${CQ_QEMU_AARCH64})
endif()
