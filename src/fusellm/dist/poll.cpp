#include "fusellm/dist/poll.hpp"

#include <fmt/format.h>

namespace fusellm::dist {

std::string_view tag_name(Tag tag) {
  switch (tag) {
    case Tag::control: return "control";
    case Tag::rows: return "rows";
    case Tag::credit: return "credit";
    case Tag::hidden: return "hidden";
    case Tag::end: return "end";
    case Tag::gradient: return "gradient";
    case Tag::test: return "test";
  }
  return "unknown";
}

void throw_timeout(const std::string& what, std::chrono::milliseconds waited) {
  throw TransportTimeout(fmt::format("{}: not done after {:.1f} s (the transport's timeout); the peer may have "
                                     "died or stopped sending",
                                     what, waited.count() / 1000.0));
}

}  // namespace fusellm::dist
