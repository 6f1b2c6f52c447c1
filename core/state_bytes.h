// The bytes of a worker's or a carried block's state (core/model_parallel.h): how an app writes
// the state it moves between workers, gathers at the coordinator or checkpoints, and reads it
// back. Arrays travel as a 64-bit element count and their raw little-endian bytes; a reader
// checks every count against what is left, so truncated or foreign bytes are an error, never an
// out-of-bounds read or an allocation the input did not pay for.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

class StateWriter {
 public:
  explicit StateWriter(std::string& out) : out_(out) {}
  template <class T>
  void Put(std::span<const T> values) {
    static_assert(std::is_trivially_copyable_v<T>);
    PutU64(values.size());
    out_.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  }
  template <class T>
  void Put(const std::vector<T>& values) {
    Put(std::span<const T>(values));
  }
  void PutU64(std::uint64_t x) { out_.append(reinterpret_cast<const char*>(&x), sizeof x); }
  // Room for arrays of these many values of T in all (with their lengths), so that a Save of
  // large arrays writes into one allocation instead of growing (and copying) it per array.
  template <class T>
  void Reserve(std::size_t arrays, std::size_t values) {
    out_.reserve(out_.size() + arrays * sizeof(std::uint64_t) + values * sizeof(T));
  }

 private:
  std::string& out_;
};

class StateReader {
 public:
  // `what` names the bytes in errors ("block 3 from worker 1").
  StateReader(std::string_view bytes, std::string what) : in_(bytes), what_(std::move(what)) {}

  Status GetU64(std::uint64_t& x) {
    if (in_.size() < sizeof x) return Truncated();
    std::memcpy(&x, in_.data(), sizeof x);
    in_.remove_prefix(sizeof x);
    return Status::Ok();
  }
  // An array of any length.
  template <class T>
  Status Get(std::vector<T>& out) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::uint64_t n = 0;
    TESSERA_RETURN_IF_ERROR(GetU64(n));
    if (n > in_.size() / sizeof(T)) return Truncated();
    out.resize(n);
    if (n) std::memcpy(out.data(), in_.data(), n * sizeof(T));
    in_.remove_prefix(n * sizeof(T));
    return Status::Ok();
  }
  // An array of exactly `out.size()` elements, read into `out`.
  template <class T>
  Status GetInto(std::span<T> out) {
    TESSERA_ASSIGN_OR_RETURN(std::string_view bytes, GetBytesOf<T>(out.size()));
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return Status::Ok();
  }
  // An array of exactly `count` elements, as its raw bytes (not aligned for T: copy out of
  // it), for a reader that puts the elements somewhere other than one contiguous array.
  template <class T>
  StatusOr<std::string_view> GetBytesOf(std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::uint64_t n = 0;
    TESSERA_RETURN_IF_ERROR(GetU64(n));
    if (n != count) {
      return DataLoss(what_ + ": " + std::to_string(n) + " values where " + std::to_string(count) +
                      " belong");
    }
    if (n > in_.size() / sizeof(T)) return Truncated();
    std::string_view bytes = in_.substr(0, n * sizeof(T));
    in_.remove_prefix(n * sizeof(T));
    return bytes;
  }
  bool AtEnd() const { return in_.empty(); }
  // Everything was read.
  Status Done() const {
    if (!in_.empty()) {
      return DataLoss(what_ + ": " + std::to_string(in_.size()) + " bytes left over");
    }
    return Status::Ok();
  }
  const std::string& what() const { return what_; }

 private:
  Status Truncated() const { return DataLoss(what_ + ": the state is truncated"); }
  std::string_view in_;
  std::string what_;
};

}  // namespace tessera
