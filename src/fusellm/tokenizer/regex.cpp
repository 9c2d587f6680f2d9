#include "fusellm/tokenizer/regex.hpp"

#include <oniguruma.h>

#include <mutex>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

namespace {
std::mutex& onig_new_mutex() {
  static std::mutex m;  // the onig crate also serializes onig_new
  return m;
}
void init_onig_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encs[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encs, 1);
  });
}
// One match region per thread, reused across searches.
struct RegionHolder {
  OnigRegion* r = onig_region_new();
  ~RegionHolder() { onig_region_free(r, 1); }
};
OnigRegion* thread_region() {
  thread_local RegionHolder holder;
  return holder.r;
}
}  // namespace

void Regex::Free::operator()(re_pattern_buffer* r) const { onig_free(r); }

Regex::Regex(std::string_view pattern) : pattern_(pattern) {
  init_onig_once();
  if (find_invalid_utf8(pattern) != std::string_view::npos) fail("invalid regex: the pattern is not valid UTF-8");
  OnigRegex reg = nullptr;
  OnigErrorInfo einfo{};
  int r;
  {
    std::lock_guard<std::mutex> lock(onig_new_mutex());
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern_.data());
    r = onig_new(&reg, p, p + pattern_.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &einfo);
  }
  if (r != ONIG_NORMAL) {
    OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(msg, r, &einfo);
    if (reg) onig_free(reg);
    fail("invalid regex \"{}\": {}", pattern_, reinterpret_cast<const char*>(msg));
  }
  re_.reset(reg);
}

Regex::~Regex() = default;

void Regex::find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  OnigRegion* region = thread_region();
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const auto* end = str + text.size();
  std::size_t last_end = 0;
  bool have_last = false;
  std::size_t last_match_end = 0;
  while (last_end <= text.size()) {
    onig_region_clear(region);
    const int r = onig_search(re_.get(), str, end, str + last_end, end, region, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) {
      OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(msg, r);
      fail("regex \"{}\": search failed: {}", pattern_, reinterpret_cast<const char*>(msg));
    }
    const auto s = static_cast<std::size_t>(region->beg[0]);
    const auto e = static_cast<std::size_t>(region->end[0]);
    if (s == e && have_last && last_match_end == e) {
      last_end += last_end < text.size() ? utf8_len_from_lead(static_cast<unsigned char>(text[last_end])) : 1;
      continue;
    }
    last_end = e;
    last_match_end = e;
    have_last = true;
    out.emplace_back(s, e);
  }
}

std::string escape_regex(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    switch (c) {
      case '\\': case '.': case '+': case '*': case '?': case '(': case ')': case '|': case '[':
      case ']': case '{': case '}': case '^': case '$': case '#': case '&': case '-': case '~':
        out.push_back('\\');
        break;
      default:
        break;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace fusellm::tok
