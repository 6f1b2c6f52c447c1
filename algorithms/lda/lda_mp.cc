// LDA, model-parallel: STRADS word rotation (see lda.h).
//
// State. Worker p owns the documents of partition p: their tokens and topics are in its own
// state, and it is the only writer of their topics. A vocabulary block is a carried block: the
// topics of every token of its words (word-major) travel with it, by message, from the worker
// that sampled it in round r to the one the rotation scheduler gives it in round r+1, which
// counts the block's word-topic rows from them. The word proposal draws a random token of the
// word from that array, so it sees exactly the counts the acceptance uses (an exact MH move,
// as with the whole corpus in one array), and no worker reads another's memory.
//
// The totals n_k are each worker's own copy: the committed values plus its own changes this
// round. Push returns the change, Pull sums the workers' changes into the committed totals and
// broadcasts the sum, Apply resets the copy to the committed totals.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>

#include "tessera/algorithms/lda/lda.h"
#include "tessera/algorithms/lda/lda_internal.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

using lda_internal::Hyper;
using lda_internal::Rng;
using lda_internal::Tokens;
using lda_internal::WordIndex;

// Worker p: the documents of partition p, their tokens' topics (a copy of theirs alone; the
// words are read from the app's layout, which no worker writes) and where each token's topic
// sits in its vocabulary block's word-major topic array.
struct RotationWorker final : WorkerState {
  KeyRange docs;                    // my partition (global document ids)
  std::uint64_t first = 0;          // my first token's index in the corpus layout
  Tokens mine;                      // topic and doc_ptr of my documents, from 0 (no words)
  std::vector<std::uint32_t> slot;  // my token i's place in its block's VocabBlock::topic
  std::vector<double> nk;           // my copy of the totals
  std::vector<double> committed;    // totals as of the last Apply
  std::vector<std::int32_t> nd;     // scratch: one document's topic counts
  std::vector<double> scratch;      // gibbs: cumulative probabilities
  Rng rng;
  void Save(StateWriter& out) const override { out.Put(mine.topic); }
  void ReleaseForLastSave() override {
    std::vector<std::uint32_t>().swap(slot);
    std::vector<std::int32_t>().swap(nd);
    std::vector<double>().swap(scratch);
  }
};

// A vocabulary block: the topics of every token of its words, word-major (in document order
// within a word), which travel with the block, and the word-topic rows counted from them
// (hashed for rare words, so a block's rows take O(its tokens) memory and counting time).
struct VocabBlock final : BlockState {
  std::vector<std::uint32_t> topic;
  std::optional<lda_internal::WordRows> rows;
  void Save(StateWriter& out) const override { out.Put(topic); }
  void ReleaseForLastSave() override { rows.reset(); }
};

