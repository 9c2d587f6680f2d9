#include "fusellm/core/did_you_mean.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace fusellm {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest_name(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::optional<std::string> best;
  size_t best_d = SIZE_MAX;
  auto lower = [](std::string_view s) {
    std::string l(s);
    std::transform(l.begin(), l.end(), l.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    return l;
  };
  const std::string lw = lower(word);
  for (auto c : candidates) {
    const std::string lc = lower(c);
    size_t d = lw == lc ? 0 : edit_distance(word, c);
    const auto& shorter = lw.size() < lc.size() ? lw : lc;
    const auto& longer = lw.size() < lc.size() ? lc : lw;
    if (shorter.size() >= 3 && longer.starts_with(shorter)) d = std::min<size_t>(d, 1);
    if (d < best_d) best_d = d, best = std::string(c);
  }
  if (best && best_d <= std::max<size_t>(2, word.size() / 3)) return best;
  return std::nullopt;
}

std::string quoted_list(const std::vector<std::string_view>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", \"" : "\"") + std::string(names[i]) + "\"";
  return s;
}

}  // namespace fusellm
