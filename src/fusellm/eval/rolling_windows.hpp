#pragma once
// lm-evaluation-harness's rolling windows for a perplexity document (lm_eval/utils.py
// get_rolling_token_windows with context_len=1, then make_disjoint_window), as HFLM's
// loglikelihood_rolling builds them:
//
//   the first window predicts tokens[0, min(L, n)) from the prefix token (BOS, else EOS) and the
//   tokens before each; every later window predicts the next up-to-L tokens, its context being
//   the tokens just before them, so that context + targets fill L + 1 tokens (the last window's
//   context is longer than one token when it predicts fewer than L).
//
// Each window is context + targets; the model reads all but the last token (L positions at most)
// and the targets are the tokens from `first_target` on. Every token of the document is a target
// exactly once.
#include <cstdint>
#include <span>
#include <vector>

namespace fusellm::eval {

struct RollingWindow {
  std::vector<int32_t> tokens;  // context, then the targets
  int64_t first_target = 0;     // = the context's length
};

// ids: the document's tokens (no BOS added); max_len: L >= 1. No window for an empty document.
std::vector<RollingWindow> rolling_windows(std::span<const int32_t> ids, int32_t prefix, int64_t max_len);

}  // namespace fusellm::eval
