// Reads a text file line by line, gunzipping transparently (zlib also reads plain files).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/core/status.h"

namespace tessera {

class LineReader {
 public:
  LineReader() = default;
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  ~LineReader();

  Status Open(const std::string& path);
  // Next line without its newline (and without a trailing '\r', and for the first line without
  // a UTF-8 byte-order mark, as spreadsheet programs write it). False at end of file or on
  // error; then status() tells which. A line longer than max_line_bytes() is an error (a file
  // without newlines, or /dev/zero, is not read forever).
  bool Next(std::string_view& line);
  static constexpr std::size_t kDefaultMaxLineBytes = std::size_t{64} << 20;
  // The limit new readers start with, process-wide (the command line's --max-line-bytes).
  static std::size_t DefaultMaxLineBytes();
  static void SetDefaultMaxLineBytes(std::size_t n);
  void set_max_line_bytes(std::size_t n) { max_line_bytes_ = n; }
  std::size_t max_line_bytes() const { return max_line_bytes_; }
  const Status& status() const { return status_; }
  int line_number() const { return line_number_; }
  // Bytes of the (decompressed) text read so far, newlines included.
  std::uint64_t bytes_read() const { return bytes_read_; }
  // The share of the file read so far, in (0, 1], to size what a reader keeps by the rest of
  // the file: of a plain file exact, of a gzip file from the compressed bytes taken in (ahead by
  // up to the read buffer); 0 where the size is not known (a pipe) or nothing is read yet.
  double FractionRead() const;
  // Room for the elements the rest of the file promises, for an array `size` long filled from
  // the lines read so far: size / FractionRead() with 5% to spare (and at least an eighth more),
  // or twice size where the share is not known or size is small. Readers grow their arrays to
  // this instead of doubling them: the copy a growth makes (old and new array at once) would
  // otherwise set the peak memory of a whole run, and room not yet written takes no memory.
  std::size_t RoomFor(std::size_t size) const;
  const std::string& path() const { return path_; }
  // "path:line: " for error messages about the current line.
  std::string Where() const { return path_ + ":" + std::to_string(line_number_) + ": "; }

 private:
  bool Fill();
  bool TooLong();  // sets the error; false

  std::string path_;
  gzFile file_ = nullptr;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool eof_ = false;
  int line_number_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t file_bytes_ = 0;  // 0: not a regular file
  std::size_t max_line_bytes_ = DefaultMaxLineBytes();
  Status status_;
};

}  // namespace tessera
