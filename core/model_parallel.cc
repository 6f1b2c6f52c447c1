#include "core/model_parallel.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>

#include "core/fiber_pool.h"
#include "core/metrics.h"

namespace tessera {

Partial ModelParallelApp::Aggregate(std::span<const Partial> partials) {
  TESSERA_CHECK(!partials.empty());
  Partial out = partials[0];
  for (std::size_t i = 1; i < partials.size(); ++i) {
    TESSERA_CHECK(partials[i].values.size() == out.values.size())
        << "block " << out.block << ": partial sizes differ between workers";
    out.values += partials[i].values;
  }
  return out;
}

Status EngineOptions::Validate() const {
  if (workers < 1)
    return InvalidArgument("--workers must be at least 1, got " + std::to_string(workers));
  if (pipeline_depth < 1) {
    return InvalidArgument("--pipeline-depth must be at least 1, got " +
                           std::to_string(pipeline_depth));
  }
  if (max_rounds < 1) return InvalidArgument("--max-rounds must be at least 1");
  if (!(max_seconds >= 0)) return InvalidArgument("--max-seconds must be >= 0");
  if (!(objective_tolerance >= 0)) return InvalidArgument("--tolerance must be >= 0");
  if (!(checkpoint_every >= 0)) return InvalidArgument("--checkpoint-every must be >= 0");
  return Status::Ok();
}

namespace {

Rank WorkerRank(int w) { return w + 1; }
constexpr Rank kCoordinator = 0;

Status WorkerLoop(ModelParallelApp& app, Transport& transport, int w, int num_workers) {
  WorkerContext ctx;
  ctx.worker = w;
  ctx.num_workers = num_workers;
  std::vector<Block> mine;
  for (;;) {
    auto received = transport.Receive(WorkerRank(w));
    if (!received.ok()) return received.status();
    Message& m = *received;
    if (m.has_update) {
      ctx.round = m.update_round;
      app.Apply(ctx, m.update);
    }
    ctx.round = m.round;
    switch (m.kind) {
      case MessageKind::kPush: {
        mine.clear();
        for (auto& b : m.blocks) {
          if (b.worker == kAllWorkers || b.worker == w) mine.push_back(std::move(b));
        }
        ctx.stale_keys = m.stale_keys;
        Message reply;
        reply.kind = MessageKind::kPartials;
        reply.from = WorkerRank(w);
        reply.round = m.round;
        if (!mine.empty()) reply.partials = app.Push(ctx, mine);
        ctx.stale_keys = {};
        for (auto& p : reply.partials) p.worker = w;
        TESSERA_RETURN_IF_ERROR(transport.Send(kCoordinator, std::move(reply)));
        break;
      }
      case MessageKind::kApply:  // applied above
        break;
      case MessageKind::kEvaluate: {
        Message reply;
        reply.kind = MessageKind::kEvaluation;
        reply.from = WorkerRank(w);
        reply.round = m.round;
        reply.values = app.EvaluateTerms(ctx);
        TESSERA_RETURN_IF_ERROR(transport.Send(kCoordinator, std::move(reply)));
        break;
      }
      case MessageKind::kStop:
        return Status::Ok();
      default:
        return Internal("worker " + std::to_string(w) + ": unexpected message kind " +
                        std::to_string(static_cast<int>(m.kind)) + " from rank " +
                        std::to_string(m.from));
    }
  }
}

struct InFlightRound {
  std::uint64_t round = 0;
  std::vector<Block> blocks;
  std::size_t committed_mark = 0;  // updates committed before this round was pushed
  bool evaluate_after = false;
};

class Coordinator {
 public:
  Coordinator(ModelParallelApp& app, const EngineOptions& opts, Transport& transport)
      : app_(app),
        opts_(opts),
        transport_(transport),
        rng_(opts.seed),
        progress_(opts.label, opts.progress) {}

