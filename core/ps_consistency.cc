// The consistency models: one ConsistencyPolicy per model, and the registry Consistency::Parse
// reads (parameter_server.h).
#include <algorithm>
#include <charconv>
#include <mutex>
#include <utility>

#include "tessera/core/parameter_server.h"

namespace tessera {

std::uint64_t ConsistencyPolicy::CompletedClock(
    std::span<const std::uint64_t> worker_clocks) const {
  return worker_clocks.empty() ? 0 : *std::min_element(worker_clocks.begin(), worker_clocks.end());
}

Status ConsistencyPolicy::Check(const TableSpec& spec, int workers) const {
  (void)spec;
  (void)workers;
  return Status::Ok();
}

namespace {

using PolicyPtr = std::shared_ptr<const ConsistencyPolicy>;

// bsp: a read at clock c sees every push of clocks < c; a clock's pushes are applied together
// (the updater sees their sum; averaged models are averaged over one starting point), except
// under the plain `add` updater, whose pushes are applied as they arrive: a read may then also
// see pushes of clock c from faster workers (sbp:0 sums every updater's pushes per clock).
class Bsp : public ConsistencyPolicy {
 public:
  std::string name() const override { return "bsp"; }
  std::uint64_t RequiredClock(std::uint64_t clock) const override { return clock; }
  bool SumsPerClock(const TableSpec& spec) const override {
    return !spec.updater->is_add() || spec.model_averaging;
  }
};

// sbp:B: a clock completes once all but the B slowest workers have ended it; every updater's
// pushes are summed per clock, so that no read sees part of a clock and a backup's late push can
// be folded into the clock still open.
class Sbp final : public ConsistencyPolicy {
 public:
  explicit Sbp(int backups) : backups_(backups) {}
  std::string name() const override { return "sbp:" + std::to_string(backups_); }
  std::uint64_t RequiredClock(std::uint64_t clock) const override { return clock; }
  bool SumsPerClock(const TableSpec&) const override { return true; }
  // The (B+1)-th smallest clock.
  std::uint64_t CompletedClock(std::span<const std::uint64_t> clocks) const override {
    if (backups_ == 0 || clocks.empty()) return ConsistencyPolicy::CompletedClock(clocks);
    std::vector<std::uint64_t> sorted(clocks.begin(), clocks.end());
    const auto b = std::min(static_cast<std::size_t>(backups_), sorted.size() - 1);
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(b), sorted.end());
    return sorted[b];
  }
  Status Check(const TableSpec& spec, int workers) const override {
    if (backups_ < workers) return Status::Ok();
    return InvalidArgument("table '" + spec.name + "': " + name() +
                           " needs fewer backup workers than the " + std::to_string(workers) +
                           " workers");
  }

 private:
  int backups_;
};

// ssp:S: a read at clock c sees every push of clocks < c - S.
class Ssp : public ConsistencyPolicy {
 public:
  Ssp(std::string name, int staleness) : name_(std::move(name)), staleness_(staleness) {}
  std::string name() const override { return name_ + ":" + std::to_string(staleness_); }
  std::uint64_t RequiredClock(std::uint64_t clock) const override {
    const auto s = static_cast<std::uint64_t>(staleness_);
    return clock >= s ? clock - s : 0;
  }

