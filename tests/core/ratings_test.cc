// Rating readers: triples in every separator, MatrixMarket, id maps shared with a test set,
// each kind of bad input with its file:line message, and the real MovieLens/Jester files.
#include "tessera/core/ratings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "tests/test_util.h"

namespace tessera {
namespace {

using tessera::testing::TempDir;
using ::testing::HasSubstr;

TEST(RatingsTest, ReadsTriplesWithAnySeparatorAndRemapsIdsDensely) {
  TempDir dir;
  for (const char* content :
       {"10\t7\t5\t874965758\n3\t7\t3\t1\n10\t2\t4.5\t9\n", "10,7,5\n3,7,3\n10,2,4.5\n",
        "userId,movieId,rating,timestamp\n10,7,5,1\n3,7,3,1\n10,2,4.5,1\n",
        "10 7 5\n\n# note\n3  7 3\n10 2 4.5\n"}) {
    auto r = ReadRatings(dir.File("r.txt", content));
    ASSERT_TRUE(r.ok()) << r.status().message() << " in " << content;
    ASSERT_EQ(r->entries.size(), 3u);
    EXPECT_EQ(r->num_users(), 2u);
    EXPECT_EQ(r->num_items(), 2u);
    EXPECT_EQ(r->users->Name(r->entries[1].user), "3");
    EXPECT_EQ(r->items->Name(r->entries[2].item), "2");
    EXPECT_EQ(r->entries[0].user, r->entries[2].user);
    EXPECT_DOUBLE_EQ(r->entries[2].value, 4.5);
  }
}

TEST(RatingsTest, TestSetUsesTheTrainingMapsAndCountsUnknownIds) {
  TempDir dir;
  auto train = ReadRatings(dir.File("train", "1 1 5\n2 1 3\n2 2 4\n"));
  ASSERT_TRUE(train.ok());
  RatingsOptions o;
  o.users = train->users;
  o.items = train->items;
  auto test = ReadRatings(dir.File("test", "1 2 4\n3 1 2\n2 9 1\n"), o);
  ASSERT_TRUE(test.ok()) << test.status().message();
  EXPECT_EQ(test->entries.size(), 1u);
  EXPECT_EQ(test->skipped_unknown, 2u);
  EXPECT_EQ(train->users->size(), 2u);  // not grown by the test set
  auto none = ReadRatings(dir.File("none", "7 7 1\n"), o);
  EXPECT_THAT(none.status().message(), HasSubstr("no ratings with a user and item"));
}

// A reader that keeps a share (a process's workers' users) still maps every id as a reader of
// the whole file does, and its census describes the whole set.
TEST(RatingsTest, AKeepFilterKeepsAShareButMapsAndCountsEveryRating) {
  TempDir dir;
  const std::string path = dir.File("r", "a x 1\nb x 2\nc y 4\na y 3\nb z 5\n");
  auto whole = ReadRatings(path);
  ASSERT_TRUE(whole.ok());
  RatingsOptions o;
  o.keep = [](std::uint32_t user, std::uint32_t) { return user % 2 == 0; };  // users a and c
  auto share = ReadRatings(path, o);
  ASSERT_TRUE(share.ok()) << share.status().message();
  ASSERT_EQ(share->entries.size(), 3u);
  for (const Rating& r : share->entries) EXPECT_NE(share->users->Name(r.user), "b");
  EXPECT_EQ(share->num_users(), 3u);
  EXPECT_EQ(share->num_items(), 3u);
  for (const auto* r : {&*whole, &*share}) {
    EXPECT_EQ(r->census.count, 5u);
    EXPECT_DOUBLE_EQ(r->census.sum, 15);
    EXPECT_DOUBLE_EQ(r->census.sum_squares, 55);
    EXPECT_EQ(r->census.per_user, (std::vector<std::uint32_t>{2, 2, 1}));
    EXPECT_EQ(r->census.per_item, (std::vector<std::uint32_t>{2, 2, 1}));
  }
  // The census of ratings built in code is counted from their entries.
  Ratings built;
  built.users = whole->users;
  built.items = whole->items;
  built.entries = whole->entries;
  const RatingsCensus c = WholeCensus(built);
  EXPECT_EQ(c.count, 5u);
  EXPECT_EQ(c.per_item, whole->census.per_item);
  // A share that happens to be empty is no error: the file has ratings.
  o.keep = [](std::uint32_t, std::uint32_t) { return false; };
  auto empty = ReadRatings(path, o);
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_TRUE(empty->entries.empty());
  EXPECT_EQ(empty->census.count, 5u);
}

TEST(RatingsTest, ReadsMatrixMarketCoordinates) {
  TempDir dir;
  auto r = ReadRatings(dir.File("m.mtx",
                                "%%MatrixMarket matrix coordinate real general\n% comment\n"
                                "3 4 3\n1 1 2.5\n3 4 1\n2 1 -1\n"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->entries.size(), 3u);
  EXPECT_EQ(r->users->Name(r->entries[1].user), "3");
  EXPECT_DOUBLE_EQ(r->entries[2].value, -1);
}

struct BadRatings {
  const char* name;
  const char* content;
  const char* message;
};
void PrintTo(const BadRatings& b, std::ostream* os) { *os << b.name; }

class BadRatingsTest : public ::testing::TestWithParam<BadRatings> {};

TEST_P(BadRatingsTest, ClearMessageWithFileAndLine) {
  TempDir dir;
  const std::string path = dir.File("bad.txt", GetParam().content);
  auto r = ReadRatings(path);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().message)) << r.status().message();
  EXPECT_THAT(r.status().message(), HasSubstr("bad.txt"));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadRatingsTest,
    ::testing::Values(
        BadRatings{"empty", "", "bad.txt: no ratings"},
        BadRatings{"too_few_fields", "1 2 3\n1 2\n",
                   "bad.txt:2: expected 'user item rating "
                   "[timestamp]', got 2 fields"},
        BadRatings{"too_many_fields", "1 2 3 4 5\n",
                   "bad.txt:1: expected 'user item rating "
                   "[timestamp]', got more than 4 fields"},
        BadRatings{"non_numeric", "1 2 3\n1 2 x\n", "bad.txt:2: rating 'x' is not a finite"},
        BadRatings{"nan", "1 2 3\n4 5 nan\n", "bad.txt:2: rating 'nan' is not a finite"},
        BadRatings{"mm_pattern", "%%MatrixMarket matrix coordinate pattern general\n1 1 1\n",
                   "bad.txt:1: only '%%MatrixMarket matrix coordinate real|integer general'"},
        BadRatings{"mm_no_size", "%%MatrixMarket matrix coordinate real general\n1 x 3\n",
                   "bad.txt:2: expected the size line"},
        BadRatings{"mm_index", "%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1\n",
                   "bad.txt:3: index '3 1 1' outside 1..2 x 1..2"},
        BadRatings{"mm_count", "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n",
                   "promises 2 entries, the file has 1"}),
    [](const auto& info) { return std::string(info.param.name); });

// A large file (many of the reader's buffers): ids numbered in order of first appearance, every
// rating in file order, blank lines, comments and '\r' line ends skipped; and a bad line deep in
// it is named by its number.
TEST(RatingsTest, LargeFilesGiveEveryRatingInFileOrderAndNameABadLineByNumber) {
  TempDir dir;
  std::string text = "user,item,rating\n";
  std::vector<std::tuple<std::string, std::string, float>> want;
  std::uint64_t x = 88172645463325252ULL;
  auto next = [&x] {  // xorshift64
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int line = 2; line <= 700000; ++line) {
    if (line % 9973 == 0) {
      text += line % 2 ? "# a comment\n" : "\n";
      continue;
    }
    // Numbers in the direct table and names through the hash, in either column.
    const std::uint64_t u = next() % 50000, i = next() % 3000;
    const std::string user = u % 5 ? std::to_string(u) : "u" + std::to_string(u);
    const std::string item = i % 7 ? std::to_string(i) : "item-" + std::to_string(i);
    const float value = static_cast<float>(next() % 41) / 8.0f;
    const char* sep = line % 3 == 0 ? "\t" : line % 3 == 1 ? "," : " ";
    text += user + sep + item + sep + std::to_string(value) + (line % 11 ? "\n" : "\r\n");
    want.emplace_back(user, item, value);
  }
  auto r = ReadRatings(dir.File("big.txt", text));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->entries.size(), want.size());
  // Sized by the share of the file read, not by doubling (whose copies would set the peak
  // memory of a fit): at most 5% to spare, plus the first block.
  EXPECT_LE(r->entries.capacity(), want.size() * 21 / 20 + 4096);
  std::vector<std::string> users, items;  // in order of first appearance
  std::set<std::string> seen_users, seen_items;
  for (std::size_t k = 0; k < want.size(); ++k) {
    const auto& [user, item, value] = want[k];
    if (seen_users.insert(user).second) users.push_back(user);
    if (seen_items.insert(item).second) items.push_back(item);
    const Rating& got = r->entries[k];
    ASSERT_EQ(r->users->Name(got.user), user) << "rating " << k;
    ASSERT_EQ(r->items->Name(got.item), item) << "rating " << k;
    ASSERT_EQ(got.value, value) << "rating " << k;
  }
  ASSERT_EQ(r->num_users(), users.size());
  ASSERT_EQ(r->num_items(), items.size());
  for (std::size_t u = 0; u < users.size(); ++u) {
    ASSERT_EQ(r->users->Name(static_cast<std::uint32_t>(u)), users[u]);
  }
  EXPECT_EQ(r->census.count, want.size());

