#include "tessera/core/ps_wire.h"

#include <lz4.h>
#include <zstd.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

namespace tessera {

StatusOr<Communication> Communication::Parse(std::string_view text) {
  Communication c;
  c.sparse_values = c.key_lists = c.float_values = false;
  if (text == "none") return c;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    if (item == "sparse") {
      c.sparse_values = true;
    } else if (item == "keys") {
      c.key_lists = true;
    } else if (item.starts_with("keys:")) {
      const std::string_view n = item.substr(5);
      std::uint64_t keys = 0;
      const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), keys);
      if (ec != std::errc() || end != n.data() + n.size() || keys < KeyListCache::kMinKeys ||
          keys > (std::uint64_t{1} << 32)) {
        return InvalidArgument("communication '" + std::string(text) + "': '" + std::string(item) +
                               "' needs a key count from " +
                               std::to_string(KeyListCache::kMinKeys) + " to 2^32");
      }
      c.key_lists = true;
      c.key_cache_keys = keys;
    } else if (item == "f32") {
      c.float_values = true;
    } else if (item == "lz4" || item == "zstd") {
      const Compression codec = item == "lz4" ? Compression::kLz4 : Compression::kZstd;
      if (c.compression != Compression::kNone && c.compression != codec) {
        return InvalidArgument("communication '" + std::string(text) +
                               "': lz4 and zstd cannot both compress the values");
      }
      c.compression = codec;
    } else if (item.starts_with("significant:")) {
      const std::string v(item.substr(12));
      char* end = nullptr;
      const double theta = v.empty() ? 0 : std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !(theta > 0) || !(theta <= 1e6)) {
        return InvalidArgument("communication '" + std::string(text) + "': '" + std::string(item) +
                               "' needs a threshold θ > 0 (a fraction of the key's value)");
      }
      c.significant = theta;
    } else {
      return InvalidArgument(
          "communication '" + std::string(text) + "': unknown feature '" + std::string(item) +
          "' (want 'none' or a comma-separated list of sparse, keys or keys:N, f32, "
          "significant:θ, lz4 or zstd)");
    }
    start = comma + 1;
  }
  return c;
}

std::string Communication::ToString() const {
  std::string s;
  for (const auto& [on, name] : {std::pair{sparse_values, "sparse"}, std::pair{key_lists, "keys"},
                                 std::pair{float_values, "f32"}}) {
    if (!on) continue;
    if (!s.empty()) s += ',';
    s += name;
    if (name == std::string_view("keys") && key_cache_keys != kDefaultKeyCacheKeys) {
      s += ':' + std::to_string(key_cache_keys);
    }
  }
  if (significant > 0) {
    std::ostringstream theta;
    theta << significant;
    s += (s.empty() ? "" : ",") + std::string("significant:") + theta.str();
  }
  if (compression != Compression::kNone) {
    s += (s.empty() ? "" : ",") + std::string(compression == Compression::kLz4 ? "lz4" : "zstd");
  }
  return s.empty() ? "none" : s;
}

namespace {

// Below this many bytes of values and positions a message travels uncompressed.
constexpr std::size_t kMinCompressBytes = 512;

// The k-th bytes of `n` little-endian words of `Width` bytes, plane after plane: the high bytes
// of similar numbers (exponents, small position differences) line up for the compressor.
template <std::size_t Width, typename Word>
void Shuffle(const Word* in, std::size_t n, char* out) {
  static_assert(sizeof(Word) == Width);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t w = 0;
    std::memcpy(&w, in + i, Width);
    for (std::size_t b = 0; b < Width; ++b) out[b * n + i] = static_cast<char>(w >> (8 * b));
  }
}
template <std::size_t Width, typename Word>
void Unshuffle(const char* in, std::size_t n, Word* out) {
  static_assert(sizeof(Word) == Width);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t w = 0;
    for (std::size_t b = 0; b < Width; ++b) {
      w |= std::uint64_t{static_cast<unsigned char>(in[b * n + i])} << (8 * b);
    }
    std::memcpy(out + i, &w, Width);
  }
}

// Bytes of `n` packed values (4 or 8 each) and, when sparse, their positions (4 each).
std::size_t ShuffledBytes(std::size_t n, const PackedValues& p) {
  return n * (p.f32 ? 4 : 8) + (p.sparse ? 4 * n : 0);
}

