#pragma once
// Each subcommand of `fusellm` lives in its own cmd_<name>.cpp and registers itself here.
// A subcommand's callback throws fusellm::Error on bad input; main() prints it and exits 1.
#include <CLI/CLI.hpp>

namespace fusellm::cli {

// Thrown by a callback that ends with an exit status of its own, not an error (train's
// kExitRequeue after a stop signal): main() returns the code.
struct ExitStatus {
  int code;
};

void add_info(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_score(CLI::App& app);
void add_version(CLI::App& app);
void add_export(CLI::App& app);
void add_convert(CLI::App& app);
void add_teach(CLI::App& app);
void add_align(CLI::App& app);
void add_vocab_map(CLI::App& app);
void add_align_compat(CLI::App& app);
void add_train(CLI::App& app);
void add_merge(CLI::App& app);
void add_config(CLI::App& app);
void add_timeline(CLI::App& app);
void add_plan(CLI::App& app);
void add_eval(CLI::App& app);
void add_init(CLI::App& app);
void add_index(CLI::App& app);
}  // namespace fusellm::cli
