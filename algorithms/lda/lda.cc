#include "tessera/algorithms/lda/lda.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/algorithms/lda/lda_internal.h"
#include "tessera/core/dataset.h"
#include "tessera/core/line_reader.h"
#include "tessera/core/memory_limit.h"

namespace tessera {

Status LdaOptions::Validate() const {
  if (mode != "model-parallel" && mode != "data-parallel") {
    return InvalidArgument("unknown LDA mode '" + mode +
                           "' (expected model-parallel or data-parallel)");
  }
  if (!(checkpoint_every >= 0)) return InvalidArgument("--checkpoint-every must be >= 0");
  if (sampler != "mh" && sampler != "gibbs") {
    return InvalidArgument("unknown LDA sampler '" + sampler + "' (expected mh or gibbs)");
  }
  if (topics < 1 || topics > (1 << 24)) {
    return InvalidArgument("topics must be in [1, 16777216], got " + std::to_string(topics));
  }
  if (!(alpha >= 0) || !std::isfinite(alpha)) {
    return InvalidArgument("alpha must be positive (0 = 50/K), got " + std::to_string(alpha));
  }
  if (!(beta > 0) || !std::isfinite(beta)) {
    return InvalidArgument("beta must be positive, got " + std::to_string(beta));
  }
  if (iterations < 0) return InvalidArgument("iterations must be >= 0");
  if (mh_steps < 1) return InvalidArgument("mh steps must be >= 1");
  if (evaluate_every < 1) return InvalidArgument("evaluate-every must be >= 1");
  TESSERA_RETURN_IF_ERROR(engine.Validate());
  if (engine.pipeline_depth != 1) {
    return InvalidArgument("LDA needs pipeline depth 1 (rounds hand vocabulary blocks over)");
  }
  if (mode == "data-parallel") {
    DataParallelOptions dp = data_parallel;
    dp.workers = engine.workers;
    TESSERA_RETURN_IF_ERROR(dp.Validate());
    if (dp.consistency.model == ConsistencyModel::kHogwild) {
      return InvalidArgument("LDA counts need a parameter-server consistency model, not hogwild");
    }
    if (dp.model_averaging) {
      return InvalidArgument("LDA counts are summed, not averaged: model averaging does not apply");
    }
    if (dp.partition == PartitionScheme::kOverlapReshuffle) {
      return InvalidArgument(
          "LDA needs disjoint document partitions (each token has one owner), not "
          "overlap_reshuffle");
    }
  }
  return Status::Ok();
}

std::int32_t LdaModel::Count(std::uint32_t w, int k) const {
  const auto* begin = word_topic.data() + word_ptr[w];
  const auto* end = word_topic.data() + word_ptr[w + 1];
  const auto* at = std::lower_bound(begin, end, static_cast<std::uint32_t>(k));
  return at != end && *at == static_cast<std::uint32_t>(k) ? word_count[at - word_topic.data()] : 0;
}

double LdaModel::Phi(std::uint32_t w, int k) const {
  return (Count(w, k) + beta) / (static_cast<double>(topic_total[static_cast<std::size_t>(k)]) +
                                 beta * static_cast<double>(num_words()));
}

std::vector<std::uint32_t> LdaModel::TopWords(int k, int n) const {
  std::vector<std::uint32_t> ids(num_words());
  std::iota(ids.begin(), ids.end(), 0u);
  std::vector<std::int32_t> counts(num_words());
  for (std::uint32_t w = 0; w < num_words(); ++w) counts[w] = Count(w, k);
  const auto count = [&](std::uint32_t w) { return counts[w]; };
  const std::size_t m = std::min<std::size_t>(static_cast<std::size_t>(std::max(n, 0)), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(m), ids.end(),
                    [&](std::uint32_t a, std::uint32_t b) {
                      return count(a) != count(b) ? count(a) > count(b) : a < b;
                    });
  ids.resize(m);
  return ids;
}

namespace lda_internal {

std::pair<std::uint64_t, std::uint64_t> Tokens::Segment(std::size_t d, KeyRange words) const {
  const auto b = word.begin() + static_cast<std::ptrdiff_t>(doc_ptr[d]);
  const auto e = word.begin() + static_cast<std::ptrdiff_t>(doc_ptr[d + 1]);
  const auto lo = std::lower_bound(b, e, static_cast<std::uint32_t>(words.begin));
  const auto hi = std::lower_bound(lo, e, static_cast<std::uint32_t>(words.end));
  return {static_cast<std::uint64_t>(lo - word.begin()),
          static_cast<std::uint64_t>(hi - word.begin())};
}

Tokens BuildTokens(const Corpus& c, int blocks, int topics, std::uint64_t seed, bool keep_topics) {
  Tokens t;
  const std::size_t V = c.num_words();
  std::vector<std::uint64_t> freq(V, 0);
  for (std::size_t j = 0; j < c.word.size(); ++j) freq[c.word[j]] += c.count[j];
  // Blocks of equal word count (the rotation scheduler's partitions), filled greedily, most
  // frequent word first, into the block with the fewest tokens that still has room.
  const auto P = static_cast<std::size_t>(std::max(blocks, 1));
  const auto sizes = SplitRange(V, static_cast<int>(P));
  std::vector<std::uint32_t> order(V);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return freq[a] > freq[b]; });
  std::vector<std::vector<std::uint32_t>> members(P);
  std::vector<std::uint64_t> load(P, 0);
  for (std::uint32_t w : order) {
    std::size_t best = P;
    for (std::size_t b = 0; b < P; ++b) {
      if (members[b].size() < sizes[b].size() && (best == P || load[b] < load[best])) best = b;
    }
    members[best].push_back(w);
    load[best] += freq[w];
  }
  t.to_internal.assign(V, 0);
  t.to_original.reserve(V);
  for (std::size_t b = 0; b < P; ++b) {
    std::sort(members[b].begin(), members[b].end());
    for (std::uint32_t w : members[b]) {
      t.to_internal[w] = static_cast<std::uint32_t>(t.to_original.size());
      t.to_original.push_back(w);
    }
  }
  t.blocks = sizes;
  t.word_count.assign(V, 0);
  for (std::size_t w = 0; w < V; ++w) t.word_count[t.to_internal[w]] = freq[w];

