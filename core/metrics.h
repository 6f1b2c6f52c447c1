// Run metrics: a per-round CSV trace, a one-line progress display on a TTY, a stopwatch.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "tessera/core/status.h"

namespace tessera {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// A fresh temporary file beside `path`, for writing `path` atomically (write, fsync, rename):
// `path`.tmp-XXXXXX made by mkstemp (O_CREAT|O_EXCL, so a file or symlink planted under a name
// it could take is never opened or followed), mode 0644 less the umask. The open descriptor and
// the name; an error names `path`.
struct TempFile {
  int fd = -1;
  std::string name;
};
StatusOr<TempFile> CreateTempFor(const std::string& path);
// Ok when a file can later be written to `path` the way CsvWriter writes it (a temporary
// beside it, then renamed; tried and removed now), so a fit can refuse an output it could not
// write before it starts. An error names `path`.
Status CheckWritable(const std::string& path);

// Writes CSV rows to a temporary file beside `path` (CreateTempFor) and renames it to `path`
// on Finish(), so an interrupted run never leaves a file that looks complete.
class CsvWriter {
 public:
  CsvWriter() = default;
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;
  ~CsvWriter();
  Status Open(const std::string& path, const std::string& header);
  void Row(const std::string& line);
  Status Finish();
  bool is_open() const { return file_ != nullptr; }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

// "label  round 1234 | objective 1.234567e+03 | 5.1k rounds/s | 3.2 s | ETA 10 s" on stderr,
// rewritten in place at most 5 times a second; silent when stderr is not a terminal. The ETA
// is shown only when a limit (rounds, epochs, seconds) will end the run, not convergence.
class ProgressLine {
 public:
  ProgressLine(std::string label, bool enabled);
  ~ProgressLine() { Finish(); }
  // `fraction_done` in [0,1] or negative when unknown.
  void Update(std::uint64_t round, double objective, double seconds, double fraction_done);
  void Finish();

 private:
  std::string label_;
  bool enabled_;
  bool shown_ = false;
  double last_ = -1;
};

// Clears the progress line from the terminal if one is shown, so that a line printed next
// starts at its first column; the progress line comes back at its next update. Whatever prints
// while a run may show progress (per-epoch lines, errors) calls it first.
void ClearProgressLine();

// Peak resident set size of this process in bytes (Linux VmHWM), 0 when unknown.
std::uint64_t PeakRssBytes();

// Gives the memory freed so far back to the system (glibc's malloc_trim; no-op elsewhere).
// Freed memory otherwise stays with the allocator, in the arena of the thread that freed it,
// where another thread's allocations cannot reuse it: call it after a phase frees much
// (reading, a run's worker states) and before the next allocates. Nothing in sanitizer
// builds, whose allocator is not glibc's.
void ReturnFreedMemory();

// Shortest decimal form that reads back to the same double.
std::string FormatDouble(double v);

// Ok when an evaluation's objective is a finite number. Otherwise the error that stops the
// run (both engines check every evaluation): "the objective is nan after round 12: ...".
Status CheckFiniteObjective(double objective, const char* unit, std::uint64_t step);

}  // namespace tessera
