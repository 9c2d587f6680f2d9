#include "fusellm/optim/optim_state.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"

namespace fusellm {

AdamWMoments adamw_moments(const AdamW& opt, const std::function<const Shape*(const std::string&)>& shape_of) {
  AdamWMoments out;
  for (const auto& [name, st] : opt.states()) {
    const Shape* s = shape_of ? shape_of(name) : nullptr;
    const Shape shape = s && numel(*s) == int64_t(st.m.size()) ? *s : Shape{int64_t(st.m.size())};
    out.m.push_back({name, shape, st.m});
    out.v.push_back({name, shape, st.v});
  }
  return out;
}

void restore_adamw(AdamW& opt, const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v, int64_t steps,
                   const std::string& where) {
  if (m.size() != v.size()) fail("{}: {} exp_avg tensors but {} exp_avg_sq", where, m.size(), v.size());
  opt.clear();
  for (const NamedTensor& mi : m) {
    const NamedTensor* vi = nullptr;
    for (const auto& cand : v)
      if (cand.name == mi.name) vi = &cand;
    if (!vi) fail("{}: optimizer state of '{}' has exp_avg but no exp_avg_sq", where, mi.name);
    const auto ms = mi.tensor.span(), vs = vi->tensor.span();
    opt.set_state(mi.name, std::vector<float>(ms.begin(), ms.end()), std::vector<float>(vs.begin(), vs.end()));
  }
  opt.set_steps(steps);
}

namespace {

// Each tensor's piece of [begin, end): fn(name, offset of the piece in the range, its length).
template <class F>
void for_each_piece(const ParamTable& table, int64_t begin, int64_t end, size_t m_size, size_t v_size, F&& fn) {
  if (begin < 0 || begin > end || end > table.total() || int64_t(m_size) != end - begin || int64_t(v_size) != end - begin)
    fail("AdamW moments of [{}, {}) of {} parameters: given {} and {} values", begin, end, table.total(), m_size, v_size);
  for (const ParamEntry& e : table.entries()) {
    const int64_t b = std::max(begin, e.offset), en = std::min(end, e.offset + e.size);
    if (b < en) fn(e.name, size_t(b - begin), size_t(en - b));
  }
}

}  // namespace

void flat_moments(const AdamW& opt, const ParamTable& table, int64_t begin, int64_t end, std::span<float> m,
                  std::span<float> v) {
  std::fill(m.begin(), m.end(), 0.f);
  std::fill(v.begin(), v.end(), 0.f);
  for_each_piece(table, begin, end, m.size(), v.size(), [&](const std::string& name, size_t at, size_t n) {
    const AdamW::State* s = opt.find(name);
    if (!s) return;
    if (s->m.size() != n) fail("AdamW: the state of {} holds {} values, its piece of [{}, {}) {}", name, s->m.size(), begin, end, n);
    std::copy(s->m.begin(), s->m.end(), m.begin() + long(at));
    std::copy(s->v.begin(), s->v.end(), v.begin() + long(at));
  });
}

void restore_flat_moments(AdamW& opt, const ParamTable& table, int64_t begin, int64_t end, std::span<const float> m,
                          std::span<const float> v, int64_t steps) {
  opt.clear();
  for_each_piece(table, begin, end, m.size(), v.size(), [&](const std::string& name, size_t at, size_t n) {
    opt.set_state(name, {m.begin() + long(at), m.begin() + long(at + n)}, {v.begin() + long(at), v.begin() + long(at + n)});
  });
  opt.set_steps(steps);
}

void put_schedule(const LrSchedule& s, KeyValues& kv) {
  kv.set("schedule_kind", std::string(schedule_name(s.kind)));
  kv.set("schedule_base_lr", s.base_lr);
  kv.set("schedule_warmup_steps", s.warmup_steps);
  kv.set("schedule_total_steps", s.total_steps);
  kv.set("schedule_min_lr_ratio", s.min_lr_ratio);
  kv.set("schedule_num_cycles", s.num_cycles);
}

LrSchedule get_schedule(const KeyValues& kv, const std::string& where) {
  LrSchedule s;
  const std::string& kind = kv.str("schedule_kind", where);
  const auto k = schedule_from_name(kind);
  if (!k) fail("{}: value schedule_kind: unknown schedule '{}'", where, kind);
  s.kind = *k;
  s.base_lr = kv.f64("schedule_base_lr", where);
  s.warmup_steps = kv.i64("schedule_warmup_steps", where);
  s.total_steps = kv.i64("schedule_total_steps", where);
  s.min_lr_ratio = kv.f64("schedule_min_lr_ratio", where);
  s.num_cycles = kv.f64("schedule_num_cycles", where);
  return s;
}

}  // namespace fusellm
