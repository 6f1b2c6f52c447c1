#include "tessera/core/parameter_server.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <unordered_set>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/key_index.h"

namespace tessera {

// ---------------------------------------------------------------------------------------------
// Table specs

bool SparseRows::WellFormed(std::size_t n, std::uint64_t dim) const {
  bool fits =
      rows() == n && ptr[0] == 0 && ptr.back() == index.size() && index.size() == value.size();
  for (std::size_t i = 0; fits && i < n; ++i) {
    fits = ptr[i] <= ptr[i + 1] && ptr[i + 1] <= index.size();
    for (std::uint64_t j = ptr[i]; fits && j < ptr[i + 1]; ++j) {
      fits = index[j] < dim && (j == ptr[i] || index[j - 1] < index[j]);
    }
  }
  return fits;
}

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
  if (initial_rows.rows() != 0 && storage != TableStorage::kSparseElements) {
    return InvalidArgument(t + "initial_rows need kSparseElements storage");
  }
  if (storage == TableStorage::kSparseElements) {
    const ConsistencyPolicy& policy = consistency.policy();
    if (!updater->is_add() || initial != 0 || model_averaging || sum_per_clock || read_my_writes ||
        (consistency.cached() && cache_reads) || communication.significant > 0 ||
        policy.SumsPerClock(*this) || policy.refreshes() || policy.bandwidth_managed() ||
        policy.shared_memory()) {
      return InvalidArgument(t +
                             "kSparseElements storage needs the 'add' updater, initial 0, "
                             "workers that do not cache their reads (cache_reads false), "
                             "consistency bsp, ssp:S, sparsessp:S or asp, and no model "
                             "averaging, sum_per_clock or 'significant' filter");
    }
    if (num_keys > UINT32_MAX / static_cast<std::uint64_t>(dim)) {
      return InvalidArgument(t + "a kSparseElements table holds at most 2^32 elements");
    }
    if (initial_rows.rows() != 0) {
      if (!initial_rows.WellFormed(num_keys, static_cast<std::uint64_t>(dim))) {
        return InvalidArgument(t +
                               "initial_rows need num_keys rows of ascending element "
                               "indexes below dim");
      }
    }
  }
  if (!cache_reads && (read_my_writes || consistency.policy().refreshes() ||
                       consistency.policy().bandwidth_managed() || communication.significant > 0)) {
    return InvalidArgument(t +
                           "workers that do not cache their reads (cache_reads false) cannot "
                           "read their own writes, take ESSP's refreshes, manage bandwidth or "
                           "filter insignificant changes");
  }
  if (read_my_writes && (!updater->is_add() || !consistency.cached() || model_averaging)) {
    return InvalidArgument(t +
                           "read_my_writes needs the 'add' updater, consistency bsp, ssp:S or "
                           "essp:S, and no model averaging");
  }
  if (communication.significant > 0 &&
      (!consistency.cached() || model_averaging || consistency.policy().bandwidth_managed())) {
    return InvalidArgument(t +
                           "communication 'significant' compares a change with the key as "
                           "the worker read it: it needs a model whose workers cache their "
                           "reads (bsp, sbp:B, ssp:S, essp:S, sparsessp:S), and no model "
                           "averaging");
  }
  if (consistency.policy().shared_memory()) {
    if (sum_per_clock) {
      return InvalidArgument(t +
                             "sum_per_clock needs shards to sum in; hogwild tables are "
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
  std::uint64_t staleness = 0;           // the most of the pushes summed (msg::PsPush::staleness)
  std::vector<double> dense;             // range.size() * dim, for dense tables
  std::vector<std::uint8_t> touched;     // per key of the range
  std::size_t low = SIZE_MAX, high = 0;  // dense: the touched keys' offsets lie in [low, high)
  KeyIndex sparse_rows;                  // sparse tables: key -> row of `sparse`
  std::vector<double> sparse;
};

// Zeroed dense clock sums a table keeps for reuse (a clock's sums are applied before a clock
// S + 1 later opens, so S + 2 are in use at most).
constexpr std::size_t kSpareSums = 4;

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
    // kSparseElements: per key of the range, one array. Sparse: its nonzeros, each as
    // (element << 32 | the value as a float's bits), elements ascending, at most dim / 4 of them
    // (8 bytes a nonzero: a count table's values are integers, which floats hold exactly up to
    // 2^24). Dense: all `dim` values as doubles' bits. A row turns dense, for good, when a
    // (dim / 4 + 1)-th element becomes nonzero or a value is one a float does not hold exactly,
    // so every value is kept exactly as pushed; a row is dense exactly when it holds dim cells.
    struct ElementRow {
      std::vector<std::uint64_t> cells;
      bool dense(std::size_t dim) const { return cells.size() == dim; }
    };
    std::vector<ElementRow> elements;
    // per_clock: pushes summed by (clock they belong to, raw add), applied in that order.
    std::map<std::pair<std::uint64_t, bool>, ClockSums> sums;
    // Dense sums of applied clocks, zeroed, for the next clocks: a clock that touches a block
    // of keys costs that block, not an allocation and a scan of the whole range.
    std::vector<ClockSums> spare_sums;
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
  // [worker][table]: the key lists each worker has sent, for tables that cache them.
  std::vector<std::vector<KeyListCache>> key_lists;
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

  // kSparseElements: element d of `row` += v (Table::ElementRow says how a row is held).
  static double CellValue(std::uint64_t cell) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(cell));
  }
  static void AddElement(Table& t, Table::ElementRow& row, std::uint32_t d, double v) {
    const auto dim = static_cast<std::size_t>(t.dim);
    std::vector<std::uint64_t>& cells = row.cells;
    if (row.dense(dim)) {
      cells[d] = std::bit_cast<std::uint64_t>(std::bit_cast<double>(cells[d]) + v);
      return;
    }
    const auto at =
        std::lower_bound(cells.begin(), cells.end(), d,
                         [](std::uint64_t c, std::uint32_t e) { return (c >> 32) < e; });
    const bool found = at != cells.end() && (*at >> 32) == d;
    const double x = found ? CellValue(*at) + v : v;
    if (x == 0) {
      if (found) cells.erase(at);
      return;
    }
    const auto f = static_cast<float>(x);
    const std::size_t nonzero = cells.size() + (found ? 0 : 1);
    if (static_cast<double>(f) == x && 4 * nonzero <= dim) {
      const std::uint64_t cell = std::uint64_t{d} << 32 | std::bit_cast<std::uint32_t>(f);
      if (found) {
        *at = cell;
        return;
      }
      const auto j = at - cells.begin();
      if (cells.size() == cells.capacity()) {  // grow by a quarter, not double
        cells.reserve(std::min(dim / 4, cells.size() + cells.size() / 4 + 2));
      }
      cells.insert(cells.begin() + j, cell);
      return;
    }
    std::vector<std::uint64_t> full(dim, 0);  // (0 is the bits of 0.0)
    for (std::uint64_t c : cells) full[c >> 32] = std::bit_cast<std::uint64_t>(CellValue(c));
    full[d] = std::bit_cast<std::uint64_t>(x);
    cells = std::move(full);
  }

