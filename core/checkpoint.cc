#include "tessera/core/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tessera/core/metrics.h"

namespace tessera {
namespace {

constexpr std::string_view kMagic = "TESSERA-CKPT\n";
constexpr std::size_t kTrailer = 8 + 4;

std::array<std::uint32_t, 256> MakeCrcTable() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
  out.append(b, sizeof(T));
}

// Reads from a bounded buffer; every read says whether the bytes were there.
struct Cursor {
  std::string_view data;
  std::size_t at = 0;
  template <typename T>
  bool Get(T& v) {
    if (data.size() - at < sizeof(T)) return false;
    std::memcpy(&v, data.data() + at, sizeof(T));
    at += sizeof(T);
    return true;
  }
  bool Bytes(std::size_t n, std::string_view& out) {
    if (data.size() - at < n) return false;
    out = data.substr(at, n);
    at += n;
    return true;
  }
};

const char* TypeName(std::uint8_t t) {
  switch (t) {
    case 1:
      return "numbers";
    case 2:
      return "integers";
    case 3:
      return "text";
  }
  return "unknown";
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return DataLoss(dir + ": cannot open the directory: " + std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return DataLoss(dir + ": fsync failed: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

std::uint32_t Crc32c(std::string_view data, std::uint32_t crc) {
  static const auto table = MakeCrcTable();
  crc = ~crc;
  for (unsigned char ch : data) crc = table[(crc ^ ch) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

Checkpoint Checkpoint::For(const std::string& app, const std::string& problem) {
  Checkpoint c;
  c.PutText("app", app);
  c.PutText("problem", problem);
  return c;
}

Status Checkpoint::Matches(const std::string& app, const std::string& problem) const {
  TESSERA_ASSIGN_OR_RETURN(std::string saved_app, Text("app"));
  if (saved_app != app) {
    return InvalidArgument(source_ + ": a checkpoint of " + saved_app + ", not of " + app);
  }
  TESSERA_ASSIGN_OR_RETURN(std::string saved, Text("problem"));
  if (saved != problem) {
    return InvalidArgument(source_ + ": written for another problem (" + saved +
                           "; this run: " + problem + ")");
  }
  return Status::Ok();
}

void Checkpoint::PutDoubles(const std::string& name, std::span<const double> values) {
  Section& s = sections_[name];
  s.type = kDoubles;
  s.bytes.clear();
  if (!values.empty()) {  // (an empty span's data() may be null, which memcpy must not see)
    s.bytes.assign(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  }
}

void Checkpoint::PutU64s(const std::string& name, std::span<const std::uint64_t> values) {
  Section& s = sections_[name];
  s.type = kU64s;
  s.bytes.clear();
  if (!values.empty()) {  // (an empty span's data() may be null, which memcpy must not see)
    s.bytes.assign(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  }
}

void Checkpoint::PutText(const std::string& name, const std::string& text) {
  Section& s = sections_[name];
  s.type = kText;
  s.bytes = text;
}

StatusOr<const Checkpoint::Section*> Checkpoint::Find(const std::string& name, Type type) const {
  auto it = sections_.find(name);
  if (it == sections_.end()) return DataLoss(source_ + ": no section '" + name + "'");
  if (it->second.type != type) {
    return DataLoss(source_ + ": section '" + name + "' holds " + TypeName(it->second.type) +
                    ", not " + TypeName(type));
  }
  return &it->second;
}

StatusOr<std::vector<double>> Checkpoint::Doubles(const std::string& name) const {
  TESSERA_ASSIGN_OR_RETURN(const Section* s, Find(name, kDoubles));
  std::vector<double> v(s->bytes.size() / sizeof(double));
  if (!v.empty()) std::memcpy(v.data(), s->bytes.data(), v.size() * sizeof(double));
  return v;
}

StatusOr<std::vector<std::uint64_t>> Checkpoint::U64s(const std::string& name) const {
  TESSERA_ASSIGN_OR_RETURN(const Section* s, Find(name, kU64s));
  std::vector<std::uint64_t> v(s->bytes.size() / sizeof(std::uint64_t));
  if (!v.empty()) std::memcpy(v.data(), s->bytes.data(), v.size() * sizeof(std::uint64_t));
  return v;
}

StatusOr<std::uint64_t> Checkpoint::U64(const std::string& name) const {
  TESSERA_ASSIGN_OR_RETURN(auto v, U64s(name));
  if (v.size() != 1) {
    return DataLoss(source_ + ": section '" + name + "' has " + std::to_string(v.size()) +
                    " integers, not 1");
  }
  return v[0];
}

StatusOr<double> Checkpoint::Double(const std::string& name) const {
  TESSERA_ASSIGN_OR_RETURN(auto v, Doubles(name));
  if (v.size() != 1) {
    return DataLoss(source_ + ": section '" + name + "' has " + std::to_string(v.size()) +
                    " numbers, not 1");
  }
  return v[0];
}

StatusOr<std::string> Checkpoint::Text(const std::string& name) const {
  TESSERA_ASSIGN_OR_RETURN(const Section* s, Find(name, kText));
  return s->bytes;
}

std::string Checkpoint::Encode() const {
  std::string out(kMagic);
  Put<std::uint32_t>(out, kCheckpointVersion);
  Put<std::uint32_t>(out, static_cast<std::uint32_t>(sections_.size()));
  for (const auto& [name, s] : sections_) {
    Put<std::uint32_t>(out, static_cast<std::uint32_t>(name.size()));
    out += name;
    Put<std::uint8_t>(out, s.type);
    Put<std::uint64_t>(out, s.bytes.size());
    out += s.bytes;
  }
  const std::uint64_t body = out.size();
  Put<std::uint64_t>(out, body);
  Put<std::uint32_t>(out, Crc32c(std::string_view(out.data(), body)));
  return out;
}

StatusOr<Checkpoint> Checkpoint::Decode(std::string_view bytes, const std::string& source) {
  if (bytes.size() < kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic) {
    return InvalidArgument(source + ": not a Tessera checkpoint");
  }
  if (bytes.size() < kMagic.size() + 8 + kTrailer) {
    return DataLoss(source + ": truncated (" + std::to_string(bytes.size()) + " bytes)");
  }
  Cursor trailer{bytes, bytes.size() - kTrailer};
  std::uint64_t body = 0;
  std::uint32_t crc = 0;
  trailer.Get(body);
  trailer.Get(crc);
  if (body != bytes.size() - kTrailer) {
    return DataLoss(source + ": truncated or extended (" + std::to_string(bytes.size()) +
                    " bytes; the trailer is not at the end)");
  }
  if (Crc32c(bytes.substr(0, body)) != crc) return DataLoss(source + ": checksum mismatch");
  Cursor c{bytes.substr(0, body), kMagic.size()};
  std::uint32_t version = 0, count = 0;
  c.Get(version);
  c.Get(count);
  if (version != kCheckpointVersion) {
    return InvalidArgument(source + ": checkpoint format version " + std::to_string(version) +
                           "; this build reads version " + std::to_string(kCheckpointVersion));
  }
  Checkpoint out;
  out.source_ = source;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t name_len = 0;
    std::string_view name, payload;
    std::uint8_t type = 0;
    std::uint64_t len = 0;
    if (!c.Get(name_len) || !c.Bytes(name_len, name) || !c.Get(type) || !c.Get(len) ||
        !c.Bytes(len, payload)) {
      return DataLoss(source + ": section " + std::to_string(i + 1) + " of " +
                      std::to_string(count) + " runs past the end");
    }
    if (type < kDoubles || type > kText || (type != kText && len % 8 != 0)) {
      return DataLoss(source + ": section '" + std::string(name) + "' is malformed");
    }
    Section& s = out.sections_[std::string(name)];
    s.type = static_cast<Type>(type);
    s.bytes = std::string(payload);
  }
  if (c.at != body) return DataLoss(source + ": bytes after the last section");
  return out;
}

Status Checkpoint::Write(const std::string& path) const {
  const std::string bytes = Encode();
  auto temp = CreateTempFor(path);
  if (!temp.ok()) return DataLoss(temp.status().message());
  const std::string tmp = temp->name;
  const int fd = temp->fd;
  std::size_t done = 0;
  bool ok = true;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  const std::string why = ok ? "" : std::strerror(errno);
  ok = ok && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = why.empty() ? std::strerror(errno) : why;
    std::remove(tmp.c_str());
    return DataLoss(path + ": checkpoint write failed: " + reason);
  }
  const auto parent = std::filesystem::path(path).parent_path();
  return SyncDirectory(parent.empty() ? "." : parent.string());
}

StatusOr<Checkpoint> Checkpoint::Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return Decode(ss.str(), path);
}

StatusOr<CheckpointDir> CheckpointDir::Open(const std::string& dir, int keep) {
  if (dir.empty()) return InvalidArgument("the checkpoint directory is empty");
  if (keep < 2) return InvalidArgument("keep at least 2 checkpoints");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    return InvalidArgument(dir + ": cannot use as the checkpoint directory: " +
                           (ec ? ec.message() : std::string("not a directory")));
  }
  CheckpointDir d;
  d.dir_ = dir;
  d.keep_ = keep;
  for (const std::string& f : d.Files()) {
    const std::string name = std::filesystem::path(f).filename();
    d.next_ = std::max<std::uint64_t>(d.next_, std::stoull(name.substr(5, 8)) + 1);
  }
  return d;
}

Status CheckpointDir::Lock() {
  if (lock_) return Status::Ok();
  const std::string path = (std::filesystem::path(dir_) / "LOCK").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return InvalidArgument(path + ": cannot lock: " + std::strerror(errno));
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd, F_SETLK, &fl) != 0) {
    struct flock held {};
    held.l_type = F_WRLCK;
    held.l_whence = SEEK_SET;
    const bool known = ::fcntl(fd, F_GETLK, &held) == 0 && held.l_type != F_UNLCK;
    ::close(fd);
    return FailedPrecondition(dir_ + ": another run uses this checkpoint directory" +
                              (known ? " (process " + std::to_string(held.l_pid) + ")" : "") +
                              "; give each run its own");
  }
  lock_ = std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  return Status::Ok();
}

std::vector<std::string> CheckpointDir::Files() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename();
    if (name.size() == 17 && name.compare(0, 5, "ckpt-") == 0 && name.compare(13, 4, ".tck") == 0 &&
        name.find_first_not_of("0123456789", 5) == 13) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

StatusOr<std::string> CheckpointDir::Save(const Checkpoint& c) {
  char name[32];
  std::snprintf(name, sizeof name, "ckpt-%08llu.tck", static_cast<unsigned long long>(next_));
  const std::string path = (std::filesystem::path(dir_) / name).string();
  TESSERA_RETURN_IF_ERROR(c.Write(path));
  ++next_;
  auto files = Files();
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep_) < files.size(); ++i) {
    std::remove(files[i].c_str());
  }
  return path;
}

