#include "tessera/core/model_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"

namespace tessera {

StatusOr<Partial> ModelParallelApp::Aggregate(std::span<const Partial> partials) {
  TESSERA_CHECK(!partials.empty());
  Partial out = partials[0];
  for (std::size_t i = 1; i < partials.size(); ++i) {
    if (partials[i].values.size() != out.values.size()) {
      return InvalidArgument("worker " + std::to_string(partials[i].worker) + " sent " +
                             std::to_string(partials[i].values.size()) +
                             " partial values, worker " + std::to_string(out.worker) + " " +
                             std::to_string(out.values.size()));
    }
    out.values += partials[i].values;
  }
  return out;
}

Status EngineOptions::Validate() const {
  if (workers < 1 || workers > kMaxEndpoints) {
    return InvalidArgument("--workers must be in [1, " + std::to_string(kMaxEndpoints) + "], got " +
                           std::to_string(workers));
  }
  if (pipeline_depth < 1) {
    return InvalidArgument("--pipeline-depth must be at least 1, got " +
                           std::to_string(pipeline_depth));
  }
  if (max_rounds < 1) return InvalidArgument("--max-rounds must be at least 1");
  if (!(max_seconds >= 0)) return InvalidArgument("--max-seconds must be >= 0");
  if (!(objective_tolerance >= 0)) return InvalidArgument("--tolerance must be >= 0");
  if (!(checkpoint_every >= 0)) return InvalidArgument("--checkpoint-every must be >= 0");
  if (!(change_tolerance >= 0)) return InvalidArgument("change_tolerance must be >= 0");
  return Status::Ok();
}

RoundSchedule ModelParallelApp::Schedule(ScheduleContext&) {
  RoundSchedule plan;
  plan.done = true;
  plan.undefined = true;
  return plan;
}

namespace {

Rank WorkerRank(int w) { return w + 1; }
constexpr Rank kCoordinator = 0;

// One worker: its state, the carried blocks it holds, and the loop that answers the
// coordinator. Carried blocks move worker to worker: on a push, the holder of a block that the
// round assigns to another worker sends its state there first, then waits for the blocks it is
// assigned and does not hold; messages from the coordinator that arrive meanwhile wait their turn.
class Worker {
 public:
  Worker(ModelParallelApp& app, Transport& transport, int w, int num_workers, KeptWorkers* kept)
      : app_(app), transport_(transport), w_(w), kept_(kept) {
    ctx_.worker = w;
    ctx_.num_workers = num_workers;
    ctx_.held = &held_;
  }

  ~Worker() {
    if (kept_ && state_) kept_->states[static_cast<std::size_t>(w_)] = std::move(state_);
  }

