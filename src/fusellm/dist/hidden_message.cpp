#include "fusellm/dist/hidden_message.hpp"

#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace fusellm::dist {

namespace {

constexpr uint32_t kMagic = 0x53484C46;  // "FLHS" read as little-endian bytes
constexpr uint32_t kVersion = 1;

struct Header {
  uint32_t magic, version;
  int64_t segment, src_tokens, tgt_tokens, hidden;
  uint64_t checksum;
};
static_assert(sizeof(Header) == 48);

size_t payload_bytes(const Header& h) {
  return sizeof(int32_t) * size_t(h.src_tokens + h.tgt_tokens) + sizeof(float) * size_t(h.src_tokens * h.hidden);
}

}  // namespace

std::vector<std::byte> pack_hidden(int64_t segment, const Teacher::Tokens& tokens, const Tensor& hidden) {
  const int64_t T = int64_t(tokens.src_ids.size());
  if (hidden.rank() != 2 || hidden.dim(0) != T)
    fail("segment {}: hidden states of shape {} for {} source tokens", segment, shape_str(hidden.shape()), T);
  Header h{kMagic, kVersion, segment, T, int64_t(tokens.tgt_ids.size()), hidden.dim(1), 0};
  std::vector<std::byte> out(sizeof(Header) + payload_bytes(h));
  std::byte* p = out.data() + sizeof(Header);
  const auto put = [&p](const void* src, size_t n) {
    if (n) std::memcpy(p, src, n);
    p += n;
  };
  put(tokens.src_ids.data(), sizeof(int32_t) * tokens.src_ids.size());
  put(tokens.tgt_ids.data(), sizeof(int32_t) * tokens.tgt_ids.size());
  put(hidden.data(), sizeof(float) * size_t(hidden.size()));
  h.checksum = xxh64(out.data() + sizeof(Header), out.size() - sizeof(Header));
  std::memcpy(out.data(), &h, sizeof(Header));
  return out;
}

HiddenMessage unpack_hidden(std::span<const std::byte> bytes, int64_t expected_segment, int64_t hidden_size,
                            const std::string& from) {
  const auto bad = [&](const std::string& what) {
    fail("hidden states from {} for segment {}: {}", from, expected_segment, what);
  };
  Header h;
  if (bytes.size() < sizeof(Header)) bad(fmt::format("{} bytes, shorter than the {}-byte header", bytes.size(), sizeof(Header)));
  std::memcpy(&h, bytes.data(), sizeof(Header));
  if (h.magic != kMagic) bad(fmt::format("magic {:#010x}, expected {:#010x} (not a hidden-state message)", h.magic, kMagic));
  if (h.version != kVersion) bad(fmt::format("version {}, expected {}", h.version, kVersion));
  if (h.segment != expected_segment) bad(fmt::format("the message is for segment {} (out of order)", h.segment));
  if (h.hidden != hidden_size) bad(fmt::format("hidden size {}, this stage's model has {}", h.hidden, hidden_size));
  if (h.src_tokens < 0 || h.tgt_tokens < 0 || h.src_tokens > (int64_t(1) << 31) || h.tgt_tokens > (int64_t(1) << 31))
    bad(fmt::format("token counts {} (source) and {} (target) out of range", h.src_tokens, h.tgt_tokens));
  if (bytes.size() != sizeof(Header) + payload_bytes(h))
    bad(fmt::format("{} bytes, expected {} for {} source and {} target tokens of hidden size {}", bytes.size(),
                    sizeof(Header) + payload_bytes(h), h.src_tokens, h.tgt_tokens, h.hidden));
  const std::byte* p = bytes.data() + sizeof(Header);
  if (const uint64_t sum = xxh64(p, bytes.size() - sizeof(Header)); sum != h.checksum)
    bad(fmt::format("payload checksum {:016x}, the header says {:016x} (corrupted in transit)", sum, h.checksum));
  HiddenMessage m;
  m.segment = h.segment;
  m.tokens.src_ids.resize(size_t(h.src_tokens));
  m.tokens.tgt_ids.resize(size_t(h.tgt_tokens));
  m.hidden = Tensor({h.src_tokens, h.hidden});
  const auto get = [&p](void* dst, size_t n) {
    if (n) std::memcpy(dst, p, n);
    p += n;
  };
  get(m.tokens.src_ids.data(), sizeof(int32_t) * m.tokens.src_ids.size());
  get(m.tokens.tgt_ids.data(), sizeof(int32_t) * m.tokens.tgt_ids.size());
  get(m.hidden.data(), sizeof(float) * size_t(m.hidden.size()));
  return m;
}

}  // namespace fusellm::dist
