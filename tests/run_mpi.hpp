#pragma once
// Runs the fusellm binary under mpirun as a user does (TOOLCHAIN.md: as root Open MPI needs its two
// variables; more ranks than this machine's cores need --oversubscribe), with a wall-clock limit
// far below ctest's, so a test of the MPI job can fail but never hang.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "run_fusellm.hpp"

namespace fusellm::testing {

// <tmp>/<prefix>_<pid>/<name>: the directory of one run of a job; the root is made empty on the
// first call (one prefix per test binary) and removed when the binary ends with every test passed
// (runs leave hundreds of MB of checkpoints); a failed test's runs stay for a look.
inline std::string run_dir(const std::string& prefix, const std::string& name) {
  namespace fs = std::filesystem;
  struct Root {
    fs::path path;
    explicit Root(fs::path p) : path(std::move(p)) {
      fs::remove_all(path);
      fs::create_directories(path);
    }
    Root(const Root&) = delete;
    Root& operator=(const Root&) = delete;
    ~Root() {
      std::error_code ec;  // a destructor cannot throw
      if (::testing::UnitTest::GetInstance()->Passed()) fs::remove_all(path, ec);
    }
  };
  static const Root root(fs::temp_directory_path() / (prefix + "_" + std::to_string(::getpid())));
  return (root.path / name).string();
}

// One application context of an MPMD launch (mpirun -np 2 fusellm A : -np 1 fusellm B): `ranks`
// ranks run the binary with `args`.
struct MpiApp {
  int ranks = 1;
  std::string args;
};

// The mpirun command line (stdout and stderr together) of an MPMD launch under `timeout`. `env`:
// "NAME=value ..." exported to every rank (mpirun -x NAME).
inline std::string mpi_command(const std::vector<MpiApp>& apps, int timeout_s = 240, const std::string& env = "") {
  std::string exports;
  for (size_t b = 0; b < env.size();) {
    size_t e = env.find(' ', b);
    if (e == std::string::npos) e = env.size();
    const std::string kv = env.substr(b, e - b);
    if (!kv.empty()) exports += " -x " + kv.substr(0, kv.find('='));
    b = e + 1;
  }
  std::string contexts;
  for (const MpiApp& a : apps)
    contexts += (contexts.empty() ? " -np " : " : -np ") + std::to_string(a.ranks) + " " + FUSELLM_BINARY + " " + a.args;
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 " + env + " timeout -k 5 " +
         std::to_string(timeout_s) + " mpirun --oversubscribe -x OMP_NUM_THREADS" + exports + contexts + " 2>&1";
}

inline CmdResult run_mpmd(const std::vector<MpiApp>& apps, int timeout_s = 240, const std::string& env = "") {
  return run_shell(mpi_command(apps, timeout_s, env));
}

// Every rank runs the binary with `args`.
inline CmdResult run_mpi(int ranks, const std::string& args, int timeout_s = 240, const std::string& env = "") {
  return run_mpmd({{ranks, args}}, timeout_s, env);
}

}  // namespace fusellm::testing
