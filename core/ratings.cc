#include "tessera/core/ratings.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "tessera/core/dataset.h"
#include "tessera/core/line_reader.h"
#include "tessera/core/memory_limit.h"

namespace tessera {

std::optional<std::uint32_t> IdMap::Number(std::string_view id) {
  if (id.empty() || id.size() > 7 || (id[0] == '0' && id.size() > 1)) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : id) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v >= kDirect) return std::nullopt;
  return v;
}

std::uint32_t IdMap::Add(std::string_view id) {
  const auto next = static_cast<std::uint32_t>(names_.size());
  if (const auto v = Number(id)) {
    if (*v >= direct_.size()) {
      direct_.resize(
          std::min<std::size_t>(kDirect, std::max<std::size_t>(*v + 1, 2 * direct_.size())), 0);
    }
    std::uint32_t& slot = direct_[*v];
    if (slot == 0) {
      slot = next + 1;
      names_.emplace_back(id);
    }
    return slot - 1;
  }
  if (auto it = index_.find(id); it != index_.end()) return it->second;
  index_.emplace(std::string(id), next);
  names_.emplace_back(id);
  return next;
}

std::optional<std::uint32_t> IdMap::Find(std::string_view id) const {
  if (const auto v = Number(id)) {
    if (*v < direct_.size() && direct_[*v] != 0) return direct_[*v] - 1;
    return std::nullopt;
  }
  auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

namespace {

// Tokens separated by tabs, commas or spaces (empty tokens between separators are skipped).
std::size_t Split(std::string_view line, std::string_view* out, std::size_t max) {
  std::size_t n = 0, i = 0;
  auto sep = [](char c) { return c == ' ' || c == '\t' || c == ','; };
  while (i < line.size()) {
    while (i < line.size() && sep(line[i])) ++i;
    std::size_t j = i;
    while (j < line.size() && !sep(line[j])) ++j;
    if (j > i) {
      if (n == max) return max + 1;
      out[n++] = line.substr(i, j - i);
    }
    i = j;
  }
  return n;
}

std::string Quote(std::string_view s) {
  return "'" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...'" : "'");
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool ParseCount(std::string_view s, std::uint64_t& v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

class Reader {
 public:
  Reader(const std::string& path, const RatingsOptions& o) : options_(o) {
    out_.source = path;
    frozen_ = o.users != nullptr && !o.add_unknown;
    out_.users = o.users ? o.users : std::make_shared<IdMap>();
    out_.items = o.items ? o.items : std::make_shared<IdMap>();
  }

  StatusOr<Ratings> Read() {
    TESSERA_RETURN_IF_ERROR(in_.Open(out_.source));
    std::string_view line;
    bool first = true;
    bool mm = false;
    std::uint64_t rows = 0, cols = 0, expected = 0;
    bool have_size = false;
    while (in_.Next(line)) {
      if (first) {
        first = false;
        mm = StartsWith(line, "%%MatrixMarket");
        if (options_.format == RatingsFormat::kMatrixMarket && !mm) {
          return InvalidArgument(in_.Where() + "not a MatrixMarket file (no %%MatrixMarket line)");
        }
        if (mm) {
          if (options_.format == RatingsFormat::kTriples) {
            return InvalidArgument(in_.Where() + "a MatrixMarket file read as triples");
          }
          TESSERA_RETURN_IF_ERROR(CheckBanner(line));
          continue;
        }
      }
      std::string_view f[5];
      if (mm) {
        if (line.empty() || line[0] == '%') continue;
        const std::size_t n = Split(line, f, 4);
        if (!have_size) {
          if (n != 3 || !ParseCount(f[0], rows) || !ParseCount(f[1], cols) ||
              !ParseCount(f[2], expected)) {
            return InvalidArgument(in_.Where() + "expected the size line 'rows cols entries'");
          }
          have_size = true;
          continue;
        }
        if (n != 3) {
          return InvalidArgument(in_.Where() + "expected 'row column value', got " +
                                 std::to_string(n > 4 ? 4 : n) + (n > 4 ? "+" : "") + " fields");
        }
        std::uint64_t i = 0, j = 0;
        if (!ParseCount(f[0], i) || i < 1 || i > rows || !ParseCount(f[1], j) || j < 1 ||
            j > cols) {
          return InvalidArgument(in_.Where() + "index " + Quote(line) + " outside 1.." +
                                 std::to_string(rows) + " x 1.." + std::to_string(cols));
        }
        TESSERA_RETURN_IF_ERROR(AddEntry(f[0], f[1], f[2]));
        continue;
      }
      const std::string_view t = line;
      if (t.find_first_not_of(" \t\r") == std::string_view::npos || t[0] == '#') continue;
      const std::size_t n = Split(line, f, 4);
      if (n < 3 || n > 4) {
        return InvalidArgument(in_.Where() + "expected 'user item rating [timestamp]', got " +
                               (n > 4 ? std::string("more than 4") : std::to_string(n)) +
                               " fields");
      }
      double v = 0;
      if (in_.line_number() == 1 && !ParseDouble(f[2], v)) continue;  // a header line
      TESSERA_RETURN_IF_ERROR(AddEntry(f[0], f[1], f[2]));
    }
    TESSERA_RETURN_IF_ERROR(in_.status());
    if (mm && !have_size) return InvalidArgument(out_.source + ": no size line");
    if (mm && lines_ != expected) {
      return InvalidArgument(out_.source + ": the size line promises " + std::to_string(expected) +
                             " entries, the file has " + std::to_string(lines_));
    }
    RatingsCensus& c = out_.census;
    c.per_user.resize(out_.users->size());
    c.per_item.resize(out_.items->size());
    if (c.count == 0) {
      return InvalidArgument(out_.source + ": no ratings" +
                             (out_.skipped_unknown
                                  ? " with a user and item of the training set (" +
                                        std::to_string(out_.skipped_unknown) + " skipped)"
                                  : std::string()));
    }
    return std::move(out_);
  }

 private:
  Status CheckBanner(std::string_view line) {
    std::string_view f[6];
    const std::size_t n = Split(line, f, 5);
    if (n != 5 || f[1] != "matrix" || f[2] != "coordinate" || f[4] != "general" ||
        (f[3] != "real" && f[3] != "integer")) {
      return InvalidArgument(in_.Where() +
                             "only '%%MatrixMarket matrix coordinate real|integer "
                             "general' holds ratings, got " +
                             Quote(line));
    }
    return Status::Ok();
  }

  Status AddEntry(std::string_view user, std::string_view item, std::string_view rating) {
    ++lines_;
    Rating r;
    double value = 0;
    if (!ParseDouble(rating, value) || !std::isfinite(static_cast<float>(value))) {
      return InvalidArgument(in_.Where() + "rating " + Quote(rating) +
                             " is not a finite single-precision number");
    }
    r.value = static_cast<float>(value);
    if (options_.drop && options_.drop(lines_ - 1)) return Status::Ok();
    if (frozen_) {
      auto u = out_.users->Find(user);
      auto i = out_.items->Find(item);
      if (!u || !i) {
        ++out_.skipped_unknown;
        return Status::Ok();
      }
      r.user = *u;
      r.item = *i;
    } else {
      r.user = out_.users->Add(user);
      r.item = out_.items->Add(item);
    }
    RatingsCensus& c = out_.census;
    ++c.count;
    c.sum += r.value;
    c.sum_squares += static_cast<double>(r.value) * r.value;
    if (r.user >= c.per_user.size()) c.per_user.resize(out_.users->size());
    if (r.item >= c.per_item.size()) c.per_item.resize(out_.items->size());
    ++c.per_user[r.user];
    ++c.per_item[r.item];
    if (!options_.keep || options_.keep(r.user, r.item)) {
      if (out_.entries.size() == out_.entries.capacity()) {
        out_.entries.reserve(in_.RoomFor(out_.entries.size()));
        PreferHugePages(out_.entries.data(), out_.entries.capacity() * sizeof(Rating));
      }
      out_.entries.push_back(r);
    }
    return Status::Ok();
  }

  const RatingsOptions& options_;
  LineReader in_;
  Ratings out_;
  bool frozen_ = false;
  std::uint64_t lines_ = 0;
};

}  // namespace

RatingsCensus WholeCensus(const Ratings& ratings) {
  if (ratings.census.count > 0) return ratings.census;
  RatingsCensus c;
  c.per_user.resize(ratings.num_users());
  c.per_item.resize(ratings.num_items());
  for (const Rating& r : ratings.entries) {
    ++c.count;
    c.sum += r.value;
    c.sum_squares += static_cast<double>(r.value) * r.value;
    if (r.user < c.per_user.size()) ++c.per_user[r.user];
    if (r.item < c.per_item.size()) ++c.per_item[r.item];
  }
  return c;
}

StatusOr<Ratings> ReadRatings(const std::string& path, const RatingsOptions& options) {
  if ((options.users == nullptr) != (options.items == nullptr)) {
    return InvalidArgument("ReadRatings: give both id maps or neither");
  }
  Reader reader(path, options);
  return reader.Read();
}

}  // namespace tessera