  Status Run() {
    const WorkerSetup setup{w_, ctx_.num_workers};
    if (kept_ && kept_->states[static_cast<std::size_t>(w_)]) {
      state_ = std::move(kept_->states[static_cast<std::size_t>(w_)]);
      app_.ReuseWorker(*state_, setup);
    } else {
      state_ = app_.MakeWorker(setup);
    }
    ctx_.state = state_.get();
    const std::vector<int> holders = app_.CarriedBlockHolders(ctx_.num_workers);
    for (std::size_t b = 0; b < holders.size(); ++b) {
      if (holders[b] != w_) continue;
      const auto id = static_cast<std::uint32_t>(b);
      std::unique_ptr<BlockState> block = app_.MakeBlock(id, ctx_);
      if (!block) return Internal("MakeBlock returned no state for block " + std::to_string(b));
      held_[id] = std::move(block);
    }
    std::vector<Block> mine;
    for (;;) {
      TESSERA_ASSIGN_OR_RETURN(Message m, Next());
      if (m.get<msg::BlockState>()) {
        TESSERA_RETURN_IF_ERROR(Arrived(std::move(m)));
        continue;
      }
      if (m.from != kCoordinator) return Unexpected(m);
      if (const Committed* c = CommittedOf(m)) {
        ctx_.round = c->round;
        app_.Apply(ctx_, c->update);
      }
      if (auto* push = m.get<msg::Push>()) {
        ctx_.round = push->round;
        TESSERA_RETURN_IF_ERROR(MoveBlocks(push->blocks));
        mine.clear();
        for (auto& b : push->blocks) {
          if (b.worker == kAllWorkers || b.worker == w_) mine.push_back(std::move(b));
        }
        ctx_.stale_keys = std::move(push->stale_keys);
        msg::Partials reply{push->round, {}, moved_bytes_};
        if (!mine.empty()) reply.partials = app_.Push(ctx_, mine);
        ctx_.stale_keys = {};
        for (auto& p : reply.partials) p.worker = w_;
        moved_bytes_ = 0;
        TESSERA_RETURN_IF_ERROR(transport_.Send(kCoordinator, Message(WorkerRank(w_), reply)));
      } else if (m.get<msg::Apply>()) {
        // applied above
      } else if (const auto* evaluate = m.get<msg::Evaluate>()) {
        ctx_.round = evaluate->round;
        msg::Evaluation reply{evaluate->round, app_.EvaluateTerms(ctx_)};
        TESSERA_RETURN_IF_ERROR(
            transport_.Send(kCoordinator, Message(WorkerRank(w_), std::move(reply))));
      } else if (const auto* gather = m.get<msg::Gather>()) {
        ctx_.round = gather->round;
        const bool last = gather->last;
        msg::WorkerState reply;
        reply.round = gather->round;
        if (state_) {
          if (last && !kept_) state_->ReleaseForLastSave();
          StateWriter out(reply.state);
          state_->Save(out);
        }
        for (const auto& [id, block] : held_) {
          CarriedState c{id, {}};
          if (last) block->ReleaseForLastSave();
          StateWriter out(c.state);
          block->Save(out);
          reply.carried.push_back(std::move(c));
        }
        TESSERA_RETURN_IF_ERROR(
            transport_.Send(kCoordinator, Message(WorkerRank(w_), std::move(reply))));
        if (last) {  // the coordinator has it all: free it now, before the others send theirs
          held_.clear();
          if (!kept_) state_.reset();
          ctx_.state = state_.get();
          // Freed on this worker's thread, the memory would stay in its malloc arena, unusable
          // by the gathers and the result that other threads allocate next.
          ReturnFreedMemory();
        }
      } else if (m.get<msg::Stop>()) {
        return Status::Ok();
      } else {
        return Unexpected(m);
      }
    }
  }

 private:
  // The update a coordinator message carries, if any.
  static const Committed* CommittedOf(const Message& m) {
    if (const auto* a = m.get<msg::Apply>()) return &a->committed;
    const std::optional<Committed>* c = nullptr;
    if (const auto* p = m.get<msg::Push>()) c = &p->committed;
    if (const auto* e = m.get<msg::Evaluate>()) c = &e->committed;
    if (const auto* g = m.get<msg::Gather>()) c = &g->committed;
    return c && *c ? &**c : nullptr;
  }

  Status Unexpected(const Message& m) const {
    return InvalidArgument("worker " + std::to_string(w_) + ": unexpected " + KindName(m.kind()) +
                           " message from rank " + std::to_string(m.from));
  }

  StatusOr<Message> Next() {
    if (!deferred_.empty()) {
      Message m = std::move(deferred_.front());
      deferred_.pop_front();
      return m;
    }
    return transport_.Receive(WorkerRank(w_));
  }

  // A carried block's state from its previous holder, kept until a push assigns it here.
  Status Arrived(Message m) {
    const std::uint32_t id = m.get<msg::BlockState>()->block;
    if (m.from < WorkerRank(0) || m.from >= WorkerRank(ctx_.num_workers)) return Unexpected(m);
    if (held_.count(id) || arrived_.count(id)) {
      return InvalidArgument("worker " + std::to_string(w_) + " got block " + std::to_string(id) +
                             " from rank " + std::to_string(m.from) + " while it holds it");
    }
    arrived_.emplace(id, std::move(m));
    return Status::Ok();
  }

