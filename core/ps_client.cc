// A worker's side of the parameter server: pulls (with the cache, ESSP refreshes, read my
// writes and model averaging), buffered pushes with flow control, clocks, and hogwild's
// shared-memory access (parameter_server.h).
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <unordered_set>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/key_index.h"
#include "tessera/core/parameter_server.h"

namespace tessera {

namespace {
// A shard's buffered pushes are sent once they hold this many values.
constexpr std::size_t kFlushValues = 16384;
// Push bytes a worker sends a shard between two pings (see SendPush).
constexpr std::uint64_t kWindowBytes = 32 << 20;
// Values a pull asks one shard for in one request between processes (a push message's size).
constexpr std::size_t kPieceValues = kFlushValues;
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
  // The cached row of `k` however old, or null.
  const double* Row(Key k) const {
    if (!Has(k)) return nullptr;
    return values.data() + (dense ? k : rows.Find(k)) * dim;
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

// A bandwidth-managed table's pushes not sent yet, summed per key.
struct PsClient::Aggregate {
  int dim = 1;
  KeyIndex rows;  // key -> row of keys / sum
  std::vector<Key> keys;
  std::vector<double> sum;
  std::chrono::steady_clock::time_point last_send;
  // Adds v to k's sum; returns k's row.
  std::size_t Add(Key k, const double* v) {
    bool added = false;
    const std::size_t row = rows.Insert(k, added);
    if (added) {
      keys.push_back(k);
      sum.resize(keys.size() * dim, 0.0);
    }
    for (int d = 0; d < dim; ++d) sum[row * dim + d] += v[d];
    return row;
  }
  // Keeps only the rows not `sent`.
  void Drop(const std::vector<std::uint8_t>& sent) {
    KeyIndex kept_rows;
    std::vector<Key> kept_keys;
    std::vector<double> kept_sum;
    for (std::size_t r = 0; r < keys.size(); ++r) {
      if (sent[r]) continue;
      bool added = false;
      kept_rows.Insert(keys[r], added);
      kept_keys.push_back(keys[r]);
      kept_sum.insert(kept_sum.end(), sum.begin() + r * dim, sum.begin() + (r + 1) * dim);
    }
    rows = std::move(kept_rows);
    keys = std::move(kept_keys);
    sum = std::move(kept_sum);
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
  // kSparseElements tables: the answer's nonzeros, at positions of the key-major answer of
  // `count` keys (`values` stays empty); in order unless pieces arrived out of it.
  bool sparse = false;
  std::size_t count = 0;
  std::vector<std::uint64_t> at;
  std::vector<double> nonzero;
  bool in_order = true;
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
  std::vector<std::size_t> positions;  // position of each key's values in the answer, or
  std::size_t offset = 0;              // when empty: of the first key's, the rest following
  TableKeys asked;                     // what the answer holds values of
};

// The keys a pull asks one shard for, and where each one's values go in the answer. While they
// are consecutive keys of the caller's list (keys in one shard's range, none served from the
// cache) only their first index and count are kept.
struct PsClient::Asked {
  std::size_t first = 0, n = 0;  // the caller's keys [first, first + n), until `listed`
  bool listed = false;
  std::vector<Key> keys;               // once listed: every key
  std::vector<std::size_t> positions;  // and the position of its values in the answer
  std::size_t size() const { return listed ? keys.size() : n; }
  void Add(std::span<const Key> all, std::size_t i, int dim) {
    if (!listed) {
      if (n == 0) first = i;
      if (i == first + n) {
        ++n;
        return;
      }
      listed = true;
      keys.assign(all.begin() + first, all.begin() + first + n);
      positions.reserve(n + 1);
      for (std::size_t j = first; j < first + n; ++j) positions.push_back(j * dim);
    }
    keys.push_back(all[i]);
    positions.push_back(i * dim);
  }
  // Keys [from, from + count) of those asked, as one request's `keys` answered into `p`.
  void Piece(std::span<const Key> all, std::size_t from, std::size_t count, std::vector<Key>& out,
             PendingReply& p, int dim) {
    if (!listed) {
      out.assign(all.begin() + first + from, all.begin() + first + from + count);
      p.offset = (first + from) * static_cast<std::size_t>(dim);
    } else if (from == 0 && count == keys.size()) {
      out = std::move(keys);
      p.positions = std::move(positions);
    } else {
      out.assign(keys.begin() + from, keys.begin() + from + count);
      p.positions.assign(positions.begin() + from, positions.begin() + from + count);
    }
  }
};

PsClient::PsClient(ParameterServer* ps, int worker)
    : ps_(ps), worker_(worker), rank_(ps->WorkerRank(worker)) {
  windows_.resize(ps->servers_);
  outgoing_.resize(ps->specs_.size());
  for (const TableSpec& spec : ps->specs_) {
    key_lists_.emplace_back(ps->servers_, KeyListCache(spec.communication.key_cache_keys));
  }
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
    if (spec.consistency.cached() && spec.cache_reads) {
      auto cache = std::make_unique<Cache>();
      cache->dim = spec.dim;
      cache->dense = spec.storage == TableStorage::kDense;
      cache->num_keys = spec.num_keys;
      cache->refreshed.assign(ps->servers_, 0);
      caches_.push_back(std::move(cache));
    } else {
      caches_.push_back(nullptr);
    }
    if (spec.consistency.policy().bandwidth_managed()) {
      auto aggregate = std::make_unique<Aggregate>();
      aggregate->dim = spec.dim;
      aggregate->last_send = std::chrono::steady_clock::now();
      aggregates_.push_back(std::move(aggregate));
    } else {
      aggregates_.push_back(nullptr);
    }
    if (spec.communication.significant > 0) {
      auto held = std::make_unique<Aggregate>();
      held->dim = spec.dim;
      held_.push_back(std::move(held));
    } else {
      held_.push_back(nullptr);
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
  out.values.conservativeResize(static_cast<Eigen::Index>(out.used));  // shrinks in place
  m.values = std::move(out.values);
  out.keys.clear();
  out.values = Eigen::VectorXd();
  out.used = 0;
  return SendPush(shard, std::move(m));
}

// Flow control: a worker may run at most two windows of push bytes ahead of a shard. At the end
// of each window it sends a ping (PsPing) and, before the next one, waits for the
// previous ping's answer, which the shard sends only after applying every earlier push.
// Without it a fast worker queues gigabytes of messages and every new buffer page-faults.
Status PsClient::SendPush(int shard, msg::PsPush m, bool sparse) {
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
  const Communication& wire = ps_->specs_[m.table].communication;
  if (sparse) {
    PackSparseValues(wire, m.values, m.packed);
  } else {
    PackValues(wire, m.values, m.packed);
  }
  KeysAsRange(m);
  if (wire.key_lists) key_lists_[m.table][shard].Compress(m);
  Message out(rank_, std::move(m));
  push_bytes_ += out.PayloadBytes();
  TESSERA_RETURN_IF_ERROR(SendCounted(ps_->ShardRank(shard), std::move(out)));
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
    if (aggregates_[t]) TESSERA_RETURN_IF_ERROR(SendAggregated(t, true));
    for (int s = 0; s < ps_->servers_; ++s) TESSERA_RETURN_IF_ERROR(SendPushes(t, s));
  }
  return Status::Ok();
}

// Bösen's SSPAggr: once per interval, the rows whose summed pushes changed their cached value
// the most relative to it (a row never read first), as many as the budget holds. A row's
// message bytes are bounded by 8 per key and 8 per value (packing only shrinks them) plus a
// message's fixed fields per shard, so the payload sent never exceeds the budget.
Status PsClient::SendAggregated(TableId table, bool all) {
  Aggregate& a = *aggregates_[table];
  if (a.keys.empty()) return Status::Ok();
  const Communication& c = ps_->specs_[table].communication;
  const auto now = std::chrono::steady_clock::now();
  if (!all && std::chrono::duration<double>(now - a.last_send).count() < c.interval_seconds) {
    return Status::Ok();
  }
  const int dim = a.dim;
  const std::size_t n = a.keys.size();
  std::vector<std::uint8_t> chosen(n, all ? 1 : 0);
  if (!all) {
    a.last_send = now;
    const Cache* cache = caches_[table].get();
    std::vector<std::pair<double, std::size_t>> order(n);
    for (std::size_t r = 0; r < n; ++r) {
      double change = 0, base = 0;
      const double* v = cache ? cache->Row(a.keys[r]) : nullptr;
      for (int d = 0; d < dim; ++d) {
        change += std::abs(a.sum[r * dim + d]);
        if (v) base += std::abs(v[d]);
      }
      order[r] = {v && base > 0 ? change / base : std::numeric_limits<double>::infinity(), r};
    }
    std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first > y.first : x.second < y.second;  // ties: oldest first
    });
    constexpr std::uint64_t kMessageBytes = 64;  // kind, sender, table, range, flags, list hash
    const std::uint64_t row_bytes = 8 * (1 + static_cast<std::uint64_t>(dim));
    std::vector<std::uint8_t> opened(ps_->servers_, 0);
    std::uint64_t used = 0;
    const auto& ranges = ps_->ranges_[table];
    for (const auto& [priority, r] : order) {
      const int s = ShardIn(ranges, a.keys[r]);
      const std::uint64_t cost = row_bytes + (opened[s] ? 0 : kMessageBytes);
      if (used + cost > c.budget_bytes) continue;  // a row for an open shard may still fit
      used += cost;
      opened[s] = 1;
      chosen[r] = 1;
    }
  }
  std::vector<std::vector<std::pair<Key, std::size_t>>> by_shard(ps_->servers_);
  for (std::size_t r = 0; r < n; ++r) {
    if (chosen[r]) by_shard[ShardIn(ps_->ranges_[table], a.keys[r])].emplace_back(a.keys[r], r);
  }
  const std::uint64_t before = push_bytes_;
  for (int s = 0; s < ps_->servers_; ++s) {
    auto& rows = by_shard[s];
    if (rows.empty()) continue;
    std::sort(rows.begin(), rows.end());
    msg::PsPush m;
    m.table = table;
    m.values.resize(static_cast<Eigen::Index>(rows.size() * dim));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      m.keys.push_back(rows[i].first);
      std::memcpy(m.values.data() + i * dim, a.sum.data() + rows[i].second * dim,
                  dim * sizeof(double));
    }
    TESSERA_RETURN_IF_ERROR(SendPush(s, std::move(m)));
  }
  if (!all) {
    ++stats_.budgeted_sends;
    stats_.budgeted_bytes_max = std::max(stats_.budgeted_bytes_max, push_bytes_ - before);
  }
  a.Drop(chosen);
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
  const ParameterServer::SharedRows rows = ps_->HogwildRows(table, shard, first);
  const int dim = spec.dim;
  const std::size_t n = count * dim;
  double* value = rows.values;
  if (spec.updater->is_add()) {
    for (std::size_t i = 0; i < n; ++i) {
      std::atomic_ref<double>(value[i]).fetch_add(grad[i], std::memory_order_relaxed);
    }
    return;
  }
  const std::size_t ns = n * rows.state_per_element;
  double* state = rows.state;
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

Status PsClient::Buffer(TableId table, int shard, std::span<const Key> keys, const double* values) {
  Outgoing& out = outgoing_[table][shard];
  const std::size_t add = keys.size() * static_cast<std::size_t>(ps_->specs_[table].dim);
  out.keys.insert(out.keys.end(), keys.begin(), keys.end());
  if (static_cast<std::size_t>(out.values.size()) < out.used + add) {
    out.values.conservativeResize(
        static_cast<Eigen::Index>(std::max(kFlushValues, out.used + add)));
  }
  std::memcpy(out.values.data() + out.used, values, add * sizeof(double));
  out.used += add;
  if (out.used >= kFlushValues) return SendPushes(table, shard);
  return Status::Ok();
}

bool PsClient::Significant(TableId table, Key key, const double* change) const {
  const Cache* c = caches_[table].get();
  if (!c || !c->Has(key)) return true;  // nothing to compare with
  const int dim = c->dim;
  const double* read = c->values.data() + (c->dense ? key : c->rows.Find(key)) * dim;
  double largest_change = 0, largest_value = 0;
  for (int d = 0; d < dim; ++d) {
    largest_change = std::max(largest_change, std::abs(change[d]));
    largest_value = std::max(largest_value, std::abs(read[d]));
  }
  return largest_change > ps_->specs_[table].communication.significant * largest_value;
}

Status PsClient::ReleaseHeld() {
  for (TableId t = 0; t < held_.size(); ++t) {
    Aggregate* held = held_[t].get();
    if (!held) continue;
    const int dim = held->dim;
    const auto& ranges = ps_->ranges_[t];
    for (std::size_t r = 0; r < held->keys.size(); ++r) {
      const double* change = held->sum.data() + r * dim;
      if (std::all_of(change, change + dim, [](double v) { return v == 0; })) continue;
      const int s = ranges.size() == 1 ? 0 : ShardIn(ranges, held->keys[r]);
      TESSERA_RETURN_IF_ERROR(Buffer(t, s, std::span<const Key>(&held->keys[r], 1), change));
    }
    *held = Aggregate();
    held->dim = dim;
  }
  return Flush();
}

Status PsClient::Push(TableId table, std::span<const Key> keys, std::span<const double> values) {
  if (table >= ps_->num_tables()) return InvalidArgument("no table " + std::to_string(table));
  const TableSpec& spec = ps_->specs_[table];
  TESSERA_RETURN_IF_ERROR(CheckValues(spec, keys.size(), values.size()));
  if (replicas_[table]) return PushToReplica(table, keys, values);
  const int dim = spec.dim;
  stats_.pushed_values += values.size();
  const bool hogwild = spec.consistency.policy().shared_memory();
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
    if (Aggregate* a = aggregates_[table].get()) {
      a->Add(keys[i], values.data() + i * dim);
      ++i;
      continue;
    }
    if (Aggregate* held = held_[table].get()) {  // the significantly-modified filter
      const std::size_t row = held->Add(keys[i], values.data() + i * dim);  // may grow `sum`
      double* change = held->sum.data() + row * dim;
      if (Significant(table, keys[i], change)) {
        TESSERA_RETURN_IF_ERROR(Buffer(table, s, keys.subspan(i, 1), change));
        std::fill(change, change + dim, 0.0);
      }
      ++i;
      continue;
    }
    // The run of keys from i on that shard s owns, as far as its buffer takes them.
    const KeyRange owned = ranges[s];
    const std::size_t room =
        std::max<std::size_t>(1, (kFlushValues - outgoing_[table][s].used) / dim);
    // (read-my-writes tables add each key to the cache above: one key at a time)
    const std::size_t last = spec.read_my_writes ? i + 1 : std::min(keys.size(), i + room);
    std::size_t j = i + 1;
    while (j < last && keys[j] >= owned.begin && keys[j] < owned.end) ++j;
    TESSERA_RETURN_IF_ERROR(Buffer(table, s, keys.subspan(i, j - i), values.data() + i * dim));
    i = j;
  }
  if (aggregates_[table]) return SendAggregated(table, false);
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
  if (replicas_[table] || held_[table]) {  // the replica or the filter takes keys one by one
    std::vector<Key> keys(range.size());
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = range.begin + i;
    return Push(table, keys, values);
  }
  const int dim = spec.dim;
  stats_.pushed_values += values.size();
  const bool hogwild = spec.consistency.policy().shared_memory();
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
    if (Aggregate* a = aggregates_[table].get()) {
      for (Key k = b; k < e; ++k) a->Add(k, grad + (k - b) * dim);
      continue;
    }
    TESSERA_RETURN_IF_ERROR(SendPushes(table, s));  // keep this worker's pushes in order
    msg::PsPush m;
    m.table = table;
    m.range = {b, e};
    m.values = Eigen::Map<const Eigen::VectorXd>(grad, static_cast<Eigen::Index>((e - b) * dim));
    TESSERA_RETURN_IF_ERROR(SendPush(s, std::move(m)));
  }
  if (aggregates_[table]) return SendAggregated(table, false);
  return Status::Ok();
}