 private:
  std::string name_;
  int staleness_;
};

// essp:S: ssp's bound, and the shards refresh what workers read whenever their clock advances.
class Essp final : public Ssp {
 public:
  explicit Essp(int staleness) : Ssp("essp", staleness) {}
  bool refreshes() const override { return true; }
};

// sparsessp:S: ssp's bound, except for reads whose keys no worker behind it has pushed.
class SparseSsp final : public Ssp {
 public:
  explicit SparseSsp(int staleness) : Ssp("sparsessp", staleness) {}
  bool serves_disjoint_reads() const override { return true; }
};

// sspaggr:S: ssp's bound; workers send their summed pushes between clocks within a budget.
class SspAggr final : public Ssp {
 public:
  explicit SspAggr(int staleness) : Ssp("sspaggr", staleness) {}
  bool bandwidth_managed() const override { return true; }
};

// asp: whatever the shard has, at once.
class Asp : public ConsistencyPolicy {
 public:
  std::string name() const override { return "asp"; }
  std::uint64_t RequiredClock(std::uint64_t) const override { return 0; }
  bool cached() const override { return false; }
};

// hogwild: shared memory, no clocks.
class Hogwild final : public Asp {
 public:
  std::string name() const override { return "hogwild"; }
  bool shared_memory() const override { return true; }
};

struct Entry {
  std::string parameter;  // e.g. "a staleness bound S"; empty: none
  ConsistencyFactory make;
  ConsistencyModel model = ConsistencyModel::kCustom;
};

// Name -> entry, in registration order; the built-in models first.
class Registry {
 public:
  static Registry& Get() {
    static Registry* r = new Registry();  // never destroyed: used until exit
    return *r;
  }
  bool Add(std::string name, Entry e) {
    std::lock_guard lock(mu_);
    for (const auto& [n, _] : entries_) {
      if (n == name) return false;
    }
    entries_.emplace_back(std::move(name), std::move(e));
    return true;
  }
  std::optional<Entry> Find(std::string_view name) const {
    std::lock_guard lock(mu_);
    for (const auto& [n, e] : entries_) {
      if (n == name) return e;
    }
    return std::nullopt;
  }
  // "bsp, sbp:B, ssp:S, ..., asp or hogwild".
  std::string Names() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const auto& [n, e] = entries_[i];
      if (i > 0) out += i + 1 == entries_.size() ? " or " : ", ";
      out += n;
      if (!e.parameter.empty()) out += ":" + e.parameter.substr(e.parameter.rfind(' ') + 1);
    }
    return out;
  }

 private:
  Registry() {
    auto fixed = [](PolicyPtr p) {
      return [p](std::optional<int>) -> StatusOr<PolicyPtr> { return p; };
    };
    auto bounded = [](auto make) {
      return [make](std::optional<int> n) -> StatusOr<PolicyPtr> { return make(*n); };
    };
    const std::string bound = "a staleness bound S";
    Add("bsp", {"", fixed(std::make_shared<Bsp>()), ConsistencyModel::kBsp});
    Add("sbp", {"a number of backup workers B",
                bounded([](int b) { return PolicyPtr(std::make_shared<Sbp>(b)); }),
                ConsistencyModel::kSbp});
    Add("ssp", {bound, bounded([](int s) { return PolicyPtr(std::make_shared<Ssp>("ssp", s)); }),
                ConsistencyModel::kSsp});
    Add("essp", {bound, bounded([](int s) { return PolicyPtr(std::make_shared<Essp>(s)); }),
                 ConsistencyModel::kEssp});
    Add("sparsessp",
        {bound, bounded([](int s) { return PolicyPtr(std::make_shared<SparseSsp>(s)); }),
         ConsistencyModel::kSparseSsp});
    Add("sspaggr", {bound, bounded([](int s) { return PolicyPtr(std::make_shared<SspAggr>(s)); }),
                    ConsistencyModel::kSspAggr});
    Add("asp", {"", fixed(std::make_shared<Asp>()), ConsistencyModel::kAsp});
    Add("hogwild", {"", fixed(std::make_shared<Hogwild>()), ConsistencyModel::kHogwild});
  }
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

}  // namespace

bool RegisterConsistency(std::string name, std::string parameter, ConsistencyFactory make) {
  TESSERA_CHECK(!name.empty() && make) << "RegisterConsistency needs a name and a factory";
  return Registry::Get().Add(std::move(name), Entry{std::move(parameter), std::move(make)});
}

const ConsistencyPolicy& Consistency::policy() const {
  if (impl) return *impl;
  TESSERA_CHECK(model == ConsistencyModel::kBsp)
      << "a Consistency other than bsp comes from Consistency::Parse";
  static const Bsp bsp;
  return bsp;
}

StatusOr<Consistency> Consistency::Parse(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  const Registry& registry = Registry::Get();
  const auto colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  const std::optional<Entry> entry = registry.Find(name);
  if (!entry) {
    return InvalidArgument("unknown consistency model " + quoted + " (expected " +
                           registry.Names() + ")");
  }
  std::optional<int> parameter;
  if (entry->parameter.empty()) {
    if (colon != std::string_view::npos) {
      return InvalidArgument("consistency " + quoted + ": " + std::string(name) +
                             " takes no parameter");
    }
  } else {
    // "a staleness bound S" -> "a staleness bound", "the staleness bound S".
    const std::string what = entry->parameter.substr(0, entry->parameter.rfind(' '));
    if (colon == std::string_view::npos) {
      return InvalidArgument("consistency " + quoted + " needs " + what + ", e.g. " +
                             std::string(name) +
                             (entry->model == ConsistencyModel::kSbp ? ":1" : ":3"));
    }
    const std::string_view digits = text.substr(colon + 1);
    long long n = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size() || n < 0 || n > 1000000) {
      return InvalidArgument("consistency " + quoted + ": the " +
                             entry->parameter.substr(entry->parameter.find(' ') + 1) +
                             " must be an integer from 0 to 1000000");
    }
    parameter = static_cast<int>(n);
  }
  Consistency c;
  TESSERA_ASSIGN_OR_RETURN(c.impl, entry->make(parameter));
  c.model = entry->model;
  if (c.model == ConsistencyModel::kSbp) {
    c.backups = *parameter;
  } else if (parameter) {
    c.staleness = *parameter;
  }
  return c;
}

}  // namespace tessera
