#include "tessera/algorithms/mf/mf.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "tessera/algorithms/mf/mf_common.h"
#include "tessera/core/dataset.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/core/line_reader.h"
#include "tessera/core/memory_limit.h"
#include "tessera/core/metrics.h"

namespace tessera {

Status MfOptions::Validate() const {
  TESSERA_RETURN_IF_ERROR(engine.Validate());
  if (rank < 1 || rank > 10000) {
    return InvalidArgument("--rank must be between 1 and 10000, got " + std::to_string(rank));
  }
  if (!(lambda >= 0) || !std::isfinite(lambda)) {
    return InvalidArgument("--lambda must be a number >= 0");
  }
  if (epochs < 1) return InvalidArgument("--epochs must be at least 1");
  if (inner_iterations < 1) return InvalidArgument("--inner-iterations must be at least 1");
  if (!(init_scale > 0)) return InvalidArgument("--init-scale must be > 0");
  if (init != "auto" && init != "uniform" && init != "normal") {
    return InvalidArgument("--init must be 'auto', 'uniform' or 'normal', got '" + init + "'");
  }
  if (mode != "model-parallel" && mode != "data-parallel") {
    return InvalidArgument("--mode must be 'model-parallel' or 'data-parallel', got '" + mode +
                           "'");
  }
  if (algorithm != "ccd++" && algorithm != "sgd") {
    return InvalidArgument("--algorithm must be 'ccd++' or 'sgd', got '" + algorithm + "'");
  }
  if (!(learning_rate > 0) || !(decay >= 0)) {
    return InvalidArgument("--learning-rate must be > 0 and --decay >= 0");
  }
  if (sgd_step != "adagrad" && sgd_step != "decay") {
    return InvalidArgument("--sgd-step must be 'adagrad' or 'decay', got '" + sgd_step + "'");
  }
  if (!(adagrad_rate > 0)) return InvalidArgument("--adagrad-rate must be > 0");
  if (mode == "data-parallel") TESSERA_RETURN_IF_ERROR(data_parallel.Validate());
  if (!(checkpoint_every >= 0)) return InvalidArgument("--checkpoint-every must be >= 0");
  if (engine.pipeline_depth != 1) {
    return InvalidArgument(
        "CCD++ updates each coordinate from the other side's current column: "
        "--pipeline-depth must be 1");
  }
  return Status::Ok();
}

std::vector<std::pair<std::uint32_t, double>> MfModel::TopN(
    std::uint32_t user, int n, const std::vector<char>& exclude) const {
  std::vector<std::pair<std::uint32_t, double>> scored;
  for (Eigen::Index j = 0; j < h.rows(); ++j) {
    if (j < static_cast<Eigen::Index>(exclude.size()) && exclude[j]) continue;
    scored.emplace_back(static_cast<std::uint32_t>(j),
                        Predict(user, static_cast<std::uint32_t>(j)));
  }
  const auto cut = std::min<std::size_t>(scored.size(), static_cast<std::size_t>(std::max(n, 0)));
  std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(cut), scored.end(),
                    [](const auto& a, const auto& b) {
                      return a.second > b.second || (a.second == b.second && a.first < b.first);
                    });
  scored.resize(cut);
  return scored;
}

double Rmse(const MfModel& model, const Ratings& ratings) {
  double sse = 0;
  for (const Rating& r : ratings.entries)
    sse += std::pow(r.value - model.Predict(r.user, r.item), 2);
  return std::sqrt(sse / std::max<std::size_t>(ratings.entries.size(), 1));
}

namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// One worker's users and items: their ratings by row and by column, with residuals, and the
// worker's copy of the factors.
struct CcdShard final : WorkerState {
  KeyRange users, items;
  std::vector<std::uint32_t> row_ptr, row_item;  // ratings of my users, by user
  std::vector<double> row_res;
  std::vector<std::uint32_t> col_ptr, col_user;  // ratings of my items, by item
  std::vector<double> col_res;
  std::vector<Rating> test;  // test ratings of my users
  Factors w, h;
  int t = -1;  // component whose old term the residuals have added back; -1: exact residuals
};

