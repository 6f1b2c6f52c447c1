// LDA, data-parallel: the word-topic counts in a parameter server (see lda.h).
//
// One table of V + 1 keys with K values each: key w (internal word id) holds n_kw, key V the
// totals n_k; updater `add`. The engine's rows are documents; each worker owns a partition
// and is the only writer of its tokens' topics. For a batch of documents a worker pulls the
// rows of the batch's words and the totals (served under the table's consistency model, by
// default ssp:1; the worker's cache includes its own pushes, TableSpec::read_my_writes),
// samples the batch against that copy, keeping it current with its own changes, and pushes the
// changes. The word proposal draws from the worker's own tokens of the
// word (their counts m_kw are exact and local), so MH stays exact with respect to the copy.
// A pulled count that is smaller than the worker's own count of the same (word, topic) is
// stale; it is raised to the own count, which every true count is at least.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/algorithms/lda/lda_internal.h"
#include "tessera/core/checkpoint.h"
#include "tessera/core/metrics.h"

namespace tessera {
namespace {

using lda_internal::Hyper;
using lda_internal::Rng;
using lda_internal::Tokens;
using lda_internal::WordIndex;

// A worker's own state: its documents' tokens (a copy: word, topic, document offsets), the
// counts over them, its random stream and scratch.
struct DpWorker final : WorkerState {
  std::vector<std::int32_t> local;  // global document -> local one, -1 for another worker's
  Tokens mine;                      // my documents' tokens, local document order
  WordIndex words;                  // my tokens of each word
  std::vector<std::int32_t> slot;   // internal word -> row of `mine`, -1 when I have none
  std::optional<lda_internal::WordRows> mine_kw;  // m_kw over my tokens, row slot[w]
  std::vector<std::int32_t> pos;     // internal word -> row in the batch copy, -1 otherwise
  std::vector<Key> keys;             // the batch's words, then V
  std::vector<std::int32_t> counts;  // batch copy of n_kw, one K-row per key
  std::vector<std::int32_t> base;    // `counts` as pulled (after raising stale counts)
  std::vector<double> nk, nk_base;   // totals copy
  std::vector<Key> changed;          // rows pushed
  std::vector<double> delta;
  std::vector<std::int32_t> nd;  // scratch: one document's counts
  std::vector<double> scratch;
  std::uint64_t sampled = 0;  // tokens sampled so far
  Rng rng;

  // The topics of my tokens, in document order.
  void Save(StateWriter& out) const override { out.Put(mine.topic); }
};

class DpLdaApp final : public DataParallelApp {
 public:
  DpLdaApp(Corpus corpus, const LdaOptions& o, const Corpus* test,
           const std::function<void(const LdaIteration&)>& on_iteration)
      : c_(std::move(corpus), o, test, on_iteration, 1, /*keep_topics=*/true),
        opts_(o),
        V_(c_.corpus.num_words()) {}

  std::size_t num_rows() const override { return t_.num_docs(); }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    const auto K = static_cast<std::size_t>(h_.K);
    TableSpec spec;
    spec.name = "lda_word_topic";
    spec.num_keys = V_ + 1;
    spec.dim = h_.K;
    spec.consistency = o.consistency;
    spec.read_my_writes = o.consistency.cached();  // a worker's reads include its own changes
    spec.initial_values = Eigen::VectorXd::Zero(static_cast<Eigen::Index>((V_ + 1) * K));
    double* v = spec.initial_values.data();
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) {
      v[t_.word[i] * K + t_.topic[i]] += 1;
      v[V_ * K + t_.topic[i]] += 1;
    }
    return {spec};
  }

