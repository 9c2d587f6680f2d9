// The fusellm command. Subcommands are registered in cli/commands.hpp; errors from any of them
// are caught here and printed as one line, exit code 1 (2 for usage errors, from CLI11).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fusellm: knowledge fusion of large language models (FuseLLM)"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  fusellm::init_logging(verbose);
  return 0;
}