  StatusOr<RunResult> Run() {
    if (!opts_.trace_path.empty()) {
      TESSERA_RETURN_IF_ERROR(
          trace_.Open(opts_.trace_path, "round,seconds,objective,updates,bytes"));
    }
    bool scheduling = true;
    std::uint64_t scheduled = opts_.first_round, pulled = opts_.first_round;
    std::deque<InFlightRound> flight;
    double last_objective = std::numeric_limits<double>::quiet_NaN();
    bool last_evaluated = false;
    // A marked round that is due for a checkpoint is in flight: plan nothing more until then.
    bool hold = false;
    const bool marked = opts_.checkpoint && opts_.checkpoint_at_marked_rounds;
    for (;;) {
      if (hold && flight.empty()) {
        TESSERA_RETURN_IF_ERROR(opts_.checkpoint(pulled));
        last_checkpoint_ = clock_.Seconds();
        hold = false;
      }
      while (scheduling && !hold &&
             flight.size() < static_cast<std::size_t>(opts_.pipeline_depth)) {
        if (opts_.checkpoint && !marked && opts_.checkpoint_every > 0 &&
            clock_.Seconds() - last_checkpoint_ >= opts_.checkpoint_every) {
          if (!flight.empty()) break;  // drain the pipeline first
          TESSERA_RETURN_IF_ERROR(opts_.checkpoint(pulled));
          last_checkpoint_ = clock_.Seconds();
        }
        if (scheduled >= opts_.max_rounds) {
          scheduling = false;
          result_.stop_reason = "max rounds";
          break;
        }
        if (opts_.max_seconds > 0 && clock_.Seconds() >= opts_.max_seconds) {
          scheduling = false;
          result_.stop_reason = "time limit";
          break;
        }
        in_flight_keys_.clear();
        for (const auto& f : flight) {
          for (const auto& b : f.blocks) {
            in_flight_keys_.insert(in_flight_keys_.end(), b.keys.begin(), b.keys.end());
          }
        }
        ScheduleContext sctx;
        sctx.round = scheduled;
        sctx.num_workers = opts_.workers;
        sctx.in_flight = in_flight_keys_;
        sctx.rng = &rng_;
        RoundSchedule plan = app_.Schedule(sctx);
        if (plan.done) {
          scheduling = false;
          result_.stop_reason = plan.done_reason;
          break;
        }
        if (plan.blocks.empty()) {
          if (flight.empty()) {
            return Internal("Schedule returned no blocks while no round was in flight");
          }
          break;  // barrier: pull what is in flight first
        }
        Message push;
        push.kind = MessageKind::kPush;
        push.round = scheduled;
        push.blocks = plan.blocks;
        push.stale_keys = in_flight_keys_;
        TESSERA_RETURN_IF_ERROR(Broadcast(push));
        flight.push_back({scheduled, std::move(plan.blocks), committed_base_ + committed_.size(),
                          plan.evaluate_after});
        ++scheduled;
        hold = marked && plan.checkpoint_after &&
               clock_.Seconds() - last_checkpoint_ >= opts_.checkpoint_every;
      }
      if (flight.empty()) break;
      // Nothing left to carry a waiting update before the workers must reply: send it alone.
      TESSERA_RETURN_IF_ERROR(FlushUpdate());

      InFlightRound round = std::move(flight.front());
      flight.pop_front();
      TESSERA_ASSIGN_OR_RETURN(auto replies, Gather(MessageKind::kPartials, round.round));
      std::vector<Partial> merged(round.blocks.size());
      std::vector<Partial> parts;
      for (std::size_t i = 0; i < round.blocks.size(); ++i) {
        parts.clear();
        for (auto& r : replies) {
          for (auto& p : r.partials) {
            if (p.block == round.blocks[i].id) parts.push_back(std::move(p));
          }
        }
        if (parts.empty()) {
          merged[i].block = round.blocks[i].id;
        } else {
          merged[i] = app_.Aggregate(parts);
        }
      }
      PullContext pctx;
      pctx.round = round.round;
      pctx.stale_updates =
          std::span<const Update>(committed_).subspan(round.committed_mark - committed_base_);
      Update update = app_.Pull(pctx, round.blocks, merged);
      const std::uint64_t changed = update.keys.size();
      result_.updates += changed;
      if (!update.empty()) {
        TESSERA_RETURN_IF_ERROR(FlushUpdate());  // at most one update waits at a time
        pending_update_ = update;
        pending_round_ = round.round;
        has_pending_update_ = true;
      }
      committed_.push_back(std::move(update));
      ++pulled;
      // Updates older than every in-flight round's mark are no longer needed.
      const std::size_t keep_from =
          flight.empty() ? committed_base_ + committed_.size() : flight.front().committed_mark;
      if (committed_base_ < keep_from) {
        committed_.erase(committed_.begin(), committed_.begin() + static_cast<std::ptrdiff_t>(
                                                                      keep_from - committed_base_));
        committed_base_ = keep_from;
      }

      const bool evaluate = round.evaluate_after ||
                            (opts_.objective_every > 0 && pulled % opts_.objective_every == 0);
      double objective = std::numeric_limits<double>::quiet_NaN();
      if (evaluate) {
        TESSERA_ASSIGN_OR_RETURN(objective, Evaluate(round.round));
        if (scheduling && opts_.objective_tolerance > 0 && !std::isnan(last_objective) &&
            std::abs(last_objective - objective) <=
                opts_.objective_tolerance * std::max(std::abs(objective), 1e-300)) {
          scheduling = false;
          result_.stop_reason = "objective tolerance";
        }
        last_objective = objective;
      }
      last_evaluated = evaluate;
      Record(round.round, objective, changed);
      // ETA from whichever limit is closer; apps that stop on convergence have none.
      const double now = clock_.Seconds();
      double frac = opts_.max_rounds < EngineOptions{}.max_rounds
                        ? static_cast<double>(pulled) / static_cast<double>(opts_.max_rounds)
                        : -1;
      if (opts_.max_seconds > 0) frac = std::max(frac, now / opts_.max_seconds);
      progress_.Update(pulled, last_objective, now, frac);
    }
    TESSERA_RETURN_IF_ERROR(FlushUpdate());
    if (!last_evaluated) {
      TESSERA_ASSIGN_OR_RETURN(last_objective, Evaluate(pulled));
      Record(pulled == 0 ? 0 : pulled - 1, last_objective, 0);
    }
    progress_.Finish();
    result_.rounds = pulled;
    result_.seconds = clock_.Seconds();
    result_.objective = last_objective;
    result_.bytes = bytes_;
    TESSERA_RETURN_IF_ERROR(trace_.Finish());
    return std::move(result_);
  }

