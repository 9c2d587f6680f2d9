#include "fusellm/dist/byte_collectives.hpp"

#include <cstring>

namespace fusellm::dist {

std::string broadcast_text(Transport& t, std::string text, int root) {
  if (t.size() == 1) return text;
  uint64_t n = text.size();
  t.broadcast(std::as_writable_bytes(std::span<uint64_t>(&n, 1)), root);
  text.resize(size_t(n));
  t.broadcast(std::as_writable_bytes(std::span<char>(text.data(), text.size())), root);
  return text;
}

std::vector<std::string> all_gather_text(Transport& t, const std::string& mine) {
  const int R = t.size();
  if (R == 1) return {mine};
  // The lengths in one all-reduce (each rank fills its own slot; doubles hold them exactly below
  // 2^53 bytes), then one broadcast per rank that has something to say.
  std::vector<double> lengths(static_cast<size_t>(R), 0.0);
  lengths[size_t(t.rank())] = double(mine.size());
  t.all_reduce(lengths);
  std::vector<std::string> out(static_cast<size_t>(R));
  for (int r = 0; r < R; ++r) {
    std::string& s = out[size_t(r)];
    s.resize(size_t(lengths[size_t(r)]));
    if (r == t.rank()) s = mine;
    if (!s.empty()) t.broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), r);
  }
  return out;
}

}  // namespace fusellm::dist
