#include "fusellm/eval/rolling_windows.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"

namespace fusellm::eval {

std::vector<RollingWindow> rolling_windows(std::span<const int32_t> ids, int32_t prefix, int64_t max_len) {
  if (max_len < 1) fail("rolling windows: the maximum length must be at least 1, found {}", max_len);
  const int64_t n = int64_t(ids.size());
  std::vector<RollingWindow> out;
  if (n == 0) return out;
  // First window: ([prefix] + ids[:first-1], ids[:first]) -> disjoint: context [prefix].
  const int64_t first = std::min(max_len, n);
  RollingWindow w{{prefix}, 1};
  w.tokens.insert(w.tokens.end(), ids.begin(), ids.begin() + first);
  out.push_back(std::move(w));
  // Later windows (pred_len = max_len - context_len + 1 = max_len): input ids[end-L-1, end-1),
  // targets ids[end-k, end); make_disjoint_window keeps the input's first L-k+1 tokens as context,
  // so context + targets = ids[end-L-1, end).
  for (int64_t predicted = first; predicted < n;) {
    const int64_t k = std::min(n - predicted, max_len), end = predicted + k;
    const int64_t begin = end - max_len - 1;
    out.push_back({std::vector<int32_t>(ids.begin() + begin, ids.begin() + end), max_len + 1 - k});
    predicted = end;
  }
  return out;
}

}  // namespace fusellm::eval
