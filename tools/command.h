// The `tessera` command line: a registry of commands, and AppCommand, the base of every app's
// command (lasso, mf, lda, or a user's own), which declares the flags all apps share once,
// joins the multi-process run the app's options ask for and runs the fit in every process.
// An app's command is one file: a class deriving from AppCommand and the line
//   TESSERA_REGISTER_COMMAND(MyCommand);
// A user's program links tessera_cli, registers its command the same way and calls
// RunCommandLine from main; it then also has `launch` and `compare`.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/model_parallel.h"
#include "tessera/core/status.h"
#include "tessera/tools/checkpoint_flags.h"
#include "tessera/tools/cluster.h"

namespace tessera {

// What `tessera compare` needs of an app to run it in both modes under one budget.
struct CompareSpec {
  // Flags the user may not pass to compare (it sets them); --mode, --trace, --summary,
  // --output and --quiet are always among them.
  std::vector<std::string> own;
  std::string seconds_flag;        // wall-time limit
  std::string rounds_flag[2];      // round limit, per mode (model-parallel, data-parallel)
  std::vector<std::string> extra;  // summary columns shown after the objective
  // The trace column plotted: "objective" as relative suboptimality, or a metric.
  std::string curve = "objective";
  std::string curve_label = "relative suboptimality (F - F*) / F*";
  bool rising = false;  // the curve goes up as the fit improves (the key goes bottom right)
  std::vector<std::string> child_args;  // added to both runs (e.g. no output files)
};

// A subcommand of the command line.
class Command {
 public:
  virtual ~Command() = default;
  virtual std::string name() const = 0;
  // Adds the subcommand and its flags to `app`; returns it.
  virtual CLI::App* Add(CLI::App& app) = 0;
  // After a parse that selected the subcommand Add returned: runs it; the exit code.
  virtual int Run(CLI::App& cmd) = 0;
  // Null: `tessera compare` does not run this command.
  virtual const CompareSpec* compare() const { return nullptr; }
};

// The flags every app command has (AppCommand adds them): --threads, --quiet, --trace,
// --summary, --output, --max-memory, --max-line-bytes, the checkpoint flags and the
// multi-process flags.
struct CommonFlags {
  int threads = 0;  // OS threads running the fibers; 0: the cores shared by this host's processes
  bool quiet = false;
  std::string trace;           // a per-evaluation CSV; empty: none
  std::string summary;         // a one-row CSV of the result (what `tessera compare` reads)
  std::string output;          // the fitted model
  std::string max_memory;      // a size (ParseByteSize); empty: 3/4 of physical memory
  std::string max_line_bytes;  // a size; empty: LineReader's default
  ClusterFlags cluster;
  CheckpointFlags checkpoint;
};

// What a run spreads over the launcher's processes (RunOnCluster).
struct Topology {
  bool data_parallel = false;
  int servers = 0;  // data-parallel only
  int workers = 1;
};

class AppCommand : public Command {
 public:
  CLI::App* Add(CLI::App& app) override;
  int Run(CLI::App& cmd) override;

 protected:
  virtual std::string description() const = 0;
  // The app's own flags.
  virtual void AddFlags(CLI::App& cmd) = 0;
  // Help texts of the common flags whose meaning is the app's, and the output's default.
  virtual std::string trace_help() const { return "Per-evaluation metrics CSV"; }
  virtual std::string output_help() const = 0;
  virtual std::string output_default() const { return ""; }
  virtual std::string checkpoint_help() const = 0;
  // The files the fit will write besides --trace and --summary (checked before it starts, in
  // the process that writes them): by default --output when given.
  virtual std::vector<std::string> written_files() const {
    return common_.output.empty() ? std::vector<std::string>{}
                                  : std::vector<std::string>{common_.output};
  }
  // After the parse, with the common flags checked (common(), checkpoints()): checks and
  // completes the app's own options, and says what its run spreads over the processes.
  virtual StatusOr<Topology> Prepare() = 0;
  // In every process of the run, with the run's transport in `cluster`: the fit, reporting as
  // common() says. Only process 0 prints and writes files: in the others common() is quiet and
  // names no trace, summary or output. Returns the exit code (`return Fail(status);`).
  virtual int Fit(Cluster& cluster) = 0;

  const CommonFlags& common() const { return common_; }
  const CheckpointSettings& checkpoints() const { return checkpoints_; }
  // A command-line error (exit code 2): "tessera: error: MESSAGE" and where the help is.
  int UsageError(const std::string& message) const;

 private:
  CommonFlags common_;
  CheckpointSettings checkpoints_;
};

class CommandRegistry {
 public:
  // Always true (for TESSERA_REGISTER_COMMAND); a second command of a name replaces nothing
  // and fails the command line at start.
  bool Add(std::unique_ptr<Command> command);
  // In name order.
  std::vector<Command*> commands() const;
  Command* Find(const std::string& name) const;
  // The names of the commands that `tessera compare` runs.
  std::vector<std::string> ComparableNames() const;
  const std::vector<std::string>& duplicates() const { return duplicates_; }

 private:
  std::vector<std::unique_ptr<Command>> commands_;
  std::vector<std::string> duplicates_;
};

// The one-row CSV that --summary names and `tessera compare` reads: mode, objective, rounds,
// seconds, setup_seconds, bytes, peak_rss (this process's), stop, then the `extra` columns
// (the CompareSpec's `extra` names), written atomically.
Status WriteRunSummary(const std::string& path, const std::string& mode, const RunResult& run,
                       double setup_seconds,
                       const std::vector<std::pair<std::string, double>>& extra = {});

// Data-parallel runs: a line per parameter-server table on how stale its reads were
// ("staleness of reads, table lasso_beta: 4012 reads: 0 clocks 91.2%, 1: 8.8%; mean 0.09").
void PrintStaleness(const std::vector<TableStaleness>& staleness);
// The summary columns on it, ",staleness_mean,staleness_max,staleness" (the last: each table's
// "name=clocks:reads;..." joined by '|'), and a row's values for them (empty for a run
// without a parameter server), each starting with a comma.
std::string StalenessColumns();
std::string StalenessValues(const std::vector<TableStaleness>& staleness);

// The process's commands: the registered ones.
CommandRegistry& Commands();

#define TESSERA_REGISTER_COMMAND(Class)                                   \
  [[maybe_unused]] static const bool tessera_registered_command_##Class = \
      ::tessera::Commands().Add(std::make_unique<Class>())

// Parses the command line with every registered command plus `launch` and `compare`, and runs
// the one it names; returns the exit code (2: a usage error, printed with a pointer to --help).
int RunCommandLine(int argc, char** argv, const std::string& description,
                   const std::string& version);

}  // namespace tessera
