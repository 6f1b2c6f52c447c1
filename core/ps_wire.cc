#include "tessera/core/ps_wire.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
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
          "significant:θ)");
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
  return s.empty() ? "none" : s;
}

void PackValues(const Communication& c, Eigen::VectorXd& values, PackedValues& p) {
  p = PackedValues();
  const auto n = static_cast<std::size_t>(values.size());
  if (c.float_values) {
    p.f32 = true;
    for (double& v : values) v = static_cast<double>(static_cast<float>(v));
  }
  if (!c.sparse_values || n == 0) return;
  // Sparse pays when 8 + nonzeros * (width + 4) < n * width: stop counting once it cannot.
  const std::size_t width = p.f32 ? 4 : 8;
  const std::size_t most = n * width <= 8 ? 0 : (n * width - 9) / (width + 4);
  std::size_t nonzero = 0;
  for (Eigen::Index i = 0; i < values.size() && nonzero <= most; ++i) nonzero += values[i] != 0;
  if (nonzero > most) return;
  p.sparse = true;
  p.size = n;
  p.nonzero.reserve(nonzero);
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (values[static_cast<Eigen::Index>(i)] == 0) continue;
    p.nonzero.push_back(static_cast<std::uint32_t>(i));
    values[static_cast<Eigen::Index>(out++)] = values[static_cast<Eigen::Index>(i)];
  }
  values.conservativeResize(static_cast<Eigen::Index>(out));
}

Status UnpackValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected) {
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
  Eigen::VectorXd dense = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(expected));
  std::uint64_t next = 0;  // positions strictly increase
  for (std::size_t i = 0; i < p.nonzero.size(); ++i) {
    const std::uint32_t at = p.nonzero[i];
    if (at < next || at >= expected) {
      return InvalidArgument("sparse value position " + std::to_string(at) +
                             " is out of order or beyond " + std::to_string(expected));
    }
    next = std::uint64_t{at} + 1;
    dense[at] = values[static_cast<Eigen::Index>(i)];
  }
  values = std::move(dense);
  p = PackedValues();
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

}  // namespace

void KeyListCache::Touch(Entry& e) { recent_.splice(recent_.begin(), recent_, e.recent); }

void KeyListCache::Remember(std::uint64_t hash, const std::vector<Key>& keys) {
  if (keys.size() > capacity_) return;
  if (auto it = lists_.find(hash); it != lists_.end()) {
    held_ -= it->second.keys.size();
    recent_.erase(it->second.recent);
    lists_.erase(it);
  }
  while (held_ + keys.size() > capacity_) {
    const auto oldest = lists_.find(recent_.back());
    held_ -= oldest->second.keys.size();
    lists_.erase(oldest);
    recent_.pop_back();
  }
  recent_.push_front(hash);
  lists_.emplace(hash, Entry{keys, recent_.begin()});
  held_ += keys.size();
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
  if (auto it = lists_.find(hash); it != lists_.end() && it->second.keys == at.keys) {
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
  at.keys = it->second.keys;
  at.key_list = 0;
  return Status::Ok();
}

}  // namespace tessera
