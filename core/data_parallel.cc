#include "tessera/core/data_parallel.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"

namespace tessera {

StatusOr<UpdateFrequency> UpdateFrequency::Parse(std::string_view text) {
  UpdateFrequency f;
  if (text == "batch") {
    f.kind = Kind::kBatch;
    return f;
  }
  if (text == "epoch") return f;
  if (text.substr(0, 9) == "nbatches:") {
    const std::string_view n = text.substr(9);
    int v = 0;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (ec == std::errc() && end == n.data() + n.size() && v >= 1) {
      f.kind = Kind::kNBatches;
      f.n = v;
      return f;
    }
    return InvalidArgument("update frequency '" + std::string(text) +
                           "': N must be an integer >= 1");
  }
  return InvalidArgument("unknown update frequency '" + std::string(text) +
                         "' (expected batch, nbatches:N or epoch)");
}

std::string UpdateFrequency::ToString() const {
  switch (kind) {
    case Kind::kBatch:
      return "batch";
    case Kind::kNBatches:
      return "nbatches:" + std::to_string(n);
    case Kind::kEpoch:
      return "epoch";
  }
  return "?";
}

namespace {
constexpr std::pair<PartitionScheme, const char*> kSchemes[] = {
    {PartitionScheme::kDisjointContiguous, "disjoint_contiguous"},
    {PartitionScheme::kDisjointRoundRobin, "disjoint_round_robin"},
    {PartitionScheme::kDisjointRandom, "disjoint_random"},
    {PartitionScheme::kOverlapReshuffle, "overlap_reshuffle"},
};
}  // namespace

StatusOr<PartitionScheme> ParsePartitionScheme(std::string_view text) {
  std::string names;
  for (const auto& [scheme, name] : kSchemes) {
    if (text == name) return scheme;
    names += names.empty() ? name : std::string(", ") + name;
  }
  return InvalidArgument("unknown partition scheme '" + std::string(text) + "' (expected " + names +
                         ")");
}

std::string ToString(PartitionScheme scheme) {
  for (const auto& [s, name] : kSchemes) {
    if (s == scheme) return name;
  }
  return "?";
}

std::vector<std::size_t> EqualWeightCuts(std::span<const std::uint32_t> rows,
                                         std::span<const double> weights, std::size_t pieces) {
  TESSERA_CHECK(pieces > 0);
  std::vector<std::size_t> cuts(pieces + 1, rows.size());
  cuts[0] = 0;
  double total = 0;
  for (std::uint32_t r : rows) total += weights[r];
  double running = 0;
  std::size_t at = 0;
  for (std::size_t i = 1; i < pieces; ++i) {
    const double target = total * static_cast<double>(i) / static_cast<double>(pieces);
    while (at < rows.size() && running < target) running += weights[rows[at++]];
    cuts[i] = at;
  }
  return cuts;
}

std::vector<std::vector<std::uint32_t>> PartitionRows(std::size_t rows, int workers,
                                                      PartitionScheme scheme, std::uint64_t seed,
                                                      std::span<const double> weights) {
  TESSERA_CHECK(workers > 0);
  TESSERA_CHECK(weights.empty() || weights.size() == rows)
      << weights.size() << " row weights for " << rows << " rows";
  std::vector<std::vector<std::uint32_t>> parts(workers);
  std::vector<std::uint32_t> order(rows);
  std::iota(order.begin(), order.end(), 0u);
  switch (scheme) {
    case PartitionScheme::kDisjointRoundRobin:
      for (std::size_t i = 0; i < rows; ++i) parts[i % workers].push_back(order[i]);
      return parts;
    case PartitionScheme::kOverlapReshuffle:
      for (int w = 0; w < workers; ++w) {
        parts[w] = order;
        std::mt19937_64 rng(seed + 7919 * static_cast<std::uint64_t>(w));
        std::shuffle(parts[w].begin(), parts[w].end(), rng);
      }
      return parts;
    case PartitionScheme::kDisjointRandom: {
      std::mt19937_64 rng(seed);
      std::shuffle(order.begin(), order.end(), rng);
      break;
    }
    case PartitionScheme::kDisjointContiguous:
      break;
  }
  if (!weights.empty()) {
    const auto cuts = EqualWeightCuts(order, weights, static_cast<std::size_t>(workers));
    for (int w = 0; w < workers; ++w) {
      parts[w].assign(order.begin() + static_cast<std::ptrdiff_t>(cuts[w]),
                      order.begin() + static_cast<std::ptrdiff_t>(cuts[w + 1]));
    }
    return parts;
  }
  const auto ranges = SplitRange(rows, workers);
  for (int w = 0; w < workers; ++w) {
    parts[w].assign(order.begin() + ranges[w].begin, order.begin() + ranges[w].end);
  }
  return parts;
}

void CopyRunOptions(const EngineOptions& engine, DataParallelOptions& dp) {
  dp.workers = engine.workers;
  dp.max_seconds = engine.max_seconds;
  dp.trace_path = engine.trace_path;
  dp.progress = engine.progress;
  dp.label = engine.label;
}

Status DataParallelOptions::Validate() const {
  if (straggler.worker >= workers) {
    return InvalidArgument("--straggler: worker " + std::to_string(straggler.worker) + " of " +
                           std::to_string(workers) + " workers (numbered from 0)");
  }
  if (servers < 1 || servers > kMaxEndpoints) {
    return InvalidArgument("--servers must be in [1, " + std::to_string(kMaxEndpoints) + "], got " +
                           std::to_string(servers));
  }
  if (workers < 1 || workers > kMaxEndpoints) {
    return InvalidArgument("--workers must be in [1, " + std::to_string(kMaxEndpoints) + "], got " +
                           std::to_string(workers));
  }
  if (!(max_seconds >= 0)) return InvalidArgument("--max-seconds must be >= 0");
  if (!(objective_tolerance >= 0)) return InvalidArgument("--tolerance must be >= 0");
  return Status::Ok();
}

namespace {

// The worker a barrier message came from, or an error naming what is wrong with it.
StatusOr<int> BarrierSender(const Message& m, const ParameterServer& ps, int workers) {
  const int w = m.from - ps.WorkerRank(0);
  if (w < 0 || w >= workers) {
    return InvalidArgument("driver: a barrier message from rank " + std::to_string(m.from) +
                           ", which is no worker");
  }
  return w;
}

// A worker's saved state (kDpWorkerState) into the app, on the driver's process. `gathered`
// has an element per worker and refuses a second state from one worker.
Status GatherState(DataParallelApp& app, const Message& m, const ParameterServer& ps,
                   const std::vector<std::vector<std::uint32_t>>& parts,
                   std::vector<bool>& gathered) {
  const auto* sent = m.get<msg::DpWorkerState>();
  if (!sent) return Internal(std::string("driver: a ") + KindName(m.kind()) + " as a worker state");
  TESSERA_ASSIGN_OR_RETURN(const int w, BarrierSender(m, ps, static_cast<int>(parts.size())));
  if (gathered[static_cast<std::size_t>(w)]) {
    return InvalidArgument("driver: worker " + std::to_string(w) + " sent its state twice");
  }
  gathered[static_cast<std::size_t>(w)] = true;
  StateReader in(sent->state, "the state of worker " + std::to_string(w));
  TESSERA_RETURN_IF_ERROR(app.GatherWorker(w, parts[static_cast<std::size_t>(w)], in));
  return in.Done();
}

struct Plan {
  // Rounds per epoch: every batch once per DataParallelApp::RoundsPerBatch round, each a
  // "batch" of the update frequency.
  std::uint64_t batches_per_epoch = 1;
  std::uint64_t rounds = 1;
  std::uint64_t clocks_per_epoch = 1;
  std::size_t batch = 0;  // rows per batch (of equal weight: the batches of the largest partition)
  std::uint64_t batches() const { return batches_per_epoch / rounds; }
  std::vector<double> weights;  // DataParallelApp::RowWeights
  bool EndsClock(const UpdateFrequency& f, std::uint64_t b) const {
    switch (f.kind) {
      case UpdateFrequency::Kind::kBatch:
        return true;
      case UpdateFrequency::Kind::kNBatches:
        return (b + 1) % f.n == 0 || b + 1 == batches_per_epoch;
      case UpdateFrequency::Kind::kEpoch:
        return b + 1 == batches_per_epoch;
    }
    return true;
  }
};

class Worker {
 public:
  Worker(DataParallelApp& app, const DataParallelOptions& opts, const Plan& plan, PsClient& client,
         std::vector<std::uint32_t> rows, double rows_per_clock)
      : app_(app), opts_(opts), plan_(plan), client_(client), rows_(std::move(rows)) {
    CutBatches();
    ctx_.worker = client.worker();
    ctx_.num_workers = opts.workers;
    ctx_.client = &client;
    ctx_.rows = rows_;
    ctx_.replication = opts.partition == PartitionScheme::kOverlapReshuffle ? opts.workers : 1;
    ctx_.rows_per_clock = rows_per_clock;
  }