StatusOr<Checkpoint> CheckpointDir::LoadLatest(std::vector<std::string>* skipped) const {
  auto files = Files();
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    auto c = Checkpoint::Read(*it);
    if (c.ok()) return c;
    if (skipped) skipped->push_back(c.status().message());
  }
  return NotFound(dir_ + ": no checkpoint" + (files.empty() ? "" : " that reads back whole"));
}

StatusOr<CheckpointStart> OpenCheckpoints(const std::string& dir, bool resume, bool report) {
  CheckpointStart start;
  if (dir.empty()) {
    if (resume) return InvalidArgument("resuming needs a checkpoint directory");
    return start;
  }
  TESSERA_ASSIGN_OR_RETURN(start.dir, CheckpointDir::Open(dir));
  if (report) TESSERA_RETURN_IF_ERROR(start.dir->Lock());
  if (!resume) return start;
  std::vector<std::string> skipped;
  auto latest = start.dir->LoadLatest(&skipped);
  if (report) {
    for (const std::string& why : skipped) {
      std::cerr << "tessera: skipped a damaged checkpoint: " + why + "\n" << std::flush;
    }
  }
  if (!latest.ok()) return latest.status();
  start.latest = std::move(*latest);
  return start;
}

StatusOr<double> ParseSeconds(const std::string& text, const std::string& flag) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (used > 0) {
    if (unit.empty() || unit == "s") scale = 1;
    if (unit == "ms") scale = 1e-3;
    if (unit == "m" || unit == "min") scale = 60;
    if (unit == "h") scale = 3600;
  }
  if (scale == 0 || !(v > 0) || !std::isfinite(v)) {
    return InvalidArgument(flag + " '" + text +
                           "': expected a positive duration such as 30s, 500ms, 2m or 1h");
  }
  return v * scale;
}

}  // namespace tessera