class CcdApp final : public ModelParallelApp {
 public:
  CcdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
         const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/false), train_(train), test_(test) {
    c_.AllocateModel(/*init=*/true);  // CCD++ keeps the whole factors with every worker
    // Biases first: (b_i, 1) and (1, c_j) are two components with one side fixed.
    if (c_.biases) {
      steps_.push_back({rank_, 1});      // user biases
      steps_.push_back({rank_ + 1, 0});  // item biases
    }
    for (int t = 0; t < rank_; ++t) {
      for (int s = 0; s < o.inner_iterations; ++s) {
        steps_.push_back({t, 0});  // H first: W starts random, H at 0
        steps_.push_back({t, 1});
      }
    }
    user_ranges_ = SplitRange(num_users_, o.engine.workers);
    item_ranges_ = SplitRange(num_items_, o.engine.workers);
    rounds_per_epoch_ = steps_.size();
  }

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round == 0) clock_ = Stopwatch();
    if (ctx.round >= rounds_per_epoch_ * static_cast<std::uint64_t>(opts_.epochs)) {
      plan.done = true;
      plan.done_reason = "max epochs";
      return plan;
    }
    const std::uint64_t idx = ctx.round % rounds_per_epoch_;
    const auto t = static_cast<std::uint32_t>(steps_[idx].first);
    const auto phase = static_cast<std::uint32_t>(steps_[idx].second);  // 0: H col t, 1: W col t
    for (int w = 0; w < ctx.num_workers; ++w) {
      Block b;
      b.id = Encode(t, phase, w);  // block ids are unique within a round
      b.worker = w;
      const KeyRange r = phase == 0 ? item_ranges_[w] : user_ranges_[w];
      const Key offset = phase == 0 ? num_users_ : 0;
      for (Key key = r.begin; key < r.end; ++key) b.keys.push_back(offset + key);
      plan.blocks.push_back(std::move(b));
    }
    plan.evaluate_after = idx + 1 == rounds_per_epoch_;
    plan.checkpoint_after = plan.evaluate_after;
    return plan;
  }

  // Worker: its shard, the residuals from the current factors (after a resume, the restored ones).
  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& setup) override {
    auto s = std::make_unique<CcdShard>();
    const auto w = static_cast<std::size_t>(setup.worker);
    Build(*s, user_ranges_[w], item_ranges_[w], train_, test_);
    return s;
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    CcdShard& s = ctx.State<CcdShard>();
    std::vector<Partial> out;
    for (const Block& b : blocks) {
      const auto [t, phase] = Decode(b.id);
      SwitchComponent(s, t);
      Partial p;
      p.block = b.id;
      if (phase == 0) {  // H column t for my items, from their ratings by column
        p.values = SolveColumn(s.items, s.col_ptr, s.col_user, s.col_res, s.w, item_count_, t);
      } else {  // W column t for my users, from their ratings by row
        p.values = SolveColumn(s.users, s.row_ptr, s.row_item, s.row_res, s.h, user_count_, t);
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  Update Pull(PullContext&, std::span<const Block> blocks,
              std::span<const Partial> merged) override {
    Update u;
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      const auto [t, phase] = Decode(blocks[b].id);
      const bool items = phase == 0;
      for (std::size_t a = 0; a < blocks[b].keys.size(); ++a) {
        const Key key = blocks[b].keys[a];
        double& x = items ? model_.h(static_cast<Eigen::Index>(key - num_users_), t)
                          : model_.w(static_cast<Eigen::Index>(key), t);
        const double next = merged[b].values[static_cast<Eigen::Index>(a)];
        if (next == x) continue;
        u.keys.push_back(key);
        delta_.push_back(next - x);
        x = next;
      }
    }
    u.delta = Eigen::Map<Eigen::VectorXd>(delta_.data(), static_cast<Eigen::Index>(delta_.size()));
    delta_.clear();
    return u;
  }

  void Apply(WorkerContext& ctx, const Update& u) override {
    CcdShard& s = ctx.State<CcdShard>();
    for (std::size_t a = 0; a < u.keys.size(); ++a) {
      const Key key = u.keys[a];
      if (key < num_users_) {
        s.w(static_cast<Eigen::Index>(key), s.t) += u.delta[static_cast<Eigen::Index>(a)];
      } else {
        s.h(static_cast<Eigen::Index>(key - num_users_), s.t) +=
            u.delta[static_cast<Eigen::Index>(a)];
      }
    }
  }

  // Terms: train SSE and test SSE over my users' ratings, and my share of the penalty.
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    const CcdShard& s = ctx.State<CcdShard>();
    Eigen::VectorXd terms = Eigen::VectorXd::Zero(3);
    for (Key i = s.users.begin; i < s.users.end; ++i) {
      const std::size_t a = i - s.users.begin;
      for (std::uint32_t e = s.row_ptr[a]; e < s.row_ptr[a + 1]; ++e) {
        const double r = s.t < 0 ? s.row_res[e]
                                 : s.row_res[e] - s.w(static_cast<Eigen::Index>(i), s.t) *
                                                      s.h(s.row_item[e], s.t);
        terms[0] += r * r;
      }
      // The fixed 1 of the item-bias component is not a parameter.
      const double fixed = c_.FixedNorm();
      terms[2] += opts_.lambda * user_count_[i] *
                  (s.w.row(static_cast<Eigen::Index>(i)).squaredNorm() - fixed);
    }
    for (Key j = s.items.begin; j < s.items.end; ++j) {
      const double fixed = c_.FixedNorm();
      terms[2] += opts_.lambda * item_count_[j] *
                  (s.h.row(static_cast<Eigen::Index>(j)).squaredNorm() - fixed);
    }
    for (const Rating& r : s.test) {
      terms[1] += std::pow(r.value - model_.mean - s.w.row(r.user).dot(s.h.row(r.item)), 2);
    }
    return terms;
  }

  double Objective(const Eigen::VectorXd& t) override { return c_.RecordEpoch(t); }
  mf_internal::Common& common() { return c_; }

  // The factors after `rounds` rounds (an epoch's end) and the epochs' metrics. The shards'
  // residuals follow from the factors; the partition into shards does not matter.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(c_.Problem(", ccd++"),
                           {model_.h.data(), static_cast<std::size_t>(model_.h.size())});
    c.PutU64("rounds", rounds);
    return c;
  }
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, c_.Problem(", ccd++")));
    TESSERA_ASSIGN_OR_RETURN(std::uint64_t rounds, c.U64("rounds"));
    return rounds;
  }

 private:
  void Build(CcdShard& s, KeyRange users, KeyRange items, const Ratings& train,
             const Ratings* test) {
    s.users = users;
    s.items = items;
    s.w = model_.w;
    s.h = model_.h;
    s.row_ptr.assign(users.size() + 1, 0);
    s.col_ptr.assign(items.size() + 1, 0);
    for (const Rating& r : train.entries) {
      if (users.Contains(r.user)) ++s.row_ptr[r.user - users.begin + 1];
      if (items.Contains(r.item)) ++s.col_ptr[r.item - items.begin + 1];
    }
    for (std::size_t a = 0; a < users.size(); ++a) s.row_ptr[a + 1] += s.row_ptr[a];
    for (std::size_t a = 0; a < items.size(); ++a) s.col_ptr[a + 1] += s.col_ptr[a];
    s.row_item.resize(s.row_ptr.back());
    s.row_res.resize(s.row_ptr.back());
    s.col_user.resize(s.col_ptr.back());
    s.col_res.resize(s.col_ptr.back());
    std::vector<std::uint32_t> row_fill(s.row_ptr.begin(), s.row_ptr.end() - 1);
    std::vector<std::uint32_t> col_fill(s.col_ptr.begin(), s.col_ptr.end() - 1);
    for (const Rating& r : train.entries) {
      // At the start H is 0 and this is the centered rating exactly.
      const double res = r.value - model_.Predict(r.user, r.item);
      if (users.Contains(r.user)) {
        const std::uint32_t e = row_fill[r.user - users.begin]++;
        s.row_item[e] = r.item;
        s.row_res[e] = res;
      }
      if (items.Contains(r.item)) {
        const std::uint32_t e = col_fill[r.item - items.begin]++;
        s.col_user[e] = r.user;
        s.col_res[e] = res;
      }
    }
    if (test) {
      for (const Rating& r : test->entries) {
        if (users.Contains(r.user)) s.test.push_back(r);
      }
    }
  }

  // Column t of one side in closed form: for each of `mine` (users or items, with their
  // ratings in ptr/other/res), x = Σ R̂ y_t / (λ |Ω| + Σ y_t²), y the other side's factors.
  Eigen::VectorXd SolveColumn(KeyRange mine, const std::vector<std::uint32_t>& ptr,
                              const std::vector<std::uint32_t>& other,
                              const std::vector<double>& res, const Factors& y,
                              const std::vector<std::uint32_t>& count, int t) const {
    Eigen::VectorXd x(static_cast<Eigen::Index>(mine.size()));
    for (Key key = mine.begin; key < mine.end; ++key) {
      const std::size_t a = key - mine.begin;
      double num = 0, den = opts_.lambda * count[key];
      for (std::uint32_t e = ptr[a]; e < ptr[a + 1]; ++e) {
        const double ye = y(other[e], t);
        num += res[e] * ye;
        den += ye * ye;
      }
      x[static_cast<Eigen::Index>(a)] = den > 0 ? num / den : 0.0;
    }
    return x;
  }

  std::uint32_t Encode(std::uint32_t t, std::uint32_t phase, int worker) const {
    return (2 * t + phase) * static_cast<std::uint32_t>(opts_.engine.workers) +
           static_cast<std::uint32_t>(worker);
  }
  std::pair<int, std::uint32_t> Decode(std::uint32_t id) const {
    const std::uint32_t code = id / static_cast<std::uint32_t>(opts_.engine.workers);
    return {static_cast<int>(code / 2), code % 2};
  }

  // Residuals: take the current term of component s.t out, put the old term of `t` back in.
  static void SwitchComponent(CcdShard& s, int t) {
    if (s.t == t) return;
    auto move = [&s](int c, double sign) {
      for (Key i = s.users.begin; i < s.users.end; ++i) {
        const std::size_t a = i - s.users.begin;
        const double wi = s.w(static_cast<Eigen::Index>(i), c);
        for (std::uint32_t e = s.row_ptr[a]; e < s.row_ptr[a + 1]; ++e) {
          s.row_res[e] += sign * wi * s.h(s.row_item[e], c);
        }
      }
      for (Key j = s.items.begin; j < s.items.end; ++j) {
        const std::size_t a = j - s.items.begin;
        const double hj = s.h(static_cast<Eigen::Index>(j), c);
        for (std::uint32_t e = s.col_ptr[a]; e < s.col_ptr[a + 1]; ++e) {
          s.col_res[e] += sign * s.w(s.col_user[e], c) * hj;
        }
      }
    };
    if (s.t >= 0) move(s.t, -1.0);
    move(t, +1.0);
    s.t = t;
  }

  mf_internal::Common c_;  // first: the references below point into it
  const Ratings& train_;
  const Ratings* test_;
  const MfOptions& opts_ = c_.opts;
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const int rank_ = c_.rank;
  MfModel& model_ = c_.model;
  const std::vector<std::uint32_t>& user_count_ = c_.user_count;
  const std::vector<std::uint32_t>& item_count_ = c_.item_count;
  Stopwatch& clock_ = c_.clock;
  std::vector<std::pair<int, int>> steps_;           // one epoch: (column, 0 = H step | 1 = W step)
  std::vector<KeyRange> user_ranges_, item_ranges_;  // worker w's users and items
  std::uint64_t rounds_per_epoch_ = 0;
  std::vector<double> delta_;
};

}  // namespace