  // A bad rating on line 612345.
  const std::size_t at = [&] {
    std::size_t pos = 0;
    for (int line = 1; line < 612345; ++line) pos = text.find('\n', pos) + 1;
    return pos;
  }();
  std::string bad = text;
  bad.replace(at, bad.find('\n', at) - at, "7 8 x");
  auto b = ReadRatings(dir.File("bad.txt", bad));
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(b.status().message(), HasSubstr("bad.txt:612345: rating 'x' is not a finite"));
}

TEST(RatingsTest, MissingFileSaysSo) {
  EXPECT_THAT(ReadRatings("/no/such/ratings").status().message(), HasSubstr("/no/such/ratings"));
}

TEST(RealRatingsTest, MovieLensAndJesterHaveDocumentedShapes) {
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(jester, "jester5k/ratings.tsv.gz");
  auto train = ReadRatings(base);
  ASSERT_TRUE(train.ok()) << train.status().message();
  EXPECT_EQ(train->entries.size(), 80000u);
  EXPECT_EQ(train->num_users(), 943u);
  EXPECT_EQ(train->num_items(), 1650u);
  RatingsOptions o;
  o.users = train->users;
  o.items = train->items;
  auto t = ReadRatings(test, o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->entries.size() + t->skipped_unknown, 20000u);
  auto j = ReadRatings(jester);
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ(j->entries.size(), 363209u);
  EXPECT_EQ(j->num_users(), 5000u);
  EXPECT_EQ(j->num_items(), 100u);
}

}  // namespace
}  // namespace tessera
