// The fusellm command. Subcommands are registered from cli/commands.hpp; errors from any of them
// are caught here and printed as one line, exit code 1 (CLI11's usage errors keep their codes).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "fusellm/cli/commands.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/core/openmp_env.hpp"

int main(int argc, char** argv) {
  fusellm::default_openmp_binding();
  CLI::App app{"fusellm: knowledge fusion of large language models (FuseLLM, ICLR 2024)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.parse_complete_callback([&] { fusellm::init_logging(verbose); });
  fusellm::cli::add_info(app);
  fusellm::cli::add_tokenize(app);
  fusellm::cli::add_score(app);
  fusellm::cli::add_version(app);
  fusellm::cli::add_export(app);
  fusellm::cli::add_teach(app);
  fusellm::cli::add_align(app);
  fusellm::cli::add_vocab_map(app);
  fusellm::cli::add_align_compat(app);
  fusellm::cli::add_train(app);
  fusellm::cli::add_merge(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fusellm::Error& e) {
    std::fprintf(stderr, "fusellm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fusellm: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
