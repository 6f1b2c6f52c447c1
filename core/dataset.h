// Regression/classification data sets and their readers (LIBSVM, CSV; gzip transparently).
// Every reader returns StatusOr and reports bad input as "file:line: what is wrong".
#pragma once

#include <Eigen/SparseCore>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

using SparseRowMatrix = Eigen::SparseMatrix<double, Eigen::RowMajor, std::int64_t>;

// The most feature columns a data file may have (keys and block ids travel as 32-bit values
// in places; beyond this a feature index is taken for a mistake, e.g. a timestamp column).
inline constexpr std::int64_t kMaxFeatures = (std::int64_t{1} << 31) - 1;
using SparseColMatrix = Eigen::SparseMatrix<double, Eigen::ColMajor, std::int64_t>;

// Rows of `x` as a column-major matrix (row l of the result is x's row begin + l, or rows[l]):
// one counting pass over their entries and one fill, where Eigen's conversion of a row block
// sorts. Every stored entry is kept, explicit zeros included.
SparseColMatrix ColumnMajorRows(const SparseRowMatrix& x, std::int64_t begin, std::int64_t count);
SparseColMatrix ColumnMajorRows(const SparseRowMatrix& x, std::span<const std::uint32_t> rows);
// Rows [begin, begin + count) of a compressed column-major matrix, read where they are: column
// j's entries in those rows are positions [first_j, last_j) of the matrix's arrays (a binary
// search per column when the range is not every row), and an entry's row is reported within the
// range (row l is the matrix's row begin + l). Holds the matrix. With `sums`, it also sets each
// column's sum over the range, found in the same pass.
class ColumnRowRange {
 public:
  class Iterator {
   public:
    Iterator(const std::int64_t* index, const std::int64_t* end, const double* value,
             std::int64_t base)
        : index_(index), end_(end), value_(value), base_(base) {}
    explicit operator bool() const { return index_ != end_; }
    Iterator& operator++() {
      ++index_;
      ++value_;
      return *this;
    }
    std::int64_t index() const { return *index_ - base_; }
    double value() const { return *value_; }

   private:
    const std::int64_t* index_;
    const std::int64_t* end_;
    const double* value_;
    std::int64_t base_;
  };
  ColumnRowRange(std::shared_ptr<const SparseColMatrix> columns, std::int64_t begin,
                 std::int64_t count, Eigen::VectorXd* sums = nullptr);
  Iterator Column(Eigen::Index j) const {
    return Iterator(inner_ + first_[j], inner_ + last_[j], value_ + first_[j], begin_);
  }
  std::int64_t NonZeros(Eigen::Index j) const { return last_[j] - first_[j]; }
  std::int64_t rows() const { return count_; }
  std::int64_t cols() const { return columns_->cols(); }

 private:
  std::shared_ptr<const SparseColMatrix> columns_;
  std::int64_t begin_ = 0, count_ = 0;
  std::vector<std::int64_t> bounds_;  // first_j then last_j per column, unless every row
  const std::int64_t* first_ = nullptr;
  const std::int64_t* last_ = nullptr;
  const std::int64_t* inner_ = nullptr;
  const double* value_ = nullptr;
};

// n samples x p features (rows are samples) and a response per sample.
struct Dataset {
  SparseRowMatrix x;
  Eigen::VectorXd y;
  std::vector<std::string> feature_names;  // from a CSV header; empty for LIBSVM
  std::string source;                      // file it was read from
  // x column-major once BuildColumns made it (null before): for solvers that walk columns,
  // made with the data as column-major solvers get theirs, and shared by every copy.
  std::shared_ptr<const SparseColMatrix> columns;
  std::int64_t rows() const { return x.rows(); }
  std::int64_t cols() const { return x.cols(); }
  // Makes `columns` (a pass over x's entries; x's memory once more).
  void BuildColumns();
};

enum class IndexBase { kAuto, kZero, kOne };

struct LibsvmOptions {
  IndexBase base = IndexBase::kAuto;  // kAuto: 0-based if any index is 0, else 1-based
  std::int64_t num_features = 0;      // 0: the largest index seen; else indices must fit
};

// LIBSVM / SVMlight: "label index:value index:value ...", '#' starts a comment, "qid:" skipped.
StatusOr<Dataset> ReadLibsvm(const std::string& path, const LibsvmOptions& options = {});

struct CsvOptions {
  // Response column: a header name, or "#N" for the N-th column (1-based). Empty: a column
  // named "y" if there is one, else the last column.
  std::string response;
  int skip_rows = 0;  // lines to skip before the header
  char delimiter = ',';
};

// Dense CSV with a header line. Every row must have as many fields as the header, each a
// finite number.
StatusOr<Dataset> ReadCsv(const std::string& path, const CsvOptions& options = {});

// Parses a whole field as a finite double; false otherwise.
bool ParseDouble(std::string_view text, double& out);
// Parses a whole field as a non-negative integer (decimal digits only); false otherwise.
bool ParseCount(std::string_view text, std::uint64_t& out);

}  // namespace tessera
