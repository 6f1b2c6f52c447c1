#include "tessera/core/corpus.h"

#include <algorithm>
#include <charconv>
#include <numeric>
#include <unordered_map>

#include "tessera/core/line_reader.h"

namespace tessera {

std::uint64_t Corpus::num_tokens() const {
  return std::accumulate(count.begin(), count.end(), std::uint64_t{0});
}

namespace {

bool ParseUint(std::string_view s, std::uint64_t& v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string Quote(std::string_view s) {
  return "'" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...'" : "'");
}

// Whitespace-separated tokens of a line.
std::vector<std::string_view> Tokens(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

// Appends one document from (word, count) pairs, merging repeated words; false (and nothing
// appended past the word) when a word's merged count passes 2^32 - 1. With `in` (the file the
// documents come from, being read), the arrays grow by what the rest of it promises.
bool AddDocument(Corpus& c, std::vector<std::pair<std::uint32_t, std::uint32_t>>& entries,
                 const LineReader* in = nullptr) {
  std::sort(entries.begin(), entries.end());
  if (in && c.word.size() + entries.size() > c.word.capacity()) {
    const std::size_t room = std::max(in->RoomFor(c.word.size()), c.word.size() + entries.size());
    c.word.reserve(room);
    c.count.reserve(room);
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!c.word.empty() && c.word.size() > c.doc_ptr.back() && c.word.back() == entries[i].first) {
      const std::uint64_t sum = std::uint64_t{c.count.back()} + entries[i].second;
      if (sum > UINT32_MAX) return false;
      c.count.back() = static_cast<std::uint32_t>(sum);
    } else {
      c.word.push_back(entries[i].first);
      c.count.push_back(entries[i].second);
    }
  }
  c.doc_ptr.push_back(c.word.size());
  entries.clear();
  return true;
}

// Ok when the document AddDocument just added kept its counts (`merged`).
Status CheckMerged(bool merged, const std::string& where) {
  if (merged) return Status::Ok();
  return InvalidArgument(where + "a word's counts in one document sum past 4294967295");
}

// Ok unless the counts make far more tokens than the file's size could reasonably describe (a
// 15-byte file with count 4294967295 would make every sampler allocate tens of gigabytes):
// 2^24 tokens, or 4096 per byte read.
Status CheckTokens(const Corpus& c, const LineReader& in) {
  const std::uint64_t limit =
      std::max<std::uint64_t>(std::uint64_t{1} << 24, 4096 * in.bytes_read());
  if (c.num_tokens() <= limit) return Status::Ok();
  return InvalidArgument(in.path() + ": " + std::to_string(c.num_tokens()) + " tokens from " +
                         std::to_string(in.bytes_read()) +
                         " bytes; Tessera reads at most 2^24 tokens or 4096 per byte");
}

}  // namespace

StatusOr<Corpus> ReadUciBagOfWords(const std::string& docword_path, const std::string& vocab_path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(docword_path));
  std::string_view line;
  std::uint64_t header[3] = {0, 0, 0};
  const char* names[3] = {"D (documents)", "W (words)", "NNZ (entries)"};
  for (int h = 0; h < 3; ++h) {
    if (!in.Next(line)) {
      TESSERA_RETURN_IF_ERROR(in.status());
      return InvalidArgument(docword_path + ": ends before the header line " + names[h]);
    }
    if (!ParseUint(line, header[h])) {
      return InvalidArgument(in.Where() + "expected " + names[h] + ", got " + Quote(line));
    }
  }
  const std::uint64_t D = header[0], W = header[1], nnz = header[2];
  if (D > kMaxDocuments || W > kMaxWords) {
    return InvalidArgument(docword_path + ": the header declares " + std::to_string(D) +
                           " documents and " + std::to_string(W) + " words; Tessera reads up to " +
                           std::to_string(kMaxDocuments) + " and " + std::to_string(kMaxWords));
  }
  Corpus c;
  c.source = docword_path;
  // (document, word, count); UCI files are sorted by document but need not be.
  struct Entry {
    std::uint32_t doc, word, count;
  };
  std::vector<Entry> all;
  std::uint64_t seen = 0;
  while (in.Next(line)) {
    const auto t = Tokens(line);
    if (t.empty()) continue;
    std::uint64_t d = 0, w = 0, n = 0;
    if (t.size() != 3 || !ParseUint(t[0], d) || !ParseUint(t[1], w) || !ParseUint(t[2], n)) {
      return InvalidArgument(
          in.Where() + "expected 'docID wordID count' (positive integers), got " + Quote(line));
    }
    if (d < 1 || d > D) {
      return InvalidArgument(in.Where() + "document " + std::to_string(d) + " outside 1.." +
                             std::to_string(D));
    }
    if (w < 1 || w > W) {
      return InvalidArgument(in.Where() + "word " + std::to_string(w) + " outside 1.." +
                             std::to_string(W));
    }
    if (n < 1 || n > UINT32_MAX) {
      return InvalidArgument(in.Where() + "count " + std::to_string(n) + " must be >= 1");
    }
    if (all.size() == all.capacity()) all.reserve(in.RoomFor(all.size()));
    all.push_back({static_cast<std::uint32_t>(d - 1), static_cast<std::uint32_t>(w - 1),
                   static_cast<std::uint32_t>(n)});
    ++seen;
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (seen != nnz) {
    return InvalidArgument(docword_path + ": the header promises " + std::to_string(nnz) +
                           " entries, the file has " + std::to_string(seen));
  }
  auto by_doc = [](const Entry& a, const Entry& b) { return a.doc < b.doc; };
  // (Sorting takes a buffer as large as the entries; files come sorted.)
  if (!std::is_sorted(all.begin(), all.end(), by_doc)) {
    std::stable_sort(all.begin(), all.end(), by_doc);
  }
  c.word.reserve(all.size());
  c.count.reserve(all.size());
  c.doc_ptr.reserve(D + 1);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> entries;
  std::size_t at = 0;
  for (std::uint64_t d = 0; d < D; ++d) {
    for (; at < all.size() && all[at].doc == d; ++at) {
      entries.emplace_back(all[at].word, all[at].count);
    }
    TESSERA_RETURN_IF_ERROR(CheckMerged(
        AddDocument(c, entries), docword_path + ": document " + std::to_string(d + 1) + ": "));
  }
  TESSERA_RETURN_IF_ERROR(CheckTokens(c, in));
  if (vocab_path.empty()) {
    c.vocab.resize(W);
    for (std::uint64_t w = 0; w < W; ++w) c.vocab[w] = "w" + std::to_string(w + 1);
    return c;
  }
  LineReader v;
  TESSERA_RETURN_IF_ERROR(v.Open(vocab_path));
  std::uint64_t w = 0;
  while (v.Next(line)) {
    if (w == W) {
      return InvalidArgument(v.Where() + "more words than the " + std::to_string(W) +
                             " the docword header declares");
    }
    c.vocab.emplace_back(line);
    ++w;
  }
  TESSERA_RETURN_IF_ERROR(v.status());
  if (w != W) {
    return InvalidArgument(vocab_path + ": " + std::to_string(w) + " words, the docword header " +
                           "declares " + std::to_string(W));
  }
  return c;
}

StatusOr<Corpus> ReadLibsvmCounts(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  Corpus c;
  c.source = path;
  std::string_view line;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> entries;
  std::uint64_t max_index = 0;
  bool zero_based = false;
  while (in.Next(line)) {
    const auto t = Tokens(line.substr(0, line.find('#')));
    if (t.empty()) continue;                      // blank or comment line: not a document
    for (std::size_t i = 1; i < t.size(); ++i) {  // t[0] is the label
      const auto colon = t[i].find(':');
      std::uint64_t index = 0, n = 0;
      if (colon == std::string_view::npos || !ParseUint(t[i].substr(0, colon), index) ||
          !ParseUint(t[i].substr(colon + 1), n) || n < 1 || n > UINT32_MAX) {
        return InvalidArgument(in.Where() +
                               "expected 'index:count' with a positive integer "
                               "count, got " +
                               Quote(t[i]));
      }
      if (index > kMaxWords) {
        return InvalidArgument(in.Where() + "word index " + std::to_string(index) +
                               " is beyond the " + std::to_string(kMaxWords) +
                               " words Tessera reads");
      }
      zero_based = zero_based || index == 0;
      max_index = std::max(max_index, index);
      entries.emplace_back(static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(n));
    }
    TESSERA_RETURN_IF_ERROR(CheckMerged(AddDocument(c, entries, &in), in.Where()));
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  TESSERA_RETURN_IF_ERROR(CheckTokens(c, in));
  if (c.num_docs() == 0) return InvalidArgument(path + ": no documents");
  if (!zero_based) {  // 1-based indices: shift to 0-based word ids
    for (auto& w : c.word) --w;
  }
  const std::uint64_t W = zero_based ? max_index + 1 : max_index;
  c.vocab.resize(W);
  for (std::uint64_t w = 0; w < W; ++w) c.vocab[w] = "w" + std::to_string(zero_based ? w : w + 1);
  return c;
}

StatusOr<Corpus> ReadTextCorpus(const std::string& path, int min_count) {
  if (min_count < 1) return InvalidArgument("--min-count must be at least 1");
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::unordered_map<std::string, std::uint32_t> index;
  std::vector<std::string> names;
  std::vector<std::uint64_t> frequency;
  std::vector<std::vector<std::uint32_t>> docs;
  std::string_view line;
  while (in.Next(line)) {
    std::vector<std::uint32_t> doc;
    for (std::string_view tok : Tokens(line)) {
      auto [it, added] = index.emplace(std::string(tok), static_cast<std::uint32_t>(names.size()));
      if (added) {
        names.emplace_back(tok);
        frequency.push_back(0);
      }
      ++frequency[it->second];
      doc.push_back(it->second);
    }
    docs.push_back(std::move(doc));
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  // Keep words seen at least min_count times, renumbered in order of first appearance.
  std::vector<std::uint32_t> remap(names.size(), UINT32_MAX);
  Corpus c;
  c.source = path;
  for (std::size_t w = 0; w < names.size(); ++w) {
    if (frequency[w] >= static_cast<std::uint64_t>(min_count)) {
      remap[w] = static_cast<std::uint32_t>(c.vocab.size());
      c.vocab.push_back(names[w]);
    }
  }
  if (c.vocab.empty()) {
    return InvalidArgument(path + ": no word occurs " + std::to_string(min_count) +
                           (min_count == 1 ? " time" : " times") + " or more");
  }
  std::vector<std::pair<std::uint32_t, std::uint32_t>> entries;
  for (const auto& doc : docs) {
    for (std::uint32_t w : doc) {
      if (remap[w] != UINT32_MAX) entries.emplace_back(remap[w], 1);
    }
    (void)AddDocument(c, entries);  // counts of 1 from a line of bounded length: no overflow
  }
  return c;
}

}  // namespace tessera
