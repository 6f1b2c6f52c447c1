#include "tools/launch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "core/status.h"
#include "net/auth.h"
#include "net/tcp_transport.h"

namespace tessera {

CLI::App* AddLaunchCommand(CLI::App& app, LaunchFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "Run N processes of a tessera command on this machine as one multi-process run, e.g. "
      "tessera launch -n 3 -- tessera lasso --data F --workers 2");
  cmd->add_option("-n,--processes", f.processes, "Number of processes")->capture_default_str();
  cmd->add_option("--bind", f.bind, "Address the rendezvous (process 0) listens on")
      ->capture_default_str();
  cmd->add_option("--grace", f.grace,
                  "Seconds the other processes get to stop on their own after one fails")
      ->capture_default_str();
  cmd->add_option("--restarts", f.restarts,
                  "After a failure, start all N again this many times (with TESSERA_RESTART set: "
                  "a command given a checkpoint directory resumes from it)")
      ->capture_default_str();
  cmd->add_option("command", f.command, "The command to run (after --)")->required();
  cmd->prefix_command();  // everything from the command on is its own
  return cmd;
}

namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void OnSignal(int sig) { g_signal = sig; }

int Fail(const Status& s) {
  std::cerr << "tessera launch: error: " << s.message() << std::endl;
  return 1;
}

// `tessera` itself when the command names it and it is not on PATH.
std::string Program(const std::string& name) {
  if (name != "tessera" || name.find('/') != std::string::npos) return name;
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    for (std::size_t at = 0; at <= dirs.size();) {
      std::size_t end = dirs.find(':', at);
      if (end == std::string::npos) end = dirs.size();
      const std::string candidate = dirs.substr(at, end - at) + "/" + name;
      if (end > at && access(candidate.c_str(), X_OK) == 0) return name;
      at = end + 1;
    }
  }
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? name : self.string();
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return std::string("was killed by signal ") + std::to_string(sig) +
           (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

int ExitCode(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

int RunOnce(const LaunchFlags& f, int attempt);

}  // namespace

int RunLaunch(LaunchFlags& f) {
  if (f.processes < 1 || f.processes > 4096) {
    return Fail(
        InvalidArgument("-n must be between 1 and 4096, got " + std::to_string(f.processes)));
  }
  if (!(f.grace >= 0)) return Fail(InvalidArgument("--grace must be >= 0"));
  if (f.restarts < 0) return Fail(InvalidArgument("--restarts must be >= 0"));
  if (!f.command.empty() && f.command.front() == "--") f.command.erase(f.command.begin());
  if (f.command.empty()) return Fail(InvalidArgument("no command to launch (put it after --)"));
  for (int attempt = 0;; ++attempt) {
    const int code = RunOnce(f, attempt);
    if (code == 0 || g_interrupted != 0 || attempt == f.restarts) return code;
    std::cerr << "tessera launch: starting all " + std::to_string(f.processes) +
                     " processes again (restart " + std::to_string(attempt + 1) + " of " +
                     std::to_string(f.restarts) + ")\n"
              << std::flush;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

namespace {

// One start of all N processes; `attempt` > 0 is a restart (TESSERA_RESTART).
int RunOnce(const LaunchFlags& f, int attempt) {
  auto secret = net::GenerateSecret();
  if (!secret.ok()) return Fail(secret.status());
  auto port = net::FreePort(f.bind);
  if (!port.ok()) return Fail(port.status());
  auto nonce = net::GenerateSecret();  // the run's identity: fresh for every start
  if (!nonce.ok()) return Fail(nonce.status());
  const std::string run_id = "launch " + nonce->substr(0, 16);
  const std::string host = f.bind == "0.0.0.0" ? "127.0.0.1" : f.bind == "::" ? "::1" : f.bind;
  const std::string rendezvous =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(*port);
  const std::string program = Program(f.command.front());

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);

  std::vector<pid_t> pids(static_cast<std::size_t>(f.processes), -1);
  int running = 0;
  for (int rank = 0; rank < f.processes; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "tessera launch: error: fork: " << std::strerror(errno) << std::endl;
      for (pid_t p : pids) {
        if (p > 0) kill(p, SIGTERM);
      }
      break;
    }
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGHUP, SIG_DFL);
      setenv("TESSERA_RANK", std::to_string(rank).c_str(), 1);
      setenv("TESSERA_SIZE", std::to_string(f.processes).c_str(), 1);
      setenv("TESSERA_LOCAL_SIZE", std::to_string(f.processes).c_str(), 1);
      setenv("TESSERA_RENDEZVOUS", rendezvous.c_str(), 1);
      setenv("TESSERA_SECRET", secret->c_str(), 1);
      setenv("TESSERA_RUN_ID", run_id.c_str(), 1);
      setenv("TESSERA_RESTART", std::to_string(attempt).c_str(), 1);
      unsetenv("TESSERA_SECRET_FILE");
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (std::size_t i = 1; i < f.command.size(); ++i)
        argv.push_back(const_cast<char*>(f.command[i].c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::cerr << "tessera launch: error: cannot run '" << program << "': " << std::strerror(errno)
                << std::endl;
      _exit(127);
    }
    pids[static_cast<std::size_t>(rank)] = pid;
    ++running;
  }

  using Clock = std::chrono::steady_clock;
  int first_failure = -1, failure_status = 0;
  bool terminated = false, killed = false;
  Clock::time_point stop_by = Clock::time_point::max();
  auto signal_all = [&](int sig) {
    for (pid_t p : pids) {
      if (p > 0) kill(p, sig);
    }
  };
  while (running > 0) {
    if (g_signal != 0) {  // pass Ctrl-C and friends on; a second one is passed on too
      signal_all(g_signal);
      g_signal = 0;
      g_interrupted = 1;  // and no restart after it
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (std::size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != pid) continue;
        pids[r] = -1;
        --running;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
        if (first_failure >= 0) {  // the others' own messages say why; a signal is news
          if (WIFSIGNALED(status) && !terminated) {
            std::cerr << "tessera launch: process " + std::to_string(r) + " " + Describe(status) +
                             "\n"
                      << std::flush;
          }
          break;
        }
        first_failure = static_cast<int>(r);
        failure_status = status;
        std::ostringstream line;
        line << "tessera launch: process " << r << " " << Describe(status);
        if (running > 0) line << "; the other " << running << " get " << f.grace << " s to stop";
        std::cerr << line.str() + "\n" << std::flush;
        stop_by = Clock::now() + std::chrono::milliseconds(static_cast<long>(f.grace * 1000));
        break;
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    const auto now = Clock::now();
    if (!terminated && now >= stop_by) {
      std::cerr << "tessera launch: terminating the " << running << " still running" << std::endl;
      signal_all(SIGTERM);
      signal_all(SIGCONT);
      terminated = true;
      stop_by = now + std::chrono::seconds(3);
    } else if (terminated && !killed && now >= stop_by) {
      signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return first_failure >= 0 ? ExitCode(failure_status) : 0;
}

}  // namespace
}  // namespace tessera