class RotationLdaApp final : public ModelParallelApp {
 public:
  RotationLdaApp(Corpus corpus, const LdaOptions& o, const Corpus* test,
                 const std::function<void(const LdaIteration&)>& on_iteration)
      : c_(std::move(corpus), o, test, on_iteration, o.engine.workers, /*keep_topics=*/false),
        opts_(o),
        P_(o.engine.workers) {
    // Document partitions of about equal token count.
    const double per = static_cast<double>(t_.num_tokens()) / P_;
    std::size_t d = 0;
    for (int p = 0; p < P_; ++p) {
      KeyRange r{d, d};
      const auto target = static_cast<std::uint64_t>(per * (p + 1));
      while (d < t_.num_docs() && (p == P_ - 1 || t_.doc_ptr[d + 1] <= target)) ++d;
      r.end = d;
      docs_.push_back(r);
    }
    // Each block's word-major layout: where each word's tokens start.
    for (const KeyRange& words : t_.blocks) {
      std::vector<std::uint64_t> ptr(words.size() + 1, 0);
      for (Key w = words.begin; w < words.end; ++w) {
        ptr[w - words.begin + 1] = ptr[w - words.begin] + t_.word_count[w];
      }
      block_ptr_.push_back(std::move(ptr));
    }
    Totals();
    // This process's workers and the blocks they hold first are made from the tokens' topics
    // (TopicOf: the initial ones, or a checkpoint's).
    for (int w = 0; w < P_; ++w) {
      if (!BuildsWorker(o.engine, w)) continue;
      unmade_ += 1;
      for (std::size_t b = static_cast<std::size_t>(w); b < t_.blocks.size();
           b += static_cast<std::size_t>(P_)) {
        unmade_ += 1;
      }
    }
    scheduler_ = MakeRotation(P_);
    std::vector<Key> vocab(c_.corpus.num_words());
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
    // The held-out perplexity needs the whole model at the coordinator.
    plan.gather_after = plan.evaluate_after && rec_.test != nullptr;
    plan.checkpoint_after = (ctx.round + 1) % P == 0;  // a sweep's end
    return plan;
  }

  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& setup) override {
    TESSERA_CHECK(unmade_ > 0) << "a worker made after every one this process builds";
    auto me = std::make_unique<RotationWorker>();
    const auto K = static_cast<std::size_t>(h_.K);
    me->docs = docs_[static_cast<std::size_t>(setup.worker)];
    const std::uint64_t first = t_.doc_ptr[me->docs.begin], end = t_.doc_ptr[me->docs.end];
    me->mine.topic.resize(end - first);
    for (std::uint64_t i = first; i < end; ++i) me->mine.topic[i - first] = t_.TopicOf(i);
    me->first = first;
    me->mine.doc_ptr.clear();
    for (Key d = me->docs.begin; d <= me->docs.end; ++d) {
      me->mine.doc_ptr.push_back(t_.doc_ptr[d] - first);
    }
    // A word's tokens of earlier partitions come first in its block's topic array.
    std::vector<std::uint64_t> seen(t_.word_count.size(), 0);
    for (std::uint64_t i = 0; i < first; ++i) ++seen[t_.word[i]];
    me->slot.resize(me->mine.topic.size());
    for (std::size_t i = 0; i < me->mine.topic.size(); ++i) {
      const std::uint32_t w = t_.word[first + i];
      const std::size_t b = BlockOf(w);
      me->slot[i] = static_cast<std::uint32_t>(block_ptr_[b][w - t_.blocks[b].begin] + seen[w]++);
    }
    me->nk = me->committed = totals_;
    me->nd.assign(K, 0);
    me->scratch.assign(K, 0);
    me->rng.Seed(opts_.seed * 1000003 + static_cast<std::uint64_t>(setup.worker) + 1 +
                 resumed_rounds_ * 0x9E3779B97F4A7C15ULL);
    Made();
    return me;
  }

  std::vector<int> CarriedBlockHolders(int num_workers) override {
    std::vector<int> holders(t_.blocks.size());
    for (std::size_t b = 0; b < holders.size(); ++b) {
      holders[b] = static_cast<int>(b) % num_workers;  // round 0 gives worker w block w
    }
    return holders;
  }

  std::unique_ptr<BlockState> MakeBlock(std::uint32_t block, WorkerContext&) override {
    TESSERA_CHECK(unmade_ > 0) << "a block made after every one this process builds";
    auto vb = std::make_unique<VocabBlock>();
    const KeyRange words = t_.blocks[block];
    const std::vector<std::uint64_t>& ptr = block_ptr_[block];
    vb->topic.resize(ptr.back());
    std::vector<std::uint64_t> fill(ptr.begin(), ptr.end() - 1);
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) {
      const std::uint32_t w = t_.word[i];
      if (words.Contains(w)) vb->topic[fill[w - words.begin]++] = t_.TopicOf(i);
    }
    Count(block, *vb);
    Made();
    return vb;
  }

  StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t block, StateReader& in,
                                                  WorkerContext&) override {
    auto vb = std::make_unique<VocabBlock>();
    vb->topic.resize(block_ptr_[block].back());
    TESSERA_RETURN_IF_ERROR(in.GetInto(std::span<std::uint32_t>(vb->topic)));
    TESSERA_RETURN_IF_ERROR(CheckTopics(vb->topic, in));
    Count(block, *vb);
    return std::unique_ptr<BlockState>(std::move(vb));
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    auto& me = ctx.State<RotationWorker>();
    const auto K = static_cast<std::size_t>(h_.K);
    std::vector<Partial> out;
    for (const Block& b : blocks) {
      const KeyRange words = t_.blocks[b.id];  // the scheduler's partition b is block b
      VocabBlock& vb = ctx.Carried<VocabBlock>(b.id);
      lda_internal::WordRows& rows = *vb.rows;
      const auto base = static_cast<std::uint32_t>(words.begin);
      auto row = [&rows, base](std::uint32_t w) { return rows.Row(w - base); };
      const lda_internal::WordTopics view{block_ptr_[b.id].data(), vb.topic.data(), me.slot.data(),
                                          base};
      Tokens& t = me.mine;
      const std::uint32_t* word = t_.word.data() + me.first;  // my token i's word is word[i]
      for (std::size_t d = 0; d + 1 < t.doc_ptr.size(); ++d) {
        auto [lo, hi] = t_.Segment(me.docs.begin + d, words);
        if (lo == hi) continue;
        lo -= me.first;
        hi -= me.first;
        const std::uint64_t db = t.doc_ptr[d], de = t.doc_ptr[d + 1];
        for (std::uint64_t i = db; i < de; ++i) ++me.nd[t.topic[i]];
        lda_internal::SampleSegment<false>(h_, lo, hi, db, de, word, t.topic.data(), me.nd.data(),
                                           row, me.nk.data(), view, row, me.rng, me.scratch);
        for (std::uint64_t i = db; i < de; ++i) me.nd[t.topic[i]] = 0;
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
    auto& me = ctx.State<RotationWorker>();
    for (std::size_t a = 0; a < u.keys.size(); ++a) {
      me.committed[u.keys[a]] += u.delta[static_cast<Eigen::Index>(a)];
    }
    me.nk = me.committed;
  }

  // Terms: the document part over my documents, the word part over the rows of the blocks I
  // hold (after a sweep every block is with exactly one worker).
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    auto& me = ctx.State<RotationWorker>();
    Eigen::VectorXd t = Eigen::VectorXd::Zero(2);
    t[0] = lda_internal::DocLogLikelihood(h_, me.mine, 0, me.mine.num_docs(), me.nd);
    for (const auto& [id, state] : *ctx.held) {
      const auto& vb = static_cast<const VocabBlock&>(*state);
      for (std::size_t r = 0; r < vb.rows->words(); ++r) {
        t[1] += lda_internal::LogGammaRatioSum(vb.rows->Row(r), h_.K, h_.beta);
      }
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

  // The coordinator's copy of every token's topic, from the workers.
  Status GatherWorker(int worker, StateReader& in) override {
    const KeyRange docs = docs_[static_cast<std::size_t>(worker)];
    const std::uint64_t first = t_.doc_ptr[docs.begin], end = t_.doc_ptr[docs.end];
    // Freed (Made): back as the workers' topics arrive, local workers first, each of which then
    // frees its own; the array takes memory up to the end of the last one in.
    t_.topic.reserve(t_.num_tokens());
    if (t_.topic.size() < end) t_.topic.resize(end);
    const std::span<std::uint32_t> topics(t_.topic.data() + first,
                                          static_cast<std::size_t>(end - first));
    TESSERA_RETURN_IF_ERROR(in.GetInto(topics));
    gathered_ = true;
    return CheckTopics(topics, in);
  }
  // The blocks' topics are the tokens' topics word-major: the counts follow from the tokens.
  Status GatherBlock(std::uint32_t block, StateReader& in) override {
    return in.GetBytesOf<std::uint32_t>(block_ptr_[block].back()).status();
  }

  // Every token's topic after `rounds` rounds (a sweep's end, gathered) and the evaluations.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(Problem());
    c.PutU64("rounds", rounds);
    return c;
  }
  // Puts them back; the workers and blocks are built from them when the run starts, and the
  // samplers go on from streams seeded by the rounds done, so a resumed run draws other numbers
  // than the uninterrupted one would have.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    TESSERA_ASSIGN_OR_RETURN(resumed_rounds_, c.U64("rounds"));
    Totals();
    rounds_pulled_ = resumed_rounds_;
    rec_.resumed_at = static_cast<int>(resumed_rounds_ / static_cast<std::uint64_t>(P_));
    rec_.clock = Stopwatch();  // sampling time from here
    return resumed_rounds_;
  }

  // The model from the gathered topics.
  LdaModel Model() const {
    TESSERA_CHECK(gathered_) << "the model is whole only where the workers' state was gathered";
    return c_.ModelFromTokens();
  }
  // The same, at the end: the last use of the tokens.
  LdaModel TakeModel() {
    TESSERA_CHECK(gathered_) << "the model is whole only where the workers' state was gathered";
    return c_.TakeModelFromTokens();
  }
  int resumed_at() const { return rec_.resumed_at; }
  // The result; in the processes that do not host the coordinator, without a model (the
  // workers' state was gathered at the coordinator).
  LdaResult Finish(RunResult run) {
    return c_.Finish(gathered_ ? TakeModel() : LdaModel{}, std::move(run));
  }

 private:
  // Once this process's workers and their first blocks are made, the layout's topics (a
  // checkpoint's, when the run resumed one; the initial topics are made as needed, never kept)
  // are only a gather's destination: freed until one (the workers hold their own, the blocks
  // theirs).
  void Made() {
    if (--unmade_ == 0) {
      std::vector<std::uint32_t>().swap(t_.topic);
      ReturnFreedMemory();
    }
  }
  // The committed totals n_k from the tokens' topics.
  void Totals() {
    totals_.assign(static_cast<std::size_t>(h_.K), 0);
    for (std::uint64_t i = 0; i < t_.num_tokens(); ++i) totals_[t_.TopicOf(i)] += 1;
  }
  // Topics read from `in` are topics of the model.
  Status CheckTopics(std::span<const std::uint32_t> topics, const StateReader& in) const {
    for (std::uint32_t z : topics) {
      if (z >= static_cast<std::uint32_t>(h_.K)) {
        return DataLoss(in.what() + ": topic " + std::to_string(z) + " of " + std::to_string(h_.K));
      }
    }
    return Status::Ok();
  }
  // The block of internal word w.
  std::size_t BlockOf(std::uint32_t w) const {
    const auto it = std::upper_bound(t_.blocks.begin(), t_.blocks.end(), w,
                                     [](Key x, const KeyRange& r) { return x < r.end; });
    return static_cast<std::size_t>(it - t_.blocks.begin());
  }
  // The block's rows from its topics.
  void Count(std::uint32_t block, VocabBlock& vb) const {
    const KeyRange words = t_.blocks[block];
    const std::vector<std::uint64_t>& ptr = block_ptr_[block];
    vb.rows.emplace(t_.word_count.data() + words.begin, words.size(), h_.K);
    for (std::size_t r = 0; r < words.size(); ++r) {
      lda_internal::CountRow row = vb.rows->Row(r);
      for (std::uint64_t j = ptr[r]; j < ptr[r + 1]; ++j) row.Add(vb.topic[j], 1);
    }
  }
  // The token layout depends on the vocabulary blocks, one a worker.
  std::string Problem() const { return c_.Problem(", vocabulary blocks " + std::to_string(P_)); }

  lda_internal::Common c_;  // first: the references below point into it
  const LdaOptions& opts_;
  const Hyper& h_ = c_.h;
  const int P_;
  // Every process's copy of the corpus layout; the workers and blocks are built from its
  // topics, which the coordinator's process gathers back at the end and before checkpoints.
  Tokens& t_ = c_.t;
  lda_internal::Recorder& rec_ = c_.rec;
  std::vector<KeyRange> docs_;                         // worker p's documents
  std::vector<std::vector<std::uint64_t>> block_ptr_;  // block b: its words' starts in topic
  std::vector<double> totals_;  // committed n_k (coordinator; the initial ones everywhere)
  std::unique_ptr<Scheduler> scheduler_;
  std::uint64_t rounds_pulled_ = 0;
  std::uint64_t resumed_rounds_ = 0;
  bool gathered_ = false;       // t_.topic holds every worker's topics (where the result is)
  std::atomic<int> unmade_{0};  // of this process's workers and first blocks (Made)
};

}  // namespace

StatusOr<LdaResult> TrainLdaRotation(Corpus corpus, const LdaOptions& options, const Corpus* test,
                                     const std::function<void(const LdaIteration&)>& on_iteration) {
  RotationLdaApp app(std::move(corpus), options, test, on_iteration);
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