  t.seed = seed;
  t.topics = topics;
  const std::uint64_t N = c.num_tokens();
  t.word.reserve(N);
  if (keep_topics) t.topic.reserve(N);
  std::vector<std::uint32_t> doc;
  for (std::size_t d = 0; d < c.num_docs(); ++d) {
    doc.clear();
    for (std::uint64_t j = c.doc_ptr[d]; j < c.doc_ptr[d + 1]; ++j) {
      doc.insert(doc.end(), c.count[j], t.to_internal[c.word[j]]);
    }
    std::sort(doc.begin(), doc.end());
    for (std::uint32_t w : doc) {
      if (keep_topics) {
        t.topic.push_back(InitialTopic(seed, t.word.size(), static_cast<std::uint32_t>(topics)));
      }
      t.word.push_back(w);
    }
    t.doc_ptr.push_back(t.word.size());
  }
  return t;
}

namespace {

template <class Docs>
WordIndex IndexDocs(const Tokens& t, const Docs& docs) {
  WordIndex x;
  const std::size_t V = t.word_count.size();
  x.ptr.assign(V + 1, 0);
  for (std::size_t d : docs) {
    for (std::uint64_t i = t.doc_ptr[d]; i < t.doc_ptr[d + 1]; ++i) ++x.ptr[t.word[i] + 1];
  }
  for (std::size_t w = 0; w < V; ++w) x.ptr[w + 1] += x.ptr[w];
  x.topic.resize(x.ptr[V]);
  x.slot.assign(t.num_tokens(), WordIndex::kNone);
  std::vector<std::uint64_t> fill(x.ptr.begin(), x.ptr.end() - 1);
  for (std::size_t d : docs) {
    for (std::uint64_t i = t.doc_ptr[d]; i < t.doc_ptr[d + 1]; ++i) {
      const std::uint64_t at = fill[t.word[i]]++;
      x.topic[at] = t.topic[i];
      x.slot[i] = static_cast<std::uint32_t>(at);
    }
  }
  return x;
}

std::vector<std::size_t> Iota(std::size_t begin, std::size_t end) {
  std::vector<std::size_t> v(end - begin);
  std::iota(v.begin(), v.end(), begin);
  return v;
}

}  // namespace

WordRows::WordRows(const std::uint64_t* count, std::size_t words, int K) {
  const auto dense = static_cast<std::uint64_t>(K);
  wide_ = dense >= CountRow::kCompactTopics;
  const std::uint64_t words_per_slot = wide_ ? 2 : 1;
  offset_.reserve(words + 1);
  bits_.reserve(words);
  std::uint64_t at = 0;
  for (std::size_t r = 0; r < words; ++r) {
    unsigned bits = 1;
    while ((std::uint64_t{1} << bits) < 2 * std::min(count[r], dense)) ++bits;
    // A hashed row's words against the dense row's K. (A compact row's counts stay below
    // 2^bits / 2 < K / 2 < 2^16.)
    if (words_per_slot * (std::uint64_t{1} << bits) >= dense || bits >= 31) bits = 0;
    offset_.push_back(at);
    bits_.push_back(static_cast<std::uint8_t>(bits));
    at += bits == 0 ? dense : words_per_slot * (std::uint64_t{1} << bits);
  }
  offset_.push_back(at);
  pool_.resize(at);
  Clear();
}

void WordRows::Clear() {
  for (std::size_t r = 0; r < bits_.size(); ++r) {
    std::uint32_t* p = pool_.data() + offset_[r];
    if (bits_[r] == 0) {
      std::fill(p, pool_.data() + offset_[r + 1], 0u);
    } else if (!wide_) {
      std::fill(p, pool_.data() + offset_[r + 1], CountRow::kEmpty);
    } else {
      for (std::uint64_t j = 0; j < (std::uint64_t{1} << bits_[r]); ++j) {
        p[2 * j] = CountRow::kEmpty;
        p[2 * j + 1] = 0;
      }
    }
  }
}

