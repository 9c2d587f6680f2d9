#pragma once
// Runs the fusellm binary (FUSELLM_BINARY) as a user does, for tests of whole commands: its exit
// code, stdout + stderr together, and how long it took.
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

namespace fusellm::testing {

struct CmdResult {
  int code = -1;
  std::string out;
  double seconds = 0;  // wall-clock time (a refusal must come fast, not at a timeout)
};

// A shell command's exit code and stdout + stderr together (the command redirects 2>&1).
inline CmdResult run_shell(const std::string& cmd) {
  CmdResult r;
  const auto start = std::chrono::steady_clock::now();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

// timeout_s > 0: killed after that many seconds (timeout(1); exit code 124).
inline CmdResult run_fusellm(const std::string& args, int timeout_s = 0) {
  const std::string limit = timeout_s > 0 ? "timeout -k 5 " + std::to_string(timeout_s) + " " : "";
  return run_shell("OMP_NUM_THREADS=1 " + limit + FUSELLM_BINARY + " " + args + " 2>&1");
}

}  // namespace fusellm::testing
