#include "tessera/tools/command.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/line_reader.h"
#include "tessera/core/memory_limit.h"
#include "tessera/core/metrics.h"
#include "tessera/tools/compare.h"
#include "tessera/tools/launch.h"

namespace tessera {

CLI::App* AppCommand::Add(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(name(), description());
  AddFlags(*cmd);
  CommonFlags& c = common_;
  c.output = output_default();
  cmd->add_option("--threads", c.threads, "OS threads running the fibers (default: all cores)");
  auto* output = cmd->add_option("--output", c.output, output_help());
  if (!c.output.empty()) output->capture_default_str();
  cmd->add_option("--trace", c.trace, trace_help());
  cmd->add_option("--summary", c.summary, "Write a one-row CSV summary (for tessera compare)");
  cmd->add_flag("--quiet", c.quiet, "Only errors");
  cmd->add_option("--max-memory", c.max_memory,
                  "Refuse inputs and options whose model would need more than this per process, "
                  "e.g. 8G (default: 3/4 of physical memory)");
  cmd->add_option("--max-line-bytes", c.max_line_bytes,
                  "Refuse input lines longer than this, e.g. 1M (default: 64M)");
  AddCheckpointFlags(*cmd, c.checkpoint, checkpoint_help());
  AddClusterFlags(*cmd, c.cluster);
  return cmd;
}

namespace {
// The command line every process of a run must share (RunCommandLine sets it): the arguments
// but for the flags that may differ between processes (per host, or what only process 0 uses:
// its output files and printing) and their values.
std::string g_command_binding;

std::string CommandBinding(int argc, char** argv) {
  static const char* const kPerProcess[] = {
      "--bind",        "--advertise",       "--port-range",
      "--threads",     "--connect-timeout", "--silence-timeout",
      "--output",      "--trace",           "--summary",
      "--save-config", "--cv-output",       "--topics-out",
      "--max-memory",  "--max-line-bytes"};
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quiet" || a.rfind("--quiet=", 0) == 0) continue;  // a flag without a value
    bool skip = false;
    for (const char* flag : kPerProcess) {
      if (a == flag) {
        skip = true;
        ++i;  // and its value
        break;
      }
      if (a.rfind(std::string(flag) + "=", 0) == 0) skip = true;
    }
    if (!skip) out += a + '\0';
  }
  return out;
}
}  // namespace

int AppCommand::Run(CLI::App&) {
  common_.cluster.binding = g_command_binding;
  if (common_.threads < 0 || common_.threads > 1024) {
    return Fail(InvalidArgument("--threads must be between 0 (all cores) and 1024, got " +
                                std::to_string(common_.threads)));
  }
  if (!common_.max_memory.empty()) {
    auto bytes = ParseByteSize(common_.max_memory);
    if (!bytes.ok()) return Fail(InvalidArgument("--max-memory: " + bytes.status().message()));
    SetMaxMemoryBytes(*bytes);
  }
  if (!common_.max_line_bytes.empty()) {
    auto bytes = ParseByteSize(common_.max_line_bytes);
    if (!bytes.ok()) return Fail(InvalidArgument("--max-line-bytes: " + bytes.status().message()));
    LineReader::SetDefaultMaxLineBytes(static_cast<std::size_t>(*bytes));
  }
  auto checkpoints = ResolveCheckpointFlags(common_.checkpoint);
  if (!checkpoints.ok()) return Fail(checkpoints.status());
  checkpoints_ = *checkpoints;
  auto topology = Prepare();
  if (!topology.ok()) return Fail(topology.status());
  return RunOnCluster(name(), topology->data_parallel, common_.cluster, topology->servers,
                      topology->workers, common_.threads, [this](Cluster& cluster) {
                        if (!cluster.leader()) {  // process 0 reports and writes
                          common_.quiet = true;
                          common_.trace.clear();
                          common_.summary.clear();
                          common_.output.clear();
                          return Fit(cluster);
                        }
                        // What it cannot write fails now, not after the fit.
                        std::vector<std::string> files = written_files();
                        for (const std::string* f : {&common_.trace, &common_.summary}) {
                          if (!f->empty()) files.push_back(*f);
                        }
                        for (const std::string& f : files) {
                          if (Status s = CheckWritable(f); !s.ok()) return Fail(s);
                        }
                        return Fit(cluster);
                      });
}

bool CommandRegistry::Add(std::unique_ptr<Command> command) {
  if (Find(command->name())) {
    duplicates_.push_back(command->name());
  } else {
    commands_.push_back(std::move(command));
  }
  return true;
}

std::vector<Command*> CommandRegistry::commands() const {
  std::vector<Command*> out;
  for (const auto& c : commands_) out.push_back(c.get());
  std::sort(out.begin(), out.end(),
            [](const Command* a, const Command* b) { return a->name() < b->name(); });
  return out;
}

Command* CommandRegistry::Find(const std::string& name) const {
  for (const auto& c : commands_) {
    if (c->name() == name) return c.get();
  }
  return nullptr;
}

