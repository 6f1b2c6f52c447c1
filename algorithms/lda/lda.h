// Latent Dirichlet allocation by collapsed Gibbs sampling, in both architectures.
//
// Model (Griffiths & Steyvers 2004): θ_d ~ Dir(α), φ_k ~ Dir(β), z_di ~ θ_d, w_di ~ φ_z. With θ
// and φ integrated out, token i of document d takes topic k with probability
//   p(z_di = k | rest) ∝ (n_dk + α) (n_kw + β) / (n_k + Vβ)        (counts without token i)
// where n_dk counts d's tokens in topic k, n_kw word w's tokens in topic k, n_k all tokens in k.
//
// Samplers (LdaOptions::sampler):
//   gibbs  the textbook O(K) loop over that distribution: the reference.
//   mh     O(1) per token: Metropolis-Hastings with the two factors as proposals, cycled
//          (LightLDA, Yuan et al. 2015; WarpLDA, Chen et al. 2016). The doc proposal
//          q(k) ∝ n_dk + α is drawn by picking a random token of the document (or, with weight
//          Kα, a uniform topic); the word proposal q(k) ∝ n_kw + β by picking a random token of
//          the word. Both are exact MH moves, so the chain has the Gibbs sampler's stationary
//          distribution; `mh_steps` cycles per token.
//
// Model-parallel (STRADS word rotation, lda_mp.cc): the vocabulary is cut into P blocks of
// about equal token count and the documents into P partitions; worker p owns partition p. In
// round r the `rotation` scheduler gives worker p block (p + r) mod P: it samples its tokens of
// those words, writing the block's word-topic rows, which nobody else touches that round. The
// topic totals n_k are the one shared vector: each worker pushes its change to them, the sync
// layer sums the changes and every worker applies the sum. An iteration is P rounds.
//
// Data-parallel (Bösen / Yahoo! LDA style, lda_dp.cc): the word-topic rows and the totals live
// in a parameter-server table (key w, and key V for n_k), by default under ssp:1; each worker
// samples its documents against its cached rows and pushes its count changes (`add`).
//
// Metrics. The collapsed joint log-likelihood (Griffiths & Steyvers eq. 2 and 3)
//   log p(w, z) = Σ_d [log Γ(Kα) − log Γ(N_d + Kα) + Σ_k (log Γ(n_dk + α) − log Γ(α))]
//               + Σ_k [log Γ(Vβ) − log Γ(n_k + Vβ) + Σ_w (log Γ(n_kw + β) − log Γ(β))]
// reported per token. Held-out perplexity by document completion (Wallach et al. 2009): each
// test document's tokens alternate between an observed half and a held-out half; θ_d is
// estimated by Gibbs sampling on the observed half with φ_kw = (n_kw + β)/(n_k + Vβ) fixed
// (10 burn-in sweeps, then θ averaged over 10 more), and
//   perplexity = exp(− Σ_heldout log Σ_k θ_dk φ_kw / N_heldout).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tessera/core/corpus.h"
#include "tessera/core/data_parallel.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/status.h"

