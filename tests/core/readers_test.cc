// Readers: good files in every supported form, and each kind of bad input with its message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include "tessera/core/dataset.h"
#include "tessera/core/line_reader.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

using tessera::testing::TempDir;
using ::testing::HasSubstr;

CsvOptions Response(std::string r) {
  CsvOptions o;
  o.response = std::move(r);
  return o;
}

std::string Gzip(const TempDir& dir, const std::string& name, const std::string& content) {
  const std::string path = dir.Path(name);
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, content.data(), static_cast<unsigned>(content.size()));
  gzclose(f);
  return path;
}

TEST(LibsvmTest, ReadsOneBasedSparseRows) {
  TempDir dir;
  auto d = ReadLibsvm(dir.File("a.svm", "1.5 1:2 3:4\n-2 2:1 # comment\n\n0 qid:3 1:1e-3\n"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rows(), 3);
  EXPECT_EQ(d->cols(), 3);
  EXPECT_DOUBLE_EQ(d->y[0], 1.5);
  EXPECT_DOUBLE_EQ(d->x.coeff(0, 2), 4);
  EXPECT_DOUBLE_EQ(d->x.coeff(1, 1), 1);
  EXPECT_DOUBLE_EQ(d->x.coeff(2, 0), 1e-3);
}

TEST(LibsvmTest, DetectsZeroBasedIndices) {
  TempDir dir;
  auto d = ReadLibsvm(dir.File("z.svm", "1 0:5 2:1\n0 1:1\n"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->cols(), 3);
  EXPECT_DOUBLE_EQ(d->x.coeff(0, 0), 5);
}

TEST(LibsvmTest, ReadsGzipTransparently) {
  TempDir dir;
  auto d = ReadLibsvm(Gzip(dir, "a.svm.gz", "1 1:1 2:2\n2 2:3\n"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rows(), 2);
  EXPECT_DOUBLE_EQ(d->x.coeff(1, 1), 3);
}

struct BadCase {
  const char* name;
  const char* content;
  const char* message;  // expected substring, after "file:line: "
};
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class LibsvmBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(LibsvmBadInputTest, ClearErrorWithFileAndLine) {
  TempDir dir;
  const std::string path = dir.File("bad.svm", GetParam().content);
  LibsvmOptions o;
  if (std::string(GetParam().name) == "zero_in_one_based") o.base = IndexBase::kOne;
  if (std::string(GetParam().name) == "out_of_range") o.num_features = 3;
  auto d = ReadLibsvm(path, o);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr(GetParam().message));
  EXPECT_THAT(d.status().message(), HasSubstr(path));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LibsvmBadInputTest,
    ::testing::Values(
        BadCase{"label", "1 1:2\nabc 1:2\n", "bad.svm:2: label 'abc' is not a finite number"},
        BadCase{"pair", "1 1:2 7\n", "bad.svm:1: expected index:value, found '7'"},
        BadCase{"value", "1 1:x\n", "bad.svm:1: value 'x' of feature 1 is not a finite number"},
        BadCase{"nan", "1 1:1\n1 2:nan\n", "bad.svm:2: value 'nan' of feature 2"},
        BadCase{"inf", "inf 1:1\n", "bad.svm:1: label 'inf' is not a finite number"},
        BadCase{"index", "1 -3:1\n", "bad.svm:1: feature index '-3' is not a non-negative"},
        BadCase{"order", "1 3:1 2:1\n", "bad.svm:1: feature index 2 is not greater"},
        BadCase{"zero_in_one_based", "1 0:1\n", "bad.svm:1: feature index 0 in a 1-based file"},
        BadCase{"out_of_range", "1 1:1 5:2\n", "feature index 5 is out of range for 3 features"},
        // Found by fuzzing: two lines naming feature 881250949 made the reader allocate 7 GB.
        BadCase{"huge_index", "1 1:1\n0 3000000000:7\n",
                "feature index 3000000000 is beyond the 2147483647 features"},
        BadCase{"empty", "", "no data rows"},
        BadCase{"comments_only", "# nothing\n\n", "no data rows"}),
    [](const auto& info) { return std::string(info.param.name); });

// A feature index far beyond what the file's entries could describe is refused before any
// model allocates a value per feature (a 37-byte file naming feature 2e9 would otherwise ask
// for gigabytes); a feature count the caller states is taken, and costs memory only for the
// rows that name the far feature, not one slot per column.
TEST(LibsvmTest, AFarFeatureIndexIsRefusedUnlessTheFeatureCountIsGiven) {
  TempDir dir;
  const std::string far = dir.File("far.svm", "1.5 1:1 1999999999:7\n0 1:1\n");
  auto refused = ReadLibsvm(far);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr("far.svm: feature index 1999999999 in a file of 3 nonzeros and 2 rows"));
  LibsvmOptions o;
  o.num_features = 2000000000;
  auto d = ReadLibsvm(far, o);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->x.cols(), 2000000000);
  EXPECT_EQ(d->x.nonZeros(), 3);
  EXPECT_EQ(d->x.coeff(0, 1999999998), 7);
  // Up to 2^24 features are always allowed.
  EXPECT_TRUE(ReadLibsvm(dir.File("wide.svm", "1 16777216:1\n")).ok());
}

