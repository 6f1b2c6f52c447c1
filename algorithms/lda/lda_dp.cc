// LDA, data-parallel: the word-topic counts in a parameter server (see lda.h).
//
// One table of V + 1 keys with K values each: key w (internal word id) holds n_kw, key V the
// totals n_k; updater `add`. The engine's rows are documents; each worker owns a partition
// and is the only writer of its tokens' topics. For a batch of documents a worker pulls the
// rows of the batch's words and the totals (served under the table's consistency model, by
// default ssp:1), samples the batch against that copy, keeping it current with its own
// changes, and pushes the changes. The word proposal draws from the worker's own tokens of the
// word (their counts m_kw are exact and local), so MH stays exact with respect to the copy.
// A pulled count that is smaller than the worker's own count of the same (word, topic) is
// stale; it is raised to the own count, which every true count is at least.
//
// Memory follows the nonzero counts, not V x K: under bsp, ssp:S, sparsessp:S and asp the
// table stores each row's nonzeros (TableStorage::kSparseElements), replies and pushes carry
// nonzeros only, workers keep no cache (a shard's reply already holds a worker's own earlier
// pushes), and a batch's copy of a row is a hashed row sized by its nonzeros and the batch's
// tokens of the word, dense only for frequent words. Under the other models (essp and sspaggr
// need a worker cache, sbp sums each clock's pushes) the table is dense and workers cache what
// they read, including their own changes (read_my_writes). The model comes from the tokens' topics,
// which the workers send at the end.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
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
  std::vector<std::int32_t> pos;            // internal word -> row in the batch copy, -1 otherwise
  std::vector<std::uint32_t> batch_tokens;  // internal word -> its tokens in the batch
  std::vector<Key> keys;                    // the batch's words, then V
  std::vector<lda_internal::WordRows> copies;  // batch copy of n_kw, a WordRows per piece
  std::vector<lda_internal::CountRow> row_of;  // the copy's row of word w: row_of[pos[w]]
  std::vector<std::size_t> pieces;             // scratch: where each piece of a pull ends
  std::vector<std::uint64_t> moves;            // the batch's tokens' topics, before << 32 | after
  std::vector<double> nk, nk_base;             // totals copy
  std::vector<Key> changed;                    // rows pushed
  SparseRows delta;
  // Scratch of K: a row's count changes (zero between uses), which topics it has touched, and
  // the touched topics in order.
  std::vector<std::int64_t> change;
  std::vector<std::uint8_t> touched;
  std::vector<std::uint32_t> topics;
  std::vector<std::uint64_t> room;  // scratch: each batch row's room, then where its tokens sit
  std::vector<std::int32_t> nd;     // scratch: one document's counts
  std::vector<double> scratch;
  std::uint64_t sampled = 0;  // tokens sampled so far
  Rng rng;

  // The topics of my tokens, in document order; the last time their words too (the driver's
  // process lets its copy of the words go once its workers have theirs).
  void Save(StateWriter& out) const override {
    out.Put(mine.topic);
    if (last_save) out.Put(mine.word);
  }
  void ReleaseForLastSave() override {
    std::vector<std::uint32_t> words = std::move(mine.word), topics = std::move(mine.topic);
    *this = DpWorker();
    mine.word = std::move(words);
    mine.topic = std::move(topics);
    last_save = true;
  }
  bool last_save = false;
};

class DpLdaApp final : public DataParallelApp {
 public:
  static constexpr std::size_t kPullPiece = 1 << 16;  // nonzeros a batch pulls at most at once

  DpLdaApp(Corpus corpus, const LdaOptions& o, const Corpus* test,
           const std::function<void(const LdaIteration&)>& on_iteration)
      : c_(std::move(corpus), o, test, on_iteration, 1, /*keep_topics=*/false),
        opts_(o),
        V_(c_.corpus.num_words()) {}

  std::size_t num_rows() const override { return t_.num_docs(); }

