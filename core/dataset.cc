#include "tessera/core/dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "tessera/core/line_reader.h"

namespace tessera {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Quote(std::string_view s) {
  constexpr std::size_t kMax = 40;
  std::string out;
  out.reserve(kMax + 5);
  out.push_back('\'');
  out.append(s.substr(0, kMax));
  out.append(s.size() > kMax ? "...'" : "'");
  return out;
}

// The trimmed fields of one delimited line, left to right (an empty line has one empty field).
class FieldCursor {
 public:
  FieldCursor(std::string_view line, char delimiter) : line_(line), delimiter_(delimiter) {}
  bool Next(std::string_view& field) {
    if (done_) return false;
    const std::size_t end = line_.find(delimiter_, start_);
    field = Trim(line_.substr(start_, end == std::string_view::npos ? line_.npos : end - start_));
    done_ = end == std::string_view::npos;
    start_ = end + 1;
    return true;
  }

 private:
  std::string_view line_;
  char delimiter_;
  std::size_t start_ = 0;
  bool done_ = false;
};

// Splits on spaces/tabs, skipping empty tokens.
template <typename F>
void ForEachToken(std::string_view s, F&& f) {
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i && !f(s.substr(i, j - i))) return;
    i = j;
  }
}

// Rows row_of(0 .. n-1) of x, column-major.
template <class RowOf>
SparseColMatrix ColumnMajorOf(const SparseRowMatrix& x, std::int64_t n, RowOf row_of) {
  const std::int64_t p = x.cols();
  SparseColMatrix out(n, p);  // compressed, its p + 1 column starts zero
  std::int64_t* start = out.outerIndexPtr();
  std::int64_t nnz = 0;
  for (std::int64_t l = 0; l < n; ++l) {
    for (SparseRowMatrix::InnerIterator it(x, row_of(l)); it; ++it) {
      ++start[it.index() + 1];
      ++nnz;
    }
  }
  for (std::int64_t j = 0; j < p; ++j) start[j + 1] += start[j];
  out.resizeNonZeros(nnz);
  std::vector<std::int64_t> next(start, start + p);
  std::int64_t* inner = out.innerIndexPtr();
  double* value = out.valuePtr();
  for (std::int64_t l = 0; l < n; ++l) {
    for (SparseRowMatrix::InnerIterator it(x, row_of(l)); it; ++it) {
      const std::int64_t at = next[static_cast<std::size_t>(it.index())]++;
      inner[at] = l;
      value[at] = it.value();
    }
  }
  return out;
}

}  // namespace

SparseColMatrix ColumnMajorRows(const SparseRowMatrix& x, std::int64_t begin, std::int64_t count) {
  return ColumnMajorOf(x, count, [begin](std::int64_t l) { return begin + l; });
}

ColumnRowRange::ColumnRowRange(std::shared_ptr<const SparseColMatrix> columns, std::int64_t begin,
                               std::int64_t count, Eigen::VectorXd* sums)
    : columns_(std::move(columns)), begin_(begin), count_(count) {
  TESSERA_CHECK(columns_->isCompressed()) << "ColumnRowRange needs a compressed matrix";
  TESSERA_CHECK(begin >= 0 && count >= 0 && begin + count <= columns_->rows())
      << "rows " << begin << "+" << count << " of " << columns_->rows();
  const std::int64_t p = columns_->cols(), end = begin + count;
  const std::int64_t* outer = columns_->outerIndexPtr();
  inner_ = columns_->innerIndexPtr();
  value_ = columns_->valuePtr();
  if (sums) sums->setZero(p);
  if (begin == 0 && count == columns_->rows()) {
    first_ = outer;
    last_ = outer + 1;
    if (sums) {
      for (std::int64_t j = 0; j < p; ++j) {
        double sum = 0;
        for (std::int64_t k = outer[j]; k < outer[j + 1]; ++k) sum += value_[k];
        (*sums)[j] = sum;
      }
    }
    return;
  }
  bounds_.resize(2 * static_cast<std::size_t>(p));
  for (std::int64_t j = 0; j < p; ++j) {
    // The first entry at or past `begin` by a binary search; the range's end by the scan that
    // sums the entries (one visit to the column).
    std::int64_t k = std::lower_bound(inner_ + outer[j], inner_ + outer[j + 1], begin) - inner_;
    bounds_[static_cast<std::size_t>(j)] = k;
    double sum = 0;
    for (; k < outer[j + 1] && inner_[k] < end; ++k) sum += value_[k];
    bounds_[static_cast<std::size_t>(p + j)] = k;
    if (sums) (*sums)[j] = sum;
  }
  first_ = bounds_.data();
  last_ = bounds_.data() + p;
}

void Dataset::BuildColumns() {
  columns = std::make_shared<const SparseColMatrix>(ColumnMajorRows(x, 0, x.rows()));
}

