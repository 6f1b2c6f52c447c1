// Checkpoint files: named sections of numbers and text, written atomically, read back only
// when whole. A run that crashes resumes from the newest checkpoint in its directory that
// reads back whole; a truncated or corrupt one is reported and the one before it is used.
//
// Format (version 1, little-endian):
//   "TESSERA-CKPT\n" (13 bytes) | u32 version | u32 section count
//   per section: u32 name length | name | u8 type (1 doubles, 2 u64s, 3 text)
//                | u64 byte length | bytes
//   trailer: u64 bytes before the trailer | u32 CRC-32C of those bytes
// Written to `file.tmp`, fsync'ed, renamed over `file`, then the directory fsync'ed: a reader
// sees the old file or the new one, never a half-written one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

inline constexpr std::uint32_t kCheckpointVersion = 1;

// CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
std::uint32_t Crc32c(std::string_view data, std::uint32_t crc = 0);

class Checkpoint {
 public:
  // A checkpoint of `app` (lasso, mf, ...) for `problem`, what identifies the data and model
  // shape a resumed run must have.
  static Checkpoint For(const std::string& app, const std::string& problem);
  // Ok when this is a checkpoint of `app` for `problem`; else an error saying what differs.
  Status Matches(const std::string& app, const std::string& problem) const;

  void PutDoubles(const std::string& name, std::span<const double> values);
  void PutU64s(const std::string& name, std::span<const std::uint64_t> values);
  void PutU64(const std::string& name, std::uint64_t value) { PutU64s(name, {&value, 1}); }
  void PutDouble(const std::string& name, double value) { PutDoubles(name, {&value, 1}); }
  void PutText(const std::string& name, const std::string& text);

  // A missing section or one of another type is an error naming the file and the section.
  StatusOr<std::vector<double>> Doubles(const std::string& name) const;
  StatusOr<std::vector<std::uint64_t>> U64s(const std::string& name) const;
  StatusOr<std::uint64_t> U64(const std::string& name) const;
  StatusOr<double> Double(const std::string& name) const;
  StatusOr<std::string> Text(const std::string& name) const;
  bool Has(const std::string& name) const { return sections_.count(name) > 0; }

  // The encoded file (see above).
  std::string Encode() const;
  // Decodes `bytes` read from `source` (for messages): DataLoss for a truncated or corrupt
  // file, InvalidArgument for one that is not a checkpoint or of another version.
  static StatusOr<Checkpoint> Decode(std::string_view bytes, const std::string& source);

  // Writes atomically to `path` (see above).
  Status Write(const std::string& path) const;
  static StatusOr<Checkpoint> Read(const std::string& path);

  const std::string& source() const { return source_; }

 private:
  enum Type : std::uint8_t { kDoubles = 1, kU64s = 2, kText = 3 };
  struct Section {
    Type type = kText;
    std::string bytes;
  };
  StatusOr<const Section*> Find(const std::string& name, Type type) const;
  std::map<std::string, Section> sections_;
  std::string source_ = "checkpoint";
};

// A directory of numbered checkpoints (ckpt-00000001.tck, ...), newest kept last.
class CheckpointDir {
 public:
  // Creates `dir` if needed. Keeps the newest `keep` files (>= 2, so that a corrupt newest one
  // still leaves a good one behind).
  static StatusOr<CheckpointDir> Open(const std::string& dir, int keep = 3);
  // Writes the next numbered file and removes the oldest beyond `keep`. Returns its path.
  StatusOr<std::string> Save(const Checkpoint& c);
  // The newest checkpoint that reads back whole. Every newer one that does not is described
  // in `skipped` ("path: why"). NotFound when there is none at all.
  StatusOr<Checkpoint> LoadLatest(std::vector<std::string>* skipped = nullptr) const;
  // The checkpoint files, oldest first.
  std::vector<std::string> Files() const;
  const std::string& path() const { return dir_; }
  // Takes the directory for this process's run (a POSIX lock on `dir`/LOCK, held while this
  // object or a copy lives, released by the kernel if the process dies): a run of another
  // process that writes there too fails with a message naming it instead of clobbering files.
  Status Lock();

 private:
  std::string dir_;
  int keep_ = 3;
  std::uint64_t next_ = 1;
  std::shared_ptr<const int> lock_;  // the LOCK file's descriptor, closed with the last copy
};

// Where a run keeps its checkpoints: the directory (none when `dir` is empty) and, when
// resuming, the newest checkpoint in it that reads back whole. Damaged newer ones are named
// on stderr when `report` (the process that writes the checkpoints, which also takes the
// directory's lock: CheckpointDir::Lock).
struct CheckpointStart {
  std::optional<CheckpointDir> dir;
  std::optional<Checkpoint> latest;
};
StatusOr<CheckpointStart> OpenCheckpoints(const std::string& dir, bool resume, bool report);

// Where an app's run keeps its checkpoints (UseCheckpoints of either engine).
struct CheckpointPlan {
  std::string dir;   // empty: none
  double every = 0;  // seconds between checkpoints; 0: at every boundary (an epoch's end)
  bool resume = false;
  std::string unit = "epochs";  // what an epoch is called in messages (LDA: sweeps)
};

// Parses a duration: "30s", "2m", "1h", "500ms" or a plain number of seconds.
StatusOr<double> ParseSeconds(const std::string& text, const std::string& flag);

}  // namespace tessera