  // Pulls the rows of `keys` (ascending: words, then perhaps the totals V) in pieces of at most
  // kPullPiece nonzeros (a word's row has no more than K, nor more than the word's tokens),
  // two pieces in flight, so a reply is held only while `use(first, rows)` reads it: `rows`
  // holds the rows of keys[first], keys[first + 1], .... `pull(from, n)` asks for the n
  // keys from keys[from]; `ends` is scratch.
  template <typename Pull, typename Use>
  Status PullInPieces(std::span<const Key> keys, std::vector<std::size_t>& ends, Pull&& pull,
                      Use&& use) const {
    const auto K = static_cast<std::uint64_t>(h_.K);
    ends.clear();
    for (std::size_t j = 0, held = 0; j < keys.size(); ++j) {
      const std::uint64_t most =
          keys[j] == V_ ? K : std::min<std::uint64_t>(K, t_.word_count[keys[j]]);
      if (held > 0 && held + most > kPullPiece) {
        ends.push_back(j);
        held = 0;
      }
      held += most;
    }
    ends.push_back(keys.size());
    PullFuture next = pull(0, ends[0]);
    for (std::size_t piece = 0; piece < ends.size(); ++piece) {
      PullFuture now = std::move(next);
      const std::size_t from = ends[piece];
      if (piece + 1 < ends.size()) next = pull(from, ends[piece + 1] - from);
      TESSERA_ASSIGN_OR_RETURN(const SparseRows rows, now.GetSparse());
      use(piece == 0 ? 0 : ends[piece - 1], rows);
    }
    return Status::Ok();
  }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    kept_workers_ = o.kept_workers != nullptr;
    const auto K = static_cast<std::size_t>(h_.K);
    TableSpec spec;
    spec.name = "lda_word_topic";
    spec.num_keys = V_ + 1;
    spec.dim = h_.K;
    spec.consistency = o.consistency;
    spec.storage = TableStorage::kSparseElements;
    spec.cache_reads = false;
    spec.communication = o.communication;  // (the engine sets it again)
    if (spec.Validate(o.servers, /*in_process=*/true).ok()) {
      spec.initial_rows = InitialRows();
      return {spec};
    }
    // A model that needs a worker cache: dense rows, and reads that include the worker's own
    // changes.
    spec.storage = TableStorage::kDense;
    spec.cache_reads = true;
    spec.read_my_writes = o.consistency.cached();
    spec.initial_values = Eigen::VectorXd::Zero(static_cast<Eigen::Index>((V_ + 1) * K));
    double* v = spec.initial_values.data();
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) {
      v[t_.word[i] * K + t_.TopicOf(i)] += 1;
      v[V_ * K + t_.TopicOf(i)] += 1;
    }
    return {spec};
  }

  // The counts of the tokens' topics: row w the nonzero n_kw, row V the totals.
  SparseRows InitialRows() const {
    SparseRows r;
    std::vector<std::uint64_t> at(V_ + 1, 0);  // the tokens' topics grouped by word
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) ++at[t_.word[i] + 1];
    for (std::size_t w = 0; w < V_; ++w) at[w + 1] += at[w];
    std::vector<std::uint32_t> topics(t_.num_tokens());
    std::vector<std::uint64_t> fill(at.begin(), at.end() - 1);
    std::vector<double> totals(static_cast<std::size_t>(h_.K), 0.0);
    for (std::size_t i = 0; i < t_.num_tokens(); ++i) {
      topics[fill[t_.word[i]]++] = t_.TopicOf(i);
      totals[t_.TopicOf(i)] += 1;
    }
    r.ptr.reserve(V_ + 2);
    for (std::size_t w = 0; w < V_; ++w) {
      std::sort(topics.begin() + static_cast<std::ptrdiff_t>(at[w]),
                topics.begin() + static_cast<std::ptrdiff_t>(at[w + 1]));
      for (std::uint64_t i = at[w]; i < at[w + 1]; ++i) {
        if (i == at[w] || topics[i] != topics[i - 1]) {
          r.index.push_back(topics[i]);
          r.value.push_back(0);
        }
        r.value.back() += 1;
      }
      r.ptr.push_back(r.index.size());
    }
    for (std::uint32_t k = 0; k < totals.size(); ++k) {
      if (totals[k] == 0) continue;
      r.index.push_back(k);
      r.value.push_back(totals[k]);
    }
    r.ptr.push_back(r.index.size());
    return r;
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
        mine.topic.push_back(t_.TopicOf(i));
        ++mine.word_count[t_.word[i]];
      }
      mine.doc_ptr.push_back(mine.word.size());
    }
    // Every document's tokens in this process's workers: the driver's copy of the words is
    // not read again before the workers send theirs with their last state (unless the
    // workers are kept, which skips that).
    if (taken_docs_.fetch_add(docs.size()) + docs.size() == t_.num_docs() && !kept_workers_) {
      std::vector<std::uint32_t>().swap(t_.word);
    }
    me->words = lda_internal::BuildWordIndex(mine, 0, mine.num_docs());
    me->slot.assign(V_, -1);
    me->pos.assign(V_, -1);
    me->batch_tokens.assign(V_, 0);
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
    me->change.assign(K, 0);
    me->touched.assign(K, 0);
    me->scratch.assign(K, 0);
    me->rng.Seed(opts_.seed * 1000003 + static_cast<std::uint64_t>(setup.worker) + 1);
    return me;
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) override {
    DpWorker& me = ctx.State<DpWorker>();
    const Tokens& t = me.mine;
    const int K = h_.K;
    me.keys.clear();
    for (std::uint32_t d : batch) {
      const auto l = static_cast<std::size_t>(me.local[d]);
      for (std::uint64_t i = t.doc_ptr[l]; i < t.doc_ptr[l + 1]; ++i) {
        if (me.batch_tokens[t.word[i]]++ == 0) me.keys.push_back(t.word[i]);
      }
    }
    std::sort(me.keys.begin(), me.keys.end());
    const std::size_t rows = me.keys.size();
    for (std::size_t j = 0; j < rows; ++j) me.pos[me.keys[j]] = static_cast<std::int32_t>(j);
    me.keys.push_back(V_);

    // The batch's copy: each pulled row raised to my own counts, in a row with room for the
    // batch's tokens of the word to take new topics (dense when its counts may outgrow a
    // compact slot's 16 bits). The rows come in pieces of at most kPullPiece nonzeros (a row
    // has no more than K, nor more than the word's tokens), two pieces in flight; each piece
    // becomes a WordRows of its own as it arrives, so the batch holds a piece's reply only
    // while it is copied.
    me.room.resize(rows + 1);
    me.nk.assign(static_cast<std::size_t>(K), 0.0);
    me.copies.clear();
    me.row_of.clear();
    auto copy_piece = [&](std::size_t first, const SparseRows& pulled) {
      const std::size_t words = std::min(rows, first + pulled.rows()) - first;
      if (first + pulled.rows() > rows) {  // the totals
        for (std::uint64_t e = pulled.ptr[words]; e < pulled.ptr[words + 1]; ++e) {
          me.nk[pulled.index[e]] = std::max(pulled.value[e], 0.0);
        }
      }
      auto merged = [&](std::size_t r, auto&& f) {  // f(topic, count) for the copy's row
        const lda_internal::CountRow mine =
            me.mine_kw->Row(static_cast<std::size_t>(me.slot[me.keys[first + r]]));
        for (std::uint64_t p = pulled.ptr[r]; p < pulled.ptr[r + 1]; ++p) {
          const std::uint32_t k = pulled.index[p];
          me.touched[k] = 1;
          const std::int64_t c = std::max<std::int64_t>(std::llround(pulled.value[p]), mine.Get(k));
          if (c > 0) f(k, c);
        }
        mine.ForEach(static_cast<std::uint32_t>(K), [&](std::uint32_t k, std::int32_t c) {
          if (!me.touched[k] && c > 0) f(k, c);  // a topic the pulled row lacked: stale
        });
        for (std::uint64_t p = pulled.ptr[r]; p < pulled.ptr[r + 1]; ++p) {
          me.touched[pulled.index[p]] = 0;
        }
      };
      for (std::size_t r = 0; r < words; ++r) {
        std::int64_t most = 0;
        std::uint64_t nonzeros = 0;
        merged(r, [&](std::uint32_t, std::int64_t c) { ++nonzeros, most = std::max(most, c); });
        const std::uint64_t tokens = me.batch_tokens[me.keys[first + r]];
        me.room[r] = most + static_cast<std::int64_t>(tokens) >= 0xffff
                         ? static_cast<std::uint64_t>(K)
                         : nonzeros + tokens;
      }
      lda_internal::WordRows& copy = me.copies.emplace_back(me.room.data(), words, K);
      for (std::size_t r = 0; r < words; ++r) {
        lda_internal::CountRow row = copy.Row(r);
        merged(r, [&row](std::uint32_t k, std::int64_t c) {
          row.Add(k, static_cast<std::int32_t>(c));
        });
        me.row_of.push_back(row);
      }
    };
    const std::span<const Key> keys(me.keys);
    TESSERA_RETURN_IF_ERROR(PullInPieces(
        keys, me.pieces,
        [&](std::size_t from, std::size_t n) { return ctx.client->Pull(0, keys.subspan(from, n)); },
        copy_piece));
    me.nk_base = me.nk;

    // The batch's tokens' topics before sampling, grouped by row of the copy: the copy changes
    // only as they move, so these (with the topics after) give the changes to push.
    me.room[0] = 0;  // where each row's tokens start
    for (std::size_t j = 0; j < rows; ++j)
      me.room[j + 1] = me.room[j] + me.batch_tokens[me.keys[j]];
    me.moves.resize(me.room[rows]);
    auto each_token = [&](auto&& f) {  // f(token, its place among the row's tokens)
      for (std::uint32_t d : batch) {
        const auto l = static_cast<std::size_t>(me.local[d]);
        for (std::uint64_t i = t.doc_ptr[l]; i < t.doc_ptr[l + 1]; ++i) {
          f(i, me.moves[me.room[static_cast<std::size_t>(me.pos[t.word[i]])]++]);
        }
      }
    };
    each_token([&t](std::uint64_t i, std::uint64_t& was) { was = t.topic[i]; });
    const std::int32_t* pos = me.pos.data();
    const lda_internal::CountRow* row_of = me.row_of.data();
    auto row = [row_of, pos](std::uint32_t w) { return row_of[pos[w]]; };
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

    // Push each changed row's nonzero changes, and the totals'. The tokens sit in `moves` in row
    // order (`room[j]` is now where row j's end); the same walk over the batch finds their
    // topics now.
    for (std::size_t j = rows; j > 0; --j) me.room[j] = me.room[j - 1];
    me.room[0] = 0;
    each_token([topic](std::uint64_t i, std::uint64_t& was) { was = was << 32 | topic[i]; });
    me.changed.clear();
    SparseRows& delta = me.delta;
    delta.ptr.assign(1, 0);
    delta.index.clear();
    delta.value.clear();
    std::uint64_t at = 0;
    for (std::size_t j = 0; j < rows; ++j) {
      me.topics.clear();
      auto add = [&me](std::uint32_t k, std::int64_t c) {
        me.change[k] += c;
        if (!me.touched[k]) {
          me.touched[k] = 1;
          me.topics.push_back(k);
        }
      };
      for (; at < me.room[j]; ++at) {
        const auto was = static_cast<std::uint32_t>(me.moves[at] >> 32);
        const auto now = static_cast<std::uint32_t>(me.moves[at]);
        if (was == now) continue;
        add(was, -1);
        add(now, 1);
      }
      std::size_t changed = 0;  // few of a row's topics change in a batch: sort only those
      for (std::uint32_t k : me.topics) {
        me.touched[k] = 0;
        if (me.change[k] != 0) me.topics[changed++] = k;
      }
      me.topics.resize(changed);
      std::sort(me.topics.begin(), me.topics.end());
      for (std::uint32_t k : me.topics) {
        delta.index.push_back(k);
        delta.value.push_back(static_cast<double>(me.change[k]));
        me.change[k] = 0;
      }
      if (delta.index.size() == delta.ptr.back()) continue;
      me.changed.push_back(me.keys[j]);
      delta.ptr.push_back(delta.index.size());
    }
    me.changed.push_back(V_);
    for (int k = 0; k < K; ++k) {
      const double d = me.nk[static_cast<std::size_t>(k)] - me.nk_base[static_cast<std::size_t>(k)];
      if (d == 0) continue;
      delta.index.push_back(static_cast<std::uint32_t>(k));
      delta.value.push_back(d);
    }
    delta.ptr.push_back(delta.index.size());
    for (std::size_t j = 0; j < rows; ++j) {
      me.pos[me.keys[j]] = -1;
      me.batch_tokens[me.keys[j]] = 0;
    }
    return ctx.client->PushSparse(0, me.changed, delta);
  }

  // Terms: [document part over my documents, word part over my slice of the vocabulary,
  // topic part (worker 0), tokens sampled, perplexity (worker 0, with a test corpus),
  // evaluation seconds (worker 0)].
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    Stopwatch clock;
    DpWorker& me = ctx.State<DpWorker>();
    Eigen::VectorXd t = Eigen::VectorXd::Zero(6);
    t[0] = lda_internal::DocLogLikelihood(h_, me.mine, 0, me.mine.num_docs(), me.nd);
    const KeyRange slice = SplitRange(V_, ctx.num_workers)[static_cast<std::size_t>(ctx.worker)];
    if (slice.size() > 0) {  // Σ over the slice's nonzero n_kw of log Γ(n_kw + β) − log Γ(β)
      const double base = lda_internal::LogGamma(h_.beta);
      me.keys.resize(slice.size());
      std::iota(me.keys.begin(), me.keys.end(), slice.begin);
      TESSERA_RETURN_IF_ERROR(PullInPieces(
          me.keys, me.pieces,
          [&](std::size_t from, std::size_t n) {
            return ctx.client->PullRange(0, {slice.begin + from, slice.begin + from + n});
          },
          [&](std::size_t, const SparseRows& rows) {
            for (double n : rows.value) {
              if (n > 0) t[1] += lda_internal::LogGamma(std::round(n) + h_.beta) - base;
            }
          }));
    }
    t[3] = static_cast<double>(me.sampled);
    t[4] = std::numeric_limits<double>::quiet_NaN();
    if (ctx.worker == 0) {
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd nk, ctx.client->Pull(0, std::vector<Key>{V_}).Get());
      t[2] = lda_internal::TopicLogLikelihood(h_, nk.data());
      if (rec_.test) {
        TESSERA_ASSIGN_OR_RETURN(SparseRows all, ctx.client->PullRange(0, {0, V_ + 1}).GetSparse());
        t[4] = HeldOutPerplexity(c_.Model(all), *rec_.test, opts_.seed + 7);
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
    std::uint64_t n = 0;
    for (std::uint32_t d : docs) n += t_.doc_ptr[d + 1] - t_.doc_ptr[d];
    // The worker's tokens' topics (below K), then perhaps their words (below V), into `to`.
    auto scatter = [&](const char* what, std::uint64_t bound, std::vector<std::uint32_t>& to) {
      std::vector<std::uint32_t> got;
      TESSERA_RETURN_IF_ERROR(in.Get(got));
      const std::string from = "worker " + std::to_string(worker) + " sent ";
      if (got.size() != n) {
        return DataLoss(from + std::to_string(got.size()) + " " + what + "s for " +
                        std::to_string(n) + " tokens");
      }
      if (to.empty()) to.resize(t_.num_tokens());  // not kept, or let go
      std::size_t j = 0;
      for (std::uint32_t d : docs) {
        for (std::uint64_t i = t_.doc_ptr[d]; i < t_.doc_ptr[d + 1]; ++i, ++j) {
          if (got[j] >= bound) {
            return DataLoss(from + what + " " + std::to_string(got[j]) + " of " +
                            std::to_string(bound));
          }
          to[i] = got[j];
        }
      }
      return Status::Ok();
    };
    TESSERA_RETURN_IF_ERROR(scatter("topic", static_cast<std::uint64_t>(h_.K), t_.topic));
    if (in.AtEnd()) return Status::Ok();
    return scatter("word", V_, t_.word);
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

  void RunStarted() override { rec_.clock = Stopwatch(); }
  // The model from every token's topic (the workers have sent theirs): the table's counts.
  LdaResult Finish(RunResult run) const { return c_.Finish(c_.ModelFromTokens(), std::move(run)); }

 private:
  lda_internal::Common c_;  // first: the references below point into it
  const LdaOptions& opts_;
  const Hyper& h_ = c_.h;
  const std::size_t V_;
  Tokens& t_ = c_.t;
  lda_internal::Recorder& rec_ = c_.rec;
  std::atomic<std::uint64_t> taken_docs_{0};  // by this process's workers
  bool kept_workers_ = false;
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
  TESSERA_ASSIGN_OR_RETURN(DataParallelResult r,
                           RunDataParallel(app, dp, options.engine.transport));
  if (!r.run.holds_result) {
    LdaResult result;
    result.run = std::move(r.run);
    return result;
  }
  r.tables.clear();
  LdaResult result = app.Finish(std::move(r.run));
  result.resumed = resumed;
  return result;
}

}  // namespace tessera