Status PsClient::PushSparse(TableId table, std::span<const Key> keys, const SparseRows& rows) {
  if (table >= ps_->num_tables()) return InvalidArgument("no table " + std::to_string(table));
  const TableSpec& spec = ps_->specs_[table];
  const auto dim = static_cast<std::uint32_t>(spec.dim);
  const bool fits =
      rows.WellFormed(keys.size(), dim) &&
      std::all_of(keys.begin(), keys.end(), [&spec](Key k) { return k < spec.num_keys; });
  if (!fits) {
    return InvalidArgument("table '" + spec.name + "': PushSparse needs one row of ascending " +
                           "element indexes below " + std::to_string(dim) +
                           " for each of its keys, every key below " +
                           std::to_string(spec.num_keys));
  }
  if (spec.storage != TableStorage::kSparseElements) {  // the table takes dense rows
    std::vector<double> dense(keys.size() * dim, 0.0);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      for (std::uint64_t j = rows.ptr[i]; j < rows.ptr[i + 1]; ++j) {
        dense[i * dim + rows.index[j]] = rows.value[j];
      }
    }
    return Push(table, keys, dense);
  }
  stats_.pushed_values += rows.value.size();
  // One message per shard, of at most about kFlushValues nonzeros.
  const auto& ranges = ps_->ranges_[table];
  std::vector<msg::PsPush> out(ps_->servers_);
  auto send = [&](int s) -> Status {
    msg::PsPush& m = out[static_cast<std::size_t>(s)];
    if (m.keys.empty()) return Status::Ok();
    TESSERA_RETURN_IF_ERROR(SendPushes(table, s));  // keep this worker's pushes in order
    m.table = table;
    m.packed.sparse = true;
    m.packed.size = m.keys.size() * dim;
    m.values.conservativeResize(static_cast<Eigen::Index>(m.packed.nonzero.size()));
    Status sent = SendPush(s, std::move(m), /*sparse=*/true);
    out[static_cast<std::size_t>(s)] = msg::PsPush();
    return sent;
  };
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const int s = ranges.size() == 1 ? 0 : ShardIn(ranges, keys[i]);
    msg::PsPush& m = out[static_cast<std::size_t>(s)];
    const auto base = static_cast<std::uint32_t>(m.keys.size() * dim);
    m.keys.push_back(keys[i]);
    const std::size_t have = m.packed.nonzero.size();
    const std::uint64_t n = rows.ptr[i + 1] - rows.ptr[i];
    if (static_cast<std::size_t>(m.values.size()) < have + n) {
      m.values.conservativeResize(
          static_cast<Eigen::Index>(std::max<std::size_t>(2 * (have + n), 64)));
    }
    for (std::uint64_t j = rows.ptr[i]; j < rows.ptr[i + 1]; ++j) {
      m.packed.nonzero.push_back(base + rows.index[j]);
      m.values[static_cast<Eigen::Index>(have + (j - rows.ptr[i]))] = rows.value[j];
    }
    if (m.packed.nonzero.size() >= kFlushValues) TESSERA_RETURN_IF_ERROR(send(s));
  }
  for (int s = 0; s < ps_->servers_; ++s) TESSERA_RETURN_IF_ERROR(send(s));
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
  st.count = count;
  st.sparse = spec.storage == TableStorage::kSparseElements;  // no cache, replica or hogwild
  if (!st.sparse) st.values.resize(static_cast<Eigen::Index>(count * dim));
  stats_.pulled_values += count * dim;
  auto key_at = [&](std::size_t i) { return range ? range->begin + i : keys[i]; };

  if (spec.consistency.policy().shared_memory()) {
    for (std::size_t i = 0; i < count; ++i) {
      auto shard = ps_->ShardOf(table, key_at(i));
      if (!shard.ok()) {
        st.status = shard.status();
        return f;
      }
      double* value = ps_->HogwildRows(table, *shard, key_at(i)).values;
      for (int d = 0; d < dim; ++d) {
        st.values[i * dim + d] = std::atomic_ref<double>(value[d]).load(std::memory_order_relaxed);
      }
    }
    st.served = clock_;  // shared memory holds every push made so far: as fresh as can be
    return f;
  }

  if (aggregates_[table]) {  // a read is a chance to send within the budget
    st.status = SendAggregated(table, false);
    if (!st.status.ok()) return f;
  }
  Cache* cache = caches_[table].get();
  const bool eager = spec.consistency.policy().refreshes();
  st.required = exact_reads_ ? clock_ : spec.consistency.RequiredClock(clock_);
  st.counted = !exact_reads_;
  st.reader_clock = clock_;
  // Per shard: the keys to request and their positions in the answer.
  std::vector<Asked> ask(ps_->servers_);
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
  } else if (!cache && ranges.size() == 1) {  // every key to the one shard, in order
    Key highest = 0;
    for (Key k : keys) highest = std::max(highest, k);
    if (count > 0 && highest >= spec.num_keys) {
      st.status = ps_->ShardOf(table, highest).status();
      return f;
    }
    ask[0].n = count;
  } else {
    const bool one_shard = ranges.size() == 1;
    for (std::size_t i = 0; i < count; ++i) {
      const Key k = keys[i];
      if (k >= spec.num_keys) {
        st.status = ps_->ShardOf(table, k).status();
        return f;
      }
      const int s = one_shard ? 0 : ShardIn(ranges, k);
      if (cache) {
        if (const double* row = cache->Fresh(k, s, st.required)) {
          std::memcpy(st.values.data() + i * dim, row, dim * sizeof(double));
          ++stats_.cache_hits;
          st.served = std::min(st.served, cache->ServedAt(k, s));
          continue;
        }
        if (eager && cache->Has(k)) {
          st.awaiting.push_back({k, 1, i * dim});
          continue;
        }
      }
      ask[s].Add(keys, i, dim);
    }
  }

  for (int s = 0; s < ps_->servers_; ++s) {
    const std::size_t asked = ask_range[s].size() > 0 ? ask_range[s].size() : ask[s].size();
    if (asked == 0) continue;
    // A request must be answered after this worker's earlier pushes to the shard.
    st.status = SendPushes(table, s);
    if (!st.status.ok()) return f;
    // Encoded messages (between processes) go in pieces of at most kPieceValues values: the
    // shard answers one piece while the next travels, and no message outgrows the buffers the
    // heap keeps. Where messages pass as objects nothing travels: one request, whose answer
    // becomes the result without a copy.
    const std::size_t piece =
        ps_->transport_->passes_objects()
            ? asked
            : std::max<std::size_t>(1, kPieceValues / static_cast<std::size_t>(dim));
    for (std::size_t first = 0; first < asked; first += piece) {
      const std::size_t n = std::min(piece, asked - first);
      msg::PsPull m;
      m.table = table;
      m.request = next_request_++;
      m.clock = st.required;
      m.exact = exact_reads_;
      PendingReply pending;
      pending.state = f.state_;
      if (ask_range[s].size() > 0) {
        m.range = {ask_range[s].begin + first, ask_range[s].begin + first + n};
        pending.offset = (m.range.begin - range->begin) * dim;
      } else {
        ask[s].Piece(keys, first, n, m.keys, pending, dim);
        KeysAsRange(m);
      }
      pending.asked = m;
      if (spec.communication.key_lists) key_lists_[table][s].Compress(m);
      pending_.emplace(m.request, std::move(pending));
      ++st.outstanding;
      ++stats_.pull_requests;
      st.status = SendCounted(ps_->ShardRank(s), Message(rank_, std::move(m)));
      if (!st.status.ok()) return f;
    }
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
  if (auto* refresh = received.get<msg::PsRefresh>()) {  // ESSP: for the cache alone
    TESSERA_RETURN_IF_ERROR(
        ps_->UnpackFrom(received.from, *refresh, refresh->values, refresh->packed));
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
  if (m.table != p.asked.table) {
    return InvalidArgument("worker " + std::to_string(worker_) + ": rank " + std::to_string(from) +
                           " answered request " + std::to_string(request) + " with table " +
                           std::to_string(m.table) + ", not the one asked for");
  }
  static_cast<TableKeys&>(m) = std::move(p.asked);  // the answer holds what was asked
  if (p.state->sparse) return HandleSparse(from, m, it);
  TESSERA_RETURN_IF_ERROR(ps_->UnpackFrom(from, m, m.values, m.packed));
  const auto n = static_cast<std::size_t>(m.values.size());
  const auto total = static_cast<std::size_t>(p.state->values.size());
  const std::size_t expected = m.count() * static_cast<std::size_t>(p.state->dim);
  if (n != expected || (p.positions.empty() && (p.offset > total || n > total - p.offset))) {
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

Status PsClient::HandleSparse(Rank from, msg::PsValues& m,
                              std::unordered_map<std::uint64_t, PendingReply>::iterator it) {
  PendingReply& p = it->second;
  PullFuture::State& st = *p.state;
  TESSERA_RETURN_IF_ERROR(ps_->UnpackFrom(from, m, m.values, m.packed, /*keep_sparse=*/true));
  const auto dim = static_cast<std::size_t>(st.dim);
  const std::size_t keys = m.count();
  if (p.positions.empty() ? p.offset > st.count * dim || keys * dim > st.count * dim - p.offset
                          : p.positions.size() != keys) {
    return InvalidArgument("worker " + std::to_string(worker_) + ": rank " + std::to_string(from) +
                           " answered request " + std::to_string(m.request) + " with values of " +
                           std::to_string(keys) + " keys, not of those asked");
  }
  st.served = std::min(st.served, static_cast<std::uint64_t>(m.clock));
  const std::vector<std::uint32_t>& pos = m.packed.nonzero;
  for (std::size_t e = 0; e < pos.size(); ++e) {
    const std::uint64_t a =
        p.positions.empty() ? p.offset + pos[e] : p.positions[pos[e] / dim] + pos[e] % dim;
    if (!st.at.empty() && a < st.at.back()) st.in_order = false;
    st.at.push_back(a);
    st.nonzero.push_back(m.values[static_cast<Eigen::Index>(e)]);
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
  State& st = *state_;
  if (st.sparse) {
    Eigen::VectorXd dense = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(st.count * st.dim));
    for (std::size_t e = 0; e < st.at.size(); ++e) {
      dense[static_cast<Eigen::Index>(st.at[e])] = st.nonzero[e];
    }
    return dense;
  }
  if (client_->replicas_[st.table]) client_->OverlayReplica(st);
  return std::move(st.values);
}

StatusOr<SparseRows> PullFuture::GetSparse() {
  TESSERA_CHECK(state_ && !state_->taken) << "PullFuture::GetSparse() called twice or on no pull";
  State& st = *state_;
  const auto dim = static_cast<std::uint64_t>(st.dim);
  SparseRows rows;
  rows.ptr.assign(st.count + 1, 0);
  if (!st.sparse) {
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd dense, Get());
    for (std::size_t i = 0; i < st.count; ++i) {
      for (std::uint64_t d = 0; d < dim; ++d) {
        const double v = dense[static_cast<Eigen::Index>(i * dim + d)];
        if (v == 0) continue;
        rows.index.push_back(static_cast<std::uint32_t>(d));
        rows.value.push_back(v);
      }
      rows.ptr[i + 1] = rows.index.size();
    }
    return rows;
  }
  st.taken = true;
  TESSERA_RETURN_IF_ERROR(st.status);
  TESSERA_RETURN_IF_ERROR(client_->Wait(st));
  const std::size_t n = st.at.size();
  std::vector<std::size_t> order;
  if (!st.in_order) {  // pieces answered out of order: each is in order, so sort once
    order.resize(n);
    for (std::size_t e = 0; e < n; ++e) order[e] = e;
    std::sort(order.begin(), order.end(),
              [&st](std::size_t a, std::size_t b) { return st.at[a] < st.at[b]; });
  }
  rows.index.resize(n);
  rows.value.resize(n);
  for (std::size_t e = 0; e < n; ++e) {
    const std::size_t from = st.in_order ? e : order[e];
    const std::uint64_t a = st.at[from];
    ++rows.ptr[a / dim + 1];
    rows.index[e] = static_cast<std::uint32_t>(a % dim);
    rows.value[e] = st.nonzero[from];
  }
  for (std::size_t i = 0; i < st.count; ++i) rows.ptr[i + 1] += rows.ptr[i];
  std::vector<std::uint64_t>().swap(st.at);
  std::vector<double>().swap(st.nonzero);
  return rows;
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