// Spreadsheet programs start CSV files with a UTF-8 byte-order mark: it is not part of the
// first column's name. A stream without newlines is an error, not read forever.
// Rows of a row-major matrix as a column-major one: the same entries as Eigen's conversion, in
// each column by row, for a contiguous block and for a list of rows in any order (explicit
// zeros kept, empty rows and columns included).
TEST(SparseTest, ColumnMajorRowsMatchesEigensConversion) {
  std::vector<Eigen::Triplet<double, std::int64_t>> entries;
  std::uint64_t h = 7;
  for (std::int64_t i = 0; i < 40; ++i) {
    for (std::int64_t j = 0; j < 30; ++j) {
      h = h * 6364136223846793005ull + 1442695040888963407ull;
      if ((h >> 60) < 3) entries.emplace_back(i, j, (h >> 61) == 0 ? 0.0 : double(h >> 40));
    }
  }
  SparseRowMatrix x(40, 30);
  x.setFromTriplets(entries.begin(), entries.end());
  x.makeCompressed();
  auto same = [](const SparseColMatrix& a, const SparseColMatrix& b) {
    ASSERT_EQ(a.rows(), b.rows());
    ASSERT_EQ(a.cols(), b.cols());
    ASSERT_EQ(a.nonZeros(), b.nonZeros());
    for (Eigen::Index j = 0; j < a.cols(); ++j) {
      SparseColMatrix::InnerIterator ia(a, j), ib(b, j);
      for (; ia && ib; ++ia, ++ib) {
        EXPECT_EQ(ia.row(), ib.row());
        EXPECT_EQ(ia.value(), ib.value());
      }
      EXPECT_FALSE(ia || ib) << "column " << j;
    }
  };
  same(ColumnMajorRows(x, 5, 20), SparseColMatrix(x.middleRows(5, 20)));
  same(ColumnMajorRows(x, 0, 40), SparseColMatrix(x));
  // Row blocks cut from the column-major matrix itself.
  Dataset d;
  d.x = x;
  d.BuildColumns();
  ASSERT_TRUE(d.columns);
  same(*d.columns, SparseColMatrix(x));
  for (auto [begin, count] : {std::pair{0, 40}, {5, 20}, {39, 1}, {12, 0}}) {
    Eigen::VectorXd sums;
    const ColumnRowRange range(d.columns, begin, count, &sums);
    const SparseColMatrix want(x.middleRows(begin, count));
    ASSERT_EQ(range.rows(), count);
    ASSERT_EQ(sums.size(), want.cols());
    ASSERT_EQ(range.cols(), want.cols());
    for (Eigen::Index j = 0; j < want.cols(); ++j) {
      EXPECT_EQ(range.NonZeros(j), want.col(j).nonZeros()) << "column " << j;
      ColumnRowRange::Iterator it = range.Column(j);
      double sum = 0;
      for (SparseColMatrix::InnerIterator w(want, j); w; ++w, ++it) {
        ASSERT_TRUE(it) << "column " << j;
        EXPECT_EQ(it.index(), w.row());
        EXPECT_EQ(it.value(), w.value());
        sum += w.value();
      }
      EXPECT_FALSE(it) << "column " << j;
      EXPECT_EQ(sums[j], sum) << "column " << j;
    }
  }
  const std::vector<std::uint32_t> rows = {33, 2, 17, 2, 39};
  SparseRowMatrix picked(5, 30);
  std::vector<Eigen::Triplet<double, std::int64_t>> chosen;
  for (std::size_t l = 0; l < rows.size(); ++l) {
    for (SparseRowMatrix::InnerIterator it(x, rows[l]); it; ++it) {
      chosen.emplace_back(static_cast<std::int64_t>(l), it.index(), it.value());
    }
  }
  picked.setFromTriplets(chosen.begin(), chosen.end());
  same(ColumnMajorRows(x, rows), SparseColMatrix(picked));
}