WordIndex BuildWordIndex(const Tokens& t, std::size_t doc_begin, std::size_t doc_end) {
  return IndexDocs(t, Iota(doc_begin, doc_end));
}

WordIndex BuildWordIndex(const Tokens& t, const std::vector<std::uint32_t>& docs) {
  return IndexDocs(t, docs);
}

namespace {

double DocTerm(const Hyper& h, const Tokens& t, std::size_t d, std::vector<std::int32_t>& nd,
               double lg_kalpha) {
  const std::uint64_t b = t.doc_ptr[d], e = t.doc_ptr[d + 1];
  for (std::uint64_t i = b; i < e; ++i) ++nd[t.topic[i]];
  double s = lg_kalpha - lda_internal::LogGamma(static_cast<double>(e - b) + h.kalpha);
  const double lg_alpha = lda_internal::LogGamma(h.alpha);
  for (std::uint64_t i = b; i < e; ++i) {
    std::int32_t& n = nd[t.topic[i]];
    if (n > 0) s += lda_internal::LogGamma(n + h.alpha) - lg_alpha;
    n = 0;
  }
  return s;
}

}  // namespace

double DocLogLikelihood(const Hyper& h, const Tokens& t, std::size_t doc_begin, std::size_t doc_end,
                        std::vector<std::int32_t>& nd) {
  double s = 0;
  const double lg = lda_internal::LogGamma(h.kalpha);
  for (std::size_t d = doc_begin; d < doc_end; ++d) s += DocTerm(h, t, d, nd, lg);
  return s;
}

double DocLogLikelihood(const Hyper& h, const Tokens& t, const std::vector<std::uint32_t>& docs,
                        std::vector<std::int32_t>& nd) {
  double s = 0;
  const double lg = lda_internal::LogGamma(h.kalpha);
  for (std::uint32_t d : docs) s += DocTerm(h, t, d, nd, lg);
  return s;
}

double TopicLogLikelihood(const Hyper& h, const double* nk) {
  double s = 0;
  const double lg = lda_internal::LogGamma(h.vbeta);
  for (int k = 0; k < h.K; ++k) s += lg - lda_internal::LogGamma(nk[k] + h.vbeta);
  return s;
}

namespace {

// A model with its hyper-parameters and vocabulary, no rows yet. A row has at most as many
// entries as its word (or document) has tokens: room for that many, which takes memory only as
// the rows fill it, and spares the copies that growing the arrays would make (old and new at
// once, the peak of a run's end).
LdaModel ModelShell(const Hyper& h, const Corpus& corpus, const Tokens& t) {
  LdaModel m;
  m.topics = h.K;
  m.alpha = h.alpha;
  m.beta = h.beta;
  m.vocab = corpus.vocab;
  m.word_ptr.reserve(corpus.num_words() + 1);
  m.topic_total.assign(static_cast<std::size_t>(h.K), 0);
  const std::size_t most = std::min<std::size_t>(
      t.num_tokens(), static_cast<std::size_t>(h.K) * std::max(corpus.num_words(), t.num_docs()));
  m.word_topic.reserve(most);
  m.word_count.reserve(most);
  m.doc_topic.reserve(most);
  m.doc_count.reserve(most);
  m.doc_ptr.reserve(t.num_docs() + 1);
  return m;
}

// Ends word row w: appends the nonzero counts of `touched` topics from `counts` (which it
// zeroes), topics ascending.
void EndWordRow(LdaModel& m, std::vector<std::uint32_t>& touched,
                std::vector<std::int32_t>& counts) {
  std::sort(touched.begin(), touched.end());
  for (std::uint32_t k : touched) {
    m.word_topic.push_back(k);
    m.word_count.push_back(counts[k]);
    m.topic_total[k] += counts[k];
    counts[k] = 0;
  }
  touched.clear();
  m.word_ptr.push_back(m.word_topic.size());
}

// Document rows from the tokens' topics.
void AddDocRows(LdaModel& m, const Tokens& t) {
  const auto K = static_cast<std::size_t>(m.topics);
  std::vector<std::int32_t> nd(K, 0);
  for (std::size_t d = 0; d < t.num_docs(); ++d) {
    for (std::uint64_t i = t.doc_ptr[d]; i < t.doc_ptr[d + 1]; ++i) ++nd[t.TopicOf(i)];
    for (std::size_t k = 0; k < K; ++k) {
      if (nd[k] == 0) continue;
      m.doc_topic.push_back(static_cast<std::uint32_t>(k));
      m.doc_count.push_back(static_cast<std::uint32_t>(nd[k]));
      nd[k] = 0;
    }
    m.doc_ptr.push_back(m.doc_topic.size());
  }
}

}  // namespace

LdaModel MakeModel(const Hyper& h, const Corpus& corpus, const Tokens& t,
                   const std::vector<std::int32_t>& wt) {
  LdaModel m = ModelShell(h, corpus, t);
  const auto K = static_cast<std::size_t>(h.K);
  std::vector<std::int32_t> counts(K, 0);
  std::vector<std::uint32_t> touched;
  for (std::size_t w = 0; w < corpus.num_words(); ++w) {
    const std::int32_t* row = wt.data() + std::size_t{t.to_internal[w]} * K;
    for (std::size_t k = 0; k < K; ++k) {
      if (row[k] != 0) touched.push_back(static_cast<std::uint32_t>(k));
      counts[k] = row[k];
    }
    EndWordRow(m, touched, counts);
  }
  AddDocRows(m, t);
  return m;
}

