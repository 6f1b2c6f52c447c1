#include "tessera/core/line_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace tessera {

namespace {
std::atomic<std::size_t> g_max_line_bytes{LineReader::kDefaultMaxLineBytes};
}  // namespace

std::size_t LineReader::DefaultMaxLineBytes() {
  return g_max_line_bytes.load(std::memory_order_relaxed);
}

void LineReader::SetDefaultMaxLineBytes(std::size_t n) {
  g_max_line_bytes.store(n, std::memory_order_relaxed);
}

LineReader::~LineReader() {
  if (file_) gzclose(file_);
}

Status LineReader::Open(const std::string& path) {
  path_ = path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return NotFound(path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return InvalidArgument(path + ": is a directory, not a data file");
  file_ = gzopen(path.c_str(), "rb");
  if (!file_) return NotFound(path + ": cannot open: " + std::strerror(errno));
  gzbuffer(file_, 1 << 18);
  file_bytes_ = S_ISREG(st.st_mode) ? static_cast<std::uint64_t>(st.st_size) : 0;
  return Status::Ok();
}

std::size_t LineReader::RoomFor(std::size_t size) const {
  constexpr std::size_t kFirst = 4096;  // enough read to go by
  const double read = FractionRead();
  if (size < kFirst || read <= 0 || read >= 1) return std::max(kFirst, 2 * size);
  const double expected = static_cast<double>(size) / read * 1.05;
  return std::max(size + size / 8 + kFirst, static_cast<std::size_t>(expected));
}

double LineReader::FractionRead() const {
  if (!file_ || file_bytes_ == 0) return 0;
  const double taken =
      gzdirect(file_) ? static_cast<double>(bytes_read_) : static_cast<double>(gzoffset(file_));
  return std::clamp(taken / static_cast<double>(file_bytes_), 0.0, 1.0);
}

bool LineReader::Fill() {
  if (eof_ || !status_.ok()) return false;
  buffer_.erase(0, pos_);
  pos_ = 0;
  const std::size_t old = buffer_.size();
  constexpr std::size_t kChunk = 1 << 18;
  buffer_.resize(old + kChunk);
  const int n = gzread(file_, buffer_.data() + old, kChunk);
  if (n < 0) {
    int err = 0;
    const char* msg = gzerror(file_, &err);
    status_ = DataLoss(path_ + ":" + std::to_string(line_number_ + 1) +
                       ": read error: " + (msg ? msg : "unknown"));
    buffer_.resize(old);
    return false;
  }
  buffer_.resize(old + n);
  if (n == 0) {
    int err = 0;
    gzerror(file_, &err);
    if (err != Z_OK && err != Z_STREAM_END) {
      status_ = DataLoss(path_ + ": truncated or corrupt gzip data");
      return false;
    }
    eof_ = true;
  }
  return n > 0;
}

bool LineReader::TooLong() {
  status_ = InvalidArgument(path_ + ":" + std::to_string(line_number_ + 1) +
                            ": a line longer than " + std::to_string(max_line_bytes_) +
                            " bytes (not a text file, or no newlines? --max-line-bytes sets the "
                            "limit)");
  return false;
}

bool LineReader::Next(std::string_view& line) {
  if (!file_) return false;
  // Bytes after pos_ already searched for a newline: a long line is scanned once, not once per
  // chunk read.
  std::size_t scanned = 0;
  for (;;) {
    const std::size_t nl = buffer_.find('\n', pos_ + scanned);
    if (nl != std::string::npos) {
      line = std::string_view(buffer_).substr(pos_, nl - pos_);
      bytes_read_ += nl + 1 - pos_;
      pos_ = nl + 1;
      break;
    }
    if (buffer_.size() - pos_ > max_line_bytes_) return TooLong();
    scanned = buffer_.size() - pos_;
    if (!Fill()) {
      if (!status_.ok() || pos_ >= buffer_.size()) return false;
      line = std::string_view(buffer_).substr(pos_);  // last line without newline
      bytes_read_ += buffer_.size() - pos_;
      pos_ = buffer_.size();
      break;
    }
  }
  if (line.size() > max_line_bytes_) return TooLong();
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line_number_ == 0 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  ++line_number_;
  return true;
}

}  // namespace tessera