  ~Worker() {
    if (opts_.kept_workers && state_) Kept() = std::move(state_);
  }

  Status Run() {
    const DpWorkerSetup setup{ctx_.worker, ctx_.num_workers, rows_};
    if (opts_.kept_workers && Kept()) {
      state_ = std::move(Kept());
      app_.ReuseWorker(*state_, setup);
    } else {
      state_ = app_.MakeWorker(setup);
    }
    ctx_.state = state_.get();
    TESSERA_RETURN_IF_ERROR(app_.Setup(ctx_));
    if (opts_.max_epochs <= opts_.start_epoch) return Evaluate().status();
    std::uint64_t clocks = 0;
    for (std::uint64_t epoch = opts_.start_epoch; epoch < opts_.max_epochs; ++epoch) {
      ctx_.epoch = epoch;
      if (epoch > 0 && opts_.partition == PartitionScheme::kOverlapReshuffle) {
        std::mt19937_64 rng(opts_.seed + 7919 * static_cast<std::uint64_t>(ctx_.worker) +
                            104729 * epoch);
        std::shuffle(rows_.begin(), rows_.end(), rng);
        CutBatches();
      }
      for (std::uint64_t b = 0; b < plan_.batches_per_epoch; ++b) {
        // b counts rounds: round b % rounds of batch b / rounds.
        const std::uint64_t batch = b / plan_.rounds;
        ctx_.round = static_cast<int>(b % plan_.rounds);
        const std::size_t begin = cuts_[batch], end = cuts_[batch + 1];
        ctx_.ends_clock = plan_.EndsClock(opts_.frequency, b);
        if (begin < end) {
          Stopwatch batch_clock;
          TESSERA_RETURN_IF_ERROR(app_.ProcessBatch(
              ctx_, std::span<const std::uint32_t>(rows_).subspan(begin, end - begin)));
          if (ctx_.worker == opts_.straggler.worker && opts_.straggler.factor > 1) {
            // A straggler: this worker takes `factor` times as long for each batch.
            SleepFiber(std::chrono::microseconds(static_cast<std::int64_t>(
                (opts_.straggler.factor - 1) * batch_clock.Seconds() * 1e6)));
          }
        }
        if (!plan_.EndsClock(opts_.frequency, b)) continue;
        ++clocks;
        const bool last = epoch + 1 == opts_.max_epochs && b + 1 == plan_.batches_per_epoch;
        const bool epoch_end = b + 1 == plan_.batches_per_epoch;
        const bool due = opts_.evaluate_every_epochs > 0
                             ? epoch_end && (epoch + 1) % opts_.evaluate_every_epochs == 0
                         : opts_.evaluate_every == 0 ? epoch_end
                                                     : clocks % opts_.evaluate_every == 0;
        // An evaluated model holds every change a push filter held back.
        if (last || due) TESSERA_RETURN_IF_ERROR(client_.ReleaseHeld());
        TESSERA_RETURN_IF_ERROR(client_.Clock());
        if (last || due) {
          TESSERA_ASSIGN_OR_RETURN(bool stop, Evaluate());
          if (stop) return Status::Ok();
        }
      }
    }
    return Internal("worker passed its last evaluation without a stop");
  }

