// Corpus readers: UCI bag-of-words with its vocabulary, LIBSVM term counts and plain text,
// each kind of bad input with its file:line message, and the real KOS, news20 and Reuters sets.
#include "tessera/core/corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace tessera {
namespace {

using tessera::testing::TempDir;
using ::testing::HasSubstr;

TEST(CorpusTest, ReadsUciBagOfWordsWithVocabulary) {
  TempDir dir;
  auto c =
      ReadUciBagOfWords(dir.File("docword.txt", "3\n4\n5\n1 2 3\n1 4 1\n3 1 2\n2 2 1\n3 4 1\n"),
                        dir.File("vocab.txt", "apple\nbanana\ncherry\ndate\n"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->num_docs(), 3u);
  EXPECT_EQ(c->num_words(), 4u);
  EXPECT_EQ(c->num_tokens(), 8u);
  EXPECT_EQ(c->vocab[1], "banana");
  // Document 3 (index 2): words 0 and 3, sorted.
  ASSERT_EQ(c->doc_ptr[3] - c->doc_ptr[2], 2u);
  EXPECT_EQ(c->word[c->doc_ptr[2]], 0u);
  EXPECT_EQ(c->count[c->doc_ptr[2]], 2u);
  auto unnamed = ReadUciBagOfWords(dir.File("d2", "1\n2\n1\n1 2 5\n"), "");
  ASSERT_TRUE(unnamed.ok());
  EXPECT_EQ(unnamed->vocab[1], "w2");
}

TEST(CorpusTest, ReadsLibsvmCountsAndPlainText) {
  TempDir dir;
  auto c = ReadLibsvmCounts(dir.File("c.svm", "1 1:2 3:1\n# comment\n2 2:4 1:1\n"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->num_docs(), 2u);
  EXPECT_EQ(c->num_words(), 3u);
  EXPECT_EQ(c->num_tokens(), 8u);
  EXPECT_EQ(c->word[c->doc_ptr[1]], 0u);  // 1-based index 1 -> word 0, sorted first
  auto t = ReadTextCorpus(dir.File("t.txt", "the cat sat\nthe dog\n\nthe cat ran fast\n"), 2);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->num_docs(), 4u);
  EXPECT_EQ(t->vocab, (std::vector<std::string>{"the", "cat"}));
  EXPECT_EQ(t->num_tokens(), 5u);
  EXPECT_EQ(t->doc_ptr[3] - t->doc_ptr[2], 0u);  // the empty line is an empty document
}

struct BadCorpus {
  const char* name;
  const char* docword;
  const char* vocab;  // null: none
  const char* message;
};
void PrintTo(const BadCorpus& b, std::ostream* os) { *os << b.name; }

class BadCorpusTest : public ::testing::TestWithParam<BadCorpus> {};

TEST_P(BadCorpusTest, ClearMessageWithFileAndLine) {
  TempDir dir;
  const auto& p = GetParam();
  auto c = ReadUciBagOfWords(dir.File("docword.bad", p.docword),
                             p.vocab ? dir.File("vocab.bad", p.vocab) : "");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(p.message)) << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadCorpusTest,
    ::testing::Values(
        BadCorpus{"empty", "", nullptr, "docword.bad: ends before the header line D"},
        BadCorpus{"bad_header", "3\nx\n", nullptr, "docword.bad:2: expected W (words), got 'x'"},
        BadCorpus{"bad_entry", "1\n2\n1\n1 two 3\n", nullptr,
                  "docword.bad:4: expected 'docID wordID count'"},
        BadCorpus{"doc_range", "1\n2\n1\n2 1 1\n", nullptr,
                  "docword.bad:4: document 2 outside 1..1"},
        BadCorpus{"word_range", "1\n2\n1\n1 3 1\n", nullptr, "docword.bad:4: word 3 outside 1..2"},
        BadCorpus{"zero_count", "1\n2\n1\n1 1 0\n", nullptr, "docword.bad:4: count 0 must be >= 1"},
        BadCorpus{"nnz", "1\n2\n2\n1 1 1\n", nullptr,
                  "the header promises 2 entries, the file has 1"},
        BadCorpus{"short_vocab", "1\n2\n1\n1 1 1\n", "a\n",
                  "vocab.bad: 1 words, the docword header"},
        BadCorpus{"long_vocab", "1\n2\n1\n1 1 1\n", "a\nb\nc\n", "vocab.bad:3: more words than"},
        BadCorpus{"huge_header", "1000000000000\n2\n1\n1 1 1\n", nullptr,
                  "declares 1000000000000 documents and 2 words; Tessera reads up to"},
        // Repeated counts of one word in one document are summed in 64 bits, not wrapped.
        BadCorpus{"count_wrap", "1\n2\n2\n1 1 4294967295\n1 1 2\n", nullptr,
                  "docword.bad: document 1: a word's counts in one document sum past "
                  "4294967295"},
        // A tiny file cannot ask for billions of tokens.
        BadCorpus{"huge_count", "1\n2\n1\n1 1 4294967295\n", nullptr,
                  "docword.bad: 4294967295 tokens from 21 bytes; Tessera reads at most 2^24"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CorpusTest, BadLibsvmAndTextInput) {
  TempDir dir;
  EXPECT_THAT(ReadLibsvmCounts(dir.File("a.svm", "1 3:0.5\n")).status().message(),
              HasSubstr("a.svm:1: expected 'index:count' with a positive integer count, got "
                        "'3:0.5'"));
  EXPECT_THAT(ReadLibsvmCounts(dir.File("e.svm", "\n")).status().message(),
              HasSubstr("no documents"));
  // Found by fuzzing: a word index of 266666666 made the reader name 266 million words.
  EXPECT_THAT(ReadLibsvmCounts(dir.File("h.svm", "( 266666666:4\n")).status().message(),
              HasSubstr("h.svm:1: word index 266666666 is beyond the 16777216 words"));
  EXPECT_THAT(ReadTextCorpus(dir.File("t.txt", "a b\n"), 3).status().message(),
              HasSubstr("no word occurs 3 times or more"));
}

TEST(RealCorpusTest, KosNews20AndReutersHaveDocumentedShapes) {
  TESSERA_REQUIRE_DATA(kos, "uci-bow-kos/docword.kos.txt.gz");
  TESSERA_REQUIRE_DATA(kos_vocab, "uci-bow-kos/vocab.kos.txt.gz");
  TESSERA_REQUIRE_DATA(news20, "news20-libsvm/news20.libsvm.gz");
  TESSERA_REQUIRE_DATA(reuters, "reuters21578-tm/docword.reuters_crude_acq.txt.gz");
  TESSERA_REQUIRE_DATA(reuters_vocab, "reuters21578-tm/vocab.reuters_crude_acq.txt.gz");
  auto k = ReadUciBagOfWords(kos, kos_vocab);
  ASSERT_TRUE(k.ok()) << k.status().message();
  EXPECT_EQ(k->num_docs(), 3430u);
  EXPECT_EQ(k->num_words(), 6906u);
  EXPECT_EQ(k->word.size(), 353160u);
  EXPECT_EQ(k->num_tokens(), 467714u);
  auto n = ReadLibsvmCounts(news20);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(n->num_docs(), 15935u);
  EXPECT_EQ(n->word.size(), 1272569u);
  EXPECT_EQ(n->num_tokens(), 1852082u);
  // The readers size their arrays by the share of the file read (of a gzip file, by its
  // compressed bytes), not by doubling: little spare room, and no growth copy near the end.
  EXPECT_LE(n->word.capacity(), n->word.size() * 23 / 20 + 4096);
  EXPECT_EQ(k->word.capacity(), k->word.size());
  auto r = ReadUciBagOfWords(reuters, reuters_vocab);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->num_docs(), 70u);
  EXPECT_EQ(r->num_words(), 2171u);
  EXPECT_EQ(r->num_tokens(), 7668u);
}

}  // namespace
}  // namespace tessera