 private:
  // Waits for one reply of `kind` for `round` from every worker, in worker order; replies for
  // other rounds that arrive meanwhile are kept for later.
  StatusOr<std::vector<Message>> Gather(MessageKind kind, std::uint64_t round) {
    auto key = std::make_pair(kind, round);
    auto& got = pending_[key];
    while (got.size() < static_cast<std::size_t>(opts_.workers)) {
      auto m = transport_.Receive(kCoordinator);
      if (!m.ok()) return m.status();
      bytes_ += m->PayloadBytes();
      auto k = std::make_pair(m->kind, m->round);
      pending_[k].push_back(std::move(*m));
    }
    std::vector<Message> out = std::move(got);
    pending_.erase(key);
    std::sort(out.begin(), out.end(),
              [](const Message& a, const Message& b) { return a.from < b.from; });
    return out;
  }

  // Sends a copy of `m` to every worker; the waiting committed update, if any, rides along.
  Status Broadcast(const Message& m) {
    for (int w = 0; w < opts_.workers; ++w) {
      Message copy = m;
      if (has_pending_update_) {
        copy.has_update = true;
        copy.update_round = pending_round_;
        copy.update = pending_update_;
      }
      bytes_ += copy.PayloadBytes();
      TESSERA_RETURN_IF_ERROR(transport_.Send(WorkerRank(w), std::move(copy)));
    }
    has_pending_update_ = false;
    return Status::Ok();
  }

  // Sends the waiting committed update, if any, as a message of its own.
  Status FlushUpdate() {
    if (!has_pending_update_) return Status::Ok();
    Message apply;
    apply.kind = MessageKind::kApply;
    apply.round = pending_round_;
    return Broadcast(apply);
  }

  StatusOr<double> Evaluate(std::uint64_t round) {
    Message evaluate;
    evaluate.kind = MessageKind::kEvaluate;
    evaluate.round = round;
    TESSERA_RETURN_IF_ERROR(Broadcast(evaluate));
    TESSERA_ASSIGN_OR_RETURN(auto replies, Gather(MessageKind::kEvaluation, round));
    Eigen::VectorXd sum = replies[0].values;
    for (std::size_t i = 1; i < replies.size(); ++i) sum += replies[i].values;
    return app_.Objective(sum);
  }

  void Record(std::uint64_t round, double objective, std::uint64_t changed) {
    RoundMetrics row{round, clock_.Seconds(), objective, changed, bytes_};
    if (!std::isnan(objective)) result_.evaluations.push_back(row);
    if (trace_.is_open()) {
      trace_.Row(std::to_string(row.round) + "," + FormatDouble(row.seconds) + "," +
                 (std::isnan(objective) ? std::string() : FormatDouble(objective)) + "," +
                 std::to_string(row.updates) + "," + std::to_string(row.bytes));
    }
  }