TEST(LineReaderTest, StripsAByteOrderMarkAndCapsTheLineLength) {
  TempDir dir;
  auto d = ReadCsv(dir.File("bom.csv", "\xEF\xBB\xBFy,a\n1,2\n3,4\n"));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->feature_names, (std::vector<std::string>{"a"}));
  EXPECT_DOUBLE_EQ(d->y[1], 3);
  LineReader in;
  ASSERT_TRUE(in.Open("/dev/zero").ok());
  in.set_max_line_bytes(1 << 20);
  std::string_view line;
  EXPECT_FALSE(in.Next(line));
  EXPECT_THAT(in.status().message(),
              HasSubstr("/dev/zero:1: a line longer than 1048576 bytes (not a text file"));
}

// How much of a file is read, for readers that size what they keep by it: exact for a plain
// file, from the compressed bytes for a gzip one (which are taken in ahead of the lines), and
// not known for a file that does not tell its size.
TEST(LineReaderTest, TellsTheShareOfTheFileRead) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 200000; ++i) text += std::to_string(i * 7919 % 100003) + " line\n";
  for (const std::string& path : {dir.File("plain.txt", text), Gzip(dir, "text.gz", text)}) {
    LineReader in;
    ASSERT_TRUE(in.Open(path).ok());
    EXPECT_EQ(in.FractionRead(), 0) << path;
    std::string_view line;
    int lines = 0;
    double half = -1;
    while (in.Next(line)) {
      if (++lines == 100000) half = in.FractionRead();
    }
    EXPECT_EQ(lines, 200000);
    const double exact = static_cast<double>(text.find('\n', text.size() / 2 - 20) + 1) /
                         static_cast<double>(text.size());
    if (path.ends_with(".txt")) {
      EXPECT_NEAR(half, 0.5, 1e-3) << path;
    } else {
      EXPECT_GE(half, exact * 0.9) << path;
      EXPECT_LE(half, 1.0) << path;
    }
    EXPECT_EQ(in.FractionRead(), 1.0) << path;
  }
  LineReader unsized;  // /proc files say they have 0 bytes
  ASSERT_TRUE(unsized.Open("/proc/self/status").ok());
  std::string_view line;
  ASSERT_TRUE(unsized.Next(line));
  EXPECT_EQ(unsized.FractionRead(), 0);
}

TEST(LibsvmTest, MissingFileAndDirectory) {
  auto d = ReadLibsvm("/nonexistent/data.svm");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("/nonexistent/data.svm: No such file"));
  TempDir dir;
  auto e = ReadLibsvm(dir.Path(""));
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("is a directory"));
}

