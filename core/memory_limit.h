// The memory a process may plan to allocate. Readers and apps compare what an input or an
// option would make them allocate (a feature index, a topic count, a rank) with this limit
// before they allocate, so that a tiny file or a typo is an error naming the cause, not
// minutes of swapping or an out-of-memory kill. The command line sets it from --max-memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/core/status.h"

namespace tessera {

// Default: three quarters of the machine's physical memory.
std::uint64_t MaxMemoryBytes();
void SetMaxMemoryBytes(std::uint64_t bytes);
std::uint64_t PhysicalMemoryBytes();

// Ok when `bytes` fit the limit; otherwise "WHAT would need N MiB, more than the memory
// limit of M MiB (--max-memory)". `bytes` is a double so that products of sizes cannot wrap.
Status CheckAllocation(const std::string& what, double bytes);

// "512M", "4G", "1.5T", "65536" (bytes; K, M, G, T are powers of 1024, an optional trailing
// 'B' or 'iB' is allowed).
StatusOr<std::uint64_t> ParseByteSize(std::string_view text);
// 1536 MiB as "1.5 GiB", and so on, for messages.
std::string FormatBytes(double bytes);

// Asks the kernel to back the whole 2 MiB extents of [p, p + bytes) with transparent huge
// pages, for an array of many MiB about to be written: one page fault per 2 MiB instead of
// per 4 KiB (where the system's setting is "madvise"; nothing happens where it is "never").
// Arrays below 8 MiB are left as they are.
void PreferHugePages(const void* p, std::size_t bytes);
constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

}  // namespace tessera