std::vector<std::string> CommandRegistry::ComparableNames() const {
  std::vector<std::string> out;
  for (Command* c : commands()) {
    if (c->compare()) out.push_back(c->name());
  }
  return out;
}

CommandRegistry& Commands() {
  static CommandRegistry* registry = new CommandRegistry;
  return *registry;
}

void PrintStaleness(const std::vector<TableStaleness>& staleness) {
  for (const TableStaleness& t : staleness) {
    if (t.total() == 0) continue;
    ClearProgressLine();
    std::printf("staleness of reads, table %s: %s\n", t.table.c_str(), t.Describe().c_str());
  }
}

std::string StalenessColumns() { return ",staleness_mean,staleness_max,staleness"; }

std::string StalenessValues(const std::vector<TableStaleness>& staleness) {
  std::size_t max = 0;
  std::string counts;
  for (const TableStaleness& t : staleness) {
    if (t.total() == 0) continue;
    max = std::max(max, t.max());
    counts += (counts.empty() ? "" : "|") + t.table + "=" + t.Counts();
  }
  if (counts.empty()) return ",,,";
  return "," + FormatDouble(MeanStaleness(staleness)) + "," + std::to_string(max) + "," + counts;
}

int AppCommand::UsageError(const std::string& message) const {
  std::fprintf(stderr, "tessera: error: %s\n(run 'tessera --help' or 'tessera %s --help')\n",
               message.c_str(), name().c_str());
  return 2;
}

Status WriteRunSummary(const std::string& path, const std::string& mode, const RunResult& run,
                       double setup_seconds,
                       const std::vector<std::pair<std::string, double>>& extra) {
  std::string header =
      "mode,objective,rounds,seconds,setup_seconds,bytes,peak_rss,stop" + StalenessColumns();
  std::string row = mode + "," + FormatDouble(run.objective) + "," + std::to_string(run.rounds) +
                    "," + FormatDouble(run.seconds) + "," + FormatDouble(setup_seconds) + "," +
                    std::to_string(run.bytes) + "," + std::to_string(PeakRssBytes()) + "," +
                    run.stop_reason + StalenessValues(run.staleness);
  for (const auto& [name, value] : extra) {
    header += "," + name;
    row += "," + FormatDouble(value);
  }
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(out.Open(path, header));
  out.Row(row);
  return out.Finish();
}

namespace {

class LaunchCommand final : public Command {
 public:
  std::string name() const override { return "launch"; }
  CLI::App* Add(CLI::App& app) override { return AddLaunchCommand(app, flags_); }
  int Run(CLI::App&) override { return RunLaunch(flags_); }

 private:
  LaunchFlags flags_;
};

class CompareCommand final : public Command {
 public:
  std::string name() const override { return "compare"; }
  CLI::App* Add(CLI::App& app) override {
    std::string names;
    for (const std::string& n : Commands().ComparableNames()) {
      names += (names.empty() ? "" : " | ") + n;
    }
    CLI::App* cmd = app.add_subcommand(
        "compare",
        "Run an app in model-parallel and data-parallel mode under the same budget and show "
        "both: table, CSV, PNG. Other flags go to both runs, e.g. tessera compare lasso --data "
        "F --lambda-ratio 0.1 --workers 2 --consistency ssp:2 --budget-seconds 30");
    cmd->add_option("app", flags_.app, names)->required();
    cmd->add_option("--out", flags_.out,
                    "Output prefix: PREFIX.csv, PREFIX-summary.csv, PREFIX.png")
        ->capture_default_str();
    cmd->add_option("--budget-seconds", flags_.budget_seconds,
                    "Wall-time limit of each run (setup excluded)");
    cmd->add_option("--budget-rounds", flags_.budget_rounds,
                    "Round limit of each run (model-parallel rounds, data-parallel clocks)");
    cmd->allow_extras();
    cmd->fallthrough(false);  // every other flag is the app's, forwarded to both runs
    return cmd;
  }
  int Run(CLI::App& cmd) override {
    flags_.forwarded = cmd.remaining();
    return RunCompare(flags_);
  }

 private:
  CompareFlags flags_;
};

}  // namespace

