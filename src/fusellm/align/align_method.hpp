#pragma once
// The token-alignment methods (paper sec. 3.3; align/align_tokens.hpp runs them): exact match
// (EM), minimum edit distance (MinED), and, beyond the paper, exact byte-span alignment. The
// spellings are those of the job file's [distill].alignment and `fusellm align --method`.
#include <cstdint>
#include <string_view>

#include "fusellm/core/config_field.hpp"

namespace fusellm::align {

enum class AlignMethod : uint8_t { kEM = 0, kMinED = 1, kByteSpan = 2 };
const config::EnumNames<AlignMethod>& align_method_names();  // "mined", "em", "bytespan"
const char* to_string(AlignMethod m);                         // "em", "mined", "bytespan"
AlignMethod parse_align_method(std::string_view s);           // throws Error listing the choices

}  // namespace fusellm::align