  std::unique_ptr<WorkerState> MakeWorker(const DpWorkerSetup& setup) override {
    auto me = std::make_unique<DpWorker>();
    const auto K = static_cast<std::size_t>(h_.K);
    const std::span<const std::uint32_t> docs = setup.rows;  // local document l is docs[l]
    me->local.assign(t_.num_docs(), -1);
    Tokens& mine = me->mine;
    mine.word_count.assign(V_, 0);
    for (std::size_t l = 0; l < docs.size(); ++l) {
      const std::uint32_t d = docs[l];
      me->local[d] = static_cast<std::int32_t>(l);
      for (std::uint64_t i = t_.doc_ptr[d]; i < t_.doc_ptr[d + 1]; ++i) {
        mine.word.push_back(t_.word[i]);
        mine.topic.push_back(t_.topic[i]);
        ++mine.word_count[t_.word[i]];
      }
      mine.doc_ptr.push_back(mine.word.size());
    }
    me->words = lda_internal::BuildWordIndex(mine, 0, mine.num_docs());
    me->slot.assign(V_, -1);
    me->pos.assign(V_, -1);
    std::vector<std::uint64_t> slot_tokens;  // my tokens of the word in each slot
    for (std::size_t w = 0; w < V_; ++w) {
      if (mine.word_count[w] == 0) continue;
      me->slot[w] = static_cast<std::int32_t>(slot_tokens.size());
      slot_tokens.push_back(mine.word_count[w]);
    }
    me->mine_kw.emplace(slot_tokens.data(), slot_tokens.size(), h_.K);
    for (std::size_t i = 0; i < mine.num_tokens(); ++i) {
      me->mine_kw->Row(static_cast<std::size_t>(me->slot[mine.word[i]])).Add(mine.topic[i], 1);
    }
    me->nd.assign(K, 0);
    me->scratch.assign(K, 0);
    me->rng.Seed(opts_.seed * 1000003 + static_cast<std::uint64_t>(setup.worker) + 1);
    return me;
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) override {
    DpWorker& me = ctx.State<DpWorker>();
    const Tokens& t = me.mine;
    const auto K = static_cast<std::size_t>(h_.K);
    me.keys.clear();
    for (std::uint32_t d : batch) {
      const auto l = static_cast<std::size_t>(me.local[d]);
      for (std::uint64_t i = t.doc_ptr[l]; i < t.doc_ptr[l + 1]; ++i) {
        std::int32_t& p = me.pos[t.word[i]];
        if (p < 0) {
          p = 0;
          me.keys.push_back(t.word[i]);
        }
      }
    }
    std::sort(me.keys.begin(), me.keys.end());
    for (std::size_t j = 0; j < me.keys.size(); ++j)
      me.pos[me.keys[j]] = static_cast<std::int32_t>(j);
    const std::size_t rows = me.keys.size();
    me.keys.push_back(V_);
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd pulled, ctx.client->Pull(0, me.keys).Get());
    me.counts.resize(rows * K);
    for (std::size_t j = 0; j < rows; ++j) {
      std::int32_t* row = me.counts.data() + j * K;
      for (std::size_t k = 0; k < K; ++k) {
        row[k] =
            static_cast<std::int32_t>(std::lround(pulled[static_cast<Eigen::Index>(j * K + k)]));
      }
      me.mine_kw->Row(static_cast<std::size_t>(me.slot[me.keys[j]]))
          .ForEach(static_cast<std::uint32_t>(K),
                   [row](std::uint32_t k, std::int32_t own) { row[k] = std::max(row[k], own); });
    }
    me.base = me.counts;
    me.nk.assign(pulled.data() + rows * K, pulled.data() + (rows + 1) * K);
    for (std::size_t k = 0; k < K; ++k) me.nk[k] = std::max(me.nk[k], 0.0);
    me.nk_base = me.nk;

    std::int32_t* counts = me.counts.data();
    const std::int32_t* pos = me.pos.data();
    auto row = [counts, pos, K](std::uint32_t w) {
      return lda_internal::CountRow::Dense(counts + static_cast<std::size_t>(pos[w]) * K);
    };
    lda_internal::WordRows& mine = *me.mine_kw;
    const std::int32_t* slot = me.slot.data();
    auto own = [&mine, slot](std::uint32_t w) {
      return mine.Row(static_cast<std::size_t>(slot[w]));
    };
    std::uint32_t* topic = me.mine.topic.data();
    for (std::uint32_t d : batch) {
      const auto l = static_cast<std::size_t>(me.local[d]);
      const std::uint64_t db = t.doc_ptr[l], de = t.doc_ptr[l + 1];
      for (std::uint64_t i = db; i < de; ++i) ++me.nd[topic[i]];
      lda_internal::SampleSegment<true>(h_, db, de, db, de, t.word.data(), topic, me.nd.data(), row,
                                        me.nk.data(), View(me.words), own, me.rng, me.scratch);
      for (std::uint64_t i = db; i < de; ++i) me.nd[topic[i]] = 0;
      me.sampled += de - db;
    }