  // kSparseElements: adds the nonzero `values` at positions `at` (key i's element d at
  // i * dim + d, ascending) of `count` keys (explicit, or from `first`).
  static void ApplyElements(Table& t, const Key* keys, Key first, const Eigen::VectorXd& values,
                            const std::vector<std::uint32_t>& at) {
    const auto dim = static_cast<std::uint32_t>(t.dim);
    for (std::size_t e = 0; e < at.size(); ++e) {
      const std::uint32_t i = at[e] / dim;
      const Key k = keys ? keys[i] : first + i;
      AddElement(t, t.elements[k - t.range.begin], at[e] % dim,
                 values[static_cast<Eigen::Index>(e)]);
    }
  }

  // kSparseElements: the nonzero values of `m`'s keys (or range) into `values` and `p`, as a
  // sparse packing of the key-major values.
  static void ReadElements(const Table& t, const TableKeys& m, Eigen::VectorXd& values,
                           PackedValues& p) {
    const bool explicit_keys = !m.keys.empty();
    const std::size_t count = explicit_keys ? m.keys.size() : m.range.size();
    auto row_of = [&](std::size_t i) -> const Table::ElementRow& {
      return t.elements[(explicit_keys ? m.keys[i] : m.range.begin + i) - t.range.begin];
    };
    const auto dim = static_cast<std::size_t>(t.dim);
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const Table::ElementRow& r = row_of(i);
      if (!r.dense(dim)) {
        nonzero += r.cells.size();
        continue;
      }
      for (std::uint64_t c : r.cells) nonzero += std::bit_cast<double>(c) != 0;
    }
    p = PackedValues();
    p.sparse = true;
    p.size = count * static_cast<std::size_t>(t.dim);
    p.nonzero.resize(nonzero);
    values.resize(static_cast<Eigen::Index>(nonzero));
    std::size_t out = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const Table::ElementRow& r = row_of(i);
      const auto base = static_cast<std::uint32_t>(i * dim);
      if (!r.dense(dim)) {
        for (std::uint64_t c : r.cells) {
          p.nonzero[out] = base + static_cast<std::uint32_t>(c >> 32);
          values[static_cast<Eigen::Index>(out++)] = CellValue(c);
        }
        continue;
      }
      for (std::size_t d = 0; d < dim; ++d) {
        const double v = std::bit_cast<double>(r.cells[d]);
        if (v == 0) continue;
        p.nonzero[out] = base + static_cast<std::uint32_t>(d);
        values[static_cast<Eigen::Index>(out++)] = v;
      }
    }
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
    if (t.spec->consistency.policy().refreshes()) MarkDirty(t, keys, first, count);
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
      if (s.dense.empty() && !t.spare_sums.empty()) {
        s = std::move(t.spare_sums.back());
        t.spare_sums.pop_back();
        s.staleness = staleness;
      }
      if (s.dense.empty()) {
        s.dense.assign(t.range.size() * dim, 0.0);
        s.touched.assign(t.range.size(), 0);
      }
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t off = (keys ? keys[i] : first + i) - t.range.begin;
        s.touched[off] = 1;
        s.low = std::min(s.low, off);
        s.high = std::max(s.high, off + 1);
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

  // Applies a clock's sums, then keeps dense ones, zeroed, for a later clock.
  void ApplySums(Table& t, ClockSums& s, bool raw) {
    if (t.spec->storage == TableStorage::kDense) {
      std::size_t i = s.low;
      const std::size_t n = s.high;
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
      if (s.low < s.high) {
        std::fill(s.dense.begin() + static_cast<std::ptrdiff_t>(s.low * t.dim),
                  s.dense.begin() + static_cast<std::ptrdiff_t>(s.high * t.dim), 0.0);
        std::fill(s.touched.begin() + static_cast<std::ptrdiff_t>(s.low),
                  s.touched.begin() + static_cast<std::ptrdiff_t>(s.high), 0);
      }
      s.low = SIZE_MAX;
      s.high = 0;
      if (!s.dense.empty() && t.spare_sums.size() < kSpareSums) {
        t.spare_sums.push_back(std::move(s));
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
  // sparsessp (an ordinary read, not an exact one) no worker still short of that clock has
  // pushed any of its keys.
  bool Servable(const msg::PsPull& pull) const {
    const Table& t = tables[pull.table];
    if (pull.clock <= t.completed) return true;
    if (pull.exact || !t.spec->consistency.policy().serves_disjoint_reads()) return false;
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
    if (t.spec->consistency.policy().serves_disjoint_reads()) {
      MarkWritten(t, w, keys, m.range.begin, count);
    }
    if (t.spec->storage == TableStorage::kSparseElements) {  // unpacked sparse by Check
      ApplyElements(t, keys, m.range.begin, m.values, m.packed.nonzero);
    } else if (t.per_clock) {
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
      const double* v = t.values.data();
      const Key b = t.range.begin;
      if (dim == 1) {  // a gather, without a call per key
        for (std::size_t i = 0; i < count; ++i) out[i] = v[m.keys[i] - b];
        return;
      }
      for (std::size_t i = 0; i < count; ++i) {
        std::memcpy(out.data() + i * dim, v + (m.keys[i] - b) * dim, dim * sizeof(double));
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
    if (t.spec->storage == TableStorage::kSparseElements) {
      ReadElements(t, m, reply.values, reply.packed);
      PackSparseValues(t.spec->communication, reply.values, reply.packed);
      (void)ps->transport_->Send(from, Message(rank, std::move(reply)));
      return;
    }
    Read(t, m, reply.values);
    if (t.spec->consistency.policy().refreshes() && from >= ps->WorkerRank(0)) {
      Subscribe(t, from - ps->WorkerRank(0), m);  // not the driver's checkpoint pulls
    }
    PackValues(t.spec->communication, reply.values, reply.packed);
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
    PackValues(t.spec->communication, m.values, m.packed);
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

  void HandleClock(Rank from, const msg::PsClock& m) {
    const int w = from - ps->WorkerRank(0);
    worker_clock[w] = std::max(worker_clock[w], m.clock);
    const std::uint64_t min_clock = *std::min_element(worker_clock.begin(), worker_clock.end());
    const bool min_advanced = min_clock > clock;
    bool advanced = min_advanced;
    for (Table& t : tables) {
      const std::uint64_t completed =
          std::max(t.completed, t.spec->consistency.policy().CompletedClock(worker_clock));
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
      if (!tables[id].spec->consistency.policy().refreshes()) continue;
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
      if (t.spec->storage == TableStorage::kSparseElements) {
        m.range = {t.range.begin, t.range.begin};  // left out of snapshots
      } else if (t.spec->storage == TableStorage::kDense) {
        m.range = t.range;
      } else {
        t.rows.ForEach([&](Key k, std::size_t) { m.keys.push_back(k); });
        std::sort(m.keys.begin(), m.keys.end());
      }
      Read(t, m, m.values);
      (void)ps->transport_->Send(0, Message(rank, std::move(m)));
    }
  }

  // The keys of a worker's cached key list back in its pull or push; an error for a list the
  // shard does not hold or a table that does not cache them. Check follows.
  Status ExpandKeys(Message& m) {
    TableKeys* at = m.get<msg::PsPull>();
    if (!at) at = m.get<msg::PsPush>();
    if (!at) return Status::Ok();
    const int w = m.from - ps->WorkerRank(0);
    const bool cached = w >= 0 && w < ps->workers_ && at->table < tables.size() &&
                        tables[at->table].spec->communication.key_lists;
    if (!cached) {
      if (at->key_list == 0) return Status::Ok();
      return InvalidArgument("shard " + std::to_string(index) + ": a " + KindName(m.kind()) +
                             " message from rank " + std::to_string(m.from) +
                             " names a cached key list, which its table does not keep");
    }
    if (Status bad = key_lists[w][at->table].Expand(*at); !bad.ok()) {
      return InvalidArgument("shard " + std::to_string(index) + ": a " + KindName(m.kind()) +
                             " message from rank " + std::to_string(m.from) + ": " + bad.message());
    }
    return Status::Ok();
  }

  // Ok when `m` is a message a shard takes from its sender, naming keys of this shard only;
  // otherwise what is wrong with it. Every field a peer controls is checked here, before any
  // indexes an array; a push's packed values are unpacked once its keys are known to fit.
  Status Check(Message& m) const {
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
      Key lowest = at->keys[0], highest = at->keys[0];
      for (Key k : at->keys) {  // vectorizes
        lowest = std::min(lowest, k);
        highest = std::max(highest, k);
      }
      if (outside(lowest) || outside(highest)) {  // name the first key outside
        const Key k = *std::find_if(at->keys.begin(), at->keys.end(), outside);
        return InvalidArgument(what + ": key " + std::to_string(k) + " is not in the shard's [" +
                               std::to_string(t.range.begin) + ", " + std::to_string(t.range.end) +
                               ") of table " + std::to_string(at->table));
      }
    }
    const std::size_t count = at->count();
    if (!push) return Status::Ok();
    auto* packed = &m.get<msg::PsPush>()->packed;
    auto& values = m.get<msg::PsPush>()->values;
    if (t.spec->storage == TableStorage::kSparseElements) {
      if (Status bad = UnpackSparseValues(values, *packed, count * static_cast<std::size_t>(t.dim));
          !bad.ok()) {
        return InvalidArgument(what + ": " + bad.message());
      }
      return Status::Ok();
    }
    if (Status bad = UnpackValues(values, *packed, count * static_cast<std::size_t>(t.dim));
        !bad.ok()) {
      return InvalidArgument(what + ": " + bad.message());
    }
    if (static_cast<std::size_t>(values.size()) != count * static_cast<std::size_t>(t.dim)) {
      return InvalidArgument(what + ": " + std::to_string(values.size()) + " values for " +
                             std::to_string(count) + " keys of dimension " + std::to_string(t.dim));
    }
    return Status::Ok();
  }

  void Run() {
    for (;;) {
      auto received = ps->transport_->Receive(rank);
      if (!received.ok()) return;
      Message& m = *received;
      Status bad = ExpandKeys(m);
      if (bad.ok()) bad = Check(m);
      if (!bad.ok()) {
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
    TESSERA_RETURN_IF_ERROR(spec.consistency.policy().Check(spec, workers));
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
    std::vector<KeyListCache> per_table;
    for (const TableSpec& spec : ps->specs_) {
      per_table.emplace_back(spec.communication.key_cache_keys);
    }
    shard->key_lists.assign(workers, per_table);
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
      t.per_clock = spec.consistency.policy().SumsPerClock(spec) || spec.sum_per_clock;
      if (spec.storage == TableStorage::kDense && here) {
        t.values.assign(t.range.size() * t.dim, spec.initial);
        if (spec.initial_values.size() != 0) {
          std::memcpy(t.values.data(), spec.initial_values.data() + t.range.begin * t.dim,
                      t.values.size() * sizeof(double));
        }
        t.state.assign(t.range.size() * t.dim * t.spe, 0.0);
      }
      if (spec.storage == TableStorage::kSparseElements && here) {
        t.elements.resize(t.range.size());
        const SparseRows& init = spec.initial_rows;
        for (Key k = t.range.begin; init.rows() != 0 && k < t.range.end; ++k) {
          Shard::Table::ElementRow& row = t.elements[k - t.range.begin];
          for (std::uint64_t j = init.ptr[k]; j < init.ptr[k + 1]; ++j) {
            Shard::AddElement(t, row, init.index[j], init.value[j]);
          }
        }
      }
      if (spec.consistency.policy().refreshes()) {
        t.subscribed.resize(workers);
        t.subscribed_count.assign(workers, 0);
        t.subscribed_sparse.resize(workers);
        if (spec.storage == TableStorage::kDense) t.dirty.assign(t.range.size(), 0);
      }
      if (spec.consistency.policy().serves_disjoint_reads()) {
        t.written.resize(workers);
        t.written_sparse.resize(workers);
      }
      shard->tables.push_back(std::move(t));
    }
    ps->shards_.push_back(std::move(shard));
  }
  // The shards hold their copies: the whole table's initial values are not needed again.
  for (TableSpec& spec : ps->specs_) {
    spec.initial_values = Eigen::VectorXd();
    spec.initial_rows = SparseRows();
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

ParameterServer::SharedRows ParameterServer::HogwildRows(TableId table, int shard, Key first) {
  Shard::Table& t = shards_[shard]->tables[table];
  const std::size_t off = (first - t.range.begin) * t.dim;
  return {t.values.data() + off, t.state.data() + off * t.spe, t.spe};
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
  if (spec.storage == TableStorage::kSparseElements) return Eigen::VectorXd();
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

Status ParameterServer::CheckValues(Rank from, const TableKeys& at, const Eigen::VectorXd& values,
                                    const PackedValues* packed) const {
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
  const bool sparse = packed && packed->sparse;
  const bool compressed = packed && packed->codec != 0;
  const std::size_t n = sparse       ? packed->size
                        : compressed ? packed->count
                                     : static_cast<std::size_t>(values.size());
  if (!inside || n != count * spec.dim) {
    return InvalidArgument("rank " + std::to_string(from) + " sent " + std::to_string(n) +
                           " values of table '" + spec.name + "' for " + std::to_string(count) +
                           " keys, not all of them in it");
  }
  return Status::Ok();
}

Status ParameterServer::UnpackFrom(Rank from, const TableKeys& at, Eigen::VectorXd& values,
                                   PackedValues& packed, bool keep_sparse) const {
  TESSERA_RETURN_IF_ERROR(CheckValues(from, at, values, &packed));
  const std::size_t expected = at.count() * static_cast<std::size_t>(specs_[at.table].dim);
  if (Status bad = keep_sparse ? UnpackSparseValues(values, packed, expected)
                               : UnpackValues(values, packed, expected);
      !bad.ok()) {
    return InvalidArgument("rank " + std::to_string(from) + " sent values of table '" +
                           specs_[at.table].name + "': " + bad.message());
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

}  // namespace tessera
