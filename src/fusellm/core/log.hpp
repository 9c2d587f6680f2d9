#pragma once
// Logging goes through spdlog to stderr ("[fusellm] [warn] ..."), so stdout stays machine
// readable (JSON lines, tables) for every subcommand.
#include <spdlog/spdlog.h>

namespace fusellm {
void init_logging(bool verbose = false);  // idempotent
}  // namespace fusellm
