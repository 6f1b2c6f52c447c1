// LDA, model-parallel: STRADS word rotation (see lda.h).
//
// State. The tokens (word, topic) are one array in document order (lda_internal::Tokens);
// worker p owns the documents of partition p and is the only writer of their topics. The
// word-topic counts are one V x K array whose rows of block b belong, in each round, to the
// worker the rotation scheduler gave b; the handover is the round boundary (Push of round r+1
// starts after every Push of round r has returned), so no row and no topic is written by two
// workers at once and every reader sees the last writer's counts. The word proposal reads the
// topics of other partitions' tokens of the block's words: nobody writes those in this round.
//
// The totals n_k are each worker's own copy: the committed values plus its own changes this
// round. Push returns the change, Pull sums the workers' changes into the committed totals and
// broadcasts the sum, Apply resets the copy to the committed totals.
#include <algorithm>
#include <cmath>
#include <limits>

#include "algorithms/lda/lda.h"
#include "algorithms/lda/lda_internal.h"
#include "core/fiber_pool.h"
#include "schedulers/scheduler.h"

namespace tessera {
namespace {

using lda_internal::Hyper;
using lda_internal::Rng;
using lda_internal::Tokens;
using lda_internal::WordIndex;

struct RotationWorker {
  KeyRange docs;                  // my partition
  std::vector<double> nk;         // my copy of the totals
  std::vector<double> committed;  // totals as of the last Apply
  std::vector<std::int32_t> nd;   // scratch: one document's topic counts
  std::vector<double> scratch;    // gibbs: cumulative probabilities
  Rng rng;
};

class RotationLdaApp final : public ModelParallelApp {
 public:
  RotationLdaApp(const Corpus& corpus, const LdaOptions& o, const Corpus* test,
                 const std::function<void(const LdaIteration&)>& on_iteration)
      : c_(corpus, o, test, on_iteration, o.engine.workers),
        opts_(o),
        P_(o.engine.workers),
        words_(lda_internal::BuildWordIndex(t_, 0, t_.num_docs())) {
    const auto K = static_cast<std::size_t>(h_.K);
    Recount();
    // Document partitions of about equal token count.
    workers_.resize(static_cast<std::size_t>(P_));
    const double per = static_cast<double>(t_.num_tokens()) / P_;
    std::size_t d = 0;
    for (int p = 0; p < P_; ++p) {
      RotationWorker& w = workers_[static_cast<std::size_t>(p)];
      w.docs.begin = d;
      const auto target = static_cast<std::uint64_t>(per * (p + 1));
      while (d < t_.num_docs() && (p == P_ - 1 || t_.doc_ptr[d + 1] <= target)) ++d;
      w.docs.end = d;
      w.nd.assign(K, 0);
      w.scratch.assign(K, 0);
    }
    StartWorkers(0);
    SchedulerOptions so;
    so.partitions = P_;
    scheduler_ = MakeRotationScheduler(so);
    std::vector<Key> vocab(corpus.num_words());
    for (std::size_t w = 0; w < vocab.size(); ++w) vocab[w] = w;
    scheduler_->Reset(vocab);
  }

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round == 0) rec_.clock = Stopwatch();
    const auto P = static_cast<std::uint64_t>(P_);
    const auto last = P * static_cast<std::uint64_t>(opts_.iterations);
    if (ctx.round >= last) {
      plan.done = true;
      plan.done_reason = "max iterations";
      return plan;
    }
    plan.blocks = scheduler_->Next(ctx);
    const std::uint64_t every = P * static_cast<std::uint64_t>(opts_.evaluate_every);
    plan.evaluate_after = (ctx.round + 1) % every == 0 || ctx.round + 1 == last;
    plan.checkpoint_after = (ctx.round + 1) % P == 0;  // a sweep's end
    return plan;
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    RotationWorker& me = workers_[static_cast<std::size_t>(ctx.worker)];
    const auto K = static_cast<std::size_t>(h_.K);
    std::int32_t* wt = word_topic_.data();
    auto row = [wt, K](std::uint32_t w) { return wt + static_cast<std::size_t>(w) * K; };
    std::vector<Partial> out;
    for (const Block& b : blocks) {
      const KeyRange words = t_.blocks[b.id];  // the scheduler's partition b is block b
      for (std::size_t d = me.docs.begin; d < me.docs.end; ++d) {
        const auto [lo, hi] = t_.Segment(d, words);
        if (lo == hi) continue;
        const std::uint64_t db = t_.doc_ptr[d], de = t_.doc_ptr[d + 1];
        for (std::uint64_t i = db; i < de; ++i) ++me.nd[t_.topic[i]];
        lda_internal::SampleSegment<false>(h_, lo, hi, db, de, t_.word.data(), t_.topic.data(),
                                           me.nd.data(), row, me.nk.data(), words_, row, me.rng,
                                           me.scratch);
        for (std::uint64_t i = db; i < de; ++i) me.nd[t_.topic[i]] = 0;
      }
      Partial p{b.id, ctx.worker, Eigen::VectorXd(K)};
      for (std::size_t k = 0; k < K; ++k) p.values[k] = me.nk[k] - me.committed[k];
      out.push_back(std::move(p));
    }
    return out;
  }