  // To the driver (wherever it runs) once the run has stopped (`last`), and at a checkpoint.
  // The last time the state lets go of what Save does not write first, and is freed after
  // (unless the options keep it), before the driver builds the result.
  Status SendState(bool last) {
    const bool free_after = last && !opts_.kept_workers;
    msg::DpWorkerState m;
    if (state_) {
      if (free_after) state_->ReleaseForLastSave();
      StateWriter out(m.state);
      state_->Save(out);
    }
    if (free_after && state_) {
      state_.reset();
      ctx_.state = nullptr;
      ReturnFreedMemory();  // freed on this thread: back to the system, not only to malloc
    }
    return client_.SendToDriver(std::move(m));
  }

 private:
  std::unique_ptr<WorkerState>& Kept() {
    auto& states = opts_.kept_workers->states;
    return states[static_cast<std::size_t>(ctx_.worker)];
  }

  // The barrier: returns true when the driver says stop.
  StatusOr<bool> Evaluate() {
    // What this worker pushed, and the payload bytes it moved (the driver's totals: across
    // processes no single transport sees every message).
    TESSERA_RETURN_IF_ERROR(
        client_.SendToDriver(msg::DpArrived{client_.clock(), client_.stats().pushed_values,
                                            client_.stats().bytes, client_.stats().staleness}));
    TESSERA_ASSIGN_OR_RETURN(Message go, client_.ReceiveControl());
    TESSERA_RETURN_IF_ERROR(CheckControl(go));
    if (go.get<msg::Stop>()) return true;
    if (!go.get<msg::DpContinue>()) return Unexpected(go);
    client_.set_exact_reads(true);
    auto terms = app_.EvaluateTerms(ctx_);
    client_.set_exact_reads(false);
    if (!terms.ok()) return terms.status();
    TESSERA_RETURN_IF_ERROR(client_.SendToDriver(msg::DpTerms{client_.clock(), std::move(*terms)}));
    TESSERA_ASSIGN_OR_RETURN(Message reply, client_.ReceiveControl());
    TESSERA_RETURN_IF_ERROR(CheckControl(reply));
    while (reply.get<msg::DpSaveState>()) {  // a checkpoint
      TESSERA_RETURN_IF_ERROR(SendState(/*last=*/false));
      TESSERA_ASSIGN_OR_RETURN(reply, client_.ReceiveControl());
      TESSERA_RETURN_IF_ERROR(CheckControl(reply));
    }
    if (reply.get<msg::Stop>()) return true;
    if (!reply.get<msg::DpContinue>()) return Unexpected(reply);
    return false;
  }