// `plain` compressed with `codec`; empty when it does not shrink.
std::string Compress(Compression codec, const std::string& plain) {
  std::string out;
  if (codec == Compression::kLz4) {
    out.resize(static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(plain.size()))));
    const int n = LZ4_compress_default(plain.data(), out.data(), static_cast<int>(plain.size()),
                                       static_cast<int>(out.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  } else {
    thread_local std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(),
                                                                             ZSTD_freeCCtx);
    out.resize(ZSTD_compressBound(plain.size()));
    const std::size_t n =
        ZSTD_compressCCtx(ctx.get(), out.data(), out.size(), plain.data(), plain.size(), 1);
    out.resize(ZSTD_isError(n) ? 0 : n);
  }
  if (out.size() >= plain.size()) out.clear();
  return out;
}

// `p.compressed` decompressed into exactly `raw` bytes, or why not.
Status Decompress(const PackedValues& p, std::string& raw) {
  std::size_t got = 0;
  if (p.codec == static_cast<std::uint8_t>(Compression::kLz4)) {
    if (p.compressed.size() > static_cast<std::size_t>(INT32_MAX) ||
        raw.size() > static_cast<std::size_t>(INT32_MAX)) {
      return InvalidArgument("lz4-compressed values over 2 GiB");
    }
    const int n =
        LZ4_decompress_safe(p.compressed.data(), raw.data(), static_cast<int>(p.compressed.size()),
                            static_cast<int>(raw.size()));
    if (n < 0) return InvalidArgument("lz4-compressed values that do not decompress");
    got = static_cast<std::size_t>(n);
  } else if (p.codec == static_cast<std::uint8_t>(Compression::kZstd)) {
    thread_local std::unique_ptr<ZSTD_DCtx, std::size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(),
                                                                             ZSTD_freeDCtx);
    const std::size_t n = ZSTD_decompressDCtx(ctx.get(), raw.data(), raw.size(),
                                              p.compressed.data(), p.compressed.size());
    if (ZSTD_isError(n)) {
      return InvalidArgument(std::string("zstd-compressed values that do not decompress: ") +
                             ZSTD_getErrorName(n));
    }
    got = n;
  } else {
    return InvalidArgument("values compressed with unknown codec " + std::to_string(p.codec));
  }
  if (got != raw.size()) {
    return InvalidArgument("compressed values of " + std::to_string(got) + " bytes where " +
                           std::to_string(raw.size()) + " were expected");
  }
  return Status::Ok();
}

// Sender: the packed values and positions into `p.compressed`, when that is smaller.
void CompressValues(Compression codec, Eigen::VectorXd& values, PackedValues& p) {
  const auto n = static_cast<std::size_t>(values.size());
  const std::size_t bytes = ShuffledBytes(n, p);
  if (bytes < kMinCompressBytes) return;
  std::string plain(bytes, '\0');
  char* out = plain.data();
  if (p.sparse) {
    std::vector<std::uint32_t> step(n);
    std::uint32_t last = 0;
    for (std::size_t i = 0; i < n; ++i) {
      step[i] = p.nonzero[i] - last;
      last = p.nonzero[i];
    }
    Shuffle<4>(step.data(), n, out);
    out += 4 * n;
  }
  if (p.f32) {
    const std::vector<float> f(values.data(), values.data() + n);
    Shuffle<4>(f.data(), n, out);
  } else {
    Shuffle<8>(values.data(), n, out);
  }
  std::string packed = Compress(codec, plain);
  if (packed.empty()) return;
  p.codec = static_cast<std::uint8_t>(codec);
  p.count = n;
  p.compressed = std::move(packed);
  values.resize(0);
  std::vector<std::uint32_t>().swap(p.nonzero);
}

