// The fusellm command. Subcommands are registered from cli/commands.hpp; errors from any of them
// are caught here and printed as one line. Exit codes (the table in README.md, "The command"): 0 success (and
// --help), 1 an error in the input or the run, 2 a usage error (the command line itself; as
// argparse, click and the shell builtins use 2, where CLI11 would return 101..115 by kind), 75
// `train` stopped on a signal after a checkpoint (core/stop_signal.hpp: requeue the job).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "fusellm/cli/commands.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/core/openmp_env.hpp"

namespace {
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr const char* kSeeHelp = "Run with --help for more information.";

// `fusellm frobnicate`: CLI11 says only "A subcommand is required"; name the word it did not know
// and the subcommands there are. True when that was the mistake (and it was reported).
bool unknown_subcommand(CLI::App& app) {
  if (!app.get_subcommands().empty() || app.remaining().empty()) return false;
  std::string names;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    names += (names.empty() ? "" : ", ") + sub->get_name();
  std::fprintf(stderr, "fusellm: usage error: unknown subcommand '%s' (subcommands: %s)\n%s\n",
               app.remaining().front().c_str(), names.c_str(), kSeeHelp);
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  fusellm::default_openmp_binding();
  CLI::App app{"fusellm: knowledge fusion of large language models (FuseLLM, ICLR 2024)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  // One line, as fusellm's other errors ("fusellm: error: ..."), then where help is.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("fusellm: usage error: ") + e.what() + "\n" + kSeeHelp + "\n";
  });
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.parse_complete_callback([&] { fusellm::init_logging(verbose); });
  fusellm::cli::add_info(app);
  fusellm::cli::add_tokenize(app);
  fusellm::cli::add_score(app);
  fusellm::cli::add_version(app);
  fusellm::cli::add_export(app);
  fusellm::cli::add_convert(app);
  fusellm::cli::add_teach(app);
  fusellm::cli::add_align(app);
  fusellm::cli::add_vocab_map(app);
  fusellm::cli::add_align_compat(app);
  fusellm::cli::add_train(app);
  fusellm::cli::add_merge(app);
  fusellm::cli::add_config(app);
  fusellm::cli::add_timeline(app);
  fusellm::cli::add_plan(app);
  fusellm::cli::add_eval(app);
  fusellm::cli::add_init(app);
  fusellm::cli::add_index(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (unknown_subcommand(app)) return kExitUsage;
    // app.exit prints the message (and the help for --help); its code is 0 for --help.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  } catch (const fusellm::cli::ExitStatus& e) {
    return e.code;
  } catch (const fusellm::Error& e) {
    std::fprintf(stderr, "fusellm: error: %s\n", e.what());
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fusellm: internal error: %s\n", e.what());
    return kExitError;
  }
  return kExitOk;
}