  // Control messages come from the driver only.
  Status CheckControl(const Message& m) const { return m.from == 0 ? Status::Ok() : Unexpected(m); }
  Status Unexpected(const Message& m) const {
    return InvalidArgument("worker " + std::to_string(ctx_.worker) + ": unexpected " +
                           KindName(m.kind()) + " message from rank " + std::to_string(m.from));
  }

  DataParallelApp& app_;
  const DataParallelOptions& opts_;
  const Plan& plan_;
  PsClient& client_;
  std::vector<std::uint32_t> rows_;
  // Where each batch of rows_ begins, + rows_.size(): of equal weight when the app weighs its
  // rows, else plan_.batch rows each (a smaller partition's last batches short or empty).
  std::vector<std::size_t> cuts_;
  void CutBatches() {
    if (!plan_.weights.empty()) {
      cuts_ = EqualWeightCuts(rows_, plan_.weights, plan_.batches());
      return;
    }
    cuts_.resize(plan_.batches() + 1);
    for (std::size_t i = 0; i < cuts_.size(); ++i) {
      cuts_[i] = std::min(rows_.size(), i * plan_.batch);
    }
    cuts_.back() = rows_.size();
  }
  std::unique_ptr<WorkerState> state_;
  DpWorkerContext ctx_;
};

class Driver {
 public:
  Driver(DataParallelApp& app, const DataParallelOptions& opts, const Plan& plan,
         ParameterServer& ps, const std::vector<std::vector<std::uint32_t>>& parts)
      : app_(app),
        opts_(opts),
        plan_(plan),
        ps_(ps),
        parts_(parts),
        progress_(opts.label, opts.progress) {}

