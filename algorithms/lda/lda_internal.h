// Shared by the two LDA trainers: the token layout, the per-token samplers and the
// log-likelihood terms. Not part of the public API.
#pragma once

#include <math.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/core/checkpoint.h"
#include "tessera/core/keys.h"
#include "tessera/core/metrics.h"
#include "tessera/core/parameter_server.h"

namespace tessera::lda_internal {

// xoshiro256** (Blackman & Vigna): the samplers draw several numbers per token.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 1) { Seed(seed); }
  void Seed(std::uint64_t seed) {
    for (auto& x : s_) {  // splitmix64
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      x = z ^ (z >> 31);
    }
  }
  std::uint64_t Next() {
    const std::uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  std::uint32_t Below(std::uint32_t n) {  // [0, n), Lemire's multiply-shift
    return static_cast<std::uint32_t>(((Next() >> 32) * n) >> 32);
  }

 private:
  static std::uint64_t Rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

struct Hyper {
  int K = 0;
  double alpha = 0, beta = 0, vbeta = 0, kalpha = 0, kbeta = 0;
  int mh_steps = 2;
  bool gibbs = false;
  Hyper(const LdaOptions& o, std::size_t vocab)
      : K(o.topics),
        alpha(o.alpha_value()),
        beta(o.beta),
        vbeta(o.beta * static_cast<double>(vocab)),
        kalpha(o.alpha_value() * o.topics),
        kbeta(o.beta * o.topics),
        mh_steps(o.mh_steps),
        gibbs(o.sampler == "gibbs") {}
};

// Token i's topic before any sweep: a hash of (seed, i) (splitmix64's finalizer), so that any
// worker can make the initial topics of any tokens without an array of them all.
inline std::uint32_t InitialTopic(std::uint64_t seed, std::uint64_t i, std::uint32_t K) {
  std::uint64_t z = (seed ^ 0x1da) + (i + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<std::uint32_t>(((z >> 32) * K) >> 32);
}

// Every token of the corpus, in document order; within a document sorted by (internal) word
// id. Words are relabelled so that vocabulary block b is the contiguous id range
// blocks[b], each block holding about the same number of tokens.
struct Tokens {
  std::vector<std::uint32_t> word, topic;  // topic: empty where the initial topics are not kept
  std::vector<std::uint64_t> doc_ptr = {0};
  std::uint64_t seed = 0;  // of the initial topics (InitialTopic)
  int topics = 0;
  std::vector<std::uint32_t> to_internal, to_original;  // word id maps
  std::vector<KeyRange> blocks;                         // internal word ids of each block
  std::vector<std::uint64_t> word_count;                // tokens of each internal word
  std::size_t num_docs() const { return doc_ptr.size() - 1; }
  std::size_t num_tokens() const { return doc_ptr.back(); }  // (also once `word` is let go)
  // Token i's topic: from `topic`, or the initial one when `topic` is empty.
  std::uint32_t TopicOf(std::uint64_t i) const {
    return topic.empty() ? InitialTopic(seed, i, static_cast<std::uint32_t>(topics)) : topic[i];
  }
  // Tokens of doc d with internal word ids in `words`.
  std::pair<std::uint64_t, std::uint64_t> Segment(std::size_t d, KeyRange words) const;
};

// Builds the layout with `blocks` vocabulary blocks and the initial topics of `seed`, kept in
// Tokens::topic when `keep_topics` (else TopicOf makes them).
Tokens BuildTokens(const Corpus& corpus, int blocks, int topics, std::uint64_t seed,
                   bool keep_topics = true);
// The corpus without its documents (their memory freed): the vocabulary and the source.
Corpus VocabularyOf(Corpus c);

// Word-major copy of the topics of a set of tokens: the tokens of internal word w have their
// topics at topic[ptr[w] .. ptr[w+1]); token i's is topic[slot[i]] (slot[i] = kNone when token i
// is not in the set). Kept equal to Tokens::topic by the sampler, so the word proposal reads one
// contiguous array instead of chasing token indices.
struct WordIndex {
  static constexpr std::uint32_t kNone = 0xffffffffu;
  std::vector<std::uint64_t> ptr;
  std::vector<std::uint32_t> topic;
  std::vector<std::uint32_t> slot;
};
// What the word proposal reads: the topics of each word's tokens, contiguous. Word w's (w >=
// base) are topic[ptr[w - base] .. ptr[w - base + 1]); token i's topic is also at topic[slot[i]].
struct WordTopics {
  const std::uint64_t* ptr = nullptr;
  std::uint32_t* topic = nullptr;
  const std::uint32_t* slot = nullptr;
  std::uint32_t base = 0;
};
inline WordTopics View(WordIndex& x) { return {x.ptr.data(), x.topic.data(), x.slot.data(), 0}; }
// Over the tokens of documents [doc_begin, doc_end) (all documents: the whole corpus).
WordIndex BuildWordIndex(const Tokens& t, std::size_t doc_begin, std::size_t doc_end);
WordIndex BuildWordIndex(const Tokens& t, const std::vector<std::uint32_t>& docs);

// One word's topic counts. Dense: K int32 counts. Hashed (a word with few tokens): an
// open-addressing table of 2^bits slots, at least twice as many as the word can have distinct
// topics, so probes stay short; linear probing from a multiplicative hash of the topic; a count
// that reaches 0 leaves by backward shift, so no slot is ever a tombstone. A slot is one 32-bit
// word, the topic in its high 16 bits and the count in its low 16 (compact: with K < 65535
// topics, and a hashed word has fewer than K / 2 tokens), or with more topics two words, topic
// and count (wide). Views memory it does not own (a WordRows' pool, or a dense table).
class CountRow {
 public:
  static constexpr std::uint32_t kEmpty = 0xffffffffu;
  // Topics below this fit a compact slot (0xffff is the empty slot's).
  static constexpr std::uint32_t kCompactTopics = 0xffffu;
  CountRow(std::uint32_t* p, unsigned bits, bool wide) : p_(p), bits_(bits), wide_(wide) {}
  static CountRow Dense(std::int32_t* counts) {
    return {reinterpret_cast<std::uint32_t*>(counts), 0, false};
  }
  std::int32_t Get(std::uint32_t k) const {
    if (bits_ == 0) return static_cast<std::int32_t>(p_[k]);
    const std::uint32_t mask = (1u << bits_) - 1;
    if (!wide_) {
      for (std::uint32_t j = Home(k);; j = (j + 1) & mask) {
        const std::uint32_t e = p_[j];
        if (e >> 16 == k) return static_cast<std::int32_t>(e & 0xffffu);
        if (e == kEmpty) return 0;
      }
    }
    for (std::uint32_t j = Home(k);; j = (j + 1) & mask) {
      if (p_[2 * j] == k) return static_cast<std::int32_t>(p_[2 * j + 1]);
      if (p_[2 * j] == kEmpty) return 0;
    }
  }
  // count(k) += d; the count must stay >= 0.
  void Add(std::uint32_t k, std::int32_t d) {
    if (bits_ == 0) {
      p_[k] = static_cast<std::uint32_t>(static_cast<std::int32_t>(p_[k]) + d);
      return;
    }
    const std::uint32_t mask = (1u << bits_) - 1;
    std::uint32_t j = Home(k);
    bool zero = false;
    if (!wide_) {
      while (p_[j] >> 16 != k && p_[j] != kEmpty) j = (j + 1) & mask;
      if (p_[j] == kEmpty) p_[j] = k << 16;
      p_[j] = static_cast<std::uint32_t>(static_cast<std::int32_t>(p_[j]) + d);
      zero = (p_[j] & 0xffffu) == 0;
    } else {
      while (p_[2 * j] != k && p_[2 * j] != kEmpty) j = (j + 1) & mask;
      if (p_[2 * j] == kEmpty) {
        p_[2 * j] = k;
        p_[2 * j + 1] = 0;
      }
      p_[2 * j + 1] = static_cast<std::uint32_t>(static_cast<std::int32_t>(p_[2 * j + 1]) + d);
      zero = p_[2 * j + 1] == 0;
    }
    if (zero) Remove(j);
  }
  bool dense() const { return bits_ == 0; }  // ForEach visits topics in ascending order
  void Prefetch(std::uint32_t k) const {
    __builtin_prefetch(bits_ == 0 ? p_ + k : p_ + (wide_ ? 2 : 1) * Home(k));
  }
  // f(topic, count) for every nonzero count (of K topics, for a dense row).
  template <class F>
  void ForEach(std::uint32_t K, F f) const {
    if (bits_ == 0) {
      for (std::uint32_t k = 0; k < K; ++k) {
        if (p_[k] != 0) f(k, static_cast<std::int32_t>(p_[k]));
      }
      return;
    }
    for (std::uint32_t j = 0; j < (1u << bits_); ++j) {
      if (!wide_ && p_[j] != kEmpty) f(p_[j] >> 16, static_cast<std::int32_t>(p_[j] & 0xffffu));
      if (wide_ && p_[2 * j] != kEmpty) f(p_[2 * j], static_cast<std::int32_t>(p_[2 * j + 1]));
    }
  }

 private:
  std::uint32_t Home(std::uint32_t k) const { return (k * 0x9E3779B1u) >> (32 - bits_); }
  std::uint32_t TopicAt(std::uint32_t j) const { return wide_ ? p_[2 * j] : p_[j] >> 16; }
  bool EmptyAt(std::uint32_t j) const { return p_[wide_ ? 2 * j : j] == kEmpty; }
  void Move(std::uint32_t from, std::uint32_t to) {
    if (wide_) {
      p_[2 * to] = p_[2 * from];
      p_[2 * to + 1] = p_[2 * from + 1];
    } else {
      p_[to] = p_[from];
    }
  }
  // Empties slot j, moving later entries of its run back over the hole when their home allows.
  void Remove(std::uint32_t j) {
    const std::uint32_t mask = (1u << bits_) - 1;
    for (std::uint32_t hole = j, i = (j + 1) & mask;; i = (i + 1) & mask) {
      if (EmptyAt(i)) {
        p_[wide_ ? 2 * hole : hole] = kEmpty;
        return;
      }
      const std::uint32_t home = Home(TopicAt(i));
      if (((i - home) & mask) >= ((i - hole) & mask)) {
        Move(i, hole);
        hole = i;
      }
    }
  }
  std::uint32_t* p_;
  unsigned bits_;
  bool wide_;
};

// The word-topic rows of a range of words in one pool: a word with n tokens gets a hashed row of
// 2^bits >= 2 min(n, K) slots when that takes less memory than K dense counts (a compact slot
// takes as much as a count, a wide one twice), else a dense row. Memory is O(tokens), not
// O(words x K).
class WordRows {
 public:
  // The layout for words with `count[r]` tokens each (r < words).
  WordRows(const std::uint64_t* count, std::size_t words, int K);
  // All counts zero.
  void Clear();
  CountRow Row(std::size_t r) { return {pool_.data() + offset_[r], bits_[r], wide_}; }
  CountRow Row(std::size_t r) const {
    return {const_cast<std::uint32_t*>(pool_.data()) + offset_[r], bits_[r], wide_};
  }
  std::size_t words() const { return bits_.size(); }
  std::size_t bytes() const { return pool_.size() * sizeof(std::uint32_t); }

 private:
  std::vector<std::uint64_t> offset_;  // row r starts at pool_[offset_[r]]
  std::vector<std::uint8_t> bits_;     // 0: dense
  std::vector<std::uint32_t> pool_;
  bool wide_ = false;  // hashed rows' slots are wide (K >= CountRow::kCompactTopics)
};

// Samples tokens [begin, end) of one document. `nd` holds the document's topic counts, `nw(w)`
// the word-topic row (a CountRow) of internal word w, `nk` the topic totals; all include the
// tokens' current topics and are kept current, as are `topic` and the topics in `words`. `doc`
// spans the document's tokens (for the doc proposal). The word proposal draws a random token of the
// word from `words`. With kLocal, `words` holds only this worker's tokens of each word, whose
// topic counts are the rows local_of(w) (the data-parallel case); otherwise it holds all of
// them, counted by nw.
//
// The word rows keep counting a token at the topic it had while it is sampled (reads subtract
// it) and change only when it moves: most MH proposals are rejected, and a hashed row would
// otherwise remove and re-insert the topic.
//
// The loop is memory-bound (a word's row, a random entry of it, a random token of the word),
// so the proposals of token i+8 are drawn while token i is sampled and its memory
// prefetched. The draws do not depend on the state; the topics they select are read when used.
template <bool kLocal, class RowOf, class LocalRowOf>
inline void SampleSegment(const Hyper& h, std::uint64_t begin, std::uint64_t end,
                          std::uint64_t doc_begin, std::uint64_t doc_end, const std::uint32_t* word,
                          std::uint32_t* topic, std::int32_t* nd, RowOf nw_of, double* nk,
                          WordTopics words, LocalRowOf local_of, Rng& rng,
                          std::vector<double>& scratch) {
  const double alpha = h.alpha, beta = h.beta, vbeta = h.vbeta;
  const auto doc_len = static_cast<double>(doc_end - doc_begin);
  const auto K = static_cast<std::uint32_t>(h.K);
  std::uint32_t* wtopic = words.topic;
  const std::uint64_t* wptr = words.ptr;
  const std::uint32_t base = words.base;
  const std::uint32_t* wslot = words.slot;
  // Pre-drawn proposal cycles of a token ahead (up to kCycles of them).
  constexpr int kCycles = 4;
  const int drawn = std::min(h.mh_steps, kCycles);
  struct Draw {
    double doc_u[kCycles], word_u[kCycles];
    std::uint32_t doc_uniform[kCycles];
  };
  auto draw = [&](std::uint64_t i) {
    const std::uint32_t w = word[i];
    const auto wn = static_cast<double>(wptr[w - base + 1] - wptr[w - base]);
    const CountRow nw = nw_of(w);
    nw.Prefetch(topic[i]);
    Draw d;
    for (int c = 0; c < drawn; ++c) {
      d.doc_u[c] = rng.Uniform() * (doc_len + h.kalpha);
      d.word_u[c] = rng.Uniform() * (wn + h.kbeta);
      d.doc_uniform[c] = rng.Below(K);
      nw.Prefetch(d.doc_u[c] < doc_len ? topic[doc_begin + static_cast<std::uint64_t>(d.doc_u[c])]
                                       : d.doc_uniform[c]);
      if (d.word_u[c] < wn) {
        __builtin_prefetch(wtopic + wptr[w - base] + static_cast<std::uint64_t>(d.word_u[c]));
      }
    }
    return d;
  };
  constexpr std::uint64_t kAhead = 8;  // tokens drawn (and prefetched) ahead
  Draw ahead[kAhead];
  if (!h.gibbs) {
    for (std::uint64_t j = 0; j < kAhead && begin + j < end; ++j) ahead[j] = draw(begin + j);
  }
  for (std::uint64_t i = begin; i < end; ++i) {
    const std::uint32_t w = word[i];
    CountRow nw = nw_of(w);
    CountRow mw = nw;
    if constexpr (kLocal) mw = local_of(w);
    const std::uint32_t slot = wslot[i];
    const std::uint32_t s0 = topic[i];
    std::uint32_t s = s0;
    --nd[s];
    nk[s] -= 1;
    // Word counts without token i.
    auto nwx = [&](std::uint32_t k) { return static_cast<double>(nw.Get(k) - (k == s0)); };
    auto mwx = [&](std::uint32_t k) { return static_cast<double>(mw.Get(k) - (k == s0)); };
    if (h.gibbs) {
      double total = 0;
      for (std::uint32_t k = 0; k < K; ++k) {
        const double p =
            (nd[k] + alpha) * std::max(nwx(k) + beta, 0.0) / std::max(nk[k] + vbeta, vbeta);
        total += p;
        scratch[k] = total;
      }
      const double u = rng.Uniform() * total;
      std::uint32_t k = 0;
      while (k + 1 < K && scratch[k] <= u) ++k;
      s = k;
    } else {
      Draw& slot_draw = ahead[(i - begin) % kAhead];
      const Draw first = slot_draw;
      if (i + kAhead < end) slot_draw = draw(i + kAhead);
      const std::uint64_t wb = wptr[w - base];
      const auto wn = static_cast<double>(wptr[w - base + 1] - wb);
      // n_sw + β of the current topic s, looked up once per topic s takes (0: not yet).
      double ws = 0;
      auto word_term = [&] {
        if (ws == 0) ws = nwx(s) + beta;
        return ws;
      };
      auto accept = [&](std::uint32_t t, double wt) {
        s = t;
        ws = wt;
        topic[i] = t;
        wtopic[slot] = t;
      };
      for (int step = 0; step < h.mh_steps; ++step) {
        // Doc proposal q(k) ∝ n_dk + α (token i counted at its current topic s).
        const bool pre = step < drawn;
        const double du = pre ? first.doc_u[step] : rng.Uniform() * (doc_len + h.kalpha);
        std::uint32_t t = du < doc_len ? topic[doc_begin + static_cast<std::uint64_t>(du)]
                                       : (pre ? first.doc_uniform[step] : rng.Below(K));
        if (t != s) {
          const double wt = nwx(t) + beta;
          const double a = wt * (nk[s] + vbeta) / (word_term() * (nk[t] + vbeta));
          if (a >= 1 || rng.Uniform() < a) accept(t, wt);
        }
        // Word proposal q(k) ∝ m_kw + β over the tokens in `words`.
        const double wu = pre ? first.word_u[step] : rng.Uniform() * (wn + h.kbeta);
        t = wu < wn ? wtopic[wb + static_cast<std::uint64_t>(wu)] : rng.Below(K);
        if (t != s) {
          double a = (nd[t] + alpha) * (nk[s] + vbeta) / ((nd[s] + alpha) * (nk[t] + vbeta));
          double wt = 0;  // not looked up unless needed
          if constexpr (kLocal) {
            wt = nwx(t) + beta;
            a *= wt * (mwx(s) + beta) / (word_term() * (mwx(t) + beta));
          }
          if (a >= 1 || rng.Uniform() < a) accept(t, wt);
        }
      }
    }
    topic[i] = s;
    wtopic[slot] = s;
    ++nd[s];
    nk[s] += 1;
    if (s != s0) {
      nw.Add(s0, -1);
      nw.Add(s, 1);
      if constexpr (kLocal) {
        mw.Add(s0, -1);
        mw.Add(s, 1);
      }
    }
  }
}

// log Γ(x). std::lgamma stores the sign in the global `signgam`, a data race when workers
// evaluate concurrently; lgamma_r (POSIX) does not.
inline double LogGamma(double x) {
  int sign = 0;
  return ::lgamma_r(x, &sign);
}

// log Γ(n + x) − log Γ(x) for the counts of a row (zeros contribute nothing).
inline double LogGammaRatioSum(CountRow row, int K, double x) {
  double s = 0;
  const double base = LogGamma(x);
  row.ForEach(static_cast<std::uint32_t>(K), [&](std::uint32_t, std::int32_t n) {
    if (n > 0) s += LogGamma(n + x) - base;
  });
  return s;
}

// Σ over documents [doc_begin, doc_end) of the document part of log p(w, z); `nd` is a zeroed
// scratch of K counts and is left zeroed.
double DocLogLikelihood(const Hyper& h, const Tokens& t, std::size_t doc_begin, std::size_t doc_end,
                        std::vector<std::int32_t>& nd);
double DocLogLikelihood(const Hyper& h, const Tokens& t, const std::vector<std::uint32_t>& docs,
                        std::vector<std::int32_t>& nd);
// Σ_k log Γ(Vβ) − log Γ(n_k + Vβ).
double TopicLogLikelihood(const Hyper& h, const double* nk);

// The public model (sparse word rows) from dense internal-order counts (row r is internal
// word r), and the document rows from the tokens' topics.
LdaModel MakeModel(const Hyper& h, const Corpus& corpus, const Tokens& t,
                   const std::vector<std::int32_t>& word_topic_internal);
// The same from rows of nonzero counts (row r is internal word r).
LdaModel MakeModel(const Hyper& h, const Corpus& corpus, const Tokens& t, const SparseRows& rows);
// The public model counted from the tokens' words and topics alone (no dense table).
LdaModel MakeModelFromTokens(const Hyper& h, const Corpus& corpus, const Tokens& t);
// The same, taking the tokens' words and topics: they are freed as soon as the rows no longer
// need them, before the word rows take their memory (the end of a run).
LdaModel TakeModelFromTokens(const Hyper& h, const Corpus& corpus, Tokens& t);

// Calls `on_iteration` and keeps the history; times evaluations out of the sampling time.
struct Recorder {
  const LdaOptions& opts;
  std::uint64_t num_tokens;  // of the training corpus
  const Corpus* test;
  const std::function<void(const LdaIteration&)>& on_iteration;
  Stopwatch clock;
  double eval_seconds = 0;  // time spent in evaluations, not counted as sampling time
  std::vector<LdaIteration> history;
  int resumed_at = 0;  // sweeps done before this run (a resumed one); not in tokens/s
  // After `iteration` sweeps, with log p(w, z) = ll and the held-out perplexity (NaN: none);
  // the evaluation began at clock time `eval_started`.
  void Record(int iteration, double ll, double perplexity, double eval_started);
  double SamplingSeconds() const { return clock.Seconds() - eval_seconds; }
};

// What both trainers hold: the options, the corpus's vocabulary, the hyper-parameters, the
// tokens (with `blocks` vocabulary blocks; their initial topics in an array with
// `keep_topics`) and the recorder. The corpus's documents are freed
// once the tokens are laid out: the tokens hold all the trainers read of them.
struct Common {
  Common(Corpus c, const LdaOptions& o, const Corpus* test,
         const std::function<void(const LdaIteration&)>& on_iteration, int blocks, bool keep_topics)
      : h(o, c.num_words()),
        t(BuildTokens(c, blocks, o.topics, o.seed, keep_topics)),
        rec{o, c.num_tokens(), test, on_iteration, {}, 0, {}, 0},
        corpus(VocabularyOf(std::move(c))) {
    ReturnFreedMemory();  // the documents', before the workers allocate on other threads
  }
  const Hyper h;
  Tokens t;
  Recorder rec;
  const Corpus corpus;  // the vocabulary and source; no documents
  // The public model from dense internal-order word-topic counts.
  LdaModel Model(const std::vector<std::int32_t>& word_topic_internal) const {
    return MakeModel(h, corpus, t, word_topic_internal);
  }
  LdaModel Model(const SparseRows& word_topic_internal) const {
    return MakeModel(h, corpus, t, word_topic_internal);
  }
  // The public model from the tokens' topics.
  // The public model from the tokens' topics.
  LdaModel ModelFromTokens() const { return MakeModelFromTokens(h, corpus, t); }
  // The same, taking the tokens' words and topics: the last use of the tokens.
  LdaModel TakeModelFromTokens() { return lda_internal::TakeModelFromTokens(h, corpus, t); }
  // The result: the model, the run, the history and the sampling throughput.
  LdaResult Finish(LdaModel model, RunResult run) const;

  // Checkpoints. What one must match: the corpus and the model's shape (plus `extra`, what
  // else the trainer's state depends on).
  std::string Problem(const std::string& extra = "") const;
  // Every token's topic (the counts follow from them) and the evaluations so far; Restore
  // puts them back, checking every topic.
  Checkpoint Save(const std::string& problem) const;
  Status Restore(const Checkpoint& c, const std::string& problem);
};

}  // namespace tessera::lda_internal
