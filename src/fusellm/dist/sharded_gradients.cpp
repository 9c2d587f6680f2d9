#include "fusellm/dist/sharded_gradients.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

ShardedGradients::ShardedGradients(Transport& students, int64_t total)
    : students_(students), layout_(ShardLayout::of(total, students.size())) {
  shard_.assign(size_t(layout_.size(students.rank())), 0.f);
}

void ShardedGradients::zero() { std::fill(shard_.begin(), shard_.end(), 0.f); }

void ShardedGradients::add(int64_t begin, std::span<const float> g) {
  const int64_t end = begin + int64_t(g.size());
  if (begin < 0 || end > layout_.total)
    fail("ZeRO-2: gradients of [{}, {}) outside the model's {} parameters", begin, end, layout_.total);
  const int me = students_.rank();
  const auto piece = [&](int r) { return std::pair{std::max(begin, layout_.begin(r)), std::min(end, layout_.end(r))}; };
  // Every other owner's piece goes out first (non-blocking), so no rank waits on one that waits.
  std::vector<std::unique_ptr<Request>> sent;
  for (int r = 0; r < layout_.ranks; ++r) {
    const auto [b, e] = piece(r);
    if (r == me || b >= e) continue;
    sent.push_back(students_.isend(r, Tag::gradient, std::as_bytes(g.subspan(size_t(b - begin), size_t(e - b)))));
  }
  const auto [b, e] = piece(me);
  if (b < e) {
    const size_t n = size_t(e - b);
    sum_.resize(n);
    for (int r = 0; r < layout_.ranks; ++r) {  // s = ((c_0 + c_1) + c_2) ...
      std::vector<std::byte> got;
      const float* c = g.data() + (b - begin);
      if (r != me) {
        got = students_.recv(r, Tag::gradient);
        if (got.size() != n * sizeof(float))
          fail("ZeRO-2: student rank {} sent {} bytes of gradient for [{}, {}), expected {}", r, got.size(), b, e,
               n * sizeof(float));
        c = reinterpret_cast<const float*>(got.data());
      }
      if (r == 0)
        std::memcpy(sum_.data(), c, n * sizeof(float));
      else
        for (size_t i = 0; i < n; ++i) sum_[i] = sum_[i] + c[i];
    }
    float* acc = shard_.data() + (b - layout_.begin(me));
    for (size_t i = 0; i < n; ++i) acc[i] = acc[i] + sum_[i];
  }
  for (auto& s : sent) s->wait();
}

}  // namespace fusellm::dist