SparseColMatrix ColumnMajorRows(const SparseRowMatrix& x, std::span<const std::uint32_t> rows) {
  return ColumnMajorOf(x, static_cast<std::int64_t>(rows.size()), [rows](std::int64_t l) {
    return static_cast<std::int64_t>(rows[static_cast<std::size_t>(l)]);
  });
}

bool ParseDouble(std::string_view text, double& out) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  auto res = std::from_chars(text.data(), text.data() + text.size(), out);
  return res.ec == std::errc() && res.ptr == text.data() + text.size() && std::isfinite(out);
}

bool ParseCount(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  auto res = std::from_chars(text.data(), text.data() + text.size(), out);
  return res.ec == std::errc() && res.ptr == text.data() + text.size();
}

StatusOr<Dataset> ReadLibsvm(const std::string& path, const LibsvmOptions& options) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  struct Entry {
    std::int64_t row, col;
    double value;
  };
  std::vector<Entry> entries;
  std::vector<double> labels;
  std::int64_t min_index = INT64_MAX, max_index = -1;
  int zero_index_line = 0, first_data_line = 0;
  std::string_view line;
  Status error;
  while (in.Next(line)) {
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    if (first_data_line == 0) first_data_line = in.line_number();
    const std::int64_t row = static_cast<std::int64_t>(labels.size());
    bool first = true;
    std::int64_t prev = -1;
    ForEachToken(line, [&](std::string_view tok) {
      if (first) {
        first = false;
        double label;
        if (!ParseDouble(tok, label)) {
          error = InvalidArgument(in.Where() + "label " + Quote(tok) + " is not a finite number");
          return false;
        }
        labels.push_back(label);
        return true;
      }
      if (tok.rfind("qid:", 0) == 0) return true;
      const auto colon = tok.find(':');
      if (colon == std::string_view::npos) {
        error = InvalidArgument(in.Where() + "expected index:value, found " + Quote(tok));
        return false;
      }
      std::int64_t index;
      auto idx = tok.substr(0, colon);
      auto res = std::from_chars(idx.data(), idx.data() + idx.size(), index);
      if (res.ec != std::errc() || res.ptr != idx.data() + idx.size() || index < 0) {
        error = InvalidArgument(in.Where() + "feature index " + Quote(idx) +
                                " is not a non-negative integer");
        return false;
      }
      double value;
      if (!ParseDouble(tok.substr(colon + 1), value)) {
        error = InvalidArgument(in.Where() + "value " + Quote(tok.substr(colon + 1)) +
                                " of feature " + std::to_string(index) + " is not a finite number");
        return false;
      }
      if (index <= prev) {
        error =
            InvalidArgument(in.Where() + "feature index " + std::to_string(index) +
                            " is not greater than the previous one (" + std::to_string(prev) + ")");
        return false;
      }
      prev = index;
      if (index == 0 && zero_index_line == 0) zero_index_line = in.line_number();
      if (index == 0 && options.base == IndexBase::kOne) {
        error = InvalidArgument(in.Where() + "feature index 0 in a 1-based file");
        return false;
      }
      min_index = std::min(min_index, index);
      max_index = std::max(max_index, index);
      if (value != 0) entries.push_back({row, index, value});
      return true;
    });
    if (!error.ok()) return error;
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (labels.empty()) return InvalidArgument(path + ": no data rows (empty file?)");
  const bool zero_based =
      options.base == IndexBase::kZero || (options.base == IndexBase::kAuto && zero_index_line > 0);
  const std::int64_t offset = zero_based ? 0 : 1;
  std::int64_t cols = max_index < 0 ? 0 : max_index + 1 - offset;
  if (options.num_features > 0) {
    if (cols > options.num_features) {
      return InvalidArgument(path + ": feature index " + std::to_string(max_index) +
                             " is out of range for " + std::to_string(options.num_features) +
                             " features (" + (zero_based ? "0" : "1") + "-based)");
    }
    cols = options.num_features;
  }
  Dataset d;
  d.source = path;
  d.y = Eigen::Map<Eigen::VectorXd>(labels.data(), static_cast<Eigen::Index>(labels.size()));
  if (cols > kMaxFeatures) {
    return InvalidArgument(path + ": feature index " + std::to_string(max_index) +
                           " is beyond the " + std::to_string(kMaxFeatures) +
                           " features Tessera supports");
  }
  // Every model keeps a few vectors of one value per feature: a feature count far beyond what
  // the file's entries could describe (a tiny file naming feature 2e9) would ask for gigabytes
  // before anything is fitted. Allowed: 2^24 features, or 64 per entry and row.
  const auto entries_and_rows = static_cast<std::int64_t>(entries.size() + labels.size());
  if (options.num_features == 0 &&
      cols > std::max<std::int64_t>(std::int64_t{1} << 24, 64 * entries_and_rows)) {
    return InvalidArgument(path + ": feature index " + std::to_string(max_index) +
                           " in a file of " + std::to_string(entries.size()) + " nonzeros and " +
                           std::to_string(labels.size()) + " rows: a model of " +
                           std::to_string(cols) + " features would need " +
                           std::to_string(cols * 8 >> 20) +
                           " MiB per coefficient vector (Tessera allows 2^24 features, or 64 "
                           "per nonzero and row)");
  }
  // The entries come row by row, columns increasing: the compressed rows are filled in place
  // (setFromTriplets would first build a column-major copy with one slot per column, which a
  // two-line file naming feature 10^9 would make gigabytes).
  const auto rows = static_cast<std::int64_t>(labels.size());
  d.x.resize(rows, cols);
  d.x.reserve(static_cast<std::int64_t>(entries.size()));
  std::size_t at = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    d.x.startVec(r);
    for (; at < entries.size() && entries[at].row == r; ++at) {
      d.x.insertBack(r, entries[at].col - offset) = entries[at].value;
    }
  }
  d.x.finalize();
  return d;
}