  StatusOr<RunResult> Run() {
    clock_ = Stopwatch();
    app_.RunStarted();
    if (!opts_.trace_path.empty()) {
      TESSERA_RETURN_IF_ERROR(
          trace_.Open(opts_.trace_path, "round,seconds,objective,updates,bytes,mean_staleness"));
    }
    const int P = opts_.workers;
    std::map<std::uint64_t, int> arrived;
    std::map<std::uint64_t, std::pair<int, Eigen::VectorXd>> terms;
    double last_objective = std::numeric_limits<double>::quiet_NaN();
    std::uint64_t pushed_before = 0;
    std::map<std::uint64_t, std::uint64_t> pushed, moved;
    const std::size_t buckets = ps_.num_tables() * kStalenessBuckets;
    std::map<std::uint64_t, std::vector<std::uint64_t>> stale;  // summed over the workers
    const std::uint64_t epochs =
        opts_.max_epochs > opts_.start_epoch ? opts_.max_epochs - opts_.start_epoch : 0;
    // Every worker evaluates after its last clock, which ends the run.
    const std::uint64_t last_clock = epochs * plan_.clocks_per_epoch;
    const double total_clocks = static_cast<double>(std::max<std::uint64_t>(1, last_clock));
    for (;;) {
      TESSERA_ASSIGN_OR_RETURN(Message m, ps_.transport().Receive(0));
      TESSERA_RETURN_IF_ERROR(BarrierSender(m, ps_, P).status());
      const auto* arrival = m.get<msg::DpArrived>();
      const auto* sent = m.get<msg::DpTerms>();
      if (!arrival && !sent) {
        return InvalidArgument(std::string("driver: unexpected ") + KindName(m.kind()) +
                               " message from rank " + std::to_string(m.from));
      }
      const std::uint64_t c = arrival ? arrival->clock : sent->clock;
      if (c > last_clock) {
        return InvalidArgument("driver: a barrier message for clock " + std::to_string(c) +
                               " of a run of " + std::to_string(last_clock));
      }
      if (arrival) {
        pushed[c] += arrival->values_pushed;
        moved[c] += arrival->bytes;
        if (arrival->staleness.size() != buckets) {
          return InvalidArgument(
              "driver: rank " + std::to_string(m.from) + " counted its reads in " +
              std::to_string(arrival->staleness.size()) + " bins, not " + std::to_string(buckets));
        }
        auto& sum = stale[c];
        sum.resize(buckets);
        for (std::size_t i = 0; i < buckets; ++i) sum[i] += arrival->staleness[i];
        if (++arrived[c] < P) continue;
        arrived.erase(c);
        TESSERA_RETURN_IF_ERROR(Broadcast(msg::DpContinue{c}));
        continue;
      }
      auto& [count, sum] = terms[c];
      if (count > 0 && sent->terms.size() != sum.size()) {
        return InvalidArgument("driver: objective terms of " + std::to_string(sent->terms.size()) +
                               " values where the others sent " + std::to_string(sum.size()));
      }
      sum = count == 0 ? sent->terms : Eigen::VectorXd(sum + sent->terms);
      if (++count < P) continue;
      const bool last = c == last_clock;
      const double objective = app_.Objective(sum);
      const bool may_stop = app_.MayStop(sum);
      TESSERA_RETURN_IF_ERROR(CheckFiniteObjective(objective, "clock", c));
      terms.erase(c);
      const double seconds = clock_.Seconds();
      const std::uint64_t values_pushed = pushed[c];
      pushed.erase(c);
      bytes_ = moved[c];
      moved.erase(c);
      RoundMetrics row{c, seconds, objective, values_pushed - pushed_before, bytes_};
      pushed_before = values_pushed;
      result_.evaluations.push_back(row);
      const std::vector<std::uint64_t> counts = std::move(stale[c]);
      stale.erase(c);
      result_.staleness.assign(ps_.num_tables(), {});
      for (std::size_t t = 0; t < ps_.num_tables(); ++t) {
        TableStaleness& h = result_.staleness[t];
        h.table = ps_.table(static_cast<TableId>(t)).name;
        h.reads.assign(counts.begin() + t * kStalenessBuckets,
                       counts.begin() + (t + 1) * kStalenessBuckets);
      }
      if (trace_.is_open()) {
        trace_.Row(std::to_string(row.round) + "," + FormatDouble(row.seconds) + "," +
                   FormatDouble(objective) + "," + std::to_string(row.updates) + "," +
                   std::to_string(row.bytes) + "," +
                   FormatDouble(MeanStaleness(result_.staleness)));
      }
      bool stop = last;
      if (last) result_.stop_reason = "max epochs";
      if (!stop && opts_.max_seconds > 0 && seconds >= opts_.max_seconds) {
        stop = true;
        result_.stop_reason = "time limit";
      }
      if (!stop && opts_.objective_tolerance > 0 && !std::isnan(last_objective) &&
          std::abs(last_objective - objective) <=
              opts_.objective_tolerance * std::max(std::abs(objective), 1e-300) &&
          may_stop) {
        stop = true;
        result_.stop_reason = "objective tolerance";
      }
      last_objective = objective;
      // ETA from whichever limit is closer; a run that may stop earlier on its objective
      // tolerance has none (it would count to the epoch limit, not to convergence).
      double frac =
          opts_.objective_tolerance > 0 ? -1 : static_cast<double>(c) / std::max(total_clocks, 1.0);
      if (opts_.max_seconds > 0) frac = std::max(frac, seconds / opts_.max_seconds);
      progress_.Update(c, objective, seconds, frac);
      result_.rounds = c;
      result_.objective = objective;
      result_.updates += row.updates;
      // Every worker waits for this reply and nobody pushes: the moment for a checkpoint
      // (after the evaluation, so the app's metrics include this epoch).
      if (!stop && opts_.checkpoint && c % plan_.clocks_per_epoch == 0 &&
          clock_.Seconds() - last_checkpoint_ >= opts_.checkpoint_every) {
        TESSERA_RETURN_IF_ERROR(Checkpoint(c));
        last_checkpoint_ = clock_.Seconds();
      }
      if (stop) {
        TESSERA_RETURN_IF_ERROR(Broadcast(msg::Stop{}));
      } else {
        TESSERA_RETURN_IF_ERROR(Broadcast(msg::DpContinue{c}));
      }
      if (stop) break;
    }
    progress_.Finish();
    result_.seconds = clock_.Seconds();
    result_.bytes = bytes_;
    TESSERA_RETURN_IF_ERROR(trace_.Finish());
    return std::move(result_);
  }

