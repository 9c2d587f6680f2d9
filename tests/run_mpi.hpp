#pragma once
// Runs the fusellm binary under mpirun as a user does (TOOLCHAIN.md: as root Open MPI needs its two
// variables; more ranks than this machine's cores need --oversubscribe), with a wall-clock limit
// far below ctest's, so a test of the MPI job can fail but never hang.
#include <string>

#include "run_fusellm.hpp"

namespace fusellm::testing {

// `env`: "NAME=value ..." exported to every rank (mpirun -x NAME).
inline CmdResult run_mpi(int ranks, const std::string& args, int timeout_s = 240, const std::string& env = "") {
  std::string exports;
  for (size_t b = 0; b < env.size();) {
    size_t e = env.find(' ', b);
    if (e == std::string::npos) e = env.size();
    const std::string kv = env.substr(b, e - b);
    if (!kv.empty()) exports += " -x " + kv.substr(0, kv.find('='));
    b = e + 1;
  }
  const std::string cmd = "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 " + env +
                          " timeout -k 5 " + std::to_string(timeout_s) + " mpirun --oversubscribe -x OMP_NUM_THREADS" +
                          exports + " -np " + std::to_string(ranks) + " " + FUSELLM_BINARY + " " + args + " 2>&1";
  return run_shell(cmd);
}

}  // namespace fusellm::testing
