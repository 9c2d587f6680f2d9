#pragma once
// The credit message of the rows exchange (teacher_server.hpp): a student tells a teacher replica
// it has consumed micro-batch `id`, returning the credit that micro-batch held. Eight bytes, the
// id as a little-endian int64.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fusellm::dist {

std::vector<std::byte> credit_message(int64_t micro_batch);
// The id a credit message carries; fusellm::Error naming `sender` when it is not one.
int64_t read_credit(std::span<const std::byte> message, const std::string& sender);

}  // namespace fusellm::dist
