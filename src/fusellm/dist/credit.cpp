#include "fusellm/dist/credit.hpp"

#include <cstring>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

std::vector<std::byte> credit_message(int64_t micro_batch) {
  std::vector<std::byte> m(sizeof(int64_t));
  std::memcpy(m.data(), &micro_batch, sizeof micro_batch);
  return m;
}

int64_t read_credit(std::span<const std::byte> message, const std::string& sender) {
  if (message.size() != sizeof(int64_t))
    fail("a credit message from {} has {} bytes, expected {}", sender, message.size(), sizeof(int64_t));
  int64_t id = 0;
  std::memcpy(&id, message.data(), sizeof id);
  return id;
}

}  // namespace fusellm::dist
