#include "tessera/tools/launch.h"

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

#include "tessera/core/line_reader.h"
#include "tessera/core/status.h"
#include "tessera/net/auth.h"
#include "tessera/net/tcp_transport.h"

namespace tessera {

CLI::App* AddLaunchCommand(CLI::App& app, LaunchFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "Run N processes of a tessera command as one multi-process run, on this machine or on the "
      "hosts of a hostfile, e.g. tessera launch -n 3 -- tessera lasso --data F --workers 2");
  cmd->add_option("-n,--processes", f.processes,
                  "Number of processes (default: 2, or with --hostfile every slot it names)");
  cmd->add_option("--bind", f.bind,
                  "Address the rendezvous (process 0) listens on, for a run on this machine "
                  "(default 127.0.0.1)");
  cmd->add_option("--hostfile", f.hostfile,
                  "Hosts to run on, one per line as `host [slots=N]` (Open MPI's syntax); ranks "
                  "fill each host's slots in order, process 0 on the first host, which is also "
                  "the rendezvous. localhost and this machine's name run here; other hosts "
                  "through --rsh, in this directory, which must exist there with the data");
  cmd->add_option("--rsh", f.rsh,
                  "With --hostfile: the command that runs a shell command line on a host; "
                  "{host} stands for the host, else it goes after the command")
      ->capture_default_str();
  cmd->add_option("--port", f.port,
                  "The rendezvous port (default: one free on this machine); with --hostfile, "
                  "the first host must have it free")
      ->check(CLI::Range(1, 65535));
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

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

StatusOr<std::vector<HostSlots>> ReadHostfile(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::vector<HostSlots> hosts;
  std::string_view line;
  while (in.Next(line)) {
    const std::string text(line.substr(0, line.find('#')));
    std::istringstream words(text);
    HostSlots h;
    if (!(words >> h.host)) continue;  // blank or a comment
    std::string word;
    while (words >> word) {
      if (word.rfind("slots=", 0) == 0) {
        const std::string n = word.substr(6);
        char* end = nullptr;
        errno = 0;
        const long slots = std::strtol(n.c_str(), &end, 10);
        if (n.empty() || *end != '\0' || errno != 0 || slots < 1 || slots > 4096) {
          return InvalidArgument(in.Where() + "slots must be a whole number in [1, 4096], not '" +
                                 n + "'");
        }
        h.slots = static_cast<int>(slots);
      } else if (word.rfind("max_slots=", 0) != 0) {  // max_slots: Open MPI's, nothing here
        return InvalidArgument(in.Where() + "expected `host [slots=N]`, not '" + word + "'");
      }
    }
    hosts.push_back(std::move(h));
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (hosts.empty()) return InvalidArgument(path + ": names no host");
  return hosts;
}

namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void OnSignal(int sig) { g_signal = sig; }

int Fail(const Status& s) {
  std::cerr << "tessera launch: error: " << s.message() << std::endl;
  return 1;
}

// True for names of this machine: it runs their processes itself.
bool IsThisHost(const std::string& host) {
  if (host == "localhost" || host == "127.0.0.1" || host == "::1") return true;
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return false;
  const std::string me = name;
  return host == me || host == me.substr(0, me.find('.'));
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
  if (!f.hostfile.empty()) {
    if (!f.bind.empty()) {
      return Fail(InvalidArgument(
          "--bind is for a run on this machine; with --hostfile the rendezvous is the first "
          "host"));
    }
    auto hosts = ReadHostfile(f.hostfile);
    if (!hosts.ok()) return Fail(hosts.status());
    int slots = 0;
    for (const HostSlots& h : *hosts) slots += h.slots;
    if (f.processes < 0) f.processes = std::min(slots, 4096);
    if (f.processes > slots) {
      return Fail(InvalidArgument("-n " + std::to_string(f.processes) + " needs more slots than " +
                                  f.hostfile + " has (" + std::to_string(slots) + ")"));
    }
    f.hosts.clear();
    for (const HostSlots& h : *hosts) {
      for (int k = 0; k < h.slots && static_cast<int>(f.hosts.size()) < f.processes; ++k) {
        f.hosts.push_back(h.host);
      }
    }
  }
  if (f.processes < 0) f.processes = 2;
  if (f.bind.empty()) f.bind = "127.0.0.1";
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
  const bool spread = !f.hosts.empty();
  auto port = f.port > 0 ? StatusOr<std::uint16_t>(static_cast<std::uint16_t>(f.port))
                         : net::FreePort(spread ? "0.0.0.0" : f.bind);
  if (!port.ok()) return Fail(port.status());
  auto nonce = net::GenerateSecret();  // the run's identity: fresh for every start
  if (!nonce.ok()) return Fail(nonce.status());
  const std::string run_id = "launch " + nonce->substr(0, 16);
  // Across hosts the rendezvous is the first host as the hostfile names it, unless that is this
  // machine and every process runs here.
  bool all_here = true;
  for (const std::string& h : f.hosts) all_here = all_here && IsThisHost(h);
  const std::string host = spread && !all_here   ? f.hosts.front()
                           : f.bind == "0.0.0.0" ? "127.0.0.1"
                           : f.bind == "::"      ? "::1"
                                                 : f.bind;
  const std::string rendezvous =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(*port);
  const std::string program = Program(f.command.front());

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a process that died before reading its secret is reported below

  std::vector<pid_t> pids(static_cast<std::size_t>(f.processes), -1);
  int running = 0;
  std::error_code cwd_error;
  const std::string cwd = std::filesystem::current_path(cwd_error).string();
  for (int rank = 0; rank < f.processes; ++rank) {
    const std::string& on = spread ? f.hosts[static_cast<std::size_t>(rank)] : host;
    const bool remote = spread && !IsThisHost(on);
    int local_size = f.processes;
    if (spread) local_size = static_cast<int>(std::count(f.hosts.begin(), f.hosts.end(), on));
    int secret_pipe[2] = {-1, -1};
    if (remote && pipe(secret_pipe) != 0) {
      std::cerr << "tessera launch: error: pipe: " << std::strerror(errno) << std::endl;
      break;
    }
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
      if (remote) {
        // `rsh HOST 'cd DIR && read -r TESSERA_SECRET && ... exec env ... COMMAND'`, the
        // secret on its standard input.
        dup2(secret_pipe[0], 0);
        close(secret_pipe[0]);
        close(secret_pipe[1]);
        std::string line = "cd -- " + ShellQuote(cwd) +
                           " && read -r TESSERA_SECRET && export TESSERA_SECRET && exec env -u "
                           "TESSERA_SECRET_FILE";
        for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
                 {"TESSERA_RANK", std::to_string(rank)},
                 {"TESSERA_SIZE", std::to_string(f.processes)},
                 {"TESSERA_LOCAL_SIZE", std::to_string(local_size)},
                 {"TESSERA_RENDEZVOUS", rendezvous},
                 {"TESSERA_RUN_ID", run_id},
                 {"TESSERA_RESTART", std::to_string(attempt)}}) {
          line += " " + name + "=" + ShellQuote(value);
        }
        line += " " + ShellQuote(program);
        for (std::size_t i = 1; i < f.command.size(); ++i) line += " " + ShellQuote(f.command[i]);
        std::vector<std::string> words;
        std::istringstream rsh(f.rsh);
        bool placed = false;
        for (std::string w; rsh >> w;) {
          for (std::size_t at; (at = w.find("{host}")) != std::string::npos; placed = true) {
            w.replace(at, 6, on);
          }
          words.push_back(w);
        }
        if (!placed) words.push_back(on);
        words.push_back(line);
        std::vector<char*> argv;
        for (std::string& w : words) argv.push_back(w.data());
        argv.push_back(nullptr);
        execvp(argv[0], argv.data());
        std::cerr << "tessera launch: error: cannot run '" << words.front()
                  << "' (--rsh): " << std::strerror(errno) << std::endl;
        _exit(127);
      }
      setenv("TESSERA_RANK", std::to_string(rank).c_str(), 1);
      setenv("TESSERA_SIZE", std::to_string(f.processes).c_str(), 1);
      setenv("TESSERA_LOCAL_SIZE", std::to_string(local_size).c_str(), 1);
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
    if (remote) {
      close(secret_pipe[0]);
      const std::string text = *secret + "\n";
      const bool sent =
          write(secret_pipe[1], text.data(), text.size()) == static_cast<ssize_t>(text.size());
      close(secret_pipe[1]);
      if (!sent) {
        std::cerr << "tessera launch: error: cannot hand the secret to process " << rank << " on "
                  << on << std::endl;
      }
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