LdaModel MakeModel(const Hyper& h, const Corpus& corpus, const Tokens& t, const SparseRows& rows) {
  LdaModel m = ModelShell(h, corpus, t);
  std::vector<std::int32_t> counts(static_cast<std::size_t>(h.K), 0);
  std::vector<std::uint32_t> touched;
  for (std::size_t w = 0; w < corpus.num_words(); ++w) {
    const std::size_t r = t.to_internal[w];
    for (std::uint64_t j = rows.ptr[r]; j < rows.ptr[r + 1]; ++j) {
      const auto c = static_cast<std::int32_t>(std::lround(rows.value[j]));
      if (c == 0) continue;
      touched.push_back(rows.index[j]);
      counts[rows.index[j]] = c;
    }
    EndWordRow(m, touched, counts);
  }
  AddDocRows(m, t);
  return m;
}

namespace {

// The model from the tokens' topics; with `take` (the tokens themselves), their words and
// topics are freed once the rows no longer need them, before the word rows take their memory.
LdaModel ModelFromTokens(const Hyper& h, const Corpus& corpus, const Tokens& t, Tokens* take) {
  LdaModel m = ModelShell(h, corpus, t);
  AddDocRows(m, t);
  const auto K = static_cast<std::size_t>(h.K);
  // The tokens' topics grouped by internal word (a counting sort), then each word's row.
  const std::size_t V = corpus.num_words();
  std::vector<std::uint64_t> start(V + 1, 0);
  for (std::uint32_t w : t.word) ++start[w + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<std::uint32_t> by_word(t.num_tokens());
  {
    std::vector<std::uint64_t> next(start.begin(), start.end() - 1);
    for (std::size_t i = 0; i < t.num_tokens(); ++i) by_word[next[t.word[i]]++] = t.topic[i];
  }
  if (take) {
    std::vector<std::uint32_t>().swap(take->word);
    std::vector<std::uint32_t>().swap(take->topic);
    ReturnFreedMemory();
  }
  std::vector<std::int32_t> counts(K, 0);
  std::vector<std::uint32_t> touched;
  for (std::size_t w = 0; w < V; ++w) {
    const std::uint32_t src = t.to_internal[w];
    for (std::uint64_t i = start[src]; i < start[src + 1]; ++i) {
      if (counts[by_word[i]]++ == 0) touched.push_back(by_word[i]);
    }
    EndWordRow(m, touched, counts);
  }
  return m;
}

}  // namespace

LdaModel MakeModelFromTokens(const Hyper& h, const Corpus& corpus, const Tokens& t) {
  return ModelFromTokens(h, corpus, t, nullptr);
}

LdaModel TakeModelFromTokens(const Hyper& h, const Corpus& corpus, Tokens& t) {
  return ModelFromTokens(h, corpus, t, &t);
}

void Recorder::Record(int iteration, double ll, double perplexity, double eval_started) {
  LdaIteration it;
  it.iteration = iteration;
  it.log_likelihood = ll;
  const auto n = static_cast<double>(num_tokens);
  it.ll_per_token = n > 0 ? ll / n : 0;
  it.perplexity = perplexity;
  eval_seconds += clock.Seconds() - eval_started;
  // The engine's closing evaluation of a run resumed with every sweep done: recorded already.
  if (!history.empty() && history.back().iteration == iteration) return;
  it.seconds = SamplingSeconds();
  it.tokens_per_second = it.seconds > 0 ? n * (iteration - resumed_at) / it.seconds : 0;
  history.push_back(it);
  if (on_iteration) on_iteration(it);
}

LdaResult Common::Finish(LdaModel model, RunResult run) const {
  LdaResult r;
  r.model = std::move(model);
  r.run = std::move(run);
  r.history = rec.history;
  if (!r.history.empty()) r.tokens_per_second = r.history.back().tokens_per_second;
  return r;
}

Corpus VocabularyOf(Corpus c) {
  Corpus v;
  v.vocab = std::move(c.vocab);
  v.source = std::move(c.source);
  return v;
}

std::string Common::Problem(const std::string& extra) const {
  return "documents " + std::to_string(t.num_docs()) + ", words " +
         std::to_string(corpus.num_words()) + ", tokens " + std::to_string(t.num_tokens()) +
         ", topics " + std::to_string(h.K) + extra;
}

Checkpoint Common::Save(const std::string& problem) const {
  Checkpoint c = Checkpoint::For("lda", problem);
  std::vector<std::uint64_t> topics(t.num_tokens());
  for (std::size_t i = 0; i < topics.size(); ++i) topics[i] = t.TopicOf(i);
  c.PutU64s("topics", topics);
  std::vector<double> history;
  for (const LdaIteration& it : rec.history) {
    history.insert(history.end(), {static_cast<double>(it.iteration), it.seconds, it.log_likelihood,
                                   it.ll_per_token, it.tokens_per_second, it.perplexity});
  }
  c.PutDoubles("history", history);
  return c;
}

Status Common::Restore(const Checkpoint& c, const std::string& problem) {
  const std::string& src = c.source();
  TESSERA_RETURN_IF_ERROR(c.Matches("lda", problem));
  TESSERA_ASSIGN_OR_RETURN(auto topics, c.U64s("topics"));
  TESSERA_ASSIGN_OR_RETURN(auto history, c.Doubles("history"));
  if (topics.size() != t.num_tokens() || history.size() % 6 != 0) {
    return DataLoss(src + ": the topics do not cover the corpus's tokens");
  }
  t.topic.resize(topics.size());  // kept from here on, whether or not the initial ones were
  for (std::size_t i = 0; i < topics.size(); ++i) {
    if (topics[i] >= static_cast<std::uint64_t>(h.K)) {
      return DataLoss(src + ": token " + std::to_string(i) + " has topic " +
                      std::to_string(topics[i]) + " of " + std::to_string(h.K));
    }
    t.topic[i] = static_cast<std::uint32_t>(topics[i]);
  }
  rec.history.clear();
  for (std::size_t i = 0; i < history.size(); i += 6) {
    LdaIteration it;
    it.iteration = static_cast<int>(history[i]);
    it.seconds = history[i + 1];
    it.log_likelihood = history[i + 2];
    it.ll_per_token = history[i + 3];
    it.tokens_per_second = history[i + 4];
    it.perplexity = history[i + 5];
    rec.history.push_back(it);
  }
  return Status::Ok();
}

}  // namespace lda_internal

