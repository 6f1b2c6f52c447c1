// Reads a text file line by line, gunzipping transparently (zlib also reads plain files).
#pragma once

#include <zlib.h>

#include <string>
#include <string_view>

#include "core/status.h"

namespace tessera {

class LineReader {
 public:
  LineReader() = default;
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  ~LineReader();

  Status Open(const std::string& path);
  // Next line without its newline (and without a trailing '\r'). False at end of file or on
  // error; then status() tells which.
  bool Next(std::string_view& line);
  const Status& status() const { return status_; }
  int line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  // "path:line: " for error messages about the current line.
  std::string Where() const { return path_ + ":" + std::to_string(line_number_) + ": "; }

 private:
  bool Fill();

  std::string path_;
  gzFile file_ = nullptr;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool eof_ = false;
  int line_number_ = 0;
  Status status_;
};

}  // namespace tessera