namespace {

// A TOML value: numbers and booleans bare, anything else quoted.
std::string TomlValue(const std::string& v) {
  if (v == "true" || v == "false") return v;
  double d = 0;
  const char* end = v.data() + v.size();
  if (!v.empty() && std::from_chars(v.data(), end, d).ptr == end) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

// The command's flags as resolved (given, from --config, or their defaults; flags without a
// value are left out), as a [COMMAND] section that --config reads back. Written atomically.
Status SaveConfig(const CLI::App& cmd, const std::string& path) {
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(
      out.Open(path, "# every flag of 'tessera " + cmd.get_name() +
                         "' as this run resolved it; 'tessera --config FILE' reads it back\n[" +
                         cmd.get_name() + "]"));
  for (const CLI::Option* o : cmd.get_options()) {
    if (o->get_lnames().empty() || o->get_lnames()[0] == "help") continue;
    const std::string& name = o->get_lnames()[0];
    std::vector<std::string> values;
    if (o->count() > 0) {
      values = o->results();
      if (o->get_type_size() == 0 && o->get_expected_min() == 0) values = {"true"};  // a flag
    } else if (!o->get_default_str().empty()) {
      values = {o->get_default_str()};
    } else if (o->get_type_size() == 0) {
      values = {"false"};
    }
    if (values.empty()) continue;
    std::string line = name + " = ";
    if (values.size() == 1 && o->get_items_expected_max() <= 1) {
      line += TomlValue(values[0]);
    } else {
      line += "[";
      for (std::size_t i = 0; i < values.size(); ++i)
        line += (i ? ", " : "") + TomlValue(values[i]);
      line += "]";
    }
    out.Row(line);
  }
  return out.Finish();
}

}  // namespace

namespace {

std::size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The name closest to `word` if it is close enough to be a typo of it, else "".
std::string Closest(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const std::string& n : names) {
    const std::size_t d = EditDistance(word, n);
    if (d < best_distance) best_distance = d, best = n;
  }
  return best;
}

// "did you mean ..." for an unknown flag, config key or command, or "".
std::string DidYouMean(const CLI::App& app, const CLI::App& cmd, const std::string& error) {
  std::vector<std::string> flags;
  for (const CLI::App* a : {&cmd, &app}) {
    for (const CLI::Option* o : a->get_options()) {
      for (const std::string& n : o->get_lnames()) flags.push_back(n);
    }
  }
  std::vector<std::string> words;  // what was not understood
  for (const CLI::App* a : {&cmd, &app}) {
    for (const std::string& r : a->remaining()) words.push_back(r);
  }
  const std::string ini = "not able to parse ";
  if (auto at = error.find(ini); at != std::string::npos) {
    std::string key = error.substr(at + ini.size());
    words.push_back("--" + key.substr(key.rfind('.') + 1));
  }
  for (const std::string& w : words) {
    if (w.rfind("--", 0) == 0) {
      const std::string name =
          w.substr(2, w.find('=') == std::string::npos ? std::string::npos : w.find('=') - 2);
      if (std::string c = Closest(name, flags); !c.empty()) return "did you mean --" + c + "?";
    } else if (&cmd == &app) {
      std::vector<std::string> commands;
      for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
      if (std::string c = Closest(w, commands); !c.empty()) return "did you mean '" + c + "'?";
    }
  }
  return "";
}

}  // namespace

int RunCommandLine(int argc, char** argv, const std::string& description,
                   const std::string& version) {
  CommandRegistry& registry = Commands();
  if (!registry.duplicates().empty()) {
    return Fail(Internal("two commands are registered as '" + registry.duplicates()[0] + "'"));
  }
  if (!registry.Find("launch")) registry.Add(std::make_unique<LaunchCommand>());
  if (!registry.Find("compare")) registry.Add(std::make_unique<CompareCommand>());
  g_command_binding = CommandBinding(argc, argv);
  CLI::App app{description};
  app.require_subcommand(1);
  app.fallthrough();  // --config and --save-config may follow the command
  app.set_version_flag("--version", version);
  app.set_config("--config", "",
                 "Read flags from a TOML file: 'key = value' lines under a [COMMAND] section "
                 "(e.g. [lasso] then data = \"x.csv\"); the command line overrides it");
  std::string save_config;
  app.add_option("--save-config", save_config,
                 "Write every flag of the command as resolved (file, command line, defaults) to "
                 "this TOML file, which --config reads back");
  std::vector<std::pair<Command*, CLI::App*>> added;
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error
  for (Command* c : registry.commands()) added.emplace_back(c, c->Add(app));
  for (auto& [command, cmd] : added) cmd->allow_config_extras(CLI::config_extras_mode::error);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string cmd;
    CLI::App* deepest = &app;
    for (CLI::App* sub = &app; !sub->get_subcommands().empty();) {
      sub = sub->get_subcommands()[0];
      deepest = sub;
      cmd = (sub->get_parent() == &app ? "" : cmd + " ") + sub->get_name();
    }
    const std::string hint = DidYouMean(app, *deepest, e.what());
    std::cerr << "tessera: error: " << e.what() << (hint.empty() ? "" : "; " + hint)
              << "\n(run 'tessera --help'"
              << (cmd.empty() ? std::string() : " or 'tessera " + cmd + " --help'") << ")"
              << std::endl;
    return 2;
  }
  if (!save_config.empty()) {
    for (auto& [command, cmd] : added) {
      if (!cmd->parsed()) continue;
      if (Status st = SaveConfig(*cmd, save_config); !st.ok()) return Fail(st);
    }
  }
  for (auto& [command, cmd] : added) {
    if (!cmd->parsed()) continue;
    // An allocation that fails (a size from the input or the flags that this machine cannot
    // hold) or any other exception is this command's error, not an abort.
    try {
      return command->Run(*cmd);
    } catch (const std::bad_alloc&) {
      return Fail(
          FailedPrecondition("out of memory: the input or the options ask for more "
                             "than this machine can allocate"));
    } catch (const std::exception& e) {
      return Fail(Internal(std::string("unexpected error: ") + e.what()));
    }
  }
  return 2;
}

}  // namespace tessera