double LdaLogLikelihood(const LdaModel& m) {
  const auto K = static_cast<std::size_t>(m.topics);
  const double V = static_cast<double>(m.num_words());
  const double kalpha = m.alpha * m.topics;
  double s = 0;
  const double lg_alpha = lda_internal::LogGamma(m.alpha), lg_beta = lda_internal::LogGamma(m.beta);
  for (std::size_t d = 0; d < m.num_docs(); ++d) {
    double len = 0;
    for (std::uint64_t j = m.doc_ptr[d]; j < m.doc_ptr[d + 1]; ++j) {
      s += lda_internal::LogGamma(m.doc_count[j] + m.alpha) - lg_alpha;
      len += m.doc_count[j];
    }
    s += lda_internal::LogGamma(kalpha) - lda_internal::LogGamma(len + kalpha);
  }
  for (std::size_t k = 0; k < K; ++k) {
    s += lda_internal::LogGamma(V * m.beta) -
         lda_internal::LogGamma(static_cast<double>(m.topic_total[k]) + V * m.beta);
  }
  for (std::int32_t n : m.word_count) s += lda_internal::LogGamma(n + m.beta) - lg_beta;
  return s;
}

namespace {

// Collapsed Gibbs sampling of one document's topics with the model's φ fixed: what held-out
// perplexity and inference share.
class FixedPhiSampler {
 public:
  explicit FixedPhiSampler(const LdaModel& m)
      : m_(m),
        K_(static_cast<std::size_t>(m.topics)),
        denom_(K_),
        phi_zero_(K_),
        phi_row_(K_),
        nd_(K_),
        cdf_(K_) {
    for (std::size_t k = 0; k < K_; ++k) {
      denom_[k] =
          static_cast<double>(m.topic_total[k]) + m.beta * static_cast<double>(m.num_words());
      phi_zero_[k] = m.beta / denom_[k];
    }
  }

  // φ of word w over the topics, from its sparse row: β / (n_k + Vβ) where n_kw = 0. Valid
  // until the next call.
  const double* Phi(std::uint32_t w) {
    std::copy(phi_zero_.begin(), phi_zero_.end(), phi_row_.begin());
    for (std::uint64_t j = m_.word_ptr[w]; j < m_.word_ptr[w + 1]; ++j) {
      phi_row_[m_.word_topic[j]] = (m_.word_count[j] + m_.beta) / denom_[m_.word_topic[j]];
    }
    return phi_row_.data();
  }

  // θ of a document of `tokens` (the model's word ids): topics drawn uniformly, then
  // burn_in + samples sweeps; θ_k = (n_dk + α) / (N_d + Kα) averaged over the last `samples`.
  void Mixture(std::span<const std::uint32_t> tokens, int burn_in, int samples,
               lda_internal::Rng& rng, std::vector<double>& theta) {
    const double alpha = m_.alpha;
    theta.assign(K_, 0.0);
    std::fill(nd_.begin(), nd_.end(), 0);
    z_.resize(tokens.size());
    for (auto& t : z_) {
      t = rng.Below(static_cast<std::uint32_t>(K_));
      ++nd_[t];
    }
    for (int sweep = 0; sweep < burn_in + samples; ++sweep) {
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        --nd_[z_[i]];
        const double* p = Phi(tokens[i]);
        double total = 0;
        for (std::size_t k = 0; k < K_; ++k) {
          total += (nd_[k] + alpha) * p[k];
          cdf_[k] = total;
        }
        const double u = rng.Uniform() * total;
        std::size_t k = 0;
        while (k + 1 < K_ && cdf_[k] <= u) ++k;
        z_[i] = static_cast<std::uint32_t>(k);
        ++nd_[k];
      }
      if (sweep >= burn_in) {
        const double norm = static_cast<double>(tokens.size()) + alpha * static_cast<double>(K_);
        for (std::size_t k = 0; k < K_; ++k) theta[k] += (nd_[k] + alpha) / norm / samples;
      }
    }
  }