// Receiver: `p.compressed` back to values and positions, at most `expected` of them.
Status DecompressValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected) {
  if (values.size() != 0 || !p.nonzero.empty()) {
    return InvalidArgument("compressed values beside uncompressed ones");
  }
  if (p.count > expected) {
    return InvalidArgument(std::to_string(p.count) + " compressed values where at most " +
                           std::to_string(expected) + " were expected");
  }
  const auto n = static_cast<std::size_t>(p.count);
  std::string raw(ShuffledBytes(n, p), '\0');
  TESSERA_RETURN_IF_ERROR(Decompress(p, raw));
  const char* in = raw.data();
  if (p.sparse) {
    p.nonzero.resize(n);
    Unshuffle<4>(in, n, p.nonzero.data());
    std::uint64_t at = 0;
    for (std::size_t i = 0; i < n; ++i) {
      at += p.nonzero[i];
      if (at > UINT32_MAX) return InvalidArgument("compressed value positions beyond 2^32");
      p.nonzero[i] = static_cast<std::uint32_t>(at);
    }
    in += 4 * n;
  }
  values.resize(static_cast<Eigen::Index>(n));
  if (p.f32) {
    std::vector<float> f(n);
    Unshuffle<4>(in, n, f.data());
    for (std::size_t i = 0; i < n; ++i) values[static_cast<Eigen::Index>(i)] = f[i];
  } else {
    Unshuffle<8>(in, n, values.data());
  }
  p.codec = 0;
  p.count = 0;
  std::string().swap(p.compressed);
  return Status::Ok();
}

// `values` reduced to their nonzeros, whose positions (of values.size(), below 2^32) go to `p`,
// marked sparse.
void KeepNonzeros(Eigen::VectorXd& values, PackedValues& p, std::size_t reserve = 0) {
  const auto n = static_cast<std::size_t>(values.size());
  p.sparse = true;
  p.size = n;
  p.nonzero.reserve(reserve);
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = values[static_cast<Eigen::Index>(i)];
    if (v == 0) continue;
    p.nonzero.push_back(static_cast<std::uint32_t>(i));
    values[static_cast<Eigen::Index>(out++)] = v;
  }
  values.conservativeResize(static_cast<Eigen::Index>(out));
}

// Sender: the nonzero values and their positions, when that is smaller.
void PackSparse(Eigen::VectorXd& values, PackedValues& p) {
  const auto n = static_cast<std::size_t>(values.size());
  // Sparse pays when 8 + nonzeros * (width + 4) < n * width: stop counting once it cannot.
  const std::size_t width = p.f32 ? 4 : 8;
  const std::size_t most = n * width <= 8 ? 0 : (n * width - 9) / (width + 4);
  // Counted in pieces whose loop vectorizes (a comparison with 0, true for -0 as well), checked
  // between pieces.
  constexpr std::size_t kPiece = 1024;
  std::size_t nonzero = 0;
  const double* v = values.data();
  for (std::size_t i = 0; i < n && nonzero <= most; i += kPiece) {
    const std::size_t end = std::min(n, i + kPiece);
    double piece = 0;  // a double sum: a compare, a mask and an add per value in SSE2
#if defined(__GNUC__) && !defined(__clang__)  // (clang's sanitizer builds cannot vectorize it)
#pragma omp simd reduction(+ : piece)
#endif
    for (std::size_t j = i; j < end; ++j) piece += v[j] != 0 ? 1.0 : 0.0;
    nonzero += static_cast<std::size_t>(piece);
  }
  if (nonzero > most) return;
  KeepNonzeros(values, p, nonzero);
}

// Sender: `values` rounded to floats when `c` says so.
void RoundToFloats(const Communication& c, Eigen::VectorXd& values, PackedValues& p) {
  if (!c.float_values) return;
  p.f32 = true;
  for (double& v : values) v = static_cast<double>(static_cast<float>(v));
}

}  // namespace

void PackValues(const Communication& c, Eigen::VectorXd& values, PackedValues& p) {
  p = PackedValues();
  RoundToFloats(c, values, p);
  if (c.sparse_values && values.size() > 0) PackSparse(values, p);
  if (c.compression != Compression::kNone) CompressValues(c.compression, values, p);
}