 private:
  template <typename Body>
  Status Broadcast(const Body& body) {
    for (int w = 0; w < opts_.workers; ++w) {
      TESSERA_RETURN_IF_ERROR(ps_.transport().Send(ps_.WorkerRank(w), Message(0, body)));
    }
    return Status::Ok();
  }

  // At the barrier after clock c (an epoch's end, evaluated; every worker waits): every worker's
  // state and every table as the servers hold it after clock c, handed to opts_.checkpoint.
  Status Checkpoint(std::uint64_t c) {
    Transport& t = ps_.transport();
    std::vector<bool> gathered(parts_.size(), false);
    TESSERA_RETURN_IF_ERROR(Broadcast(msg::DpSaveState{c}));
    const int states = opts_.workers;
    int gathered_states = 0;
    std::vector<Eigen::VectorXd> tables(ps_.num_tables());
    int pulls = 0;
    std::map<std::uint64_t, msg::PsPull> requests;  // the driver's pulls, numbered from 1
    for (TableId id = 0; id < ps_.num_tables(); ++id) {
      const TableSpec& spec = ps_.table(id);
      if (spec.storage == TableStorage::kSparseElements) continue;  // the app rebuilds it
      tables[id] = Eigen::VectorXd::Constant(static_cast<Eigen::Index>(spec.num_keys * spec.dim),
                                             spec.initial);
      for (int s = 0; s < ps_.servers(); ++s) {
        msg::PsPull pull;
        pull.table = id;
        pull.range = ps_.ranges(id)[static_cast<std::size_t>(s)];
        pull.clock = c;  // served once every worker's clock c has reached the shard
        pull.exact = true;
        if (pull.range.size() == 0) continue;
        pull.request = requests.size() + 1;
        requests[pull.request] = pull;
        TESSERA_RETURN_IF_ERROR(t.Send(ps_.ShardRank(s), Message(0, std::move(pull))));
        ++pulls;
      }
    }
    while (pulls > 0 || gathered_states < states) {
      TESSERA_ASSIGN_OR_RETURN(Message m, t.Receive(0));
      auto* values = m.get<msg::PsValues>();
      const auto pull = values ? requests.find(values->request) : requests.end();
      if (pull != requests.end() && pull->second.table == values->table) {
        static_cast<TableKeys&>(*values) = pull->second;  // an answer holds what was asked
        TESSERA_RETURN_IF_ERROR(ps_.UnpackFrom(m.from, *values, values->values, values->packed));
        TESSERA_RETURN_IF_ERROR(
            ps_.PlaceValues(m.from, *values, values->values, tables[values->table]));
        requests.erase(pull);
        --pulls;
      } else if (m.get<msg::DpWorkerState>()) {
        TESSERA_RETURN_IF_ERROR(GatherState(app_, m, ps_, parts_, gathered));
        ++gathered_states;
      } else {
        return InvalidArgument(std::string("driver: an unexpected ") + KindName(m.kind()) +
                               " message from rank " + std::to_string(m.from) +
                               " during a checkpoint");
      }
    }
    return opts_.checkpoint(opts_.start_epoch + c / plan_.clocks_per_epoch, tables);
  }