  // Sends the blocks this worker holds that the round assigns elsewhere, then takes in the ones
  // assigned here that another worker holds.
  Status MoveBlocks(const std::vector<Block>& blocks) {
    for (const Block& b : blocks) {
      if (b.holder != w_ || b.worker == w_) continue;
      auto it = held_.find(b.id);
      if (it == held_.end()) {
        return Internal("worker " + std::to_string(w_) + " is to hand over block " +
                        std::to_string(b.id) + ", which it does not hold");
      }
      msg::BlockState block{ctx_.round, b.id, {}, {}};
      if (transport_.passes_objects()) {
        block.object = std::move(it->second);
      } else {
        StateWriter writer(block.state);
        it->second->Save(writer);
      }
      held_.erase(it);
      Message out(WorkerRank(w_), std::move(block));
      moved_bytes_ += out.PayloadBytes();
      TESSERA_RETURN_IF_ERROR(transport_.Send(WorkerRank(b.worker), std::move(out)));
    }
    for (const Block& b : blocks) {
      if (b.worker != w_ || b.holder < 0 || b.holder == w_) continue;
      while (!arrived_.count(b.id)) {
        TESSERA_ASSIGN_OR_RETURN(Message m, transport_.Receive(WorkerRank(w_)));
        if (m.get<msg::BlockState>()) {
          TESSERA_RETURN_IF_ERROR(Arrived(std::move(m)));
        } else {
          deferred_.push_back(std::move(m));
        }
      }
      auto node = arrived_.extract(b.id);
      if (auto& object = node.mapped().get<msg::BlockState>()->object) {
        held_[b.id] = std::move(object);
        continue;
      }
      StateReader in(node.mapped().get<msg::BlockState>()->state,
                     "block " + std::to_string(b.id) + " from worker " +
                         std::to_string(node.mapped().from - 1));
      TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<BlockState> state, app_.LoadBlock(b.id, in, ctx_));
      TESSERA_RETURN_IF_ERROR(in.Done());
      held_[b.id] = std::move(state);
    }
    return Status::Ok();
  }

