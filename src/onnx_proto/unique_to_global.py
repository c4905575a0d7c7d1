#!/usr/bin/env python3
# Build step for cq_onnx_proto.o: turns the STB_GNU_UNIQUE binding of protobuf's symbols (function-local statics of
# inline functions, template constants) into STB_GLOBAL in an ELF64 relocatable object, so that objcopy can then make
# them local. Unique symbols are merged process-wide by the dynamic loader, which would tie this protobuf's statics to
# the copy of protobuf that Debian's libsentencepiece bundles. Usage: unique_to_global.py IN.o OUT.o SUBSTRING...
import struct, sys

src, dst, needles = sys.argv[1], sys.argv[2], [s.encode() for s in sys.argv[3:]]
data = bytearray(open(src, "rb").read())
if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
    sys.exit(f"{src}: not a little-endian ELF64 object")
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
changed = 0
for sh in sections:
    if sh[1] != 2:  # SHT_SYMTAB
        continue
    off, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
    strtab = sections[link][4]
    for pos in range(off, off + size, entsize):
        name_off, info = struct.unpack_from("<IB", data, pos)
        if info >> 4 != 10:  # STB_GNU_UNIQUE
            continue
        end = data.index(b"\0", strtab + name_off)
        name = bytes(data[strtab + name_off:end])
        if any(n in name for n in needles):
            data[pos + 4] = (1 << 4) | (info & 0xF)  # STB_GLOBAL, same type
            changed += 1
open(dst, "wb").write(data)
print(f"unique_to_global: {changed} symbols rebound")