TEST(LibsvmTest, TruncatedGzipIsDataLoss) {
  TempDir dir;
  std::string body;
  for (int i = 0; i < 20000; ++i)
    body += std::to_string(i % 7) + " 1:" + std::to_string(i) + " 2:3\n";
  const std::string full = Gzip(dir, "full.gz", body);
  std::ifstream in(full, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string cut = dir.File("cut.gz", bytes.substr(0, bytes.size() / 2));
  auto d = ReadLibsvm(cut);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("cut.gz"));
}

TEST(CsvTest, ReadsHeaderAndPicksResponse) {
  TempDir dir;
  const std::string path = dir.File("d.csv", "a,y,b\n1,10,0\n2,20,3\n");
  auto d = ReadCsv(path);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rows(), 2);
  EXPECT_EQ(d->cols(), 2);
  EXPECT_EQ(d->feature_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(d->y[1], 20);
  EXPECT_DOUBLE_EQ(d->x.coeff(1, 1), 3);
  auto by_name = ReadCsv(path, Response("b"));
  ASSERT_TRUE(by_name.ok());
  EXPECT_DOUBLE_EQ(by_name->y[1], 3);
  auto by_index = ReadCsv(path, Response("#1"));
  ASSERT_TRUE(by_index.ok());
  EXPECT_DOUBLE_EQ(by_index->y[1], 2);
  auto last = ReadCsv(dir.File("e.csv", "\"p\",\"q\"\n1,2\n"));
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->feature_names, (std::vector<std::string>{"p"}));
  EXPECT_DOUBLE_EQ(last->y[0], 2);
}

TEST(CsvTest, SkipRowsBeforeHeader) {
  TempDir dir;
  CsvOptions o;
  o.skip_rows = 1;
  auto d = ReadCsv(dir.File("s.csv", "2,1,,\nx,t\n1,2\n3,4\n"), o);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rows(), 2);
}

class CsvBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(CsvBadInputTest, ClearErrorWithFileAndLine) {
  TempDir dir;
  const std::string path = dir.File("bad.csv", GetParam().content);
  CsvOptions o;
  if (std::string(GetParam().name) == "no_column") o.response = "zzz";
  if (std::string(GetParam().name) == "bad_index") o.response = "#9";
  auto d = ReadCsv(path, o);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CsvBadInputTest,
    ::testing::Values(
        BadCase{"ragged_short", "a,b,y\n1,2,3\n4,5\n",
                "bad.csv:3: expected 3 fields as in the header, found 2"},
        BadCase{"ragged_long", "a,y\n1,2,3\n", "bad.csv:2: more fields than the 2 columns"},
        BadCase{"non_numeric", "a,y\n1,2\nfoo,3\n",
                "bad.csv:3: column 'a': 'foo' is not a finite number"},
        BadCase{"nan", "a,y\n1,NaN\n", "bad.csv:2: column 'y': 'NaN' is not a finite number"},
        BadCase{"inf", "a,y\n-inf,1\n", "bad.csv:2: column 'a': '-inf' is not a finite number"},
        BadCase{"empty_field", "a,y\n,1\n", "bad.csv:2: column 'a': empty field"},
        BadCase{"empty", "", "empty file"},
        BadCase{"header_only", "a,y\n", "no data rows after the header"},
        BadCase{"one_column", "y\n1\n", "at least one feature column"},
        BadCase{"no_column", "a,y\n1,2\n", "--response zzz: no such column"},
        BadCase{"bad_index", "a,y\n1,2\n", "--response #9"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(RealDataTest, DiabetesAndArceneHaveDocumentedShapes) {
  TESSERA_REQUIRE_DATA(diabetes, "lasso/diabetes/lars_diabetes_x.csv.gz");
  auto d = ReadCsv(diabetes);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->rows(), 442);
  EXPECT_EQ(d->cols(), 10);
  EXPECT_EQ(d->feature_names[2], "bmi");
  TESSERA_REQUIRE_DATA(arcene, "lasso/arcene/arcene.libsvm.gz");
  auto a = ReadLibsvm(arcene);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->rows(), 100);
  EXPECT_EQ(a->x.nonZeros(), 540941);
}

}  // namespace
}  // namespace tessera