  DataParallelApp& app_;
  const DataParallelOptions& opts_;
  const Plan& plan_;
  ParameterServer& ps_;
  const std::vector<std::vector<std::uint32_t>>& parts_;  // every worker's rows
  double last_checkpoint_ = 0;                            // clock_ seconds
  Stopwatch clock_;
  ProgressLine progress_;
  CsvWriter trace_;
  RunResult result_;
  std::uint64_t bytes_ = 0;  // payload bytes the workers had moved at the last evaluation
};

}  // namespace

StatusOr<std::string> UseCheckpoints(DataParallelApp& app, const CheckpointPlan& plan,
                                     const std::shared_ptr<Transport>& transport,
                                     DataParallelOptions& options,
                                     std::optional<CheckpointDir>& dir) {
  const bool writer = !transport || transport->hosts(0);  // the driver's process
  TESSERA_ASSIGN_OR_RETURN(CheckpointStart start, OpenCheckpoints(plan.dir, plan.resume, writer));
  dir = std::move(start.dir);
  std::string resumed;
  if (start.latest) {
    TESSERA_ASSIGN_OR_RETURN(options.start_epoch, app.RestoreCheckpoint(*start.latest));
    resumed = start.latest->source() + ": " + std::to_string(options.start_epoch) + " of " +
              std::to_string(options.max_epochs) + " " + plan.unit + " done";
  }
  if (dir && writer) {
    options.checkpoint_every = plan.every;
    options.checkpoint = [&app, &dir](std::uint64_t epochs,
                                      const std::vector<Eigen::VectorXd>& tables) -> Status {
      TESSERA_ASSIGN_OR_RETURN(Checkpoint c, app.SaveCheckpoint(epochs, tables));
      return dir->Save(c).status();
    };
  }
  return resumed;
}

StatusOr<DataParallelResult> RunDataParallel(DataParallelApp& app,
                                             const DataParallelOptions& options,
                                             std::shared_ptr<Transport> transport) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  const std::size_t n = app.num_rows();
  if (n == 0) return InvalidArgument("the data set has no rows");
  Plan plan;
  plan.weights = app.RowWeights();
  if (!plan.weights.empty() && plan.weights.size() != n) {
    return InvalidArgument("the app gave " + std::to_string(plan.weights.size()) +
                           " row weights for " + std::to_string(n) + " rows");
  }
  auto parts = PartitionRows(n, options.workers, options.partition, options.seed, plan.weights);
  std::size_t largest = 0, total = 0;
  for (const auto& p : parts) {
    largest = std::max(largest, p.size());
    total += p.size();
  }
  plan.batch = options.batch_size == 0 ? std::max<std::size_t>(largest, 1) : options.batch_size;
  plan.rounds = static_cast<std::uint64_t>(std::max(1, app.RoundsPerBatch(options)));
  plan.batches_per_epoch =
      plan.rounds * std::max<std::uint64_t>(1, (largest + plan.batch - 1) / plan.batch);
  switch (options.frequency.kind) {
    case UpdateFrequency::Kind::kBatch:
      plan.clocks_per_epoch = plan.batches_per_epoch;
      break;
    case UpdateFrequency::Kind::kNBatches:
      plan.clocks_per_epoch = (plan.batches_per_epoch + options.frequency.n - 1) /
                              static_cast<std::uint64_t>(options.frequency.n);
      break;
    case UpdateFrequency::Kind::kEpoch:
      plan.clocks_per_epoch = 1;
      break;
  }
  const double rows_per_clock =
      static_cast<double>(total) / static_cast<double>(plan.clocks_per_epoch);

