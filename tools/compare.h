// `tessera compare APP ...`: runs the same app and data in model-parallel and data-parallel
// mode, each in a process of its own (so each has its own peak memory), under the same budget,
// and shows them side by side: a table on stdout, PREFIX.csv (the objective of both runs over
// time), PREFIX-summary.csv (the table) and PREFIX.png (gnuplot).
#pragma once

#include <string>
#include <vector>

namespace tessera {

struct CompareFlags {
  std::string app;                     // lasso
  std::string out = "compare";         // output prefix
  double budget_seconds = 0;           // per mode; 0 = none
  std::uint64_t budget_rounds = 0;     // model-parallel rounds = data-parallel clocks; 0 = none
  std::vector<std::string> forwarded;  // the app's own flags, given to both runs
};

// Returns the process exit code: 0, 1 (a run failed or bad input; the reason is on stderr).
int RunCompare(const CompareFlags& flags);

}  // namespace tessera