 private:
  const LdaModel& m_;
  std::size_t K_;
  std::vector<double> denom_, phi_zero_, phi_row_;
  std::vector<std::int32_t> nd_;
  std::vector<double> cdf_;
  std::vector<std::uint32_t> z_;
};

}  // namespace

double HeldOutPerplexity(const LdaModel& m, const Corpus& test, std::uint64_t seed) {
  const auto Ku = static_cast<std::size_t>(m.topics);
  FixedPhiSampler sampler(m);
  lda_internal::Rng rng(seed);
  constexpr int kBurnIn = 10, kSamples = 10;
  std::vector<std::uint32_t> observed, held;
  std::vector<double> theta(Ku);
  double log_p = 0;
  std::uint64_t n_held = 0;
  for (std::size_t d = 0; d < test.num_docs(); ++d) {
    observed.clear();
    held.clear();
    std::uint64_t pos = 0;
    for (std::uint64_t j = test.doc_ptr[d]; j < test.doc_ptr[d + 1]; ++j) {
      if (test.word[j] >= m.num_words()) continue;  // unknown word: not scored
      for (std::uint32_t c = 0; c < test.count[j]; ++c, ++pos) {
        (pos % 2 == 0 ? observed : held).push_back(test.word[j]);
      }
    }
    if (held.empty()) continue;
    sampler.Mixture(observed, kBurnIn, kSamples, rng, theta);
    for (std::uint32_t w : held) {
      const double* p = sampler.Phi(w);
      double s = 0;
      for (std::size_t k = 0; k < Ku; ++k) s += theta[k] * p[k];
      log_p += std::log(s);
      ++n_held;
    }
  }
  return n_held ? std::exp(-log_p / static_cast<double>(n_held))
                : std::numeric_limits<double>::quiet_NaN();
}

StatusOr<LdaInference> InferLdaTopics(const LdaModel& m, const Corpus& docs,
                                      const LdaInferOptions& options) {
  if (options.burn_in < 0 || options.samples < 1) {
    return InvalidArgument("inference needs burn-in >= 0 and at least 1 sample");
  }
  const auto K = static_cast<Eigen::Index>(m.topics);
  TESSERA_RETURN_IF_ERROR(
      CheckAllocation("topic mixtures of " + std::to_string(docs.num_docs()) + " documents x " +
                          std::to_string(m.topics) + " topics",
                      8.0 * static_cast<double>(docs.num_docs()) * static_cast<double>(m.topics)));
  // The documents' words by name in the model's vocabulary (absent: not sampled, counted).
  std::unordered_map<std::string_view, std::uint32_t> model_id;
  model_id.reserve(m.vocab.size());
  for (std::uint32_t w = 0; w < m.vocab.size(); ++w) model_id.emplace(m.vocab[w], w);
  constexpr std::uint32_t kUnknown = ~std::uint32_t{0};
  std::vector<std::uint32_t> to_model(docs.num_words(), kUnknown);
  for (std::uint32_t w = 0; w < docs.num_words(); ++w) {
    if (auto it = model_id.find(docs.vocab[w]); it != model_id.end()) to_model[w] = it->second;
  }
  LdaInference out;
  out.theta.resize(static_cast<Eigen::Index>(docs.num_docs()), K);
  out.tokens.assign(docs.num_docs(), 0);
  FixedPhiSampler sampler(m);
  lda_internal::Rng rng(options.seed);
  std::vector<std::uint32_t> tokens;
  std::vector<double> theta;
  for (std::size_t d = 0; d < docs.num_docs(); ++d) {
    tokens.clear();
    for (std::uint64_t j = docs.doc_ptr[d]; j < docs.doc_ptr[d + 1]; ++j) {
      const std::uint32_t w = docs.word[j] < to_model.size() ? to_model[docs.word[j]] : kUnknown;
      if (w == kUnknown) {
        out.unknown_tokens += docs.count[j];
        continue;
      }
      tokens.insert(tokens.end(), docs.count[j], w);
    }
    out.tokens[d] = tokens.size();
    sampler.Mixture(tokens, options.burn_in, options.samples, rng, theta);
    for (Eigen::Index k = 0; k < K; ++k)
      out.theta(static_cast<Eigen::Index>(d), k) = theta[static_cast<std::size_t>(k)];
  }
  return out;
}