StatusOr<Dataset> ReadCsv(const std::string& path, const CsvOptions& options) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::string_view line;
  for (int i = 0; i < options.skip_rows; ++i) {
    if (!in.Next(line)) break;
  }
  std::vector<std::string> header;
  while (in.Next(line)) {
    if (Trim(line).empty()) continue;
    FieldCursor fields(line, options.delimiter);
    for (std::string_view f; fields.Next(f);) {
      if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
      header.emplace_back(f);
    }
    break;
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (header.empty()) return InvalidArgument(path + ": empty file (no header line)");
  const int header_line = in.line_number();
  const int ncols = static_cast<int>(header.size());
  if (ncols < 2) {
    return InvalidArgument(path + ":" + std::to_string(header_line) +
                           ": need a response and at least one feature column, found 1 column");
  }
  int response = -1;
  if (options.response.empty()) {
    for (int j = 0; j < ncols; ++j) {
      if (header[j] == "y") response = j;
    }
    if (response < 0) response = ncols - 1;
  } else if (options.response[0] == '#') {
    int k = 0;
    auto r = std::from_chars(options.response.data() + 1,
                             options.response.data() + options.response.size(), k);
    if (r.ec != std::errc() || k < 1 || k > ncols) {
      return InvalidArgument("--response " + options.response + ": " + path + " has " +
                             std::to_string(ncols) + " columns");
    }
    response = k - 1;
  } else {
    for (int j = 0; j < ncols; ++j) {
      if (header[j] == options.response) response = j;
    }
    if (response < 0) {
      std::string names;
      for (const auto& h : header) names += (names.empty() ? "" : ", ") + h;
      if (names.size() > 200) names = names.substr(0, 200) + "...";
      return InvalidArgument("--response " + options.response + ": no such column in " + path +
                             " (columns: " + names + ")");
    }
  }
  Dataset d;
  d.source = path;
  for (int j = 0; j < ncols; ++j) {
    if (j != response) d.feature_names.push_back(header[j]);
  }
  std::vector<double> values, labels;
  while (in.Next(line)) {
    if (Trim(line).empty()) continue;
    int j = 0;
    FieldCursor fields(line, options.delimiter);
    for (std::string_view f; fields.Next(f);) {
      if (j >= ncols) {
        return InvalidArgument(in.Where() + "more fields than the " + std::to_string(ncols) +
                               " columns of the header");
      }
      double v;
      if (!ParseDouble(f, v)) {
        return InvalidArgument(in.Where() + "column '" + header[j] +
                               "': " + (f.empty() ? std::string("empty field") : Quote(f)) +
                               " is not a finite number");
      }
      (j == response ? labels : values).push_back(v);
      ++j;
    }
    if (j != ncols) {
      return InvalidArgument(in.Where() + "expected " + std::to_string(ncols) +
                             " fields as in the header, found " + std::to_string(j));
    }
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (labels.empty()) return InvalidArgument(path + ": no data rows after the header");
  const std::int64_t n = static_cast<std::int64_t>(labels.size()), p = ncols - 1;
  d.y = Eigen::Map<Eigen::VectorXd>(labels.data(), n);
  d.x.resize(n, p);
  d.x.reserve(static_cast<std::int64_t>(values.size()));
  for (std::int64_t i = 0; i < n; ++i) {
    d.x.startVec(i);
    for (std::int64_t j = 0; j < p; ++j) {
      const double v = values[i * p + j];
      if (v != 0) d.x.insertBack(i, j) = v;
    }
  }
  d.x.finalize();
  return d;
}

}  // namespace tessera
