#include "tessera/core/metrics.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>

namespace tessera {

StatusOr<TempFile> CreateTempFor(const std::string& path) {
  TempFile t;
  t.name = path + ".tmp-XXXXXX";
  t.fd = ::mkstemp(t.name.data());
  if (t.fd < 0) return InvalidArgument(path + ": cannot write: " + std::strerror(errno));
  const mode_t mask = ::umask(0);
  ::umask(mask);
  (void)::fchmod(t.fd, 0644 & ~mask);
  return t;
}

Status CheckWritable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return InvalidArgument(path + ": cannot write: is a directory");
  }
  TESSERA_ASSIGN_OR_RETURN(TempFile t, CreateTempFor(path));
  ::close(t.fd);
  std::remove(t.name.c_str());
  return Status::Ok();
}

CsvWriter::~CsvWriter() {
  if (file_) {  // never finished: drop the partial file
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

Status CsvWriter::Open(const std::string& path, const std::string& header) {
  path_ = path;
  TESSERA_ASSIGN_OR_RETURN(TempFile t, CreateTempFor(path));
  tmp_ = t.name;
  file_ = ::fdopen(t.fd, "w");
  if (!file_) {
    ::close(t.fd);
    std::remove(tmp_.c_str());
    return InvalidArgument(path + ": cannot write: " + std::strerror(errno));
  }
  std::fprintf(file_, "%s\n", header.c_str());
  return Status::Ok();
}

void CsvWriter::Row(const std::string& line) {
  if (file_) std::fprintf(file_, "%s\n", line.c_str());
}

Status CsvWriter::Finish() {
  if (!file_) return Status::Ok();
  bool ok = std::fflush(file_) == 0 && fsync(fileno(file_)) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    return DataLoss(path_ + ": write failed: " + std::strerror(errno));
  }
  return Status::Ok();
}

namespace {
// One terminal: whether a progress line is on it now (any ProgressLine's), so that a line
// printed by anyone can first clear it.
std::mutex g_progress_mu;
bool g_progress_shown = false;
}  // namespace

void ClearProgressLine() {
  std::lock_guard lock(g_progress_mu);
  if (g_progress_shown) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    g_progress_shown = false;
  }
}

ProgressLine::ProgressLine(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO)) {}

void ProgressLine::Update(std::uint64_t round, double objective, double seconds,
                          double fraction_done) {
  if (!enabled_ || seconds - last_ < 0.2) return;
  last_ = seconds;
  const double rate = seconds > 0 ? round / seconds : 0;
  char eta[32] = "";
  if (fraction_done > 0 && fraction_done <= 1) {
    std::snprintf(eta, sizeof eta, " | ETA %.1f s", seconds * (1 - fraction_done) / fraction_done);
  }
  char obj[32] = "-";
  if (!std::isnan(objective)) std::snprintf(obj, sizeof obj, "%.9g", objective);
  std::lock_guard lock(g_progress_mu);
  std::fflush(stdout);  // what was printed before comes before the line
  std::fprintf(stderr, "\r%s  round %llu | objective %s | %.3g rounds/s | %.1f s%s\033[K",
               label_.c_str(), static_cast<unsigned long long>(round), obj, rate, seconds, eta);
  std::fflush(stderr);
  g_progress_shown = shown_ = true;
}

void ProgressLine::Finish() {
  if (!shown_) return;
  shown_ = false;
  ClearProgressLine();
}

std::uint64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Sanitizers replace malloc: glibc's arenas are not the heap then, and trimming them can crash
// (a thread whose arena glibc never set up).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TESSERA_SANITIZED_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TESSERA_SANITIZED_HEAP 1
#endif
#endif

void ReturnFreedMemory() {
#if defined(__GLIBC__) && !defined(TESSERA_SANITIZED_HEAP)
  malloc_trim(0);
#endif
}

Status CheckFiniteObjective(double objective, const char* unit, std::uint64_t step) {
  if (std::isfinite(objective)) return Status::Ok();
  return DataLoss("the objective is " + FormatDouble(objective) + " after " + unit + " " +
                  std::to_string(step) +
                  ": the data or the options (a huge value, a step size that diverges) give "
                  "values that are not finite numbers");
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

}  // namespace tessera