namespace {

// Receiver: decompressed, and when sparse, positions that fit `expected` values.
Status CheckPacked(Eigen::VectorXd& values, PackedValues& p, std::size_t expected) {
  if (p.codec != 0) TESSERA_RETURN_IF_ERROR(DecompressValues(values, p, expected));
  if (!p.sparse) {
    if (!p.nonzero.empty()) return InvalidArgument("positions of values that are not sparse");
    return Status::Ok();
  }
  if (p.size != expected) {
    return InvalidArgument("sparse values of " + std::to_string(p.size) + " where " +
                           std::to_string(expected) + " were expected");
  }
  if (p.nonzero.size() != static_cast<std::size_t>(values.size())) {
    return InvalidArgument(std::to_string(values.size()) + " sparse values at " +
                           std::to_string(p.nonzero.size()) + " positions");
  }
  std::uint64_t next = 0;  // positions strictly increase
  for (const std::uint32_t at : p.nonzero) {
    if (at < next || at >= expected) {
      return InvalidArgument("sparse value position " + std::to_string(at) +
                             " is out of order or beyond " + std::to_string(expected));
    }
    next = std::uint64_t{at} + 1;
  }
  return Status::Ok();
}

}  // namespace

Status UnpackValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected) {
  TESSERA_RETURN_IF_ERROR(CheckPacked(values, p, expected));
  if (!p.sparse) return Status::Ok();
  Eigen::VectorXd dense = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(expected));
  for (std::size_t i = 0; i < p.nonzero.size(); ++i) {
    dense[p.nonzero[i]] = values[static_cast<Eigen::Index>(i)];
  }
  values = std::move(dense);
  p = PackedValues();
  return Status::Ok();
}

void KeysAsRange(TableKeys& at) {
  const std::vector<Key>& k = at.keys;
  const std::size_t n = k.size();
  if (n < 3 || k.back() < k.front() || k.back() - k.front() != n - 1) return;
  bool run = true;
  for (std::size_t i = 1; i < n; ++i) run &= k[i] == k[i - 1] + 1;  // vectorizes
  if (!run) return;
  at.range = {k.front(), k.back() + 1};
  std::vector<Key>().swap(at.keys);
}

void PackSparseValues(const Communication& c, Eigen::VectorXd& values, PackedValues& p) {
  RoundToFloats(c, values, p);
  if (c.compression != Compression::kNone) CompressValues(c.compression, values, p);
}

Status UnpackSparseValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected) {
  TESSERA_RETURN_IF_ERROR(CheckPacked(values, p, expected));
  if (p.sparse) return Status::Ok();
  if (static_cast<std::size_t>(values.size()) != expected) {
    return InvalidArgument(std::to_string(values.size()) + " values where " +
                           std::to_string(expected) + " were expected");
  }
  if (expected > UINT32_MAX) return InvalidArgument("more than 2^32 values in one message");
  KeepNonzeros(values, p);
  return Status::Ok();
}

