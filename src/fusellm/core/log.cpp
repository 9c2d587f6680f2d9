#include "fusellm/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace fusellm {
void init_logging(bool verbose) {
  static bool done = false;
  if (!done) {
    auto logger = spdlog::stderr_color_mt("fusellm");
    logger->set_pattern("[%n] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
    done = true;
  }
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
}
}  // namespace fusellm
