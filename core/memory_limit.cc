#include "tessera/core/memory_limit.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace tessera {
namespace {

std::atomic<std::uint64_t> g_limit{0};  // 0: not set, the default applies

}  // namespace

std::uint64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::uint64_t{4} << 30;  // unknown: assume 4 GiB
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
}

std::uint64_t MaxMemoryBytes() {
  const std::uint64_t set = g_limit.load(std::memory_order_relaxed);
  return set != 0 ? set : PhysicalMemoryBytes() / 4 * 3;
}

void SetMaxMemoryBytes(std::uint64_t bytes) { g_limit.store(bytes, std::memory_order_relaxed); }

std::string FormatBytes(double bytes) {
  static const char* const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf,
                u == 0        ? "%.0f %s"
                : bytes < 1e6 ? "%.1f %s"
                              : "%.3g %s",
                bytes, kUnits[u]);
  return buf;
}

Status CheckAllocation(const std::string& what, double bytes) {
  const auto limit = static_cast<double>(MaxMemoryBytes());
  if (bytes <= limit) return Status::Ok();
  return FailedPrecondition(what + " would need " + FormatBytes(bytes) +
                            ", more than the memory limit of " + FormatBytes(limit) +
                            " (--max-memory)");
}

StatusOr<std::uint64_t> ParseByteSize(std::string_view text) {
  const auto bad = [&] {
    return InvalidArgument("'" + std::string(text) +
                           "' is not a size: a number with an optional K, M, G or T (e.g. 512M)");
  };
  double x = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, x);
  if (ec != std::errc() || p == text.data() || !(x > 0) || !std::isfinite(x)) return bad();
  std::string_view unit(p, static_cast<std::size_t>(end - p));
  double scale = 1;
  if (!unit.empty()) {
    const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0])));
    const std::string_view units = "KMGT";
    const auto at = units.find(u);
    if (at != std::string_view::npos) {
      scale = std::pow(1024.0, static_cast<double>(at + 1));
      unit.remove_prefix(1);
    }
    if (unit == "iB" || unit == "ib") unit.remove_prefix(2);
    if (unit == "B" || unit == "b") unit.remove_prefix(1);
    if (!unit.empty()) return bad();
  }
  const double bytes = x * scale;
  if (bytes < 1 || bytes > 1.8e19) return bad();
  return static_cast<std::uint64_t>(bytes);
}

void PreferHugePages(const void* p, std::size_t bytes) {
  if (bytes < 4 * kHugePageBytes) return;
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (start + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t last = (start + bytes) / kHugePageBytes * kHugePageBytes;
  // Advice only: an error (a kernel without THP) leaves the pages as they are.
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

}  // namespace tessera