  Update Pull(PullContext&, std::span<const Block>, std::span<const Partial> merged) override {
    ++rounds_pulled_;
    const auto K = static_cast<std::size_t>(h_.K);
    std::vector<double> sum(K, 0.0);
    for (const Partial& p : merged) {
      for (Eigen::Index k = 0; k < p.values.size(); ++k)
        sum[static_cast<std::size_t>(k)] += p.values[k];
    }
    Update u;
    std::vector<double> delta;
    for (std::size_t k = 0; k < K; ++k) {
      if (sum[k] == 0) continue;
      u.keys.push_back(k);
      delta.push_back(sum[k]);
      totals_[k] += sum[k];
    }
    u.delta = Eigen::Map<Eigen::VectorXd>(delta.data(), static_cast<Eigen::Index>(delta.size()));
    return u;
  }

  void Apply(WorkerContext& ctx, const Update& u) override {
    RotationWorker& me = workers_[static_cast<std::size_t>(ctx.worker)];
    for (std::size_t a = 0; a < u.keys.size(); ++a) {
      me.committed[u.keys[a]] += u.delta[static_cast<Eigen::Index>(a)];
    }
    me.nk = me.committed;
  }

  // Terms: the document part over my documents, the word part over block `worker`'s rows.
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    RotationWorker& me = workers_[static_cast<std::size_t>(ctx.worker)];
    Eigen::VectorXd t = Eigen::VectorXd::Zero(2);
    t[0] = lda_internal::DocLogLikelihood(h_, t_, me.docs.begin, me.docs.end, me.nd);
    const auto K = h_.K;
    const KeyRange words = t_.blocks[static_cast<std::size_t>(ctx.worker)];
    for (Key w = words.begin; w < words.end; ++w) {
      t[1] +=
          lda_internal::LogGammaRatioSum(word_topic_.data() + w * static_cast<Key>(K), K, h_.beta);
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override {
    const double started = rec_.clock.Seconds();
    const double ll = t[0] + t[1] + lda_internal::TopicLogLikelihood(h_, totals_.data());
    const double perplexity = rec_.test ? HeldOutPerplexity(Model(), *rec_.test, opts_.seed + 7)
                                        : std::numeric_limits<double>::quiet_NaN();
    rec_.Record(static_cast<int>(rounds_pulled_ / static_cast<std::uint64_t>(P_)), ll, perplexity,
                started);
    return ll / static_cast<double>(t_.num_tokens());
  }

  // Every token's topic after `rounds` rounds (a sweep's end) and the evaluations so far.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(Problem());
    c.PutU64("rounds", rounds);
    return c;
  }
  // Puts them back and counts again; the workers' samplers go on from streams seeded by the
  // rounds done, so a resumed run draws other numbers than the uninterrupted one would have.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    TESSERA_ASSIGN_OR_RETURN(std::uint64_t rounds, c.U64("rounds"));
    Recount();
    words_ = lda_internal::BuildWordIndex(t_, 0, t_.num_docs());
    StartWorkers(rounds);
    rounds_pulled_ = rounds;
    rec_.resumed_at = static_cast<int>(rounds / static_cast<std::uint64_t>(P_));
    rec_.clock = Stopwatch();  // sampling time from here
    return rounds;
  }

  LdaModel Model() const { return c_.Model(word_topic_); }
  int resumed_at() const { return rec_.resumed_at; }
  // The result; takes the counts over instead of copying them.
  LdaResult Finish(RunResult run) { return c_.Finish(c_.Model(std::move(word_topic_)), run); }

 private:
  // The word-topic counts and totals from the tokens' topics.
  void Recount() {
    const auto K = static_cast<std::size_t>(h_.K);
    word_topic_.assign(rec_.corpus.num_words() * K, 0);
    totals_.assign(K, 0);
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) {
      ++word_topic_[t_.word[i] * K + t_.topic[i]];
      totals_[t_.topic[i]] += 1;
    }
  }
  // The workers' totals from the committed ones and their random streams, after `rounds`.
  void StartWorkers(std::uint64_t rounds) {
    for (int p = 0; p < P_; ++p) {
      RotationWorker& w = workers_[static_cast<std::size_t>(p)];
      w.nk = w.committed = totals_;
      w.rng.Seed(opts_.seed * 1000003 + static_cast<std::uint64_t>(p) + 1 +
                 rounds * 0x9E3779B97F4A7C15ULL);
    }
  }
  // The token layout depends on the vocabulary blocks, one a worker.
  std::string Problem() const { return c_.Problem(", vocabulary blocks " + std::to_string(P_)); }

  lda_internal::Common c_;  // first: the references below point into it
  const LdaOptions& opts_;
  const Hyper& h_ = c_.h;
  const int P_;
  Tokens& t_ = c_.t;
  lda_internal::Recorder& rec_ = c_.rec;
  WordIndex words_;  // every token's topic, word-major (the word proposal)
  std::vector<std::int32_t> word_topic_;
  std::vector<double> totals_;  // committed n_k (coordinator)
  std::vector<RotationWorker> workers_;
  std::unique_ptr<Scheduler> scheduler_;
  std::uint64_t rounds_pulled_ = 0;
};

}  // namespace

StatusOr<LdaResult> TrainLdaRotation(const Corpus& corpus, const LdaOptions& options,
                                     const Corpus* test,
                                     const std::function<void(const LdaIteration&)>& on_iteration) {
  if (options.engine.transport && !options.engine.transport->in_process()) {
    return FailedPrecondition(
        "model-parallel LDA hands vocabulary blocks over in shared memory; it does not run "
        "across processes yet");
  }
  RotationLdaApp app(corpus, options, test, on_iteration);
  EngineOptions engine = options.engine;
  std::optional<CheckpointDir> dir;
  TESSERA_ASSIGN_OR_RETURN(
      std::string from,
      UseCheckpoints(app,
                     {options.checkpoint_dir, options.checkpoint_every, options.resume, "sweeps"},
                     engine, dir));
  TESSERA_ASSIGN_OR_RETURN(RunResult run, RunModelParallel(app, engine));
  LdaResult result = app.Finish(std::move(run));
  if (!from.empty()) {
    result.resumed = from + ": " + std::to_string(app.resumed_at()) + " of " +
                     std::to_string(options.iterations) + " sweeps done";
  }
  return result;
}

}  // namespace tessera
