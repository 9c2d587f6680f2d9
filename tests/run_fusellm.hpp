#pragma once
// Runs the fusellm binary (FUSELLM_BINARY) as a user does, for tests of whole commands: its exit
// code and stdout + stderr together.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace fusellm::testing {

struct CmdResult {
  int code = -1;
  std::string out;
};

// A shell command's exit code and stdout + stderr together (the command redirects 2>&1).
inline CmdResult run_shell(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline CmdResult run_fusellm(const std::string& args) {
  return run_shell(std::string("OMP_NUM_THREADS=1 ") + FUSELLM_BINARY + " " + args + " 2>&1");
}

}  // namespace fusellm::testing