    // Push the rows that changed, and the totals.
    std::vector<Key>& changed = me.changed;
    std::vector<double>& delta = me.delta;
    changed.clear();
    delta.clear();
    for (std::size_t j = 0; j < rows; ++j) {
      const std::int32_t* now = me.counts.data() + j * K;
      const std::int32_t* was = me.base.data() + j * K;
      if (std::equal(now, now + K, was)) continue;
      changed.push_back(me.keys[j]);
      for (std::size_t k = 0; k < K; ++k) delta.push_back(now[k] - was[k]);
    }
    changed.push_back(V_);
    for (std::size_t k = 0; k < K; ++k) delta.push_back(me.nk[k] - me.nk_base[k]);
    for (std::size_t j = 0; j < rows; ++j) me.pos[me.keys[j]] = -1;
    return ctx.client->Push(0, changed, delta);
  }

  // Terms: [document part over my documents, word part over my slice of the vocabulary,
  // topic part (worker 0), tokens sampled, perplexity (worker 0, with a test corpus),
  // evaluation seconds (worker 0)].
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    Stopwatch clock;
    DpWorker& me = ctx.State<DpWorker>();
    const int K = h_.K;
    Eigen::VectorXd t = Eigen::VectorXd::Zero(6);
    t[0] = lda_internal::DocLogLikelihood(h_, me.mine, 0, me.mine.num_docs(), me.nd);
    const KeyRange slice = SplitRange(V_, ctx.num_workers)[static_cast<std::size_t>(ctx.worker)];
    if (slice.size() > 0) {
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd rows, ctx.client->PullRange(0, slice).Get());
      std::vector<std::int32_t> row(static_cast<std::size_t>(K));
      for (std::size_t j = 0; j < slice.size(); ++j) {
        for (int k = 0; k < K; ++k) {
          row[static_cast<std::size_t>(k)] =
              static_cast<std::int32_t>(std::lround(rows[static_cast<Eigen::Index>(j * K + k)]));
        }
        t[1] +=
            lda_internal::LogGammaRatioSum(lda_internal::CountRow::Dense(row.data()), K, h_.beta);
      }
    }
    t[3] = static_cast<double>(me.sampled);
    t[4] = std::numeric_limits<double>::quiet_NaN();
    if (ctx.worker == 0) {
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd nk, ctx.client->Pull(0, std::vector<Key>{V_}).Get());
      t[2] = lda_internal::TopicLogLikelihood(h_, nk.data());
      if (rec_.test) {
        TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd all, ctx.client->PullRange(0, {0, V_ + 1}).Get());
        t[4] = HeldOutPerplexity(Model(all), *rec_.test, opts_.seed + 7);
      }
      t[5] = clock.Seconds();
    } else {
      t[4] = 0;
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override {
    const double started = rec_.clock.Seconds();
    rec_.eval_seconds += t[5];
    const double ll = t[0] + t[1] + t[2];
    const double sweeps = rec_.resumed_at + t[3] / static_cast<double>(t_.num_tokens());
    const double perplexity = rec_.test ? t[4] : std::numeric_limits<double>::quiet_NaN();
    rec_.Record(static_cast<int>(std::lround(sweeps)), ll, perplexity, started);
    return ll / static_cast<double>(t_.num_tokens());
  }

  // The driver's copy of every token's topic (the model's document-topic counts), from the
  // workers at the end and before each checkpoint.
  Status GatherWorker(int worker, std::span<const std::uint32_t> docs, StateReader& in) override {
    std::vector<std::uint32_t> topics;
    TESSERA_RETURN_IF_ERROR(in.Get(topics));
    std::uint64_t n = 0;
    for (std::uint32_t d : docs) n += t_.doc_ptr[d + 1] - t_.doc_ptr[d];
    if (topics.size() != n) {
      return DataLoss("worker " + std::to_string(worker) + " sent " +
                      std::to_string(topics.size()) + " topics for " + std::to_string(n) +
                      " tokens");
    }
    std::size_t j = 0;
    for (std::uint32_t d : docs) {
      for (std::uint64_t i = t_.doc_ptr[d]; i < t_.doc_ptr[d + 1]; ++i, ++j) {
        if (topics[j] >= static_cast<std::uint32_t>(h_.K)) {
          return DataLoss("worker " + std::to_string(worker) + " sent topic " +
                          std::to_string(topics[j]) + " of " + std::to_string(h_.K));
        }
        t_.topic[i] = topics[j];
      }
    }
    return Status::Ok();
  }

  // Every token's topic after `sweeps` sweeps (the workers have sent theirs) and the
  // evaluations so far. The counts follow from the topics.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t sweeps,
                                      const std::vector<Eigen::VectorXd>&) override {
    Checkpoint c = c_.Save(c_.Problem());
    c.PutU64("sweeps", sweeps);
    return c;
  }

  // Puts a checkpoint's topics and evaluations back; returns the sweeps it had done.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, c_.Problem()));
    TESSERA_ASSIGN_OR_RETURN(std::uint64_t sweeps, c.U64("sweeps"));
    rec_.resumed_at = static_cast<int>(sweeps);
    return sweeps;
  }

  // The public model from a snapshot of the table (internal word order).
  LdaModel Model(const Eigen::VectorXd& table) const {
    std::vector<std::int32_t> wt(V_ * static_cast<std::size_t>(h_.K));
    for (std::size_t e = 0; e < wt.size(); ++e) {
      wt[e] = static_cast<std::int32_t>(std::lround(table[static_cast<Eigen::Index>(e)]));
    }
    return c_.Model(wt);
  }
  void StartClock() { rec_.clock = Stopwatch(); }
  LdaResult Finish(const Eigen::VectorXd& table, RunResult run) const {
    return c_.Finish(Model(table), std::move(run));
  }

 private:
  lda_internal::Common c_;  // first: the references below point into it
  const LdaOptions& opts_;
  const Hyper& h_ = c_.h;
  const std::size_t V_;
  Tokens& t_ = c_.t;
  lda_internal::Recorder& rec_ = c_.rec;
};

}  // namespace

