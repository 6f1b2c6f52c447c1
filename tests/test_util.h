// Helpers shared by the tests: locating the real data sets and temporary files.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tessera::testing {

// TESSERA_DATA_DIR, else ../shared/datasets beside the source tree.
inline std::string DataDir() {
  if (const char* d = std::getenv("TESSERA_DATA_DIR"); d && *d) return d;
  return std::string(TESSERA_SOURCE_DIR) + "/../shared/datasets";
}

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// Runs `cmd` through the shell; returns its exit code (128 + signal when killed) and, in
// `out`, what it printed on stdout and stderr.
inline int Sh(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
  const int status = pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A whole file as bytes ("" when it cannot be read).
inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tessera-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }
  // True when no temporary file of an atomic write (`NAME.tmp-XXXXXX`) is left here.
  bool NoTempFiles() const {
    for (const auto& e : std::filesystem::directory_iterator(path_)) {
      if (e.path().filename().string().find(".tmp-") != std::string::npos) return false;
    }
    return true;
  }

 private:
  std::string path_;
};

#ifdef TESSERA_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
// A workload's size: `full` in release builds, `small` under the sanitizers (5-20x slower),
// which check the same code paths (kill, resume, compare) on less work.
inline std::string Sized(const std::string& full, const std::string& small) {
  return kSanitized ? small : full;
}

}  // namespace tessera::testing

// Long statistical oracles (many sweeps over a real corpus) check numbers, not memory or
// thread safety; sanitizer builds, 5-20x slower, skip them. Their concurrent code paths have
// short tests of their own that do run there.
#ifdef TESSERA_SANITIZED
#define TESSERA_SKIP_IF_SANITIZED() GTEST_SKIP() << "long statistical oracle: release build only"
#else
#define TESSERA_SKIP_IF_SANITIZED() (void)0
#endif

// Kill-and-resume variants that differ from one that runs under the sanitizers (the same
// checkpoint and resume code, another process killed or another launcher) and the two-host
// run: release builds only.
#ifdef TESSERA_SANITIZED
#define TESSERA_SKIP_IF_SANITIZED_VARIANT() \
  GTEST_SKIP() << "a variant of a multi-process run that the sanitizers run: release only"
#else
#define TESSERA_SKIP_IF_SANITIZED_VARIANT() (void)0
#endif

// Most multi-process runs are skipped under TSan (3-5x slower than ASan there): what they add to
// the in-process runs is processes, not threads. TSan checks the transports' threads in the TCP
// transport tests (real sockets, one process) and in the multi-process runs that stay: the Lasso
// under launch, a user's app with carried blocks, a killed process, a stopped process, bad input.
#if defined(__SANITIZE_THREAD__)
#define TESSERA_SKIP_UNDER_TSAN() GTEST_SKIP() << "multi-process variant: release and ASan only"
#else
#define TESSERA_SKIP_UNDER_TSAN() (void)0
#endif

// Sets `var` to the data file `rel` under DataDir(). A missing file fails the test under
// CI=true and skips it (with the path) otherwise.

#define TESSERA_REQUIRE_DATA(var, rel)                                         \
  const std::string var = ::tessera::testing::DataDir() + "/" + (rel);         \
  if (!std::filesystem::exists(var)) {                                         \
    if (::tessera::testing::InCi()) FAIL() << "data file missing: " << var;    \
    GTEST_SKIP() << "data file missing: " << var << " (set TESSERA_DATA_DIR)"; \
  }
