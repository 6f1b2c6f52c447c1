// Text corpora as bags of words, for topic models, and their readers. Every reader returns
// StatusOr and reports bad input as "file:line: what is wrong"; gzip is read transparently.
//
//   UCI bag-of-words   docword.*.txt: "D", "W", "NNZ" lines, then "docID wordID count"
//                      (1-based), with vocab.*.txt: one word per line (line w = word w).
//   LIBSVM counts      "label index:count ..." per document (news20-libsvm); the label is
//                      ignored; indices 0- or 1-based (auto), counts positive integers.
//   plain text         one document per line, tokens separated by whitespace; the vocabulary
//                      is built from the tokens (words seen fewer than min_count times dropped).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

struct Corpus {
  // Document d's distinct words are word[doc_ptr[d] .. doc_ptr[d+1]) with their counts.
  std::vector<std::uint64_t> doc_ptr = {0};
  std::vector<std::uint32_t> word;
  std::vector<std::uint32_t> count;
  std::vector<std::string> vocab;  // word id -> word ("w<id>" when no vocabulary was given)
  std::string source;
  std::size_t num_docs() const { return doc_ptr.size() - 1; }
  std::size_t num_words() const { return vocab.size(); }
  std::uint64_t num_tokens() const;
};

// The largest corpus the readers accept: a header or an index beyond these is taken for a
// mistake (and would otherwise make a few bytes of input allocate gigabytes).
inline constexpr std::uint64_t kMaxWords = std::uint64_t{1} << 24;
inline constexpr std::uint64_t kMaxDocuments = std::uint64_t{1} << 26;

// `vocab_path` may be empty: words are then named w1, w2, ... as in the docword file.
StatusOr<Corpus> ReadUciBagOfWords(const std::string& docword_path, const std::string& vocab_path);
StatusOr<Corpus> ReadLibsvmCounts(const std::string& path);
StatusOr<Corpus> ReadTextCorpus(const std::string& path, int min_count = 1);

}  // namespace tessera
