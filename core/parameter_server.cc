#include "tessera/core/parameter_server.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <unordered_set>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/key_index.h"

namespace tessera {

// ---------------------------------------------------------------------------------------------
// Consistency

StatusOr<Consistency> Consistency::Parse(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  const std::string expected = " (expected bsp, sbp:B, ssp:S, essp:S, sparsessp:S, asp or hogwild)";
  Consistency c;
  if (text == "bsp") return c;
  if (text == "asp") {
    c.model = ConsistencyModel::kAsp;
    return c;
  }
  if (text == "hogwild") {
    c.model = ConsistencyModel::kHogwild;
    return c;
  }
  const auto colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  if (name == "ssp") {
    c.model = ConsistencyModel::kSsp;
  } else if (name == "sbp") {
    c.model = ConsistencyModel::kSbp;
  } else if (name == "essp") {
    c.model = ConsistencyModel::kEssp;
  } else if (name == "sparsessp") {
    c.model = ConsistencyModel::kSparseSsp;
  } else {
    return InvalidArgument("unknown consistency model " + quoted + expected);
  }
  const bool sbp = c.model == ConsistencyModel::kSbp;
  if (colon == std::string_view::npos) {
    return InvalidArgument("consistency " + quoted + " needs " +
                           (sbp ? "a number of backup workers, e.g. sbp:1"
                                : "a staleness bound, e.g. " + std::string(name) + ":3"));
  }
  const std::string_view bound = text.substr(colon + 1);
  long long s = -1;
  auto [end, ec] = std::from_chars(bound.data(), bound.data() + bound.size(), s);
  if (ec != std::errc() || end != bound.data() + bound.size() || s < 0 || s > 1000000) {
    return InvalidArgument("consistency " + quoted +
                           (sbp ? ": the number of backup workers B must be an integer from 0 "
                                  "to 1000000"
                                : ": the staleness bound S must be an integer from 0 to 1000000"));
  }
  (sbp ? c.backups : c.staleness) = static_cast<int>(s);
  return c;
}

std::string Consistency::ToString() const {
  switch (model) {
    case ConsistencyModel::kBsp:
      return "bsp";
    case ConsistencyModel::kSbp:
      return "sbp:" + std::to_string(backups);
    case ConsistencyModel::kSsp:
      return "ssp:" + std::to_string(staleness);
    case ConsistencyModel::kEssp:
      return "essp:" + std::to_string(staleness);
    case ConsistencyModel::kSparseSsp:
      return "sparsessp:" + std::to_string(staleness);
    case ConsistencyModel::kAsp:
      return "asp";
    case ConsistencyModel::kHogwild:
      return "hogwild";
  }
  return "?";
}

std::uint64_t Consistency::RequiredClock(std::uint64_t clock) const {
  switch (model) {
    case ConsistencyModel::kBsp:
    case ConsistencyModel::kSbp:  // the table's clock, which does not wait for the backups
      return clock;
    case ConsistencyModel::kSsp:
    case ConsistencyModel::kEssp:
    case ConsistencyModel::kSparseSsp:
      return clock >= static_cast<std::uint64_t>(staleness) ? clock - staleness : 0;
    case ConsistencyModel::kAsp:
    case ConsistencyModel::kHogwild:
      return 0;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Updaters

namespace {

class AddUpdaterImpl final : public Updater {
 public:
  std::string name() const override { return "add"; }
  bool is_add() const override { return true; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double*) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) value[i] += grad[i];
  }
};

class SgdUpdaterImpl final : public Updater {
 public:
  explicit SgdUpdaterImpl(double lr) : lr_(lr) {}
  std::string name() const override { return "sgd:" + std::to_string(lr_); }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double*) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) value[i] -= lr_ * grad[i];
  }

 private:
  double lr_;
};

class AdagradUpdaterImpl final : public Updater {
 public:
  AdagradUpdaterImpl(double lr, double eps) : lr_(lr), eps_(eps) {}
  std::string name() const override { return "adagrad:" + std::to_string(lr_); }
  int state_per_element() const override { return 1; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) {
      state[i] += grad[i] * grad[i];
      value[i] -= lr_ * grad[i] / (std::sqrt(state[i]) + eps_);
    }
  }

 private:
  double lr_, eps_;
};

// State per element: first moment, second moment, step count (for bias correction; a key's
// step counts the updates it received).
class AdamUpdaterImpl final : public Updater {
 public:
  AdamUpdaterImpl(double lr, double b1, double b2, double eps)
      : lr_(lr), b1_(b1), b2_(b2), eps_(eps) {}
  std::string name() const override { return "adam:" + std::to_string(lr_); }
  int state_per_element() const override { return 3; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) {
      double* s = state + 3 * i;
      s[0] = b1_ * s[0] + (1 - b1_) * grad[i];
      s[1] = b2_ * s[1] + (1 - b2_) * grad[i] * grad[i];
      s[2] += 1;
      const double m_hat = s[0] / (1 - std::pow(b1_, s[2]));
      const double v_hat = s[1] / (1 - std::pow(b2_, s[2]));
      value[i] -= lr_ * m_hat / (std::sqrt(v_hat) + eps_);
    }
  }

 private:
  double lr_, b1_, b2_, eps_;
};

class FunctionUpdaterImpl final : public Updater {
 public:
  FunctionUpdaterImpl(std::string name, int spe, UpdateFunction fn)
      : name_(std::move(name)), spe_(spe), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  int state_per_element() const override { return spe_; }
  void Update(Key first, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    fn_(first, count, dim, value, grad, state);
  }

 private:
  std::string name_;
  int spe_;
  UpdateFunction fn_;
};

class StalenessAwareUpdaterImpl final : public Updater {
 public:
  StalenessAwareUpdaterImpl(std::string name, int spe, StaleUpdateFunction fn)
      : name_(std::move(name)), spe_(spe), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  int state_per_element() const override { return spe_; }
  void Update(Key first, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    fn_(first, count, dim, value, grad, state, 0);
  }
  void StaleUpdate(Key first, std::size_t count, int dim, double* value, const double* grad,
                   double* state, std::uint64_t staleness) const override {
    fn_(first, count, dim, value, grad, state, staleness);
  }

 private:
  std::string name_;
  int spe_;
  StaleUpdateFunction fn_;
};

}  // namespace

UpdaterPtr AddUpdater() { return std::make_shared<AddUpdaterImpl>(); }
UpdaterPtr SgdUpdater(double lr) { return std::make_shared<SgdUpdaterImpl>(lr); }
UpdaterPtr AdagradUpdater(double lr, double eps) {
  return std::make_shared<AdagradUpdaterImpl>(lr, eps);
}
UpdaterPtr AdamUpdater(double lr, double b1, double b2, double eps) {
  return std::make_shared<AdamUpdaterImpl>(lr, b1, b2, eps);
}
UpdaterPtr FunctionUpdater(std::string name, int state_per_element, UpdateFunction fn) {
  TESSERA_CHECK(state_per_element >= 0 && fn);
  return std::make_shared<FunctionUpdaterImpl>(std::move(name), state_per_element, std::move(fn));
}
UpdaterPtr StalenessAwareUpdater(std::string name, int state_per_element, StaleUpdateFunction fn) {
  TESSERA_CHECK(state_per_element >= 0 && fn);
  return std::make_shared<StalenessAwareUpdaterImpl>(std::move(name), state_per_element,
                                                     std::move(fn));
}

StatusOr<UpdaterPtr> MakeUpdater(std::string_view spec) {
  const std::string quoted = "'" + std::string(spec) + "'";
  if (spec == "add") return AddUpdater();
  const auto colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  if (name != "sgd" && name != "adagrad" && name != "adam") {
    return InvalidArgument("unknown update function " + quoted +
                           " (expected add, sgd:LR, adagrad:LR or adam:LR)");
  }
  double lr = 0;
  if (colon == std::string_view::npos) {
    return InvalidArgument("update function " + quoted + " needs a learning rate, e.g. " +
                           std::string(name) + ":0.01");
  }
  const std::string rate(spec.substr(colon + 1));
  char* end = nullptr;
  lr = std::strtod(rate.c_str(), &end);
  if (rate.empty() || *end != '\0' || !(lr > 0) || !std::isfinite(lr)) {
    return InvalidArgument("update function " + quoted +
                           ": the learning rate must be a number > 0");
  }
  if (name == "sgd") return SgdUpdater(lr);
  if (name == "adagrad") return AdagradUpdater(lr);
  return AdamUpdater(lr);
}

// ---------------------------------------------------------------------------------------------
// Table specs

