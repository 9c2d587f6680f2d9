#include <cstdio>

#include "fusellm/cli/commands.hpp"

namespace fusellm::cli {
void add_version(CLI::App& app) {
  auto* sub = app.add_subcommand("version", "print the version and the build's options");
  sub->callback([] {
    // Scripts read these (scripts/demo.sh runs the teachers as MPI ranks only with "mpi: on").
    std::printf("fusellm 0.1.0 (kokkos: %s, cuda: %s, mpi: %s)\n",
#ifdef FUSELLM_HAVE_KOKKOS
                "on",
#else
                "off",
#endif
#ifdef FUSELLM_HAVE_CUDA
                "on",
#else
                "off",
#endif
#ifdef FUSELLM_HAVE_MPI
                "on"
#else
                "off"
#endif
    );
  });
}
}  // namespace fusellm::cli