StatusOr<MfResult> TrainMf(Ratings train, const Ratings* test, const MfOptions& options,
                           const std::function<void(const MfEpoch&)>& on_epoch) {
  // Before any factor is allocated: the factors (W and H, rank columns plus the biases' two)
  // are kept about twice (the driver's copy and the workers'), by CCD++ once per worker and
  // once more; the test ratings twice (as read and grouped by the workers), the training
  // ratings twice too except under rotation SGD, which frees them as it groups them.
  const int k = options.rank + (options.FitsBiases() ? 2 : 0);
  const bool ccd = options.mode == "model-parallel" && options.algorithm == "ccd++";
  const bool rotation = options.mode == "model-parallel" && options.algorithm == "sgd";
  const double copies = ccd ? options.engine.workers + 1.0 : 2.0;
  const double factors = static_cast<double>(train.num_users() + train.num_items()) * k * 8.0;
  const double ratings =
      sizeof(Rating) * ((rotation ? 1.0 : 2.0) * static_cast<double>(train.entries.size()) +
                        2.0 * static_cast<double>(test ? test->entries.size() : 0));
  TESSERA_RETURN_IF_ERROR(CheckAllocation("factors of rank " + std::to_string(options.rank) +
                                              " for " + std::to_string(train.num_users()) +
                                              " users and " + std::to_string(train.num_items()) +
                                              " items",
                                          copies * factors + ratings));
  // (An objective that is not a finite number stops the engine at that evaluation.)
  return options.mode == "data-parallel" ? TrainMfSgdDataParallel(train, test, options, on_epoch)
         : options.algorithm == "sgd"    ? TrainMfDsgd(std::move(train), test, options, on_epoch)
                                         : TrainMfCcd(train, test, options, on_epoch);
}