  ModelParallelApp& app_;
  const EngineOptions& opts_;
  Transport& transport_;
  std::mt19937_64 rng_;
  Stopwatch clock_;
  ProgressLine progress_;
  CsvWriter trace_;
  RunResult result_;
  std::vector<Key> in_flight_keys_;
  std::vector<Update> committed_;  // recent commits, a few rounds at most
  Update pending_update_;  // committed, not yet sent: rides on the next message to the workers
  std::uint64_t pending_round_ = 0;
  bool has_pending_update_ = false;
  double last_checkpoint_ = 0;  // clock_ seconds
  std::size_t committed_base_ = 0;
  std::map<std::pair<MessageKind, std::uint64_t>, std::vector<Message>> pending_;
  // Payload bytes the coordinator sent and received: every message of the engine passes
  // through it, so this is the traffic of the run whichever transport carries it (a shared
  // transport's own counter spans runs and, between processes, only this process's sends).
  std::uint64_t bytes_ = 0;
};

}  // namespace

StatusOr<RunResult> RunModelParallel(ModelParallelApp& app, const EngineOptions& options) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<Transport> shared = options.transport;
  if (!shared) {
    shared = std::make_shared<InProcessTransport>(options.workers + 1);
  } else if (shared->size() != options.workers + 1) {
    return InvalidArgument("the transport has " + std::to_string(shared->size()) + " endpoints; " +
                           std::to_string(options.workers) + " workers need " +
                           std::to_string(options.workers + 1));
  }
  Transport& transport = *shared;
  transport.BeginRun();  // nothing of an earlier run over this transport reaches this one
  WaitGroup workers;
  FiberPool& pool = FiberPool::Global();
  std::vector<Status> worker_status(static_cast<std::size_t>(options.workers));
  for (int w = 0; w < options.workers; ++w) {
    if (!transport.hosts(WorkerRank(w))) continue;
    workers.Add(1);
    pool.Spawn([&app, &transport, &workers, &worker_status, w, n = options.workers] {
      worker_status[static_cast<std::size_t>(w)] = WorkerLoop(app, transport, w, n);
      workers.Done();
    });
  }
  if (!transport.hosts(kCoordinator)) {  // a worker process of a multi-process run
    workers.Wait();
    for (const Status& s : worker_status) TESSERA_RETURN_IF_ERROR(s);
    RunResult r;
    r.stop_reason = kWorkerProcess;
    return r;
  }
  // The coordinator is a fiber on the pool too, so a round costs fiber switches rather than
  // a wake-up of the calling thread.
  StatusOr<RunResult> result = Internal("coordinator did not run");
  WaitGroup coordinator;
  coordinator.Add(1);
  pool.Spawn([&] {
    result = Coordinator(app, options, transport).Run();
    // Best effort, unlike Coordinator::Broadcast: every worker is told, even if one send fails.
    for (int w = 0; w < options.workers; ++w) {
      Message stop;
      stop.kind = MessageKind::kStop;
      (void)transport.Send(WorkerRank(w), std::move(stop));
    }
    coordinator.Done();
  });
  coordinator.Wait();
  workers.Wait();
  if (!options.transport) transport.Close();
  return result;
}

}  // namespace tessera

namespace tessera {

StatusOr<std::string> UseCheckpoints(ModelParallelApp& app, const CheckpointPlan& plan,
                                     EngineOptions& options, std::optional<CheckpointDir>& dir) {
  const bool writer = !options.transport || options.transport->hosts(0);  // the coordinator's
  TESSERA_ASSIGN_OR_RETURN(CheckpointStart start, OpenCheckpoints(plan.dir, plan.resume, writer));
  dir = std::move(start.dir);
  std::string resumed;
  if (start.latest) {
    TESSERA_ASSIGN_OR_RETURN(options.first_round, app.RestoreCheckpoint(*start.latest));
    resumed = start.latest->source();
  }
  if (dir && writer) {
    options.checkpoint_every = plan.every;
    options.checkpoint_at_marked_rounds = true;
    options.checkpoint = [&app, &dir](std::uint64_t rounds) -> Status {
      TESSERA_ASSIGN_OR_RETURN(Checkpoint c, app.SaveCheckpoint(rounds));
      return dir->Save(c).status();
    };
  }
  return resumed;
}

}  // namespace tessera