namespace {

// 64-bit hash of a key list (never 0, which means "no list").
std::uint64_t Mix(std::uint64_t h, Key k) {
  h ^= k + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

// A list's identity. Eight independent lanes of one multiply each per key, so that neighbouring
// keys' work overlaps, and a full mix of the lanes at the end. The caches stay equal on both
// sides whatever the hash: a sender uses a list's hash only when the list it holds under that
// hash is the same list, so a collision costs a miss, never a wrong list.
std::uint64_t HashKeys(const std::vector<Key>& keys) {
  constexpr int kLanes = 8;
  std::uint64_t h[kLanes];
  for (int l = 0; l < kLanes; ++l) h[l] = 0x9e3779b97f4a7c15ULL * (l + 1);
  const std::size_t n = keys.size(), whole = n - n % kLanes;
  for (std::size_t i = 0; i < whole; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) h[l] = (h[l] ^ keys[i + l]) * 0xff51afd7ed558ccdULL;
  }
  std::uint64_t out = Mix(0x9e3779b97f4a7c15ULL, n);
  for (std::size_t i = whole; i < n; ++i) out = Mix(out, keys[i]);
  for (int l = 0; l < kLanes; ++l) out = Mix(out, h[l] ^ (h[l] >> 29));
  return out == 0 ? 1 : out;
}

// A key list as a key-list cache holds it: zigzag-coded differences between neighbouring keys,
// seven bits a byte.
std::vector<std::uint8_t> CodeKeys(const std::vector<Key>& keys) {
  std::vector<std::uint8_t> coded;
  coded.reserve(keys.size() + keys.size() / 4);
  Key prev = 0;
  for (const Key k : keys) {
    const auto d = static_cast<std::int64_t>(k - prev);
    std::uint64_t z = (static_cast<std::uint64_t>(d) << 1) ^ static_cast<std::uint64_t>(d >> 63);
    for (; z >= 0x80; z >>= 7) coded.push_back(static_cast<std::uint8_t>(z | 0x80));
    coded.push_back(static_cast<std::uint8_t>(z));
    prev = k;
  }
  coded.shrink_to_fit();
  return coded;
}

// Calls f(key) for each key of a held list, in order, while f returns true.
template <typename F>
void ForEachHeldKey(const std::vector<std::uint8_t>& coded, F&& f) {
  Key prev = 0;
  for (std::size_t p = 0; p < coded.size();) {
    std::uint64_t z = 0;
    for (int shift = 0;; shift += 7) {
      const std::uint8_t b = coded[p++];
      z |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    prev += static_cast<Key>((z >> 1) ^ (~(z & 1) + 1));
    if (!f(prev)) return;
  }
}

}  // namespace

void KeyListCache::Touch(Entry& e) { recent_.splice(recent_.begin(), recent_, e.recent); }

void KeyListCache::Remember(std::uint64_t hash, const std::vector<Key>& keys) {
  if (keys.size() > capacity_) return;
  auto forget = [this](std::unordered_map<std::uint64_t, Entry>::iterator it) {
    held_ -= it->second.count;
    bytes_ -= it->second.coded.size();
    recent_.erase(it->second.recent);
    lists_.erase(it);
  };
  if (auto it = lists_.find(hash); it != lists_.end()) forget(it);
  while (held_ + keys.size() > capacity_) forget(lists_.find(recent_.back()));
  recent_.push_front(hash);
  Entry e{keys.size(), CodeKeys(keys), recent_.begin()};
  held_ += e.count;
  bytes_ += e.coded.size();
  lists_.emplace(hash, std::move(e));
}

bool KeyListCache::Resting(std::size_t keys) {
  if (resting_ == 0) return false;
  resting_ -= std::min<std::uint64_t>(resting_, keys);
  return true;
}

void KeyListCache::Missed(std::uint64_t hash, const std::vector<Key>& keys) {
  Remember(hash, keys);
  since_hit_ += keys.size();
  if (since_hit_ > kMissesBeforeRest * capacity_) {  // lists leave before they come back
    since_hit_ = 0;
    resting_ = kRestFactor * capacity_;
    ++rests_;
  }
}

void KeyListCache::Compress(TableKeys& at) {
  if (at.keys.size() < kMinKeys || Resting(at.keys.size())) return;
  const std::uint64_t hash = HashKeys(at.keys);
  auto held = [&at](const Entry& e) {
    if (e.count != at.keys.size()) return false;
    std::size_t same = 0;
    ForEachHeldKey(e.coded, [&](Key k) { return at.keys[same] == k && ++same; });
    return same == e.count;
  };
  if (auto it = lists_.find(hash); it != lists_.end() && held(it->second)) {
    Touch(it->second);
    since_hit_ = 0;
    at.key_list = hash;
    at.keys.clear();
    return;
  }
  Missed(hash, at.keys);
}

Status KeyListCache::Expand(TableKeys& at) {
  if (at.key_list == 0) {
    if (at.keys.size() >= kMinKeys && !Resting(at.keys.size())) {
      Missed(HashKeys(at.keys), at.keys);
    }
    return Status::Ok();
  }
  if (!at.keys.empty() || at.range.size() != 0) {
    return InvalidArgument("a key-list hash together with keys or a range");
  }
  const auto it = lists_.find(at.key_list);
  if (it == lists_.end()) {
    return InvalidArgument("key list " + std::to_string(at.key_list) +
                           " was never sent or has been forgotten");
  }
  Touch(it->second);
  since_hit_ = 0;
  at.keys.clear();
  at.keys.reserve(it->second.count);
  ForEachHeldKey(it->second.coded, [&at](Key k) { return at.keys.push_back(k), true; });
  at.key_list = 0;
  return Status::Ok();
}

}  // namespace tessera