std::function<bool(std::uint32_t, std::uint32_t)> MfRatingsToKeep(const MfOptions& options) {
  if (options.mode != "model-parallel" || options.algorithm != "sgd") return {};
  const int P = options.engine.workers;
  std::vector<char> mine(static_cast<std::size_t>(P));
  bool all = true;
  for (int w = 0; w < P; ++w) {
    mine[static_cast<std::size_t>(w)] = BuildsWorker(options.engine, w);
    all = all && mine[static_cast<std::size_t>(w)];
  }
  if (all) return {};
  // A user's ratings belong to user block user mod P (mf_dsgd.cc).
  return [mine = std::move(mine), P = static_cast<std::uint32_t>(P)](
             std::uint32_t user, std::uint32_t) { return mine[user % P] != 0; };
}

StatusOr<MfResult> TrainMfCcd(const Ratings& train, const Ratings* test, const MfOptions& options,
                              const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(mf_internal::CheckInputs(train, test, options));
  CcdApp app(train, test, options, on_epoch);
  TESSERA_ASSIGN_OR_RETURN(RunResult run, app.common().RunModelParallel(app));
  return app.common().Finish(std::move(run));
}

Status WriteMfModel(const std::string& path, const MfModel& m) {
  CsvWriter out;  // atomic text writer; the format is whitespace-separated, not CSV
  const auto k = m.w.cols();
  TESSERA_RETURN_IF_ERROR(out.Open(path, "tessera-mf 3"));
  out.Row("rank " + std::to_string(k));
  out.Row(std::string("biases ") + (m.biases ? "1" : "0"));
  out.Row("mean " + FormatDouble(m.mean));
  out.Row("average " + FormatDouble(m.average));
  out.Row("users " + std::to_string(m.w.rows()));
  out.Row("items " + std::to_string(m.h.rows()));
  auto rows = [&](char tag, const Factors& f, const IdMap& ids) {
    for (Eigen::Index i = 0; i < f.rows(); ++i) {
      std::string line = std::string(1, tag) + " " + ids.Name(static_cast<std::uint32_t>(i));
      for (Eigen::Index c = 0; c < k; ++c) line += " " + FormatDouble(f(i, c));
      out.Row(line);
    }
  };
  rows('u', m.w, *m.users);
  rows('i', m.h, *m.items);
  return out.Finish();
}

