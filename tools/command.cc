#include "tessera/tools/command.h"

#include <algorithm>
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

int AppCommand::Run(CLI::App&) {
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

Status WriteRunSummary(const std::string& path, const std::string& mode, const RunResult& run,
                       double setup_seconds,
                       const std::vector<std::pair<std::string, double>>& extra) {
  std::string header = "mode,objective,rounds,seconds,setup_seconds,bytes,peak_rss,stop";
  std::string row = mode + "," + FormatDouble(run.objective) + "," + std::to_string(run.rounds) +
                    "," + FormatDouble(run.seconds) + "," + FormatDouble(setup_seconds) + "," +
                    std::to_string(run.bytes) + "," + std::to_string(PeakRssBytes()) + "," +
                    run.stop_reason;
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

int RunCommandLine(int argc, char** argv, const std::string& description,
                   const std::string& version) {
  CommandRegistry& registry = Commands();
  if (!registry.duplicates().empty()) {
    return Fail(Internal("two commands are registered as '" + registry.duplicates()[0] + "'"));
  }
  if (!registry.Find("launch")) registry.Add(std::make_unique<LaunchCommand>());
  if (!registry.Find("compare")) registry.Add(std::make_unique<CompareCommand>());
  CLI::App app{description};
  app.require_subcommand(1);
  app.set_version_flag("--version", version);
  std::vector<std::pair<Command*, CLI::App*>> added;
  for (Command* c : registry.commands()) added.emplace_back(c, c->Add(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string cmd;
    for (CLI::App* sub = &app; !sub->get_subcommands().empty();) {
      sub = sub->get_subcommands()[0];
      cmd = (sub->get_parent() == &app ? "" : cmd + " ") + sub->get_name();
    }
    std::cerr << "tessera: error: " << e.what() << "\n(run 'tessera --help'"
              << (cmd.empty() ? std::string() : " or 'tessera " + cmd + " --help'") << ")"
              << std::endl;
    return 2;
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