void HoldOutDocuments(const Corpus& all, double fraction, std::uint64_t seed, Corpus& train,
                      Corpus& test) {
  train = Corpus();
  test = Corpus();
  train.vocab = test.vocab = all.vocab;
  train.source = test.source = all.source;
  std::mt19937_64 rng(seed ^ 0x7e57);
  std::uniform_real_distribution<double> coin(0, 1);
  for (std::size_t d = 0; d < all.num_docs(); ++d) {
    std::uint64_t n = 0;
    for (std::uint64_t j = all.doc_ptr[d]; j < all.doc_ptr[d + 1]; ++j) n += all.count[j];
    Corpus& to = (coin(rng) < fraction && n >= 2) ? test : train;
    for (std::uint64_t j = all.doc_ptr[d]; j < all.doc_ptr[d + 1]; ++j) {
      to.word.push_back(all.word[j]);
      to.count.push_back(all.count[j]);
    }
    to.doc_ptr.push_back(to.word.size());
  }
}

Status WriteLdaTopics(const std::string& path, const LdaModel& m, int top_words) {
  CsvWriter out;  // atomic text writer
  TESSERA_RETURN_IF_ERROR(out.Open(path, "# topic total top-words"));
  for (int k = 0; k < m.topics; ++k) {
    std::string line = "topic " + std::to_string(k) + " " +
                       std::to_string(m.topic_total[static_cast<std::size_t>(k)]);
    for (std::uint32_t w : m.TopWords(k, top_words)) line += " " + m.vocab[w];
    out.Row(line);
  }
  return out.Finish();
}

Status WriteLdaModel(const std::string& path, const LdaModel& m) {
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(out.Open(path, "tessera-lda 1"));
  out.Row("topics " + std::to_string(m.topics));
  out.Row("alpha " + FormatDouble(m.alpha));
  out.Row("beta " + FormatDouble(m.beta));
  out.Row("words " + std::to_string(m.num_words()));
  out.Row("docs " + std::to_string(m.num_docs()));
  for (std::size_t w = 0; w < m.num_words(); ++w) {
    std::string line = "w " + m.vocab[w];
    for (std::uint64_t j = m.word_ptr[w]; j < m.word_ptr[w + 1]; ++j) {
      line += " " + std::to_string(m.word_topic[j]) + ":" + std::to_string(m.word_count[j]);
    }
    out.Row(line);
  }
  for (std::size_t d = 0; d < m.num_docs(); ++d) {
    std::string line = "d " + std::to_string(d);
    for (std::uint64_t j = m.doc_ptr[d]; j < m.doc_ptr[d + 1]; ++j) {
      line += " " + std::to_string(m.doc_topic[j]) + ":" + std::to_string(m.doc_count[j]);
    }
    out.Row(line);
  }
  return out.Finish();
}

namespace {

// Parses "k:n" pairs after the first two fields of a model line.
Status ParsePairs(const LineReader& in, std::string_view rest, std::uint64_t K,
                  std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) {
  out.clear();
  std::size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    std::size_t j = i;
    while (j < rest.size() && rest[j] != ' ') ++j;
    if (j == i) break;
    const std::string_view item = rest.substr(i, j - i);
    const auto colon = item.find(':');
    std::uint64_t k = 0, n = 0;
    if (colon == std::string_view::npos || !ParseCount(item.substr(0, colon), k) ||
        !ParseCount(item.substr(colon + 1), n) || n == 0 || n > 0x7fffffff) {
      return InvalidArgument(in.Where() + "expected topic:count, got '" + std::string(item) + "'");
    }
    if (k >= K) {
      return InvalidArgument(in.Where() + "topic " + std::to_string(k) + " out of range (" +
                             std::to_string(K) + " topics)");
    }
    if (!out.empty() && k <= out.back().first) {
      return InvalidArgument(in.Where() + "topics must be ascending, got " + std::to_string(k) +
                             " after " + std::to_string(out.back().first));
    }
    out.emplace_back(static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(n));
    i = j;
  }
  return Status::Ok();
}

}  // namespace