StatusOr<MfModel> ReadMfModel(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::string_view line;
  auto expect = [&](const char* key, std::string& value) -> Status {
    if (!in.Next(line)) {
      TESSERA_RETURN_IF_ERROR(in.status());
      return InvalidArgument(path + ": ends before the '" + key + "' line");
    }
    const std::string_view k(key);
    if (line.substr(0, k.size() + 1) != std::string(k) + " ") {
      return InvalidArgument(in.Where() + "expected '" + key + " ...'");
    }
    value = std::string(line.substr(k.size() + 1));
    return Status::Ok();
  };
  std::string magic, rank, biases = "0", mean, average, users, items;
  TESSERA_RETURN_IF_ERROR(expect("tessera-mf", magic));
  if (magic != "1" && magic != "2" && magic != "3") {
    return InvalidArgument(in.Where() + "unknown model version '" + magic + "'");
  }
  TESSERA_RETURN_IF_ERROR(expect("rank", rank));
  if (magic != "1") {
    TESSERA_RETURN_IF_ERROR(expect("biases", biases));
    if (biases != "0" && biases != "1")
      return InvalidArgument(in.Where() + "biases must be 0 or 1");
  }
  TESSERA_RETURN_IF_ERROR(expect("mean", mean));
  if (magic == "3") {
    TESSERA_RETURN_IF_ERROR(expect("average", average));
  } else {
    average = mean;
  }
  TESSERA_RETURN_IF_ERROR(expect("users", users));
  TESSERA_RETURN_IF_ERROR(expect("items", items));
  MfModel m;
  // Rank as the trainer allows it (k factors: rank + 2 with biases); ids are 32-bit.
  std::uint64_t k_u = 0, counts[2] = {0, 0};
  if (!ParseCount(rank, k_u) || k_u < 1 || k_u > 10002 || !ParseDouble(mean, m.mean) ||
      !ParseDouble(average, m.average) || !ParseCount(users, counts[0]) || counts[0] < 1 ||
      counts[0] > 0xffffffffULL || !ParseCount(items, counts[1]) || counts[1] < 1 ||
      counts[1] > 0xffffffffULL) {
    return InvalidArgument(path +
                           ": bad header (rank 1..10002, mean, average, users and items "
                           "1..2^32-1)");
  }
  m.biases = biases == "1";
  if (m.biases && k_u < 3) {
    return InvalidArgument(path + ": a model with biases has at least 3 factor columns");
  }
  const auto k = static_cast<Eigen::Index>(k_u);
  m.users = std::make_shared<IdMap>();
  m.items = std::make_shared<IdMap>();
  for (int part = 0; part < 2; ++part) {
    Factors& f = part == 0 ? m.w : m.h;
    IdMap& ids = part == 0 ? *m.users : *m.items;
    const char tag = part == 0 ? 'u' : 'i';
    // Rows are kept as they are read, so memory follows the file, not its header.
    std::vector<double> values;
    for (std::uint64_t r = 0; r < counts[part]; ++r) {
      if (!in.Next(line)) {
        TESSERA_RETURN_IF_ERROR(in.status());
        return DataLoss(path + ": truncated: expected " + std::to_string(counts[part]) + " '" +
                        tag + "' lines, found " + std::to_string(r));
      }
      std::vector<std::string_view> tok;
      std::size_t i = 0;
      while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        std::size_t j = i;
        while (j < line.size() && line[j] != ' ') ++j;
        if (j > i) tok.push_back(line.substr(i, j - i));
        i = j;
      }
      if (tok.size() != static_cast<std::size_t>(k) + 2 || tok[0] != std::string_view(&tag, 1)) {
        return InvalidArgument(in.Where() + "expected '" + tag + " <id> <" + std::to_string(k) +
                               " factors>'");
      }
      const std::size_t before = ids.size();
      if (ids.Add(tok[1]) != before) {
        return InvalidArgument(in.Where() + "id '" + std::string(tok[1]) + "' appears twice");
      }
      for (Eigen::Index c = 0; c < k; ++c) {
        double v = 0;
        if (!ParseDouble(tok[static_cast<std::size_t>(c) + 2], v)) {
          return InvalidArgument(in.Where() + "factor '" + std::string(tok[c + 2]) +
                                 "' is not a finite number");
        }
        values.push_back(v);
      }
    }
    f = Eigen::Map<const Factors>(values.data(), static_cast<Eigen::Index>(counts[part]), k);
  }
  if (in.Next(line)) return InvalidArgument(in.Where() + "unexpected line after the factors");
  TESSERA_RETURN_IF_ERROR(in.status());
  return m;
}

}  // namespace tessera