Status TableSpec::Validate(int servers, bool in_process) const {
  const std::string t = "table '" + name + "': ";
  if (num_keys == 0) return InvalidArgument(t + "num_keys must be > 0");
  if (dim < 1) return InvalidArgument(t + "dim must be >= 1, got " + std::to_string(dim));
  if (!updater) return InvalidArgument(t + "no update function");
  if (initial_values.size() != 0) {
    if (storage != TableStorage::kDense) {
      return InvalidArgument(t + "initial_values need dense storage");
    }
    if (static_cast<std::uint64_t>(initial_values.size()) != num_keys * dim) {
      return InvalidArgument(
          t + std::to_string(initial_values.size()) +
          " initial values for num_keys * dim = " + std::to_string(num_keys * dim));
    }
  }
  if (read_my_writes && (!updater->is_add() || !consistency.cached() || model_averaging)) {
    return InvalidArgument(t +
                           "read_my_writes needs the 'add' updater, consistency bsp, ssp:S or "
                           "essp:S, and no model averaging");
  }
  if (consistency.model == ConsistencyModel::kHogwild) {
    if (sum_per_clock) {
      return InvalidArgument(t + "sum_per_clock needs shards to sum in; hogwild tables are "
                                 "shared memory");
    }
    if (model_averaging) {
      return InvalidArgument(t +
                             "model averaging needs shards to average into; hogwild tables "
                             "are shared memory");
    }
    if (!in_process) {
      return InvalidArgument(t +
                             "consistency 'hogwild' shares memory between workers and is "
                             "in-process only; over TCP use asp, ssp:S, essp:S or bsp");
    }
    if (storage != TableStorage::kDense) {
      return InvalidArgument(t + "consistency 'hogwild' needs dense storage");
    }
  }
  if (!shard_ranges.empty()) {
    if (static_cast<int>(shard_ranges.size()) != servers) {
      return InvalidArgument(t + std::to_string(shard_ranges.size()) + " shard ranges for " +
                             std::to_string(servers) + " servers");
    }
    Key next = 0;
    for (std::size_t s = 0; s < shard_ranges.size(); ++s) {
      const KeyRange& r = shard_ranges[s];
      if (r.begin != next || r.end < r.begin) {
        return InvalidArgument(t + "shard range " + std::to_string(s) + " is [" +
                               std::to_string(r.begin) + ", " + std::to_string(r.end) +
                               "); ranges must be contiguous from key 0 in shard order");
      }
      next = r.end;
    }
    if (next != num_keys) {
      return InvalidArgument(t + "shard ranges end at key " + std::to_string(next) +
                             ", not at num_keys " + std::to_string(num_keys));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Server shards

namespace {

// Pushes of one clock summed per key, for tables whose updater runs once per clock (bsp).
struct ClockSums {
  std::uint64_t staleness = 0;  // the most of the pushes summed (msg::PsPush::staleness)
  std::vector<double> dense;          // range.size() * dim, for dense tables
  std::vector<std::uint8_t> touched;  // per key of the range
  KeyIndex sparse_rows;               // sparse tables: key -> row of `sparse`
  std::vector<double> sparse;
};

}  // namespace

struct ParameterServer::Shard {
  struct Table {
    const TableSpec* spec = nullptr;
    KeyRange range;
    int dim = 1;
    int spe = 0;  // state per element
    bool per_clock = false;
    // The clock whose pushes have all been applied: the shard's (every worker's) clock, or
    // under sbp:B the clock all but the B slowest workers have reached.
    std::uint64_t completed = 0;
    std::vector<double> values;  // dense: range.size() * dim; sparse: rows * dim
    std::vector<double> state;
    KeyIndex rows;  // sparse: key -> row
    // per_clock: pushes summed by (clock they belong to, raw add), applied in that order.
    std::map<std::pair<std::uint64_t, bool>, ClockSums> sums;
    // essp: the keys each worker has read, refreshed when the clock advances.
    std::vector<std::vector<std::uint8_t>> subscribed;  // dense: [worker][key - range.begin]
    std::vector<std::size_t> subscribed_count;
    std::vector<std::unordered_set<Key>> subscribed_sparse;
    // essp: the keys changed since the last refresh, the only ones a refresh sends (a worker's
    // other cached keys are unchanged since then, which the refresh's clock tells it).
    std::vector<std::uint8_t> dirty;  // dense: per key - range.begin
    std::vector<Key> dirty_keys;      // dense and sparse, each once
    std::unordered_set<Key> dirty_sparse;
    // sparsessp: the keys each worker has pushed in this run.
    std::vector<std::vector<std::uint8_t>> written;  // dense: [worker][key - range.begin]
    std::vector<std::unordered_set<Key>> written_sparse;
  };

  ParameterServer* ps = nullptr;
  int index = 0;
  Rank rank = 0;
  std::vector<Table> tables;
  std::vector<std::uint64_t> worker_clock;
  std::vector<std::uint64_t> pushes_from;  // [worker]: push messages applied (read my writes)
  std::uint64_t clock = 0;
  std::vector<std::pair<Rank, msg::PsPull>> waiting;  // pulls that need a later clock, by sender
  // A shard stops at the driver's stop, or with StopAfterWorkers once the driver and every
  // worker have said stop (each worker's stop follows its last push on the same connection).
  // A shard of another process than the driver's then sends its tables there.
  bool driver_stopped = false;
  int workers_stopped = 0;

  // Row of `key` in a sparse table, created (with `initial` values) if `create`; null if absent.
  static double* SparseRow(Table& t, Key key, bool create, double** state) {
    std::size_t row = t.rows.Find(key);
    if (row == KeyIndex::kAbsent) {
      if (!create) return nullptr;
      bool added = false;
      row = t.rows.Insert(key, added);
      t.values.resize((row + 1) * t.dim, t.spec->initial);
      t.state.resize((row + 1) * t.dim * t.spe, 0.0);
    }
    if (state) *state = t.state.data() + row * t.dim * t.spe;
    return t.values.data() + row * t.dim;
  }

  // Runs the updater (or a raw add) over `count` keys starting at keys[0] (explicit keys) or at
  // `first` (a range), grad key-major.
  static void MarkDirty(Table& t, const Key* keys, Key first, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      const Key k = keys ? keys[i] : first + i;
      if (t.spec->storage == TableStorage::kSparse) {
        if (t.dirty_sparse.insert(k).second) t.dirty_keys.push_back(k);
      } else if (!t.dirty[k - t.range.begin]) {
        t.dirty[k - t.range.begin] = 1;
        t.dirty_keys.push_back(k);
      }
    }
  }

  static void Apply(Table& t, const Key* keys, Key first, std::size_t count, const double* grad,
                    bool raw_add, std::uint64_t staleness) {
    // An empty range may name any first key (even one of another shard): nothing to apply,
    // and no offset to compute from it.
    if (count == 0) return;
    if (t.spec->consistency.model == ConsistencyModel::kEssp) MarkDirty(t, keys, first, count);
    const int dim = t.dim;
    const bool add = raw_add || t.spec->updater->is_add();  // inline, no call per key
    auto run = [&](Key k0, std::size_t n, double* value, double* state, const double* g) {
      if (add) {
        for (std::size_t i = 0; i < n * dim; ++i) value[i] += g[i];
      } else {
        t.spec->updater->StaleUpdate(k0, n, dim, value, g, state, staleness);
      }
    };
    if (t.spec->storage == TableStorage::kSparse) {
      for (std::size_t i = 0; i < count; ++i) {
        const Key k = keys ? keys[i] : first + i;
        double* state = nullptr;
        double* value = SparseRow(t, k, true, &state);
        run(k, 1, value, state, grad + i * dim);
      }
      return;
    }
    auto dense_run = [&](Key k0, std::size_t n, const double* g) {
      const std::size_t off = k0 - t.range.begin;
      run(k0, n, t.values.data() + off * dim, t.state.data() + off * dim * t.spe, g);
    };
    if (!keys) {
      dense_run(first, count, grad);
      return;
    }
    std::size_t i = 0;
    while (i < count) {  // maximal runs of consecutive keys
      std::size_t j = i + 1;
      while (j < count && keys[j] == keys[j - 1] + 1) ++j;
      dense_run(keys[i], j - i, grad + i * dim);
      i = j;
    }
  }

  void AddToSums(Table& t, std::uint64_t c, bool raw, const Key* keys, Key first, std::size_t count,
                 const double* grad, std::uint64_t staleness) {
    ClockSums& s = t.sums[{c, raw}];
    s.staleness = std::max(s.staleness, staleness);
    const int dim = t.dim;
    if (t.spec->storage == TableStorage::kDense) {
      if (s.dense.empty()) {
        s.dense.assign(t.range.size() * dim, 0.0);
        s.touched.assign(t.range.size(), 0);
      }
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t off = (keys ? keys[i] : first + i) - t.range.begin;
        s.touched[off] = 1;
        double* dst = s.dense.data() + off * dim;
        for (int d = 0; d < dim; ++d) dst[d] += grad[i * dim + d];
      }
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      const Key k = keys ? keys[i] : first + i;
      bool added = false;
      const std::size_t row = s.sparse_rows.Insert(k, added);
      if (added) s.sparse.resize(s.sparse_rows.size() * dim, 0.0);
      double* dst = s.sparse.data() + row * dim;
      for (int d = 0; d < dim; ++d) dst[d] += grad[i * dim + d];
    }
  }

  void ApplySums(Table& t, ClockSums& s, bool raw) {
    if (t.spec->storage == TableStorage::kDense) {
      std::size_t i = 0;
      const std::size_t n = s.touched.size();
      while (i < n) {
        if (!s.touched[i]) {
          ++i;
          continue;
        }
        std::size_t j = i + 1;
        while (j < n && s.touched[j]) ++j;
        Apply(t, nullptr, t.range.begin + i, j - i, s.dense.data() + i * t.dim, raw, s.staleness);
        i = j;
      }
      return;
    }
    std::vector<std::pair<Key, std::size_t>> rows;
    s.sparse_rows.ForEach([&rows](Key k, std::size_t row) { rows.emplace_back(k, row); });
    std::sort(rows.begin(), rows.end());
    for (const auto& [k, row] : rows) {
      Apply(t, &k, 0, 1, s.sparse.data() + row * t.dim, raw, s.staleness);
    }
  }

  // sparsessp: worker w has pushed these keys.
  static void MarkWritten(Table& t, int w, const Key* keys, Key first, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      const Key k = keys ? keys[i] : first + i;
      if (t.spec->storage == TableStorage::kSparse) {
        t.written_sparse[w].insert(k);
      } else {
        auto& bits = t.written[w];
        if (bits.empty()) bits.assign(t.range.size(), 0);
        bits[k - t.range.begin] = 1;
      }
    }
  }

  // Whether `pull` may be answered now: its table has completed the clock it needs, or under
  // sparsessp no worker still short of that clock has pushed any of its keys.
  bool Servable(const msg::PsPull& pull) const {
    const Table& t = tables[pull.table];
    if (pull.clock <= t.completed) return true;
    if (t.spec->consistency.model != ConsistencyModel::kSparseSsp) return false;
    const std::size_t count = pull.count();
    for (int v = 0; v < ps->workers_; ++v) {
      if (worker_clock[v] >= pull.clock) continue;  // not behind: its pushes are in
      const bool sparse = t.spec->storage == TableStorage::kSparse;
      if (sparse ? t.written_sparse[v].empty() : t.written[v].empty()) continue;
      for (std::size_t i = 0; i < count; ++i) {
        const Key k = pull.key(i);
        if (sparse ? t.written_sparse[v].count(k) > 0 : t.written[v][k - t.range.begin] != 0) {
          return false;
        }
      }
    }
    return true;
  }

  void HandlePush(Rank from, const msg::PsPush& m) {
    Table& t = tables[m.table];
    const int w = from - ps->WorkerRank(0);
    ++pushes_from[w];
    const bool explicit_keys = !m.keys.empty();
    const std::size_t count = explicit_keys ? m.keys.size() : m.range.size();
    const Key* keys = explicit_keys ? m.keys.data() : nullptr;
    if (t.spec->consistency.model == ConsistencyModel::kSparseSsp) {
      MarkWritten(t, w, keys, m.range.begin, count);
    }
    if (t.per_clock) {
      // sbp: a backup worker's push for a clock already completed is folded into the clock
      // still open (it is not lost, and no completed clock changes).
      AddToSums(t, std::max(worker_clock[w], t.completed), m.raw_add, keys, m.range.begin, count,
                m.values.data(), m.staleness);
    } else {
      Apply(t, keys, m.range.begin, count, m.values.data(), m.raw_add, m.staleness);
    }
  }

  // Copies the values of `m`'s keys (or range) into `out`, key-major.
  void Read(Table& t, const TableKeys& m, Eigen::VectorXd& out) {
    const int dim = t.dim;
    const bool explicit_keys = !m.keys.empty();
    const std::size_t count = explicit_keys ? m.keys.size() : m.range.size();
    out.resize(static_cast<Eigen::Index>(count * dim));
    if (count == 0) return;
    if (t.spec->storage == TableStorage::kDense) {
      if (!explicit_keys) {
        std::memcpy(out.data(), t.values.data() + (m.range.begin - t.range.begin) * dim,
                    count * dim * sizeof(double));
        return;
      }
      for (std::size_t i = 0; i < count; ++i) {
        std::memcpy(out.data() + i * dim, t.values.data() + (m.keys[i] - t.range.begin) * dim,
                    dim * sizeof(double));
      }
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      const Key k = explicit_keys ? m.keys[i] : m.range.begin + i;
      const double* row = SparseRow(t, k, false, nullptr);
      for (int d = 0; d < dim; ++d) out[i * dim + d] = row ? row[d] : t.spec->initial;
    }
  }

  void Subscribe(Table& t, int w, const TableKeys& m) {
    const std::size_t count = m.keys.empty() ? m.range.size() : m.keys.size();
    if (t.spec->storage == TableStorage::kSparse) {
      for (std::size_t i = 0; i < count; ++i) {
        t.subscribed_sparse[w].insert(m.keys.empty() ? m.range.begin + i : m.keys[i]);
      }
      return;
    }
    auto& bits = t.subscribed[w];
    if (bits.empty()) bits.assign(t.range.size(), 0);
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t off = (m.keys.empty() ? m.range.begin + i : m.keys[i]) - t.range.begin;
      if (!bits[off]) {
        bits[off] = 1;
        ++t.subscribed_count[w];
      }
    }
  }

  void Reply(Rank from, msg::PsPull& m) {
    Table& t = tables[m.table];
    msg::PsValues reply;
    reply.table = m.table;
    reply.request = m.request;
    reply.clock = t.completed;
    if (from >= ps->WorkerRank(0)) reply.applied = pushes_from[from - ps->WorkerRank(0)];
    Read(t, m, reply.values);
    if (t.spec->consistency.model == ConsistencyModel::kEssp && from >= ps->WorkerRank(0)) {
      Subscribe(t, from - ps->WorkerRank(0), m);  // not the driver's checkpoint pulls
    }
    reply.keys = std::move(m.keys);
    reply.range = m.range;
    (void)ps->transport_->Send(from, Message(rank, std::move(reply)));
  }

  // Pushes fresh values of the keys worker w has read from an essp table that changed since the
  // last refresh; its clock tells the worker that the others it has read are unchanged.
  void Refresh(TableId id, int w) {
    Table& t = tables[id];
    const bool sparse = t.spec->storage == TableStorage::kSparse;
    if (sparse ? t.subscribed_sparse[w].empty() : t.subscribed_count[w] == 0) return;
    msg::PsRefresh m;
    m.table = id;
    m.clock = t.completed;
    m.applied = pushes_from[w];
    if (!sparse && t.subscribed_count[w] == t.range.size() &&
        t.dirty_keys.size() == t.range.size()) {
      m.range = t.range;
    } else {
      for (Key k : t.dirty_keys) {
        const bool read =
            sparse ? t.subscribed_sparse[w].count(k) > 0 : t.subscribed[w][k - t.range.begin] != 0;
        if (read) m.keys.push_back(k);
      }
      std::sort(m.keys.begin(), m.keys.end());
      if (m.keys.empty()) m.range = {t.range.begin, t.range.begin};
    }
    Read(t, m, m.values);
    (void)ps->transport_->Send(ps->WorkerRank(w), Message(rank, std::move(m)));
  }

  void ClearDirty(Table& t) {
    if (t.spec->storage == TableStorage::kDense) {
      for (Key k : t.dirty_keys) t.dirty[k - t.range.begin] = 0;
    } else {
      t.dirty_sparse.clear();
    }
    t.dirty_keys.clear();
  }

  // At the stop: pushes summed for clocks not yet completed (under sbp, a backup's late pushes
  // folded into the open clock) are applied, in clock order, so that none is lost.
  void ApplyOpenClocks() {
    for (Table& t : tables) {
      for (auto& [at, sums] : t.sums) ApplySums(t, sums, at.second);
      t.sums.clear();
    }
  }

  // The clock table `t` has completed, given the workers' clocks: their minimum, or under
  // sbp:B the (B+1)-th smallest.
  std::uint64_t CompletedClock(const Table& t, std::uint64_t min_clock) const {
    const Consistency& c = t.spec->consistency;
    if (c.model != ConsistencyModel::kSbp || c.backups == 0) return min_clock;
    std::vector<std::uint64_t> sorted = worker_clock;
    std::nth_element(sorted.begin(), sorted.begin() + c.backups, sorted.end());
    return sorted[static_cast<std::size_t>(c.backups)];
  }

  void HandleClock(Rank from, const msg::PsClock& m) {
    const int w = from - ps->WorkerRank(0);
    worker_clock[w] = std::max(worker_clock[w], m.clock);
    const std::uint64_t min_clock = *std::min_element(worker_clock.begin(), worker_clock.end());
    const bool min_advanced = min_clock > clock;
    bool advanced = min_advanced;
    for (Table& t : tables) {
      const std::uint64_t completed = std::max(t.completed, CompletedClock(t, min_clock));
      if (completed == t.completed) continue;
      advanced = true;
      if (t.per_clock) {
        while (!t.sums.empty() && t.sums.begin()->first.first < completed) {
          ApplySums(t, t.sums.begin()->second, t.sums.begin()->first.second);
          t.sums.erase(t.sums.begin());
        }
      }
      t.completed = completed;
    }
    if (!advanced) return;
    clock = std::max(clock, min_clock);
    std::vector<std::pair<Rank, msg::PsPull>> still;
    for (auto& [from, pull] : waiting) {
      if (Servable(pull)) {
        Reply(from, pull);
      } else {
        still.emplace_back(from, std::move(pull));
      }
    }
    waiting = std::move(still);
    for (TableId id = 0; min_advanced && id < tables.size(); ++id) {
      if (tables[id].spec->consistency.model != ConsistencyModel::kEssp) continue;
      for (int v = 0; v < ps->workers_; ++v) Refresh(id, v);
      ClearDirty(tables[id]);
    }
  }

  // To the driver's process, at the end of a distributed run: every table's values in this
  // shard, one PsTables message per table (dense: the range, sparse: the keys).
  void SendFinalTables() {
    for (TableId id = 0; id < tables.size(); ++id) {
      Table& t = tables[id];
      msg::PsTables m;
      m.table = id;
      if (t.spec->storage == TableStorage::kDense) {
        m.range = t.range;
      } else {
        t.rows.ForEach([&](Key k, std::size_t) { m.keys.push_back(k); });
        std::sort(m.keys.begin(), m.keys.end());
      }
      Read(t, m, m.values);
      (void)ps->transport_->Send(0, Message(rank, std::move(m)));
    }
  }

  // Ok when `m` is a message a shard takes from its sender, naming keys of this shard only;
  // otherwise what is wrong with it. Every field a peer controls is checked here, before any
  // indexes an array.
  Status Check(const Message& m) const {
    const std::string what = "shard " + std::to_string(index) + ": a " + KindName(m.kind()) +
                             " message from rank " + std::to_string(m.from);
    const bool from_worker = m.from >= ps->WorkerRank(0) && m.from < ps->WorkerRank(ps->workers_);
    const TableKeys* at = nullptr;
    switch (m.kind()) {
      case MessageKind::kStop:
      case MessageKind::kPsPull:
        if (m.from != 0 && !from_worker) return InvalidArgument(what + ", which is no worker");
        break;
      case MessageKind::kPsClock:
      case MessageKind::kPsPing:
      case MessageKind::kPsPush:
        if (!from_worker) return InvalidArgument(what + ", which is no worker");
        break;
      default:
        return InvalidArgument(what + ", which a shard does not take");
    }
    if (const auto* pull = m.get<msg::PsPull>()) at = pull;
    const auto* push = m.get<msg::PsPush>();
    if (push) at = push;
    if (!at) return Status::Ok();
    if (at->table >= tables.size()) {
      return InvalidArgument(what + " names table " + std::to_string(at->table) + " of " +
                             std::to_string(tables.size()));
    }
    const Table& t = tables[at->table];
    const auto outside = [&](Key k) { return k < t.range.begin || k >= t.range.end; };
    if (at->keys.empty()) {
      const KeyRange& r = at->range;
      if (r.end < r.begin || (r.size() > 0 && (outside(r.begin) || r.end > t.range.end))) {
        return InvalidArgument(what + ": range [" + std::to_string(r.begin) + ", " +
                               std::to_string(r.end) + ") is not within the shard's [" +
                               std::to_string(t.range.begin) + ", " + std::to_string(t.range.end) +
                               ") of table " + std::to_string(at->table));
      }
    } else {
      for (Key k : at->keys) {
        if (outside(k)) {
          return InvalidArgument(what + ": key " + std::to_string(k) + " is not in the shard's [" +
                                 std::to_string(t.range.begin) + ", " +
                                 std::to_string(t.range.end) + ") of table " +
                                 std::to_string(at->table));
        }
      }
    }
    const std::size_t count = at->count();
    if (push &&
        static_cast<std::size_t>(push->values.size()) != count * static_cast<std::size_t>(t.dim)) {
      return InvalidArgument(what + ": " + std::to_string(push->values.size()) + " values for " +
                             std::to_string(count) + " keys of dimension " + std::to_string(t.dim));
    }
    return Status::Ok();
  }

  void Run() {
    for (;;) {
      auto received = ps->transport_->Receive(rank);
      if (!received.ok()) return;
      Message& m = *received;
      if (Status bad = Check(m); !bad.ok()) {
        {
          std::lock_guard lock(ps->shard_mu_);
          if (ps->shard_status_.ok()) ps->shard_status_ = bad;
        }
        ps->transport_->Close();  // wakes everyone: the run fails with it
        return;
      }
      if (const auto* push = m.get<msg::PsPush>()) {
        HandlePush(m.from, *push);
      } else if (auto* pull = m.get<msg::PsPull>()) {
        if (Servable(*pull)) {
          Reply(m.from, *pull);
        } else {
          waiting.emplace_back(m.from, std::move(*pull));
        }
      } else if (const auto* c = m.get<msg::PsClock>()) {
        HandleClock(m.from, *c);
      } else if (const auto* ping = m.get<msg::PsPing>()) {
        // Every earlier push of the sender is applied.
        (void)ps->transport_->Send(m.from, Message(rank, msg::PsPong{ping->request, clock}));
      } else if (m.get<msg::Stop>()) {
        if (m.from == 0) {
          driver_stopped = true;
        } else {
          ++workers_stopped;
        }
        if (driver_stopped &&
            (!ps->stop_after_workers_.load() || workers_stopped == ps->workers_)) {
          ApplyOpenClocks();
          if (!ps->transport_->hosts(0)) SendFinalTables();
          return;
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// ParameterServer

StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Start(
    std::vector<TableSpec> tables, int servers, int workers, std::shared_ptr<Transport> transport) {
  if (servers < 1) {
    return InvalidArgument("--servers must be at least 1, got " + std::to_string(servers));
  }
  if (workers < 1) {
    return InvalidArgument("--workers must be at least 1, got " + std::to_string(workers));
  }
  if (tables.empty()) return InvalidArgument("a parameter server needs at least one table");
  if (!transport) transport = MakeDefaultTransport(1 + servers + workers);
  if (transport->size() != 1 + servers + workers) {
    return InvalidArgument("the transport has " + std::to_string(transport->size()) +
                           " endpoints; " + std::to_string(servers) + " servers and " +
                           std::to_string(workers) + " workers need " +
                           std::to_string(1 + servers + workers));
  }
  for (const auto& spec : tables) {
    TESSERA_RETURN_IF_ERROR(spec.Validate(servers, transport->in_process()));
    if (spec.consistency.model == ConsistencyModel::kSbp && spec.consistency.backups >= workers) {
      return InvalidArgument("table '" + spec.name + "': " + spec.consistency.ToString() +
                             " needs fewer backup workers than the " + std::to_string(workers) +
                             " workers");
    }
  }
  KeepMessageBuffersInHeap();
  std::unique_ptr<ParameterServer> ps(new ParameterServer());
  ps->servers_ = servers;
  ps->workers_ = workers;
  ps->specs_ = std::move(tables);
  ps->transport_ = std::move(transport);
  ps->transport_->BeginRun();  // nothing of an earlier run over this transport reaches this one
  for (const auto& spec : ps->specs_) {
    ps->ranges_.push_back(spec.shard_ranges.empty() ? SplitRange(spec.num_keys, servers)
                                                    : spec.shard_ranges);
  }
  for (int s = 0; s < servers; ++s) {
    auto shard = std::make_unique<Shard>();
    const bool here = ps->transport_->hosts(ps->ShardRank(s));
    shard->ps = ps.get();
    shard->index = s;
    shard->rank = ps->ShardRank(s);
    shard->worker_clock.assign(workers, 0);
    shard->pushes_from.assign(workers, 0);
    for (TableId id = 0; id < ps->specs_.size(); ++id) {
      const TableSpec& spec = ps->specs_[id];
      Shard::Table t;
      t.spec = &spec;
      t.range = ps->ranges_[id][s];
      t.dim = spec.dim;
      t.spe = spec.updater->state_per_element();
      // Under bsp a clock's pushes are applied together at its end: the updater sees their sum,
      // and averaged models are averaged over the same starting point.
      // Under sbp every updater's pushes are summed per clock, so that a read never sees part
      // of a clock and a backup's late push can be folded into the open one.
      t.per_clock = (spec.consistency.model == ConsistencyModel::kBsp &&
                     (!spec.updater->is_add() || spec.model_averaging)) ||
                    spec.consistency.model == ConsistencyModel::kSbp || spec.sum_per_clock;
      if (spec.storage == TableStorage::kDense && here) {
        t.values.assign(t.range.size() * t.dim, spec.initial);
        if (spec.initial_values.size() != 0) {
          std::memcpy(t.values.data(), spec.initial_values.data() + t.range.begin * t.dim,
                      t.values.size() * sizeof(double));
        }
        t.state.assign(t.range.size() * t.dim * t.spe, 0.0);
      }
      if (spec.consistency.model == ConsistencyModel::kEssp) {
        t.subscribed.resize(workers);
        t.subscribed_count.assign(workers, 0);
        t.subscribed_sparse.resize(workers);
        if (spec.storage == TableStorage::kDense) t.dirty.assign(t.range.size(), 0);
      }
      if (spec.consistency.model == ConsistencyModel::kSparseSsp) {
        t.written.resize(workers);
        t.written_sparse.resize(workers);
      }
      shard->tables.push_back(std::move(t));
    }
    ps->shards_.push_back(std::move(shard));
  }
  for (int w = 0; w < workers; ++w) {
    ps->clients_.push_back(std::unique_ptr<PsClient>(new PsClient(ps.get(), w)));
  }
  ps->running_ = std::make_unique<WaitGroup>();
  for (auto& shard : ps->shards_) {
    if (!ps->transport_->hosts(shard->rank)) continue;  // another process runs it
    ps->running_->Add(1);
    Shard* sh = shard.get();
    WaitGroup* wg = ps->running_.get();
    FiberPool::Global().Spawn([sh, wg] {
      sh->Run();
      wg->Done();
    });
  }
  return ps;
}

ParameterServer::~ParameterServer() { Shutdown(); }

void ParameterServer::Shutdown(const std::function<void(Message&)>& other) {
  if (stopped_ || !running_) return;
  if (transport_->hosts(0)) {  // the driver's process stops every shard
    for (int s = 0; s < servers_; ++s) {
      (void)transport_->Send(ShardRank(s), Message(0, msg::Stop{}));  // fails only when closed
    }
  }
  running_->Wait();  // this process's shards
  stopped_ = true;
  if (!transport_->hosts(0)) return;
  // The other processes' shards (if any) send their tables here as they stop.
  std::size_t expected = 0;
  for (const auto& shard : shards_) {
    if (!transport_->hosts(shard->rank)) expected += specs_.size();
  }
  if (expected == 0) return;
  final_.assign(specs_.size(), {});
  while (expected > 0) {
    auto m = transport_->Receive(0);
    if (!m.ok()) {
      final_status_ = m.status();
      return;
    }
    auto* tables = m->get<msg::PsTables>();
    if (!tables) {
      if (other) other(*m);
      continue;
    }
    if (Status bad = CheckValues(m->from, *tables, tables->values); !bad.ok()) {
      final_status_ = bad;
      return;
    }
    final_[tables->table].push_back({m->from, std::move(*tables)});
    --expected;
  }
}

Status ParameterServer::final_status() const { return final_status_; }

Status ParameterServer::shard_status() const {
  std::lock_guard lock(shard_mu_);
  return shard_status_;
}

StatusOr<int> ParameterServer::ShardOf(TableId table, Key key) const {
  if (table >= specs_.size()) {
    return InvalidArgument("no table " + std::to_string(table) + " (there are " +
                           std::to_string(specs_.size()) + ")");
  }
  if (key >= specs_[table].num_keys) {
    return InvalidArgument("key " + std::to_string(key) +
                           " is outside every shard range of table '" + specs_[table].name +
                           "' ([0, " + std::to_string(specs_[table].num_keys) + "))");
  }
  return ShardIn(ranges_[table], key);
}

int ShardIn(const std::vector<KeyRange>& ranges, Key key) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), key,
                             [](Key k, const KeyRange& range) { return k < range.end; });
  return static_cast<int>(it - ranges.begin());
}

Eigen::VectorXd ParameterServer::Snapshot(TableId table) const {
  TESSERA_CHECK(stopped_) << "Snapshot() reads shard memory: call Shutdown() first";
  const TableSpec& spec = specs_[table];
  Eigen::VectorXd out =
      Eigen::VectorXd::Constant(static_cast<Eigen::Index>(spec.num_keys * spec.dim), spec.initial);
  for (const auto& shard : shards_) {
    const Shard::Table& t = shard->tables[table];
    if (spec.storage == TableStorage::kDense) {
      if (t.values.empty()) continue;  // another process's shard (its values arrive below)
      std::memcpy(out.data() + t.range.begin * spec.dim, t.values.data(),
                  t.values.size() * sizeof(double));
    } else {
      t.rows.ForEach([&](Key k, std::size_t row) {
        for (int d = 0; d < spec.dim; ++d) out[k * spec.dim + d] = t.values[row * spec.dim + d];
      });
    }
  }
  if (final_.size() > table) {
    for (const auto& [from, m] : final_[table]) {
      const Status placed = PlaceValues(from, m, m.values, out);
      TESSERA_CHECK(placed.ok()) << placed.message();  // checked by Shutdown
    }
  }
  return out;
}

Status ParameterServer::CheckValues(Rank from, const TableKeys& at,
                                    const Eigen::VectorXd& values) const {
  if (from < ShardRank(0) || from >= ShardRank(servers_)) {
    return InvalidArgument("rank " + std::to_string(from) +
                           " sent table values, but it is no server shard");
  }
  if (at.table >= specs_.size()) {
    return InvalidArgument("rank " + std::to_string(from) + " sent values of table " +
                           std::to_string(at.table) + " of " + std::to_string(specs_.size()));
  }
  const TableSpec& spec = specs_[at.table];
  const std::size_t count = at.count();
  bool inside = at.range.begin <= at.range.end && at.range.end <= spec.num_keys;
  for (Key k : at.keys) inside = inside && k < spec.num_keys;
  if (!inside || values.size() != static_cast<Eigen::Index>(count * spec.dim)) {
    return InvalidArgument("rank " + std::to_string(from) + " sent " +
                           std::to_string(values.size()) + " values of table '" + spec.name +
                           "' for " + std::to_string(count) + " keys, not all of them in it");
  }
  return Status::Ok();
}

Status ParameterServer::PlaceValues(Rank from, const TableKeys& at, const Eigen::VectorXd& values,
                                    Eigen::VectorXd& table) const {
  TESSERA_RETURN_IF_ERROR(CheckValues(from, at, values));
  const int dim = specs_[at.table].dim;
  if (at.keys.empty()) {
    table.segment(static_cast<Eigen::Index>(at.range.begin * dim), values.size()) = values;
    return Status::Ok();
  }
  for (std::size_t i = 0; i < at.keys.size(); ++i) {
    table.segment(static_cast<Eigen::Index>(at.keys[i] * dim), dim) =
        values.segment(static_cast<Eigen::Index>(i * dim), dim);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Client

namespace {
// A shard's buffered pushes are sent once they hold this many values.
constexpr std::size_t kFlushValues = 16384;
// Push bytes a worker sends a shard between two pings (see SendPush).
constexpr std::uint64_t kWindowBytes = 32 << 20;
}  // namespace

// Values this worker has read, with the shard clock they were served at (+1; 0 = absent).
struct PsClient::Cache {
  int dim = 1;
  bool dense = true;
  std::uint64_t num_keys = 0;
  std::vector<double> values;
  std::vector<std::uint64_t> clock;  // dense: per key
  KeyIndex rows;                     // sparse: key -> row of values / clock
  // essp, per shard: the clock of its last refresh, which says that every key this worker had
  // read from it and the refresh did not send is unchanged (0 otherwise).
  std::vector<std::uint64_t> refreshed;
  // Row of `k` (of shard `s`) served at shard clock >= required, or null.
  const double* Fresh(Key k, int s, std::uint64_t required) const {
    if (dense) {
      if (clock.empty() || clock[k] == 0 || std::max(clock[k] - 1, refreshed[s]) < required) {
        return nullptr;
      }
      return values.data() + k * dim;
    }
    const std::size_t row = rows.Find(k);
    if (row == KeyIndex::kAbsent || std::max(clock[row] - 1, refreshed[s]) < required) {
      return nullptr;
    }
    return values.data() + row * dim;
  }
  // The shard clock `k`'s cached row (of shard `s`) is current at (Has(k) must hold).
  std::uint64_t ServedAt(Key k, int s) const {
    return std::max(clock[dense ? k : rows.Find(k)] - 1, refreshed[s]);
  }
  bool Has(Key k) const {
    if (dense) return !clock.empty() && clock[k] != 0;
    return rows.Find(k) != KeyIndex::kAbsent;
  }
  // False when a newer value is kept instead.
  bool Store(Key k, const double* v, std::uint64_t served_at) {
    std::size_t row = k;
    if (dense) {
      if (clock.empty()) {
        clock.assign(num_keys, 0);
        values.assign(num_keys * dim, 0.0);
      }
    } else {
      bool added = false;
      row = rows.Insert(k, added);
      if (added) {
        values.resize(rows.size() * dim);
        clock.resize(rows.size());
      }
    }
    // A refresh may overtake a reply: keep the newest.
    if (clock[row] != 0 && clock[row] - 1 > served_at) return false;
    std::memcpy(values.data() + row * dim, v, dim * sizeof(double));
    clock[row] = served_at + 1;
    return true;
  }
};

struct PsClient::MyWrites {
  struct Sent {
    std::uint64_t number;  // the push message's number to its shard (pushes_sent_)
    std::vector<Key> keys;
    std::vector<double> values;
  };
  int dim = 1;
  std::vector<std::deque<Sent>> sent;  // [shard]
  KeyIndex rows;                       // key -> row of `sum`
  std::vector<double> sum;             // per key: its unconfirmed pushes' sum
  double* Row(Key k) {
    bool added = false;
    const std::size_t row = rows.Insert(k, added);
    if (added) sum.resize(rows.size() * dim, 0.0);
    return sum.data() + row * dim;
  }
  // Drops what shard `s` has applied (messages numbered <= applied) from the sums.
  void Confirm(int s, std::uint64_t applied) {
    auto& q = sent[static_cast<std::size_t>(s)];
    while (!q.empty() && q.front().number <= applied) {
      const Sent& m = q.front();
      for (std::size_t i = 0; i < m.keys.size(); ++i) {
        double* r = Row(m.keys[i]);
        for (int d = 0; d < dim; ++d) r[d] -= m.values[i * dim + d];
      }
      q.pop_front();
    }
  }
};

struct PullFuture::State {
  TableId table = 0;
  int dim = 1;
  Eigen::VectorXd values;
  int outstanding = 0;  // requests not yet answered
  Status status;
  std::uint64_t required = 0;
  // Cached but stale keys of an essp table: [first, first + count) at values position `pos`
  // (a run of a range, or one explicit key), filled when the shard's refresh arrives.
  struct Run {
    Key first;
    std::size_t count;
    std::size_t pos;
  };
  std::vector<Run> awaiting;
  bool taken = false;
  // Staleness (PsClientStats::staleness): the oldest shard clock among the values served,
  // and the reader's clock; counted unless an evaluation barrier or hogwild reads.
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  std::uint64_t served = kNone;
  std::uint64_t reader_clock = 0;
  bool counted = false;
  // Model averaging: what was asked for, to lay the worker's replica over the answer.
  std::vector<Key> keys;
  KeyRange range;
};

// Model averaging: this worker's copy of the rows it read since its last clock, and its own
// optimizer state (kept across clocks).
struct PsClient::Replica {
  int dim = 1, spe = 0;
  KeyIndex rows;
  std::vector<double> base, local;  // as read from the shards; after this worker's updates
  KeyIndex state_rows;
  std::vector<double> state;
  double* State(Key k) {
    bool added = false;
    const std::size_t row = state_rows.Insert(k, added);
    if (added) state.resize(state_rows.size() * dim * spe, 0.0);
    return state.data() + row * dim * spe;
  }
};

struct PsClient::PendingReply {
  std::shared_ptr<PullFuture::State> state;
  bool ping = false;                   // a flow-control ping: answered by a PsPong
  std::vector<std::size_t> positions;  // explicit keys: position of each key in the answer
  std::size_t offset = 0;              // a range: position of its first key
};

PsClient::PsClient(ParameterServer* ps, int worker)
    : ps_(ps), worker_(worker), rank_(ps->WorkerRank(worker)) {
  windows_.resize(ps->servers_);
  outgoing_.resize(ps->specs_.size());
  pushes_sent_.assign(ps->servers_, 0);
  read_staleness_.assign(ps->specs_.size(), 0);
  stats_.staleness.assign(ps->specs_.size() * kStalenessBuckets, 0);
  for (TableId id = 0; id < ps->specs_.size(); ++id) {
    const TableSpec& spec = ps->specs_[id];
    outgoing_[id].resize(ps->servers_);
    if (spec.read_my_writes) {
      auto mine = std::make_unique<MyWrites>();
      mine->dim = spec.dim;
      mine->sent.resize(ps->servers_);
      my_writes_.push_back(std::move(mine));
    } else {
      my_writes_.push_back(nullptr);
    }
    if (spec.consistency.cached()) {
      auto cache = std::make_unique<Cache>();
      cache->dim = spec.dim;
      cache->dense = spec.storage == TableStorage::kDense;
      cache->num_keys = spec.num_keys;
      cache->refreshed.assign(ps->servers_, 0);
      caches_.push_back(std::move(cache));
    } else {
      caches_.push_back(nullptr);
    }
    if (spec.model_averaging) {
      auto replica = std::make_unique<Replica>();
      replica->dim = spec.dim;
      replica->spe = spec.updater->state_per_element();
      replicas_.push_back(std::move(replica));
    } else {
      replicas_.push_back(nullptr);
    }
  }
}

PsClient::~PsClient() = default;

Status PsClient::SendPushes(TableId table, int shard) {
  Outgoing& out = outgoing_[table][shard];
  if (out.keys.empty()) return Status::Ok();
  msg::PsPush m;
  m.table = table;
  m.keys = std::move(out.keys);
  m.values = Eigen::Map<const Eigen::VectorXd>(out.values.data(),
                                               static_cast<Eigen::Index>(out.values.size()));
  out.keys.clear();
  out.values.clear();
  return SendPush(shard, std::move(m));
}

// Flow control: a worker may run at most two windows of push bytes ahead of a shard. At the end
// of each window it sends a ping (PsPing) and, before the next one, waits for the
// previous ping's answer, which the shard sends only after applying every earlier push.
// Without it a fast worker queues gigabytes of messages and every new buffer page-faults.
Status PsClient::SendPush(int shard, msg::PsPush m) {
  ++stats_.push_messages;
  if (!m.raw_add) m.staleness = read_staleness_[m.table];
  const std::uint64_t number = ++pushes_sent_[shard];
  if (MyWrites* mine = my_writes_[m.table].get(); mine && !m.raw_add) {
    MyWrites::Sent sent{number, m.keys, {m.values.data(), m.values.data() + m.values.size()}};
    if (sent.keys.empty()) {
      for (Key k = m.range.begin; k < m.range.end; ++k) sent.keys.push_back(k);
    }
    mine->sent[shard].push_back(std::move(sent));
  }
  const std::uint64_t bytes = 8 * (m.values.size() + m.keys.size());
  TESSERA_RETURN_IF_ERROR(SendCounted(ps_->ShardRank(shard), Message(rank_, std::move(m))));
  Window& w = windows_[shard];
  w.bytes += bytes;
  if (w.bytes < kWindowBytes) return Status::Ok();
  w.bytes = 0;
  if (w.ping) TESSERA_RETURN_IF_ERROR(Wait(*w.ping));
  const msg::PsPing ping{next_request_++};
  w.ping = std::make_shared<PullFuture::State>();
  w.ping->outstanding = 1;
  PendingReply pending;
  pending.state = w.ping;
  pending.ping = true;
  pending_.emplace(ping.request, std::move(pending));
  return SendCounted(ps_->ShardRank(shard), Message(rank_, ping));
}

Status PsClient::Flush() {
  for (TableId t = 0; t < outgoing_.size(); ++t) {
    for (int s = 0; s < ps_->servers_; ++s) TESSERA_RETURN_IF_ERROR(SendPushes(t, s));
  }
  return Status::Ok();
}

Status PsClient::SendCounted(Rank to, Message m) {
  stats_.bytes += m.PayloadBytes();
  return ps_->transport_->Send(to, std::move(m));
}

StatusOr<Message> PsClient::ReceiveCounted() {
  auto m = ps_->transport_->Receive(rank_);
  if (m.ok()) stats_.bytes += m->PayloadBytes();
  return m;
}

Status PsClient::Clock() {
  for (TableId t = 0; t < replicas_.size(); ++t) {
    if (replicas_[t]) TESSERA_RETURN_IF_ERROR(SendAveragedModel(t));
  }
  TESSERA_RETURN_IF_ERROR(Flush());
  ++clock_;
  std::fill(read_staleness_.begin(), read_staleness_.end(), 0);
  for (int s = 0; s < ps_->servers_; ++s) {
    TESSERA_RETURN_IF_ERROR(SendCounted(ps_->ShardRank(s), Message(rank_, msg::PsClock{clock_})));
  }
  return Status::Ok();
}

namespace {

Status CheckValues(const TableSpec& spec, std::size_t keys, std::size_t values) {
  if (values != keys * spec.dim) {
    return InvalidArgument("push to table '" + spec.name + "': " + std::to_string(values) +
                           " values for " + std::to_string(keys) + " keys of dim " +
                           std::to_string(spec.dim));
  }
  return Status::Ok();
}

Status CheckRange(const ParameterServer& ps, TableId table, KeyRange range) {
  if (table >= ps.num_tables()) {
    return InvalidArgument("no table " + std::to_string(table));
  }
  const TableSpec& spec = ps.table(table);
  if (range.end < range.begin || range.end > spec.num_keys) {
    return InvalidArgument("key range [" + std::to_string(range.begin) + ", " +
                           std::to_string(range.end) + ") is outside every shard range of table '" +
                           spec.name + "' ([0, " + std::to_string(spec.num_keys) + "))");
  }
  return Status::Ok();
}

}  // namespace

// Hogwild: shard memory read and written with relaxed atomic element access and no lock. `add`
// is an atomic add per element (nothing lost); any other updater reads, updates and writes back
// a run of keys, so a concurrent update of the same key may be lost.
void PsClient::HogwildPush(TableId table, int shard, Key first, std::size_t count,
                           const double* grad) {
  const TableSpec& spec = ps_->specs_[table];
  auto& t = ps_->shards_[shard]->tables[table];
  const int dim = spec.dim;
  const std::size_t off = (first - t.range.begin) * dim, n = count * dim;
  double* value = t.values.data() + off;
  if (spec.updater->is_add()) {
    for (std::size_t i = 0; i < n; ++i) {
      std::atomic_ref<double>(value[i]).fetch_add(grad[i], std::memory_order_relaxed);
    }
    return;
  }
  const std::size_t ns = n * t.spe;
  double* state = t.state.data() + off * t.spe;
  hogwild_value_.resize(n);
  hogwild_state_.resize(ns);
  for (std::size_t i = 0; i < n; ++i) {
    hogwild_value_[i] = std::atomic_ref<double>(value[i]).load(std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < ns; ++i) {
    hogwild_state_[i] = std::atomic_ref<double>(state[i]).load(std::memory_order_relaxed);
  }
  spec.updater->Update(first, count, dim, hogwild_value_.data(), grad, hogwild_state_.data());
  for (std::size_t i = 0; i < n; ++i) {
    std::atomic_ref<double>(value[i]).store(hogwild_value_[i], std::memory_order_relaxed);
  }
  for (std::size_t i = 0; i < ns; ++i) {
    std::atomic_ref<double>(state[i]).store(hogwild_state_[i], std::memory_order_relaxed);
  }
}

Status PsClient::Push(TableId table, std::span<const Key> keys, std::span<const double> values) {
  if (table >= ps_->num_tables()) return InvalidArgument("no table " + std::to_string(table));
  const TableSpec& spec = ps_->specs_[table];
  TESSERA_RETURN_IF_ERROR(CheckValues(spec, keys.size(), values.size()));
  if (replicas_[table]) return PushToReplica(table, keys, values);
  const int dim = spec.dim;
  stats_.pushed_values += values.size();
  const bool hogwild = spec.consistency.model == ConsistencyModel::kHogwild;
  const auto& ranges = ps_->ranges_[table];
  std::size_t i = 0;
  while (i < keys.size()) {
    if (keys[i] >= spec.num_keys) return ps_->ShardOf(table, keys[i]).status();
    const int s = ranges.size() == 1 ? 0 : ShardIn(ranges, keys[i]);
    if (hogwild) {  // a run of consecutive keys inside shard s
      const Key end = ps_->ranges_[table][s].end;
      std::size_t j = i + 1;
      while (j < keys.size() && keys[j] == keys[j - 1] + 1 && keys[j] < end) ++j;
      HogwildPush(table, s, keys[i], j - i, values.data() + i * dim);
      i = j;
      continue;
    }
    if (spec.read_my_writes) {
      AddToCache(table, keys[i], values.data() + i * dim);
      AddUnconfirmed(table, keys[i], values.data() + i * dim);
    }
    Outgoing& out = outgoing_[table][s];
    out.keys.push_back(keys[i]);
    if (dim == 1) {
      out.values.push_back(values[i]);
    } else {
      out.values.insert(out.values.end(), values.begin() + i * dim, values.begin() + (i + 1) * dim);
    }
    if (out.values.size() >= kFlushValues) TESSERA_RETURN_IF_ERROR(SendPushes(table, s));
    ++i;
  }
  return Status::Ok();
}

void PsClient::AddUnconfirmed(TableId table, Key key, const double* v) {
  MyWrites& mine = *my_writes_[table];
  double* r = mine.Row(key);
  for (int d = 0; d < mine.dim; ++d) r[d] += v[d];
}

void PsClient::AddToCache(TableId table, Key key, const double* v) {
  Cache* c = caches_[table].get();
  if (!c || !c->Has(key)) return;
  const std::size_t row = c->dense ? key : c->rows.Find(key);
  double* dst = c->values.data() + row * c->dim;
  for (int d = 0; d < c->dim; ++d) dst[d] += v[d];
}

Status PsClient::PushRange(TableId table, KeyRange range, std::span<const double> values) {
  TESSERA_RETURN_IF_ERROR(CheckRange(*ps_, table, range));
  const TableSpec& spec = ps_->specs_[table];
  TESSERA_RETURN_IF_ERROR(CheckValues(spec, range.size(), values.size()));
  if (replicas_[table]) {
    std::vector<Key> keys(range.size());
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = range.begin + i;
    return PushToReplica(table, keys, values);
  }
  const int dim = spec.dim;
  stats_.pushed_values += values.size();
  const bool hogwild = spec.consistency.model == ConsistencyModel::kHogwild;
  const auto& ranges = ps_->ranges_[table];
  for (int s = 0; s < ps_->servers_; ++s) {
    const Key b = std::max(range.begin, ranges[s].begin);
    const Key e = std::min(range.end, ranges[s].end);
    if (b >= e) continue;
    const double* grad = values.data() + (b - range.begin) * dim;
    if (hogwild) {
      HogwildPush(table, s, b, e - b, grad);
      continue;
    }
    if (spec.read_my_writes) {
      for (Key k = b; k < e; ++k) {
        AddToCache(table, k, grad + (k - b) * dim);
        AddUnconfirmed(table, k, grad + (k - b) * dim);
      }
    }
    TESSERA_RETURN_IF_ERROR(SendPushes(table, s));  // keep this worker's pushes in order
    msg::PsPush m;
    m.table = table;
    m.range = {b, e};
    m.values = Eigen::Map<const Eigen::VectorXd>(grad, static_cast<Eigen::Index>((e - b) * dim));
    TESSERA_RETURN_IF_ERROR(SendPush(s, std::move(m)));
  }
  return Status::Ok();
}

PullFuture PsClient::Pull(TableId table, std::span<const Key> keys) {
  return StartPull(table, keys, nullptr);
}

PullFuture PsClient::PullRange(TableId table, KeyRange range) {
  return StartPull(table, {}, &range);
}

PullFuture PsClient::StartPull(TableId table, std::span<const Key> keys, const KeyRange* range) {
  PullFuture f;
  f.client_ = this;
  f.state_ = std::make_shared<PullFuture::State>();
  PullFuture::State& st = *f.state_;
  st.table = table;
  if (range) {
    st.status = CheckRange(*ps_, table, *range);
  } else if (table >= ps_->num_tables()) {
    st.status = InvalidArgument("no table " + std::to_string(table));
  }
  if (!st.status.ok()) return f;
  const TableSpec& spec = ps_->specs_[table];
  const int dim = st.dim = spec.dim;
  const std::size_t count = range ? range->size() : keys.size();
  if (replicas_[table]) {
    if (range) {
      st.range = *range;
    } else {
      st.keys.assign(keys.begin(), keys.end());
    }
  }
  st.values.resize(static_cast<Eigen::Index>(count * dim));
  stats_.pulled_values += count * dim;
  auto key_at = [&](std::size_t i) { return range ? range->begin + i : keys[i]; };

  if (spec.consistency.model == ConsistencyModel::kHogwild) {
    for (std::size_t i = 0; i < count; ++i) {
      auto shard = ps_->ShardOf(table, key_at(i));
      if (!shard.ok()) {
        st.status = shard.status();
        return f;
      }
      auto& t = ps_->shards_[*shard]->tables[table];
      double* value = t.values.data() + (key_at(i) - t.range.begin) * dim;
      for (int d = 0; d < dim; ++d) {
        st.values[i * dim + d] = std::atomic_ref<double>(value[d]).load(std::memory_order_relaxed);
      }
    }
    return f;
  }

  Cache* cache = caches_[table].get();
  const bool eager = spec.consistency.model == ConsistencyModel::kEssp;
  st.required = exact_reads_ ? clock_ : spec.consistency.RequiredClock(clock_);
  st.counted = !exact_reads_;
  st.reader_clock = clock_;
  // Per shard: the keys to request and their positions in the answer.
  std::vector<std::vector<Key>> ask(ps_->servers_);
  std::vector<std::vector<std::size_t>> ask_pos(ps_->servers_);
  std::vector<KeyRange> ask_range(ps_->servers_);
  const auto& ranges = ps_->ranges_[table];

  if (range) {
    for (int s = 0; s < ps_->servers_; ++s) {
      const Key b = std::max(range->begin, ranges[s].begin);
      const Key e = std::min(range->end, ranges[s].end);
      if (b >= e) continue;
      bool fresh = cache != nullptr, present = cache != nullptr;
      std::uint64_t oldest = PullFuture::State::kNone;  // of the cached rows, while fresh
      for (Key k = b; k < e && (fresh || present); ++k) {
        if (fresh && !cache->Fresh(k, s, st.required)) fresh = false;
        if (fresh) oldest = std::min(oldest, cache->ServedAt(k, s));
        if (present && !cache->Has(k)) present = false;
      }
      const std::size_t pos = (b - range->begin) * dim;
      if (fresh) {
        std::memcpy(st.values.data() + pos, cache->values.data() + b * dim,
                    (e - b) * dim * sizeof(double));
        stats_.cache_hits += e - b;
        st.served = std::min(st.served, oldest);
      } else if (eager && present && cache->dense) {
        st.awaiting.push_back({b, e - b, pos});
      } else {
        ask_range[s] = {b, e};
      }
    }
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      auto shard = ps_->ShardOf(table, keys[i]);
      if (!shard.ok()) {
        st.status = shard.status();
        return f;
      }
      if (cache) {
        if (const double* row = cache->Fresh(keys[i], *shard, st.required)) {
          std::memcpy(st.values.data() + i * dim, row, dim * sizeof(double));
          ++stats_.cache_hits;
          st.served = std::min(st.served, cache->ServedAt(keys[i], *shard));
          continue;
        }
        if (eager && cache->Has(keys[i])) {
          st.awaiting.push_back({keys[i], 1, i * dim});
          continue;
        }
      }
      ask[*shard].push_back(keys[i]);
      ask_pos[*shard].push_back(i * dim);
    }
  }

  for (int s = 0; s < ps_->servers_; ++s) {
    if (ask[s].empty() && ask_range[s].size() == 0) continue;
    // A request must be answered after this worker's earlier pushes to the shard.
    st.status = SendPushes(table, s);
    if (!st.status.ok()) return f;
    msg::PsPull m;
    m.table = table;
    m.request = next_request_++;
    m.clock = st.required;
    PendingReply pending;
    pending.state = f.state_;
    if (!ask[s].empty()) {
      m.keys = std::move(ask[s]);
      pending.positions = std::move(ask_pos[s]);
    } else {
      m.range = ask_range[s];
      pending.offset = (ask_range[s].begin - range->begin) * dim;
    }
    pending_.emplace(m.request, std::move(pending));
    ++st.outstanding;
    ++stats_.pull_requests;
    st.status = SendCounted(ps_->ShardRank(s), Message(rank_, std::move(m)));
    if (!st.status.ok()) return f;
  }
  return f;
}

void PsClient::StoreInCache(const TableKeys& at, const Eigen::VectorXd& values, std::uint64_t clock,
                            int shard, std::uint64_t applied) {
  Cache* cache = caches_[at.table].get();
  if (!cache) return;
  const int dim = cache->dim;
  MyWrites* mine = my_writes_[at.table].get();
  if (mine) mine->Confirm(shard, applied);
  for (std::size_t i = 0; i < at.count(); ++i) {
    const Key k = at.key(i);
    if (!cache->Store(k, values.data() + i * dim, clock) || !mine) continue;
    // The served value plus this worker's pushes the shard had not applied yet.
    const std::size_t row = mine->rows.Find(k);
    if (row == KeyIndex::kAbsent) continue;
    AddToCache(at.table, k, mine->sum.data() + row * dim);
  }
}

Status PsClient::Handle(Message& received) {
  if (const auto* refresh = received.get<msg::PsRefresh>()) {  // ESSP: for the cache alone
    TESSERA_RETURN_IF_ERROR(ps_->CheckValues(received.from, *refresh, refresh->values));
    const int shard = received.from - ps_->ShardRank(0);
    StoreInCache(*refresh, refresh->values, refresh->clock, shard, refresh->applied);
    if (Cache* cache = caches_[refresh->table].get()) {
      cache->refreshed[shard] = std::max(cache->refreshed[shard], refresh->clock);
    }
    ++stats_.eager_refreshes;
    stats_.refreshed_values += static_cast<std::uint64_t>(refresh->values.size());
    return Status::Ok();
  }
  const auto* pong = received.get<msg::PsPong>();
  auto* values = received.get<msg::PsValues>();
  if (!pong && !values) {
    control_.push_back(std::move(received));
    return Status::Ok();
  }
  const Rank from = received.from;
  if (from < ps_->ShardRank(0) || from >= ps_->ShardRank(ps_->servers_)) {
    return InvalidArgument("worker " + std::to_string(worker_) + ": rank " + std::to_string(from) +
                           " sent a " + KindName(received.kind()) + ", but it is no server shard");
  }
  const std::uint64_t request = pong ? pong->request : values->request;
  const auto it = pending_.find(request);
  if (it == pending_.end() || it->second.ping != (pong != nullptr)) {
    return InvalidArgument("worker " + std::to_string(worker_) + ": rank " + std::to_string(from) +
                           " answered request " + std::to_string(request) +
                           ", which is no pending " + (pong ? "ping" : "pull"));
  }
  PendingReply& p = it->second;
  if (pong) {
    --p.state->outstanding;
    pending_.erase(it);
    return Status::Ok();
  }
  msg::PsValues& m = *values;
  TESSERA_RETURN_IF_ERROR(ps_->CheckValues(from, m, m.values));
  const auto n = static_cast<std::size_t>(m.values.size());
  const auto total = static_cast<std::size_t>(p.state->values.size());
  const std::size_t expected = p.positions.empty()
                                   ? total - std::min(p.offset, total)
                                   : p.positions.size() * static_cast<std::size_t>(p.state->dim);
  if (p.positions.empty() ? n > expected : n != expected) {
    return InvalidArgument("worker " + std::to_string(worker_) + ": rank " + std::to_string(from) +
                           " answered request " + std::to_string(m.request) + " with " +
                           std::to_string(n) + " values where " + std::to_string(expected) +
                           " were asked");
  }
  StoreInCache(m, m.values, m.clock, from - ps_->ShardRank(0), m.applied);
  PullFuture::State& st = *p.state;
  st.served = std::min(st.served, static_cast<std::uint64_t>(m.clock));
  const int dim = st.dim;
  if (!p.positions.empty()) {
    for (std::size_t i = 0; i < p.positions.size(); ++i) {
      std::memcpy(st.values.data() + p.positions[i], m.values.data() + i * dim,
                  dim * sizeof(double));
    }
  } else if (p.offset == 0 && m.values.size() == st.values.size()) {
    st.values = std::move(m.values);  // one shard answered the whole range: no copy
  } else {
    std::memcpy(st.values.data() + p.offset, m.values.data(), m.values.size() * sizeof(double));
  }
  --st.outstanding;
  pending_.erase(it);
  return Status::Ok();
}

Status PsClient::Wait(PullFuture::State& st) {
  while (st.outstanding > 0) {
    TESSERA_ASSIGN_OR_RETURN(Message m, ReceiveCounted());
    TESSERA_RETURN_IF_ERROR(Handle(m));
  }
  Cache* cache = caches_[st.table].get();
  for (const auto& run : st.awaiting) {
    const int s = ShardIn(ps_->ranges_[st.table], run.first);  // a run lies in one shard
    for (std::size_t i = 0; i < run.count; ++i) {
      const double* row = nullptr;
      while (!(row = cache->Fresh(run.first + i, s, st.required))) {
        TESSERA_ASSIGN_OR_RETURN(Message m, ReceiveCounted());
        TESSERA_RETURN_IF_ERROR(Handle(m));
      }
      std::memcpy(st.values.data() + run.pos + i * st.dim, row, st.dim * sizeof(double));
      st.served = std::min(st.served, cache->ServedAt(run.first + i, s));
    }
  }
  if (st.counted && st.served != PullFuture::State::kNone) {
    const std::uint64_t stale = st.reader_clock > st.served ? st.reader_clock - st.served : 0;
    read_staleness_[st.table] = std::max(read_staleness_[st.table], stale);
    ++stats_.staleness[st.table * kStalenessBuckets +
                       std::min<std::uint64_t>(stale, kStalenessBuckets - 1)];
  }
  return Status::Ok();
}

std::uint64_t PullFuture::served_clock() const {
  TESSERA_CHECK(state_ && state_->taken) << "PullFuture::served_clock() before Get()";
  return state_->served == State::kNone ? 0 : state_->served;
}

StatusOr<Eigen::VectorXd> PullFuture::Get() {
  TESSERA_CHECK(state_ && !state_->taken) << "PullFuture::Get() called twice or on no pull";
  state_->taken = true;
  TESSERA_RETURN_IF_ERROR(state_->status);
  TESSERA_RETURN_IF_ERROR(client_->Wait(*state_));
  if (client_->replicas_[state_->table]) client_->OverlayReplica(*state_);
  return std::move(state_->values);
}

// Keys this worker already holds in its replica read as the replica; the others join it.
void PsClient::OverlayReplica(PullFuture::State& st) {
  Replica& r = *replicas_[st.table];
  const int dim = r.dim;
  const bool range = st.keys.empty();
  const std::size_t count = range ? st.range.size() : st.keys.size();
  for (std::size_t i = 0; i < count; ++i) {
    const Key k = range ? st.range.begin + i : st.keys[i];
    double* v = st.values.data() + i * dim;
    std::size_t row = r.rows.Find(k);
    if (row != KeyIndex::kAbsent) {
      std::memcpy(v, r.local.data() + row * dim, dim * sizeof(double));
      continue;
    }
    bool added = false;
    row = r.rows.Insert(k, added);
    r.base.insert(r.base.end(), v, v + dim);
    r.local.insert(r.local.end(), v, v + dim);
  }
}

Status PsClient::PushToReplica(TableId table, std::span<const Key> keys,
                               std::span<const double> values) {
  Replica& r = *replicas_[table];
  const TableSpec& spec = ps_->specs_[table];
  const int dim = r.dim;
  std::vector<Key> missing;
  for (Key k : keys) {
    if (k >= spec.num_keys) return ps_->ShardOf(table, k).status();
    if (r.rows.Find(k) == KeyIndex::kAbsent) missing.push_back(k);
  }
  if (!missing.empty()) {  // an update needs the row as read first
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    TESSERA_RETURN_IF_ERROR(Pull(table, missing).Get().status());
  }
  stats_.pushed_values += values.size();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::size_t row = r.rows.Find(keys[i]);
    spec.updater->Update(keys[i], 1, dim, r.local.data() + row * dim, values.data() + i * dim,
                         r.State(keys[i]));
  }
  return Status::Ok();
}

// Sends (replica − as read) / P for every row this worker read since its last clock, as raw
// adds, and forgets the replica: the next read sees the average.
Status PsClient::SendAveragedModel(TableId table) {
  Replica& r = *replicas_[table];
  if (r.rows.size() == 0) return Status::Ok();
  const int dim = r.dim;
  const double scale = 1.0 / ps_->workers_;
  std::vector<std::vector<Key>> keys(ps_->servers_);
  std::vector<std::vector<double>> deltas(ps_->servers_);
  const auto& ranges = ps_->ranges_[table];
  std::vector<std::pair<Key, std::size_t>> rows;
  r.rows.ForEach([&rows](Key k, std::size_t row) { rows.emplace_back(k, row); });
  std::sort(rows.begin(), rows.end());
  for (const auto& [k, row] : rows) {
    const int s = ShardIn(ranges, k);
    keys[s].push_back(k);
    for (int d = 0; d < dim; ++d) {
      deltas[s].push_back((r.local[row * dim + d] - r.base[row * dim + d]) * scale);
    }
  }
  for (int s = 0; s < ps_->servers_; ++s) {
    if (keys[s].empty()) continue;
    TESSERA_RETURN_IF_ERROR(SendPushes(table, s));
    msg::PsPush m;
    m.table = table;
    m.raw_add = true;
    m.keys = std::move(keys[s]);
    m.values = Eigen::Map<const Eigen::VectorXd>(deltas[s].data(),
                                                 static_cast<Eigen::Index>(deltas[s].size()));
    TESSERA_RETURN_IF_ERROR(SendPush(s, std::move(m)));
  }
  r.rows = KeyIndex();
  r.base.clear();
  r.local.clear();
  return Status::Ok();
}

StatusOr<Message> PsClient::ReceiveControl() {
  while (control_.empty()) {
    TESSERA_ASSIGN_OR_RETURN(Message m, ReceiveCounted());
    TESSERA_RETURN_IF_ERROR(Handle(m));
  }
  Message m = std::move(control_.front());
  control_.erase(control_.begin());
  return m;
}

}  // namespace tessera