  std::vector<TableSpec> tables = app.Tables(options);
  for (TableSpec& spec : tables) {
    spec.communication = options.communication;
    if (spec.dense_rows) spec.communication.sparse_values = false;
  }
  TESSERA_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(std::move(tables), options.servers,
                                                           options.workers, transport));
  // Across processes each runs the driver, shards and workers its transport hosts.
  Transport& t = ps->transport();
  const bool distributed = !t.in_process();
  if (distributed) ps->StopAfterWorkers();
  if (options.kept_workers && options.kept_workers->states.size() < parts.size()) {
    options.kept_workers->states.resize(parts.size());
  }
  std::vector<Status> worker_status(options.workers);
  WaitGroup done;
  FiberPool& pool = FiberPool::Global();
  for (int w = 0; w < options.workers; ++w) {
    if (!t.hosts(ps->WorkerRank(w))) continue;
    done.Add(1);
    pool.Spawn([&, w] {
      {  // the worker (and the state it keeps or frees) is gone before the run may end
        Worker worker(app, options, plan, ps->client(w), parts[w], rows_per_clock);
        worker_status[w] = worker.Run();
        if (worker_status[w].ok()) worker_status[w] = worker.SendState(/*last=*/true);
      }
      if (!worker_status[w].ok()) {
        t.Close();  // wakes everyone: the run fails
      } else if (distributed) {
        // The shards stop once every worker has (see ParameterServer::Shutdown); on each
        // connection this follows the worker's last push.
        for (int s = 0; s < options.servers; ++s) {
          worker_status[w] = t.Send(ps->ShardRank(s), Message(ps->WorkerRank(w), msg::Stop{}));
          if (!worker_status[w].ok()) break;
        }
      }
      done.Done();
    });
  }
  const bool driver_here = t.hosts(0);
  StatusOr<RunResult> run = Internal("driver did not run");
  if (driver_here) {
    done.Add(1);
    pool.Spawn([&] {
      run = Driver(app, options, plan, *ps, parts).Run();
      if (!run.ok()) t.Close();
      done.Done();
    });
  }
  done.Wait();
  // The driver's process gets the final state of every worker, interleaved with the remote
  // shards' tables.
  int states_due = driver_here ? options.workers : 0;
  std::vector<bool> gathered(parts.size(), false);
  Status merged = Status::Ok();
  auto merge = [&](Message& m) {
    if (!m.get<msg::DpWorkerState>()) return;  // a late control message of the run
    --states_due;
    if (merged.ok()) merged = GatherState(app, m, *ps, parts, gathered);
  };
  ps->Shutdown(merge);
  while (states_due > 0 && run.ok() && ps->final_status().ok()) {
    auto m = t.Receive(0);
    if (!m.ok()) {
      merged = m.status();
      break;
    }
    merge(*m);
  }
  TESSERA_RETURN_IF_ERROR(ps->shard_status());  // a refused message says more than the rest
  if (!driver_here) {
    for (const Status& s : worker_status) TESSERA_RETURN_IF_ERROR(s);
    DataParallelResult result;
    result.run.holds_result = false;
    for (TableId id = 0; id < ps->num_tables(); ++id) result.tables.push_back(ps->Snapshot(id));
    return result;
  }
  TESSERA_RETURN_IF_ERROR(ps->final_status());
  TESSERA_RETURN_IF_ERROR(merged);
  // The first error that is not just the transport closing behind another one.
  for (const Status& s : worker_status) {
    if (!s.ok() && s.code() != StatusCode::kUnavailable) return s;
  }
  if (!run.ok() && run.status().code() != StatusCode::kUnavailable) return run.status();
  for (const Status& s : worker_status) TESSERA_RETURN_IF_ERROR(s);
  TESSERA_RETURN_IF_ERROR(run.status());
  DataParallelResult result;
  result.run = std::move(*run);
  for (TableId t = 0; t < ps->num_tables(); ++t) result.tables.push_back(ps->Snapshot(t));
  return result;
}

}  // namespace tessera
