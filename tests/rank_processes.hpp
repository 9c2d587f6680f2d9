#pragma once
// The processes of one run of the MPI job, for fault tests (tests/integration/test_faults.cpp):
// a run is found by a string that only its command lines hold (its output directory, passed as
// --set job.output_dir=...), its ranks by Open MPI's OMPI_COMM_WORLD_RANK in their environment
// (/proc/<pid>/environ). The run itself goes in the background (BackgroundRun) so that the test
// can watch it, hurt one rank, and time how long the others take to go.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fusellm::testing {

// /proc/<pid>/<file> (cmdline, environ): NUL-separated strings; "" when the process is gone.
inline std::string proc_file(pid_t pid, const char* file) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Live processes (not zombies: their cmdline is empty) whose command line contains `needle`;
// this test process aside.
inline std::vector<pid_t> processes_with(const std::string& needle) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = pid_t(std::stol(name));
    if (pid == ::getpid()) continue;
    if (proc_file(pid, "cmdline").find(needle) != std::string::npos) out.push_back(pid);
  }
  return out;
}

// The fusellm process of world rank `rank` among the processes with `needle`.
inline std::optional<pid_t> rank_process(const std::string& needle, int rank) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const pid_t pid : processes_with(needle)) {
    const std::string cmd = proc_file(pid, "cmdline");
    if (cmd.rfind(FUSELLM_BINARY, 0) != 0) continue;  // argv[0]: the binary (not mpirun, not the shell)
    const std::string env = proc_file(pid, "environ");
    for (size_t b = 0; b < env.size();) {
      const size_t e = env.find('\0', b);
      if (env.compare(b, (e == std::string::npos ? env.size() : e) - b, want) == 0) return pid;
      if (e == std::string::npos) break;
      b = e + 1;
    }
  }
  return std::nullopt;
}

// SIGKILL, pid by pid, every process with `needle` (a stopped one too), until none is left.
inline void kill_processes_with(const std::string& needle) {
  for (int round = 0; round < 50; ++round) {
    const auto pids = processes_with(needle);
    if (pids.empty()) return;
    for (const pid_t p : pids) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// A shell command running in the background, stdout and stderr to `log`. The destructor kills
// every process with `needle` left over (whatever the test's outcome) and reaps the shell.
class BackgroundRun {
 public:
  BackgroundRun(const std::string& cmd, std::string log, std::string needle)
      : log_(std::move(log)), needle_(std::move(needle)) {
    const std::string line = cmd + " > " + log_ + " 2>&1";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~BackgroundRun() {
    kill_processes_with(needle_);
    if (!code_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  BackgroundRun(const BackgroundRun&) = delete;
  BackgroundRun& operator=(const BackgroundRun&) = delete;

  // The exit code once the command has ended (-1: by a signal), nullopt while it runs.
  std::optional<int> code() {
    if (!code_ && pid_ > 0) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    return code_;
  }
  // Waits for the end, at most `limit` (then nullopt).
  std::optional<int> wait(std::chrono::duration<double> limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!code() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return code_;
  }
  std::string output() const {
    std::ifstream f(log_);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }

 private:
  std::string log_, needle_;
  pid_t pid_ = -1;
  std::optional<int> code_;
};

}  // namespace fusellm::testing