  ModelParallelApp& app_;
  Transport& transport_;
  const int w_;
  KeptWorkers* kept_;
  WorkerContext ctx_;
  std::unique_ptr<WorkerState> state_;
  HeldBlocks held_;
  std::map<std::uint32_t, Message> arrived_;  // carried blocks sent here ahead of their round
  std::deque<Message> deferred_;   // coordinator messages that came while a block was awaited
  std::uint64_t moved_bytes_ = 0;  // sent to other workers since the last Partials
};

struct InFlightRound {
  std::uint64_t round = 0;
  std::vector<Block> blocks;
  std::size_t committed_mark = 0;  // updates committed before this round was pushed
  bool evaluate_after = false;
  bool gather_after = false;
};

class Coordinator {
 public:
  // `started`: the run's clock, started before the workers were spawned, so the run's time
  // includes their MakeWorker and MakeBlock however the pool's threads interleave them.
  Coordinator(ModelParallelApp& app, const EngineOptions& opts, Transport& transport,
              Scheduler* scheduler, std::size_t scheduled_keys, const Stopwatch& started)
      : app_(app),
        opts_(opts),
        transport_(transport),
        scheduler_(scheduler),
        pass_keys_(scheduled_keys),
        rng_(opts.seed),
        clock_(started),
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
    holders_ = app_.CarriedBlockHolders(opts_.workers);
    for (int h : holders_) {
      if (h < 0 || h >= opts_.workers) {
        return Internal("CarriedBlockHolders names worker " + std::to_string(h) + " of " +
                        std::to_string(opts_.workers));
      }
    }
    for (;;) {
      if (hold && flight.empty()) {
        TESSERA_RETURN_IF_ERROR(GatherState(pulled));
        TESSERA_RETURN_IF_ERROR(opts_.checkpoint(pulled));
        last_checkpoint_ = clock_.Seconds();
        hold = false;
      }
      while (scheduling && !hold &&
             flight.size() < static_cast<std::size_t>(opts_.pipeline_depth)) {
        if (opts_.checkpoint && !marked && opts_.checkpoint_every > 0 &&
            clock_.Seconds() - last_checkpoint_ >= opts_.checkpoint_every) {
          if (!flight.empty()) break;  // drain the pipeline first
          TESSERA_RETURN_IF_ERROR(GatherState(pulled));
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
        RoundSchedule plan;
        if (scheduler_) {
          plan.blocks = scheduler_->Next(sctx);
        } else {
          plan = app_.Schedule(sctx);
          if (plan.undefined) {
            return FailedPrecondition(
                "the app defines no Schedule and EngineOptions names no scheduler");
          }
        }
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
        TESSERA_RETURN_IF_ERROR(AssignHolders(plan.blocks));
        msg::Push push;
        push.round = scheduled;
        push.blocks = plan.blocks;
        push.stale_keys = in_flight_keys_;
        TESSERA_RETURN_IF_ERROR(Broadcast(std::move(push)));
        flight.push_back({scheduled, std::move(plan.blocks), committed_base_ + committed_.size(),
                          plan.evaluate_after, plan.gather_after});
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
          for (auto& p : r.get<msg::Partials>()->partials) {
            if (p.block == round.blocks[i].id) parts.push_back(std::move(p));
          }
        }
        if (parts.empty()) {
          merged[i].block = round.blocks[i].id;
        } else {
          StatusOr<Partial> m = app_.Aggregate(parts);
          if (!m.ok()) {
            return Status(m.status().code(), "round " + std::to_string(round.round) + ", block " +
                                                 std::to_string(round.blocks[i].id) + ": " +
                                                 m.status().message());
          }
          merged[i] = std::move(*m);
        }
      }
      PullContext pctx;
      pctx.round = round.round;
      pctx.stale_updates =
          std::span<const Update>(committed_).subspan(round.committed_mark - committed_base_);
      Update update = app_.Pull(pctx, round.blocks, merged);
      if (scheduler_ && ObservePass(round.blocks, update) && scheduling) {
        scheduling = false;
        result_.stop_reason = "converged";
      }
      const std::uint64_t changed = update.keys.size();
      result_.updates += changed;
      if (!update.empty()) {
        TESSERA_RETURN_IF_ERROR(FlushUpdate());  // at most one update waits at a time
        pending_ = Committed{round.round, update};
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
        if (round.gather_after) TESSERA_RETURN_IF_ERROR(GatherState(round.round));
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
    TESSERA_RETURN_IF_ERROR(GatherState(pulled, /*last=*/true));
    progress_.Finish();
    result_.rounds = pulled;
    result_.seconds = clock_.Seconds();
    result_.objective = last_objective;
    result_.bytes = bytes_;
    TESSERA_RETURN_IF_ERROR(trace_.Finish());
    return std::move(result_);
  }

 private:
  // Waits for one reply of `kind` for `round` from every worker (or from the first `count`
  // to reply), in worker order; replies for other rounds that arrive meanwhile are kept for
  // later.
  StatusOr<std::vector<Message>> Gather(MessageKind kind, std::uint64_t round, int count = -1) {
    auto key = std::make_pair(kind, round);
    auto& got = replies_[key];
    const auto wanted = static_cast<std::size_t>(count < 0 ? opts_.workers : count);
    while (got.size() < wanted) {
      auto m = transport_.Receive(kCoordinator);
      if (!m.ok()) return m.status();
      bytes_ += m->PayloadBytes();
      std::uint64_t reply_round = 0;
      if (const auto* p = m->get<msg::Partials>()) {
        reply_round = p->round;
        bytes_ += p->moved_bytes;
      } else if (const auto* e = m->get<msg::Evaluation>()) {
        reply_round = e->round;
      } else if (const auto* w = m->get<msg::WorkerState>()) {
        reply_round = w->round;
      } else {
        return InvalidArgument(std::string("coordinator: unexpected ") + KindName(m->kind()) +
                               " message from rank " + std::to_string(m->from));
      }
      auto& replies = replies_[std::make_pair(m->kind(), reply_round)];
      const bool repeated = std::any_of(replies.begin(), replies.end(),
                                        [&](const Message& r) { return r.from == m->from; });
      if (m->from < WorkerRank(0) || m->from >= WorkerRank(opts_.workers) || repeated) {
        return InvalidArgument(std::string("coordinator: a ") + KindName(m->kind()) +
                               " reply for round " + std::to_string(reply_round) + " from rank " +
                               std::to_string(m->from) +
                               (repeated ? ", which had replied already" : ", which is no worker"));
      }
      replies.push_back(std::move(*m));
    }
    std::vector<Message> out = std::move(got);
    replies_.erase(key);
    std::sort(out.begin(), out.end(),
              [](const Message& a, const Message& b) { return a.from < b.from; });
    return out;
  }

  // Sends `body` to every worker; the waiting committed update, if any, rides along.
  template <typename Body>
  Status Broadcast(Body body) {
    if constexpr (requires { body.committed.reset(); }) body.committed = std::move(pending_);
    pending_.reset();
    for (int w = 0; w < opts_.workers; ++w) {
      Message m(kCoordinator, w + 1 < opts_.workers ? body : std::move(body));
      bytes_ += m.PayloadBytes();
      TESSERA_RETURN_IF_ERROR(transport_.Send(WorkerRank(w), std::move(m)));
    }
    return Status::Ok();
  }

  // Stamps each carried block of a round with the worker that holds it now, and records who
  // holds it next.
  Status AssignHolders(std::vector<Block>& blocks) {
    for (Block& b : blocks) {
      b.holder = -1;
      if (b.id >= holders_.size()) continue;
      if (b.worker < 0 || b.worker >= opts_.workers) {
        return Internal("carried block " + std::to_string(b.id) +
                        " must be assigned to one worker, not " + std::to_string(b.worker));
      }
      if (holders_[b.id] < 0) {
        return Internal("carried block " + std::to_string(b.id) + " is scheduled twice in round");
      }
      b.holder = holders_[b.id];
      holders_[b.id] = -1;  // taken: a second assignment in this round is an error
    }
    for (const Block& b : blocks) {
      if (b.id < holders_.size()) holders_[b.id] = b.worker;
    }
    return Status::Ok();
  }

  // Every worker's saved state and every carried block's, into the app (GatherWorker,
  // GatherBlock). No round is in flight. One worker at a time, those of this process first:
  // the coordinator's process holds at most one worker's state in messages besides what the
  // app keeps of it, and at the `last` gather of a run its own workers free theirs before the
  // others' arrive.
  Status GatherState(std::uint64_t round, bool last = false) {
    msg::Gather gather;
    gather.round = round;
    gather.last = last;
    gather.committed = std::move(pending_);  // every worker must apply it before it saves
    pending_.reset();
    std::vector<int> order;
    for (int local = 1; local >= 0; --local) {
      for (int w = 0; w < opts_.workers; ++w) {
        if (transport_.hosts(WorkerRank(w)) == (local == 1)) order.push_back(w);
      }
    }
    std::vector<int> sent_by(holders_.size(), -1);
    for (int w : order) {
      Message ask(kCoordinator, gather);
      bytes_ += ask.PayloadBytes();
      TESSERA_RETURN_IF_ERROR(transport_.Send(WorkerRank(w), std::move(ask)));
      TESSERA_ASSIGN_OR_RETURN(auto replies, Gather(MessageKind::kWorkerState, round, 1));
      msg::WorkerState& reply = *replies[0].get<msg::WorkerState>();
      if (replies[0].from != WorkerRank(w)) {
        return InvalidArgument("coordinator: a worker state from rank " +
                               std::to_string(replies[0].from) + " when worker " +
                               std::to_string(w) + " was asked");
      }
      StateReader in(reply.state, "the state of worker " + std::to_string(w));
      TESSERA_RETURN_IF_ERROR(app_.GatherWorker(w, in));
      TESSERA_RETURN_IF_ERROR(in.Done());
      for (CarriedState& c : reply.carried) {
        if (c.block >= holders_.size() || sent_by[c.block] >= 0) {
          return Internal("worker " + std::to_string(w) + " sent block " + std::to_string(c.block) +
                          ", which is not its to send");
        }
        sent_by[c.block] = w;
        StateReader block(c.state,
                          "block " + std::to_string(c.block) + " from worker " + std::to_string(w));
        TESSERA_RETURN_IF_ERROR(app_.GatherBlock(c.block, block));
        TESSERA_RETURN_IF_ERROR(block.Done());
      }
    }
    const auto held = static_cast<std::size_t>(
        std::count_if(sent_by.begin(), sent_by.end(), [](int w) { return w >= 0; }));
    if (held != holders_.size()) {
      return Internal("the workers hold " + std::to_string(held) + " of " +
                      std::to_string(holders_.size()) + " carried blocks");
    }
    return Status::Ok();
  }

  // Tells the scheduler a round's committed update; true when it ends a pass over as many keys
  // as are scheduled whose largest change was at most EngineOptions::change_tolerance.
  bool ObservePass(const std::vector<Block>& blocks, const Update& update) {
    scheduler_->Observe(update.keys, update.delta);
    for (const Block& b : blocks) pass_done_ += b.keys.size();
    if (update.delta.size() > 0)
      pass_change_ = std::max(pass_change_, update.delta.cwiseAbs().maxCoeff());
    if (pass_done_ < pass_keys_) return false;
    const bool converged = opts_.change_tolerance > 0 && pass_change_ <= opts_.change_tolerance;
    pass_done_ = 0;
    pass_change_ = 0;
    return converged;
  }

  // Sends the waiting committed update, if any, as a message of its own.
  Status FlushUpdate() {
    if (!pending_) return Status::Ok();
    msg::Apply apply{std::move(*pending_)};
    return Broadcast(std::move(apply));
  }

  StatusOr<double> Evaluate(std::uint64_t round) {
    msg::Evaluate evaluate;
    evaluate.round = round;
    TESSERA_RETURN_IF_ERROR(Broadcast(std::move(evaluate)));
    TESSERA_ASSIGN_OR_RETURN(auto replies, Gather(MessageKind::kEvaluation, round));
    Eigen::VectorXd sum = replies[0].get<msg::Evaluation>()->terms;
    for (std::size_t i = 1; i < replies.size(); ++i) {
      const Eigen::VectorXd& terms = replies[i].get<msg::Evaluation>()->terms;
      if (terms.size() != sum.size()) {
        return InvalidArgument("round " + std::to_string(round) + ": worker " + std::to_string(i) +
                               " sent " + std::to_string(terms.size()) +
                               " objective terms, worker 0 " + std::to_string(sum.size()));
      }
      sum += terms;
    }
    const double objective = app_.Objective(sum);
    TESSERA_RETURN_IF_ERROR(CheckFiniteObjective(objective, "round", round));
    return objective;
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
  Scheduler* scheduler_;       // EngineOptions::scheduler; null: the app's Schedule
  std::size_t pass_keys_;      // keys a pass of scheduler_ covers (ScheduleKeys)
  std::size_t pass_done_ = 0;  // keys of the current pass pulled so far
  double pass_change_ = 0;     // the largest |change| in the current pass
  std::mt19937_64 rng_;
  Stopwatch clock_;
  ProgressLine progress_;
  CsvWriter trace_;
  RunResult result_;
  std::vector<Key> in_flight_keys_;
  std::vector<int> holders_;       // carried block -> the worker that holds it after the last plan
  std::vector<Update> committed_;  // recent commits, a few rounds at most
  std::optional<Committed> pending_;  // not yet sent: rides on the next message to the workers
  double last_checkpoint_ = 0;        // clock_ seconds
  std::size_t committed_base_ = 0;
  std::map<std::pair<MessageKind, std::uint64_t>, std::vector<Message>> replies_;
  // Payload bytes the coordinator sent and received: every message of the engine passes
  // through it, so this is the traffic of the run whichever transport carries it (a shared
  // transport's own counter spans runs and, between processes, only this process's sends).
  std::uint64_t bytes_ = 0;
};

}  // namespace

bool BuildsWorker(const EngineOptions& options, int worker) {
  return !options.transport || options.transport->hosts(WorkerRank(worker));
}

std::uint64_t TableStaleness::total() const {
  std::uint64_t n = 0;
  for (std::uint64_t r : reads) n += r;
  return n;
}

double TableStaleness::mean() const {
  double n = 0, clocks = 0;
  for (std::size_t s = 0; s < reads.size(); ++s) {
    n += static_cast<double>(reads[s]);
    clocks += static_cast<double>(s) * static_cast<double>(reads[s]);
  }
  return n > 0 ? clocks / n : 0.0;
}

std::size_t TableStaleness::max() const {
  std::size_t m = 0;
  for (std::size_t s = 0; s < reads.size(); ++s) {
    if (reads[s] > 0) m = s;
  }
  return m;
}

std::string TableStaleness::Describe() const {
  const std::uint64_t n = total();
  std::string out = std::to_string(n) + " reads";
  if (n == 0) return out;
  char buf[64];
  bool first = true;
  for (std::size_t s = 0; s < reads.size(); ++s) {
    const double share = 100.0 * static_cast<double>(reads[s]) / static_cast<double>(n);
    if (share < 0.05) continue;
    const bool last = s + 1 == reads.size();
    std::snprintf(buf, sizeof buf, "%s%zu%s%s %.1f%%", first ? ": " : ", ", s, last ? "+" : "",
                  first ? " clocks" : ":", share);
    out += buf;
    first = false;
  }
  std::snprintf(buf, sizeof buf, "; mean %.2f", mean());
  return out + buf;
}

double MeanStaleness(const std::vector<TableStaleness>& tables) {
  double reads = 0, clocks = 0;
  for (const TableStaleness& t : tables) {
    reads += static_cast<double>(t.total());
    clocks += t.mean() * static_cast<double>(t.total());
  }
  return reads > 0 ? clocks / reads : 0.0;
}

std::string TableStaleness::Counts() const {
  std::string out;
  for (std::size_t s = 0; s < reads.size(); ++s) {
    if (reads[s] == 0) continue;
    out += (out.empty() ? "" : ";") + std::to_string(s) + ":" + std::to_string(reads[s]);
  }
  return out;
}

StatusOr<RunResult> RunModelParallel(ModelParallelApp& app, const EngineOptions& options) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<Transport> shared = options.transport;
  if (!shared) {
    shared = MakeDefaultTransport(options.workers + 1);
  } else if (shared->size() != options.workers + 1) {
    return InvalidArgument("the transport has " + std::to_string(shared->size()) + " endpoints; " +
                           std::to_string(options.workers) + " workers need " +
                           std::to_string(options.workers + 1));
  }
  Transport& transport = *shared;
  // The scheduler is made in every process, so bad arguments fail every process alike.
  std::unique_ptr<Scheduler> scheduler;
  std::size_t scheduled_keys = 0;
  if (!options.scheduler.empty()) {
    TESSERA_ASSIGN_OR_RETURN(const SchedulerSpec spec, SchedulerSpec::Parse(options.scheduler));
    TESSERA_ASSIGN_OR_RETURN(
        scheduler,
        DefaultSchedulers().Create(spec.name, {options.workers, app.Dependency()}, spec.args));
    if (transport.hosts(kCoordinator)) {
      const std::vector<Key> keys = app.ScheduleKeys();
      if (keys.empty()) {
        return InvalidArgument("--scheduler " + options.scheduler +
                               ": the app names no keys to schedule (ScheduleKeys)");
      }
      scheduler->Reset(keys);
      scheduled_keys = keys.size();
    }
  }
  transport.BeginRun();  // nothing of an earlier run over this transport reaches this one
  const Stopwatch started;
  WaitGroup workers;
  FiberPool& pool = FiberPool::Global();
  std::vector<Status> worker_status(static_cast<std::size_t>(options.workers));
  KeptWorkers* kept = options.kept_workers.get();
  if (kept) kept->states.resize(static_cast<std::size_t>(options.workers));
  for (int w = 0; w < options.workers; ++w) {
    if (!transport.hosts(WorkerRank(w))) continue;
    workers.Add(1);
    pool.Spawn([&app, &transport, &workers, &worker_status, w, n = options.workers, kept] {
      Status s = Worker(app, transport, w, n, kept).Run();
      // A failed worker leaves nobody to answer: closing wakes the coordinator and the others.
      if (!s.ok()) transport.Close();
      worker_status[static_cast<std::size_t>(w)] = std::move(s);
      workers.Done();
    });
  }
  if (!transport.hosts(kCoordinator)) {  // a worker process of a multi-process run
    workers.Wait();
    for (const Status& s : worker_status) TESSERA_RETURN_IF_ERROR(s);
    RunResult r;
    r.holds_result = false;
    return r;
  }
  // The coordinator is a fiber on the pool too, so a round costs fiber switches rather than
  // a wake-up of the calling thread.
  StatusOr<RunResult> result = Internal("coordinator did not run");
  WaitGroup coordinator;
  coordinator.Add(1);
  pool.Spawn([&] {
    result = Coordinator(app, options, transport, scheduler.get(), scheduled_keys, started).Run();
    // Best effort, unlike Coordinator::Broadcast: every worker is told, even if one send fails.
    for (int w = 0; w < options.workers; ++w) {
      (void)transport.Send(WorkerRank(w), Message(kCoordinator, msg::Stop{}));
    }
    coordinator.Done();
  });
  coordinator.Wait();
  workers.Wait();
  if (!options.transport) transport.Close();
  if (!result.ok()) {  // a worker's own error says more than the closed transport it left
    for (const Status& s : worker_status) TESSERA_RETURN_IF_ERROR(s);
  }
  // The workers' states, freed on the pool's threads, back to the system before the app makes
  // its result on this one.
  ReturnFreedMemory();
  return result;
}

}  // namespace tessera

namespace tessera {

StatusOr<std::string> UseCheckpoints(ModelParallelApp& app, const CheckpointPlan& plan,
                                     EngineOptions& options, std::optional<CheckpointDir>& dir) {
  const bool writer = WritesResults(options.transport);
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
