#pragma once
// "Did you mean ...?" for names a user typed (job sections, fields, choices): the closest
// candidate by edit distance, when it is close enough to be a plausible typo.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fusellm {

// Levenshtein distance over bytes.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`: case-insensitive equality first ("MinCE" for "minCE"), a
// shared prefix of 3+ characters ("optimizer" for "optim"), else edit distance within
// max(2, |word| / 3); nullopt when none is that close.
std::optional<std::string> closest_name(std::string_view word, const std::vector<std::string_view>& candidates);

// "\"a\", \"b\"" (choices and names in messages).
std::string quoted_list(const std::vector<std::string_view>& names);

}  // namespace fusellm
