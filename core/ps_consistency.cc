// The consistency models' names and read bounds (parameter_server.h).
#include "tessera/core/parameter_server.h"

#include <charconv>

namespace tessera {

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

}  // namespace tessera