StatusOr<LdaModel> ReadLdaModel(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::string_view line;
  auto header = [&](const char* key, std::string& value) -> Status {
    if (!in.Next(line)) {
      TESSERA_RETURN_IF_ERROR(in.status());
      return InvalidArgument(path + ": ends before the '" + key + "' line");
    }
    const std::string prefix = std::string(key) + " ";
    if (line.substr(0, prefix.size()) != prefix) {
      return InvalidArgument(in.Where() + "expected '" + key + " ...'");
    }
    value = std::string(line.substr(prefix.size()));
    return Status::Ok();
  };
  std::string magic, topics, alpha, beta, words, docs;
  TESSERA_RETURN_IF_ERROR(header("tessera-lda", magic));
  if (magic != "1") return InvalidArgument(in.Where() + "unknown model version '" + magic + "'");
  TESSERA_RETURN_IF_ERROR(header("topics", topics));
  std::uint64_t K = 0, V = 0, D = 0;
  if (!ParseCount(topics, K) || K == 0 || K > (1u << 24)) {
    return InvalidArgument(in.Where() + "bad topic count '" + topics + "'");
  }
  LdaModel m;
  m.topics = static_cast<int>(K);
  TESSERA_RETURN_IF_ERROR(header("alpha", alpha));
  TESSERA_RETURN_IF_ERROR(header("beta", beta));
  try {
    m.alpha = std::stod(alpha);
    m.beta = std::stod(beta);
  } catch (...) {
    return InvalidArgument(in.Where() + "bad alpha or beta");
  }
  if (!(m.alpha > 0) || !(m.beta > 0))
    return InvalidArgument(in.Where() + "alpha and beta must be > 0");
  TESSERA_RETURN_IF_ERROR(header("words", words));
  if (!ParseCount(words, V)) return InvalidArgument(in.Where() + "bad word count '" + words + "'");
  TESSERA_RETURN_IF_ERROR(header("docs", docs));
  if (!ParseCount(docs, D))
    return InvalidArgument(in.Where() + "bad document count '" + docs + "'");
  // Rows are filled as the lines come: a short file naming a huge V allocates nothing it does
  // not back with lines.
  m.topic_total.assign(K, 0);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;
  for (std::uint64_t w = 0; w < V; ++w) {
    if (!in.Next(line)) {
      TESSERA_RETURN_IF_ERROR(in.status());
      return InvalidArgument(path + ": ends after " + std::to_string(w) + " of " +
                             std::to_string(V) + " word lines");
    }
    if (line.substr(0, 2) != "w ") return InvalidArgument(in.Where() + "expected 'w <word> ...'");
    const std::string_view rest = line.substr(2);
    const auto sp = rest.find(' ');
    m.vocab.emplace_back(rest.substr(0, sp));
    if (sp != std::string_view::npos) {
      TESSERA_RETURN_IF_ERROR(ParsePairs(in, rest.substr(sp + 1), K, pairs));
    } else {
      pairs.clear();
    }
    for (auto [k, n] : pairs) {
      m.word_topic.push_back(k);
      m.word_count.push_back(static_cast<std::int32_t>(n));
      m.topic_total[k] += n;
    }
    m.word_ptr.push_back(m.word_topic.size());
  }
  for (std::uint64_t d = 0; d < D; ++d) {
    if (!in.Next(line)) {
      TESSERA_RETURN_IF_ERROR(in.status());
      return InvalidArgument(path + ": ends after " + std::to_string(d) + " of " +
                             std::to_string(D) + " document lines");
    }
    if (line.substr(0, 2) != "d ") return InvalidArgument(in.Where() + "expected 'd <index> ...'");
    const std::string_view rest = line.substr(2);
    const auto sp = rest.find(' ');
    if (sp != std::string_view::npos) {
      TESSERA_RETURN_IF_ERROR(ParsePairs(in, rest.substr(sp + 1), K, pairs));
    } else {
      pairs.clear();
    }
    for (auto [k, n] : pairs) {
      m.doc_topic.push_back(k);
      m.doc_count.push_back(n);
    }
    m.doc_ptr.push_back(m.doc_topic.size());
  }
  if (in.Next(line)) return InvalidArgument(in.Where() + "unexpected line after the model");
  TESSERA_RETURN_IF_ERROR(in.status());
  return m;
}

StatusOr<LdaResult> TrainLdaRotation(Corpus corpus, const LdaOptions& options, const Corpus* test,
                                     const std::function<void(const LdaIteration&)>& on_iteration);
StatusOr<LdaResult> TrainLdaDataParallel(
    Corpus corpus, const LdaOptions& options, const Corpus* test,
    const std::function<void(const LdaIteration&)>& on_iteration);

StatusOr<LdaResult> TrainLda(Corpus corpus, const LdaOptions& options, const Corpus* test,
                             const std::function<void(const LdaIteration&)>& on_iteration) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  if (corpus.num_tokens() == 0) {
    return InvalidArgument((corpus.source.empty() ? "corpus" : corpus.source) + ": no tokens");
  }
  if (corpus.num_tokens() > std::numeric_limits<std::uint32_t>::max()) {
    return InvalidArgument(corpus.source + ": more than 2^32 tokens");
  }
  if (test && test->num_words() != corpus.num_words()) {
    return InvalidArgument("the test corpus has " + std::to_string(test->num_words()) +
                           " words, the training corpus " + std::to_string(corpus.num_words()));
  }
  // Before any count is allocated: the word-topic counts (4 bytes each) are kept about twice
  // model-parallel (the blocks and the gathered model); data-parallel as doubles on the servers
  // and in the tables' initial values, and as counts in each worker's rows; each token takes
  // about 16 bytes (word, topic, its slot and the worker's copy).
  const double V = static_cast<double>(corpus.num_words()), K = options.topics;
  const double per_count =
      options.mode == "data-parallel" ? 2 * 8.0 + 4.0 * options.engine.workers : 2 * 4.0;
  TESSERA_RETURN_IF_ERROR(CheckAllocation(
      std::to_string(options.topics) + " topics over " + std::to_string(corpus.num_words()) +
          " words and " + std::to_string(corpus.num_tokens()) + " tokens",
      per_count * (V + 1) * K + 16.0 * static_cast<double>(corpus.num_tokens())));
  StatusOr<LdaResult> r = options.mode == "data-parallel"
                              ? TrainLdaDataParallel(std::move(corpus), options, test, on_iteration)
                              : TrainLdaRotation(std::move(corpus), options, test, on_iteration);
  if (r.ok()) r->peak_rss_bytes = PeakRssBytes();
  return r;
}

}  // namespace tessera