StatusOr<LdaResult> TrainLdaDataParallel(
    Corpus corpus, const LdaOptions& options, const Corpus* test,
    const std::function<void(const LdaIteration&)>& on_iteration) {
  DataParallelOptions dp = options.data_parallel;
  CopyRunOptions(options.engine, dp);
  dp.max_epochs = static_cast<std::uint64_t>(options.iterations);
  dp.seed = options.seed;
  dp.objective_tolerance = options.engine.objective_tolerance;
  dp.evaluate_every_epochs = static_cast<std::uint64_t>(options.evaluate_every);
  DpLdaApp app(std::move(corpus), options, test, on_iteration);
  std::optional<CheckpointDir> dir;
  TESSERA_ASSIGN_OR_RETURN(
      std::string resumed,
      UseCheckpoints(app,
                     {options.checkpoint_dir, options.checkpoint_every, options.resume, "sweeps"},
                     options.engine.transport, dp, dir));
  app.StartClock();
  TESSERA_ASSIGN_OR_RETURN(DataParallelResult r,
                           RunDataParallel(app, dp, options.engine.transport));
  if (!r.run.holds_result) {
    LdaResult result;
    result.run = std::move(r.run);
    return result;
  }
  LdaResult result = app.Finish(r.tables[0], std::move(r.run));
  result.resumed = resumed;
  return result;
}

}  // namespace tessera
