#include "tessera/core/scheduler.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace tessera {

StatusOr<SchedulerArgs> SchedulerArgs::Parse(std::string_view text) {
  SchedulerArgs args;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view pair = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == pair.size()) {
      return InvalidArgument("scheduler argument '" + std::string(pair) + "' is not key=value");
    }
    const std::string key(pair.substr(0, eq));
    if (!args.given_.emplace(key, std::string(pair.substr(eq + 1))).second) {
      return InvalidArgument("scheduler argument '" + key + "' is given twice");
    }
  }
  return args;
}

const std::string* SchedulerArgs::Find(const std::string& key) const {
  read_.insert(key);
  if (auto it = given_.find(key); it != given_.end()) return &it->second;
  if (auto it = defaults_.find(key); it != defaults_.end()) return &it->second;
  return nullptr;
}

StatusOr<int> SchedulerArgs::Int(const std::string& key, int fallback, int min) const {
  const std::string* v = Find(key);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v->c_str(), &end, 10);
  if (end == v->c_str() || *end != '\0' || errno == ERANGE || n < min || n > (1L << 30)) {
    return InvalidArgument("scheduler argument " + key + "=" + *v +
                           ": expected an integer >= " + std::to_string(min));
  }
  return static_cast<int>(n);
}

StatusOr<double> SchedulerArgs::PositiveDouble(const std::string& key, double fallback) const {
  const std::string* v = Find(key);
  if (!v) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v->c_str(), &end);
  if (end == v->c_str() || *end != '\0' || !std::isfinite(x) || !(x > 0)) {
    return InvalidArgument("scheduler argument " + key + "=" + *v + ": expected a number > 0");
  }
  return x;
}

Status SchedulerArgs::CheckAllRead(const std::string& scheduler) const {
  for (const auto& [key, value] : given_) {
    if (!read_.count(key)) {
      return InvalidArgument("scheduler " + scheduler + " takes no argument '" + key + "'");
    }
  }
  return Status::Ok();
}

std::string SchedulerArgs::ToString() const {
  std::string out;
  for (const auto& [key, value] : given_) out += (out.empty() ? "" : ",") + key + "=" + value;
  return out;
}

Status SchedulerRegistry::Register(const std::string& name, SchedulerFactory factory,
                                   std::string arguments) {
  if (name.empty() || name.find_first_of(":, ") != std::string::npos) {
    return InvalidArgument("scheduler name '" + name +
                           "' must be non-empty, without ':', ',', ' '");
  }
  if (!entries_.emplace(name, Entry{std::move(factory), std::move(arguments)}).second) {
    return InvalidArgument("scheduler '" + name + "' is already registered");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Scheduler>> SchedulerRegistry::Create(const std::string& name,
                                                               const SchedulerSetup& setup,
                                                               const SchedulerArgs& args) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::string names;
    for (const auto& n : Names()) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("--scheduler: unknown scheduler '" + name + "' (valid: " + names + ")");
  }
  auto made = it->second.factory(setup, args);
  const std::string takes =
      it->second.arguments.empty() ? "it takes none" : "it takes: " + it->second.arguments;
  if (!made.ok()) {
    return InvalidArgument("--scheduler " + name + ": " + made.status().message() + " (" + takes +
                           ")");
  }
  if (Status st = args.CheckAllRead(name); !st.ok()) {
    return InvalidArgument("--scheduler: " + st.message() + " (" + takes + ")");
  }
  return made;
}

std::vector<std::string> SchedulerRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

std::string SchedulerRegistry::Describe() const {
  std::string out;
  for (const auto& [name, e] : entries_) {
    out += name + (e.arguments.empty() ? "" : " (" + e.arguments + ")") + "\n";
  }
  return out;
}

StatusOr<SchedulerSpec> SchedulerSpec::Parse(std::string_view text) {
  SchedulerSpec spec;
  const auto colon = text.find(':');
  spec.name = std::string(text.substr(0, colon));
  if (spec.name.empty()) return InvalidArgument("--scheduler: no scheduler name");
  if (colon != std::string_view::npos) {
    TESSERA_ASSIGN_OR_RETURN(spec.args, SchedulerArgs::Parse(text.substr(colon + 1)));
  }
  return spec;
}

}  // namespace tessera
