#include "tessera/tools/compare.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>

#include "tessera/core/metrics.h"
#include "tessera/core/status.h"
#include "tessera/tools/command.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

const char* const kModes[] = {"model-parallel", "data-parallel"};

// A CSV file with a header, as rows of name -> field.
StatusOr<std::vector<std::map<std::string, std::string>>> ReadTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": missing");
  std::string line;
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  auto split = [](const std::string& l) {
    std::vector<std::string> out;
    std::stringstream ss(l);
    std::string f;
    while (std::getline(ss, f, ',')) out.push_back(f);
    return out;
  };
  if (!std::getline(in, line)) return DataLoss(path + ": empty");
  header = split(line);
  int number = 1;
  while (std::getline(in, line)) {
    ++number;
    auto fields = split(line);
    if (fields.size() + 1 == header.size()) fields.emplace_back();  // trailing empty field
    if (fields.size() != header.size()) {
      return DataLoss(path + ":" + std::to_string(number) + ": " + std::to_string(fields.size()) +
                      " fields, header has " + std::to_string(header.size()));
    }
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < header.size(); ++i) row[header[i]] = fields[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

double Num(const std::map<std::string, std::string>& row, const std::string& key) {
  auto it = row.find(key);
  if (it == row.end() || it->second.empty()) return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(it->second.c_str(), nullptr);
}

// Runs argv[0] (a path, or a name looked up on PATH) and waits; returns its exit code, 127 if it
// could not be started.
int RunProcess(const std::vector<std::string>& args, bool quiet_stdout) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (quiet_stdout) {
      if (std::freopen("/dev/null", "w", stdout) == nullptr) _exit(127);
    }
    execvp(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

struct ModeRun {
  std::string mode;
  std::map<std::string, std::string> summary;
  std::vector<std::map<std::string, std::string>> trace;
};

std::string Fixed(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

std::string Sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

// The value plotted for one trace row: relative suboptimality, or the app's metric.
double CurveValue(const CompareSpec& app, const std::map<std::string, std::string>& row,
                  double best) {
  if (app.curve != "objective") return Num(row, app.curve);
  const double f = Num(row, "objective");
  return std::max((f - best) / std::max(std::abs(best), 1e-300), 1e-16);
}

Status Plot(const CompareSpec& app, const std::string& prefix, const fs::path& dir,
            const std::vector<ModeRun>& runs, double best, const std::string& title,
            bool& plotted) {
  plotted = false;
  const bool gap = app.curve == "objective";
  // The output name and the title (user text) reach gnuplot as its arguments ARG1 and ARG2,
  // data it never parses as script.
  std::string script =
      "set terminal pngcairo size 1200,460 font ',10'\nset output ARG1\n"
      "set datafile separator ','\nset multiplot layout 1,2 title ARG2\n" +
      std::string(gap ? "set logscale y\nset format y '10^{%L}'\n" : "") + "set grid\nset key " +
      (app.rising ? "bottom" : "top") + " right\nset ylabel '" + app.curve_label + "'\n";
  std::string plot_time = "set xlabel 'seconds (setup excluded)'\nplot ";
  std::string plot_bytes = "set logscale x\nset xlabel 'bytes moved'\nplot ";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const fs::path dat = dir / (runs[i].mode + ".dat");
    std::ofstream out(dat);
    for (const auto& row : runs[i].trace) {
      const double v = CurveValue(app, row, best);
      if (std::isnan(v) || std::isnan(Num(row, "objective"))) continue;
      out << FormatDouble(Num(row, "seconds")) << "," << FormatDouble(v) << ","
          << FormatDouble(std::max(Num(row, "bytes"), 1.0)) << "\n";
    }
    const std::string sep = i + 1 < runs.size() ? ", " : "\n";
    plot_time +=
        "'" + dat.string() + "' using 1:2 with linespoints title '" + runs[i].mode + "'" + sep;
    plot_bytes +=
        "'" + dat.string() + "' using 3:2 with linespoints title '" + runs[i].mode + "'" + sep;
  }
  script += plot_time + plot_bytes + "unset multiplot\n";
  const fs::path gp = dir / "plot.gp";
  std::ofstream(gp) << script;
  // gnuplot draws into the private directory; the picture then moves beside the other outputs
  // through a fresh temporary name, like every file Tessera writes.
  const fs::path png = dir / "plot.png";
  const int rc = RunProcess({"gnuplot", "-c", gp.string(), png.string(), title}, true);
  if (rc == 127) return Status::Ok();  // not installed: the caller says so
  if (rc != 0) {
    return Internal("gnuplot failed (exit " + std::to_string(rc) + ") on " + gp.string());
  }
  TESSERA_ASSIGN_OR_RETURN(TempFile temp, CreateTempFor(prefix + ".png"));
  ::close(temp.fd);
  std::error_code ec;
  fs::copy_file(png, temp.name, fs::copy_options::overwrite_existing, ec);
  if (ec || std::rename(temp.name.c_str(), (prefix + ".png").c_str()) != 0) {
    std::remove(temp.name.c_str());
    return DataLoss(prefix + ".png: cannot write" + (ec ? ": " + ec.message() : ""));
  }
  plotted = true;
  return Status::Ok();
}

int FailCompare(const Status& s) {
  std::cerr << "tessera compare: error: " << s.message() << std::endl;
  return 1;
}

}  // namespace

int RunCompare(const CompareFlags& flags) {
  Command* command = Commands().Find(flags.app);
  const CompareSpec* app = command ? command->compare() : nullptr;
  if (!app) {
    std::string names;
    for (const std::string& n : Commands().ComparableNames()) {
      names += (names.empty() ? "" : ", ") + n;
    }
    return FailCompare(InvalidArgument("unknown app '" + flags.app + "' (expected " + names + ")"));
  }
  std::vector<std::string> own = {"--mode", "--trace", "--summary", "--output", "--quiet"};
  own.insert(own.end(), app->own.begin(), app->own.end());
  for (const std::string& a : flags.forwarded) {
    for (const std::string& o : own) {
      if (a == o || a.rfind(o + "=", 0) == 0) {
        return FailCompare(
            InvalidArgument(a +
                            " is set by compare itself (both modes run; use --budget-seconds or "
                            "--budget-rounds for limits and --out for the files)"));
      }
    }
  }
  if (!(flags.budget_seconds >= 0))
    return FailCompare(InvalidArgument("--budget-seconds must be >= 0"));
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return FailCompare(Internal("cannot find the tessera executable: " + ec.message()));
  std::string tmpl = (fs::temp_directory_path() / "tessera-compare-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return FailCompare(Internal("cannot create a temporary directory"));
  const fs::path dir = tmpl;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{dir};

  std::vector<ModeRun> runs;
  for (int m = 0; m < 2; ++m) {
    const std::string mode = kModes[m];
    std::vector<std::string> args = {self.string(), flags.app};
    args.insert(args.end(), flags.forwarded.begin(), flags.forwarded.end());
    const fs::path trace = dir / (mode + ".trace.csv");
    const fs::path summary = dir / (mode + ".summary.csv");
    args.insert(args.end(), {"--mode", mode, "--trace", trace.string(), "--summary",
                             summary.string(), "--quiet"});
    args.insert(args.end(), app->child_args.begin(), app->child_args.end());
    if (flags.budget_seconds > 0) {
      args.insert(args.end(), {app->seconds_flag, FormatDouble(flags.budget_seconds)});
    }
    if (flags.budget_rounds > 0) {
      args.insert(args.end(), {app->rounds_flag[m], std::to_string(flags.budget_rounds)});
    }
    std::cerr << "tessera compare: running " << mode << " ..." << std::endl;
    const int rc = RunProcess(args, true);
    if (rc != 0) {
      return FailCompare(Internal("the " + mode + " run failed (exit " + std::to_string(rc) +
                                  "); its error is above"));
    }
    ModeRun run;
    run.mode = mode;
    auto s = ReadTable(summary.string());
    if (!s.ok() || s->size() != 1) return FailCompare(DataLoss(mode + ": no summary"));
    run.summary = (*s)[0];
    auto t = ReadTable(trace.string());
    if (!t.ok()) return FailCompare(t.status());
    run.trace = std::move(*t);
    runs.push_back(std::move(run));
  }

  // F*: the best objective either run reached.
  double best = HUGE_VAL;
  for (const auto& r : runs) {
    best = std::min(best, Num(r.summary, "objective"));
    for (const auto& row : r.trace) {
      const double f = Num(row, "objective");
      if (!std::isnan(f)) best = std::min(best, f);
    }
  }
  auto field = [](const std::map<std::string, std::string>& row, const std::string& key) {
    auto it = row.find(key);
    return it == row.end() ? std::string() : it->second;
  };
  std::string about;
  if (!field(runs[0].summary, "lambda").empty()) {
    about = ": lambda " + Sci(Num(runs[0].summary, "lambda"));
  }
  std::printf(
      "tessera compare %s%s, budget %s\n", flags.app.c_str(), about.c_str(),
      flags.budget_seconds > 0 || flags.budget_rounds > 0
          ? ((flags.budget_seconds > 0 ? FormatDouble(flags.budget_seconds) + " s " : "") +
             (flags.budget_rounds > 0 ? std::to_string(flags.budget_rounds) + " rounds" : ""))
                .c_str()
          : "until converged");
  std::printf("%-15s %-18s %-9s", "mode", "objective", "rel.gap");
  for (const auto& e : app->extra) std::printf(" %-10s", e.c_str());
  std::printf(" %-8s %-9s %-9s %-12s %-9s %s\n", "rounds", "run s", "setup s", "MB moved",
              "peak MiB", "stop");
  std::string header = "mode,objective,rel_gap";
  for (const auto& e : app->extra) header += "," + e;
  header += ",rounds,seconds,setup_seconds,bytes,peak_rss_bytes,stop,staleness_mean,staleness_max";
  CsvWriter table;
  if (auto st = table.Open(flags.out + "-summary.csv", header); !st.ok()) return FailCompare(st);
  for (const auto& r : runs) {
    const auto& s = r.summary;
    const double f = Num(s, "objective");
    const double gap = (f - best) / std::max(std::abs(best), 1e-300);
    std::printf("%-15s %-18.12g %-9s", r.mode.c_str(), f, Sci(gap).c_str());
    std::string row = r.mode + "," + field(s, "objective") + "," + FormatDouble(gap);
    for (const auto& e : app->extra) {
      const double v = Num(s, e);
      const bool integral = v == std::floor(v) && std::abs(v) < 1e15;
      std::printf(" %-10s", integral                                   ? Fixed(v, 0).c_str()
                            : std::abs(v) < 1e-3 || std::abs(v) >= 1e6 ? Sci(v).c_str()
                                                                       : Fixed(v, 4).c_str());
      row += "," + field(s, e);
    }
    std::printf(" %-8.0f %-9s %-9s %-12s %-9s %s\n", Num(s, "rounds"),
                Fixed(Num(s, "seconds"), 3).c_str(), Fixed(Num(s, "setup_seconds"), 3).c_str(),
                Fixed(Num(s, "bytes") / 1e6, 2).c_str(),
                Fixed(Num(s, "peak_rss") / 1048576.0, 1).c_str(), field(s, "stop").c_str());
    row += "," + field(s, "rounds") + "," + field(s, "seconds") + "," + field(s, "setup_seconds") +
           "," + field(s, "bytes") + "," + field(s, "peak_rss") + "," + field(s, "stop") + "," +
           field(s, "staleness_mean") + "," + field(s, "staleness_max");
    table.Row(row);
  }
  for (const auto& r : runs) {  // what the parameter server's reads really were
    const auto& s = r.summary;
    if (field(s, "staleness_mean").empty()) continue;
    std::printf("%s reads: %s clocks stale on average, at most %s (clocks:reads %s)\n",
                r.mode.c_str(), Fixed(Num(s, "staleness_mean"), 2).c_str(),
                field(s, "staleness_max").c_str(), field(s, "staleness").c_str());
  }
  if (auto st = table.Finish(); !st.ok()) return FailCompare(st);

  const bool metric = app->curve != "objective";
  CsvWriter curves;
  if (auto st = curves.Open(flags.out + ".csv", "mode,round,seconds,objective,rel_gap,bytes" +
                                                    (metric ? "," + app->curve : std::string()));
      !st.ok()) {
    return FailCompare(st);
  }
  for (const auto& r : runs) {
    for (const auto& row : r.trace) {
      const double f = Num(row, "objective");
      if (std::isnan(f)) continue;
      curves.Row(r.mode + "," + field(row, "round") + "," + field(row, "seconds") + "," +
                 field(row, "objective") + "," +
                 FormatDouble((f - best) / std::max(std::abs(best), 1e-300)) + "," +
                 field(row, "bytes") + (metric ? "," + field(row, app->curve) : std::string()));
    }
  }
  if (auto st = curves.Finish(); !st.ok()) return FailCompare(st);

  bool plotted = false;
  const std::string title = "tessera compare " + flags.app + about;
  if (auto st = Plot(*app, flags.out, dir, runs, best, title, plotted); !st.ok())
    return FailCompare(st);
  std::printf("wrote %s.csv, %s-summary.csv", flags.out.c_str(), flags.out.c_str());
  if (plotted) {
    std::printf(", %s.png\n", flags.out.c_str());
  } else {
    std::printf("; PNG skipped: gnuplot not found (apt-get install gnuplot-nox)\n");
  }
  return 0;
}

}  // namespace tessera