namespace tessera {

struct LdaOptions {
  std::string mode = "model-parallel";  // model-parallel | data-parallel
  std::string sampler = "mh";           // mh | gibbs
  int topics = 100;                     // K
  double alpha = 0;                     // document-topic prior; 0 = 50 / K
  double beta = 0.01;                   // topic-word prior
  int iterations = 100;                 // sweeps over every token
  int mh_steps = 2;                     // mh: doc+word proposal cycles per token
  int evaluate_every = 1;               // iterations between log-likelihood evaluations
  std::uint64_t seed = 42;
  EngineOptions engine;  // workers, time limit, trace, progress (pipeline depth must be 1)
  // Data-parallel: servers, consistency, partition of the documents, batch size in documents,
  // update frequency (defaults below). Workers, seed, time limit and
  // progress come from `engine`.
  DataParallelOptions data_parallel = DataParallelDefaults();
  // Data-parallel: checkpoints of every token's topic and the iterations so far in
  // checkpoint_dir, at an evaluated sweep's end once checkpoint_every seconds have passed (0:
  // at every evaluation), written by the driver's process; with `resume` every process first
  // reads the newest whole one (the counts on the servers are rebuilt from the topics).
  std::string checkpoint_dir;
  double checkpoint_every = 0;
  bool resume = false;
  double alpha_value() const { return alpha > 0 ? alpha : 50.0 / topics; }
  Status Validate() const;
  // ssp:1, a clock after every batch of 200 documents (Yahoo! LDA and Bösen synchronize
  // counts many times per sweep: with one clock per sweep the workers sample against counts a
  // sweep or two old and need several times the sweeps).
  static DataParallelOptions DataParallelDefaults() {
    DataParallelOptions o;
    o.consistency = *Consistency::Parse("ssp:1");
    o.frequency.kind = UpdateFrequency::Kind::kBatch;
    o.batch_size = 200;
    return o;
  }
};

// A fitted model: counts, in the corpus's word and document order.
struct LdaModel {
  int topics = 0;
  double alpha = 0, beta = 0;
  std::vector<std::string> vocab;
  // Word w's nonzero topic counts n_kw: (word_topic[j], word_count[j]) for j in
  // [word_ptr[w], word_ptr[w+1]), topics ascending. Sparse: a model of V words and K topics
  // holds one entry per (word, topic) pair that has a token, at most the number of tokens.
  std::vector<std::uint64_t> word_ptr = {0};
  std::vector<std::uint32_t> word_topic;
  std::vector<std::int32_t> word_count;
  std::vector<std::int64_t> topic_total;  // n_k
  // Document d's nonzero topic counts: (doc_topic[j], doc_count[j]) for j in
  // [doc_ptr[d], doc_ptr[d+1]), topics ascending.
  std::vector<std::uint64_t> doc_ptr = {0};
  std::vector<std::uint32_t> doc_topic, doc_count;
  std::size_t num_words() const { return vocab.size(); }
  std::size_t num_docs() const { return doc_ptr.size() - 1; }
  std::int32_t Count(std::uint32_t word, int topic) const;  // n_kw
  double Phi(std::uint32_t word, int topic) const;          // (n_kw + β) / (n_k + Vβ)
  // The n most probable words of topic k, most probable first.
  std::vector<std::uint32_t> TopWords(int topic, int n) const;
};

struct LdaIteration {
  int iteration = 0;             // sweeps done
  double seconds = 0;            // sampling time so far (evaluations excluded)
  double log_likelihood = 0;     // log p(w, z)
  double ll_per_token = 0;       // log p(w, z) / N
  double tokens_per_second = 0;  // over the whole run so far
  double perplexity = 0;         // held-out, when a test corpus was given; else NaN
};

struct LdaResult {
  std::string resumed;  // the checkpoint a resumed run went on from, and its sweep ("" if none)
  LdaModel model;
  std::vector<LdaIteration> history;  // after every evaluation
  RunResult run;
  double tokens_per_second = 0;
  std::uint64_t peak_rss_bytes = 0;
};

// Fits `corpus` in options.mode. With `test`, held-out perplexity is computed at every
// evaluation (its time is not counted in `seconds`). `on_iteration` is called after each
// evaluation. The trainers free the corpus's documents once they have laid out its tokens:
// pass it with std::move and it is not kept twice.
StatusOr<LdaResult> TrainLda(Corpus corpus, const LdaOptions& options, const Corpus* test = nullptr,
                             const std::function<void(const LdaIteration&)>& on_iteration = {});

// log p(w, z) of a model's counts (the formula above).
double LdaLogLikelihood(const LdaModel& model);

// Held-out perplexity of `test` (same vocabulary) by document completion; `seed` for its sampler.
double HeldOutPerplexity(const LdaModel& model, const Corpus& test, std::uint64_t seed = 1);

// Topic mixtures of new documents under a fitted model: θ_d by collapsed Gibbs sampling of
// each document's topics with the model's φ fixed, θ_dk = (n_dk + α) / (N_d + Kα) averaged over
// `samples` sweeps after `burn_in` (as held-out perplexity does). The documents' words are
// matched to the model's by name; words the model does not know are skipped and counted.
// A document with no known word gets the prior's mixture, 1/K each.
struct LdaInferOptions {
  int burn_in = 50;
  int samples = 50;
  std::uint64_t seed = 1;
};
struct LdaInference {
  Eigen::MatrixXd theta;              // documents x topics; rows sum to 1
  std::vector<std::uint64_t> tokens;  // per document: the tokens sampled (known words)
  std::uint64_t unknown_tokens = 0;   // tokens of words the model does not have
};
StatusOr<LdaInference> InferLdaTopics(const LdaModel& model, const Corpus& docs,
                                      const LdaInferOptions& options = {});

// Splits off every document whose seeded coin lands below `fraction` as a test corpus.
// Documents with fewer than 2 tokens stay in training.
void HoldOutDocuments(const Corpus& all, double fraction, std::uint64_t seed, Corpus& train,
                      Corpus& test);

// Text output, written atomically:
//   topics:  "topic <k> <n_k> <word> <word> ..." (top `top_words` words), one line per topic.
//   model:   "tessera-lda 1", "topics K", "alpha A", "beta B", "words V", "docs D", then V lines
//            "w <word> <k>:<n_kw> ..." and D lines "d <index> <k>:<n_dk> ..." (nonzero counts).
Status WriteLdaTopics(const std::string& path, const LdaModel& model, int top_words);
Status WriteLdaModel(const std::string& path, const LdaModel& model);
StatusOr<LdaModel> ReadLdaModel(const std::string& path);

}  // namespace tessera
