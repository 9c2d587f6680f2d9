#include "fusellm/dist/rows_message.hpp"

#include <array>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace fusellm::dist {

// The wire is little-endian; memcpy of a host value is then its wire bytes (x86 and ARM both are).
static_assert(std::endian::native == std::endian::little, "rows messages assume a little-endian host");

namespace {

constexpr uint16_t kFlagPositionCe = 1;

// The payload's parts, in wire order (the header's length table follows it).
enum Part : size_t { kSegmentTable, kIds, kProbs, kTargetIds, kPositionCe, kStatus, kParts };
constexpr std::array<const char*, kParts> kPartNames = {"segment table", "ids", "probs", "target_ids", "position_ce",
                                                       "status"};

std::array<uint64_t, kParts> part_lengths(int64_t segments, int64_t rows, int64_t k, bool position_ce) {
  const auto r = uint64_t(rows), rk = uint64_t(rows) * uint64_t(k);
  return {uint64_t(segments) * kRowsSegmentBytes, 4 * rk, 2 * rk, 4 * r, position_ce ? 4 * r : 0, r};
}

struct Header {
  char magic[4];
  uint16_t version, flags;
  int64_t micro_batch;
  int32_t source, sender, segments, k;
  int64_t rows;
  std::array<uint64_t, kParts> lengths;
  uint64_t checksum;
};

// Appends values' bytes at a moving offset of a buffer sized beforehand.
class Writer {
 public:
  explicit Writer(std::byte* p) : p_(p) {}
  template <class T>
  void put(const T& v) {
    std::memcpy(p_, &v, sizeof(T));
    p_ += sizeof(T);
  }
  template <class T>
  void put_all(const std::vector<T>& v) {
    if (!v.empty()) std::memcpy(p_, v.data(), v.size() * sizeof(T));
    p_ += v.size() * sizeof(T);
  }

 private:
  std::byte* p_;
};

// Reads values at a moving offset; the caller has checked the lengths, the reads stay inside.
class Reader {
 public:
  explicit Reader(const std::byte* p) : p_(p) {}
  template <class T>
  T get() {
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  template <class T>
  void get_all(std::vector<T>& v, size_t n) {
    v.resize(n);
    if (n) std::memcpy(v.data(), p_, n * sizeof(T));
    p_ += n * sizeof(T);
  }
  const std::byte* at() const { return p_; }

 private:
  const std::byte* p_;
};

void write_header(std::byte* p, const Header& h) {
  Writer w(p);
  w.put(h.magic);
  w.put(h.version);
  w.put(h.flags);
  w.put(h.micro_batch);
  w.put(h.source);
  w.put(h.sender);
  w.put(h.segments);
  w.put(h.k);
  w.put(h.rows);
  w.put(h.lengths);
  w.put(h.checksum);
}

Header read_header(const std::byte* p) {
  Reader r(p);
  Header h;
  std::memcpy(h.magic, r.at(), 4);
  r.get<std::array<char, 4>>();
  h.version = r.get<uint16_t>();
  h.flags = r.get<uint16_t>();
  h.micro_batch = r.get<int64_t>();
  h.source = r.get<int32_t>();
  h.sender = r.get<int32_t>();
  h.segments = r.get<int32_t>();
  h.k = r.get<int32_t>();
  h.rows = r.get<int64_t>();
  h.lengths = r.get<std::array<uint64_t, kParts>>();
  h.checksum = r.get<uint64_t>();
  return h;
}

// ---- the test hook (rows_message.hpp) --------------------------------------------------------
struct CorruptHook {
  std::mutex mu;
  bool loaded = false;
  int64_t n = 0;      // 0: never
  int32_t rank = -1;  // -1: any sender
  int64_t seen = 0;
};

CorruptHook& corrupt_hook() {
  static CorruptHook h;
  return h;
}

void load_corrupt_env(CorruptHook& h) {
  h.loaded = true;
  const char* v = std::getenv("FUSELLM_TEST_CORRUPT_MESSAGE");
  if (!v || !*v) return;
  const std::string s(v);
  char* end = nullptr;
  h.n = std::strtoll(s.c_str(), &end, 10);
  if (*end == '@') h.rank = int32_t(std::strtol(end + 1, &end, 10));
  if (*end != '\0' || h.n < 0 || end == s.c_str())
    fail("FUSELLM_TEST_CORRUPT_MESSAGE='{}': expected <n> or <n>@<rank> (flip a byte of the n-th rows message)", s);
}

void maybe_corrupt(std::vector<std::byte>& msg, const RowsMessageInfo& info) {
  auto& h = corrupt_hook();
  std::lock_guard lock(h.mu);
  if (!h.loaded) load_corrupt_env(h);
  if (h.n == 0 || (h.rank >= 0 && h.rank != info.sender_rank)) return;
  if (++h.seen != h.n) return;
  // The middle byte of the payload (the checksum itself when there is no payload).
  const size_t payload = msg.size() - kRowsHeaderBytes;
  const size_t at = payload ? kRowsHeaderBytes + payload / 2 : kRowsHeaderBytes - 8;
  msg[at] ^= std::byte{0xff};
  spdlog::warn("test hook FUSELLM_TEST_CORRUPT_MESSAGE: flipped byte {} of rows message {} (micro-batch {}, source {})",
               at, h.seen, info.micro_batch, info.source);
}

void check_rows_for_encode(const RowsMessageInfo& info, const TeacherRows& r) {
  const size_t T = r.target_ids.size();
  auto bad = [&](const char* what, size_t have, size_t want) {
    fail("rows message (micro-batch {}, source {}): segment {} has {} {}, expected {}", info.micro_batch, info.source,
         r.segment, have, what, want);
  };
  if (r.k != info.k) bad("as k", size_t(r.k), size_t(info.k));
  if (r.status.size() != T) bad("status values", r.status.size(), T);
  if (r.ids.size() != T * size_t(info.k)) bad("ids", r.ids.size(), T * size_t(info.k));
  if (r.probs.size() != T * size_t(info.k)) bad("probs", r.probs.size(), T * size_t(info.k));
  if (r.position_ce.size() != (info.position_ce ? T : 0)) bad("per-position CE values", r.position_ce.size(), info.position_ce ? T : 0);
}

}  // namespace

size_t rows_message_bytes(int64_t segments, int64_t rows, int64_t k, bool position_ce) {
  size_t n = kRowsHeaderBytes;
  for (uint64_t l : part_lengths(segments, rows, k, position_ce)) n += size_t(l);
  return n;
}

std::vector<std::byte> encode_rows(const RowsMessageInfo& info, std::span<const TeacherRows> rows) {
  if (info.k < 1 || info.k > INT32_MAX) fail("rows message (micro-batch {}): k = {} out of range", info.micro_batch, info.k);
  if (rows.size() > size_t(INT32_MAX)) fail("rows message (micro-batch {}): {} segments", info.micro_batch, rows.size());
  int64_t total = 0;
  for (const auto& r : rows) {
    check_rows_for_encode(info, r);
    total += r.rows();
  }
  Header h{{'F', 'L', 'R', 'W'}, kRowsVersion, uint16_t(info.position_ce ? kFlagPositionCe : 0), info.micro_batch,
           info.source, info.sender_rank, int32_t(rows.size()), int32_t(info.k), total,
           part_lengths(int64_t(rows.size()), total, info.k, info.position_ce), 0};
  std::vector<std::byte> msg(rows_message_bytes(int64_t(rows.size()), total, info.k, info.position_ce));
  Writer w(msg.data() + kRowsHeaderBytes);
  for (const auto& r : rows) {
    w.put(r.segment), w.put(r.doc), w.put(r.rows()), w.put(r.ce), w.put(r.ce_tokens);
    w.put(r.source_tokens), w.put(r.bytes), w.put(r.piece);
  }
  for (const auto& r : rows) w.put_all(r.ids);
  for (const auto& r : rows) w.put_all(r.probs);
  for (const auto& r : rows) w.put_all(r.target_ids);
  for (const auto& r : rows) w.put_all(r.position_ce);
  for (const auto& r : rows) w.put_all(r.status);
  h.checksum = xxh64(msg.data() + kRowsHeaderBytes, msg.size() - kRowsHeaderBytes);
  write_header(msg.data(), h);
  maybe_corrupt(msg, info);
  return msg;
}

void set_corrupt_message_for_test(int64_t n, int32_t rank) {
  auto& h = corrupt_hook();
  std::lock_guard lock(h.mu);
  h.loaded = true;
  h.n = n;
  h.rank = rank;
  h.seen = 0;
}

namespace {

// "rows message from rank 3 (host h), source 'neox', micro-batch 17: <what>"
template <typename... Args>
[[noreturn]] void refuse(const RowsExpectation& e, fmt::format_string<Args...> f, Args&&... args) {
  fail("rows message from {}, source '{}', micro-batch {}: {}", e.sender, e.source_name, e.micro_batch,
       fmt::format(f, std::forward<Args>(args)...));
}

void check_header(const Header& h, size_t size, const RowsExpectation& e) {
  if (std::memcmp(h.magic, kRowsMagic, 4) != 0)
    refuse(e, "magic is {:02x} {:02x} {:02x} {:02x}, expected 'FLRW' (not a rows message)", uint8_t(h.magic[0]),
           uint8_t(h.magic[1]), uint8_t(h.magic[2]), uint8_t(h.magic[3]));
  if (h.version != kRowsVersion) refuse(e, "version {}, this build reads version {}", h.version, kRowsVersion);
  if (h.flags & ~kFlagPositionCe) refuse(e, "flags 0x{:04x} has unknown bits", h.flags);
  const bool pce = h.flags & kFlagPositionCe;
  if (pce != e.position_ce)
    refuse(e, "flags say per-position CE is {}, expected {}", pce ? "present" : "absent", e.position_ce ? "present" : "absent");
  if (h.micro_batch != e.micro_batch) refuse(e, "header's micro-batch id is {}, expected {}", h.micro_batch, e.micro_batch);
  if (h.source != e.source) refuse(e, "header's source index is {}, expected {}", h.source, e.source);
  if (h.sender != e.sender_rank) refuse(e, "header's sender rank is {}, expected {}", h.sender, e.sender_rank);
  if (size_t(h.segments) != e.segments.size() || h.segments < 0)
    refuse(e, "header's segment count is {}, expected {}", h.segments, e.segments.size());
  if (h.k != e.k) refuse(e, "header's k is {}, expected {}", h.k, e.k);
  if (h.k < 1) refuse(e, "header's k is {}, must be at least 1", h.k);
  // A row takes at least 6 k + 5 bytes: bounding the count first keeps every length below in range.
  if (h.rows < 0 || uint64_t(h.rows) > size / (6 * uint64_t(h.k) + 5))
    refuse(e, "header's row count {} is impossible in a message of {} bytes", h.rows, size);
  const auto want = part_lengths(h.segments, h.rows, h.k, pce);
  for (size_t p = 0; p < kParts; ++p)
    if (h.lengths[p] != want[p])
      refuse(e, "header's length of part '{}' is {} bytes, expected {} for {} segments, {} rows and k = {}", kPartNames[p],
             h.lengths[p], want[p], h.segments, h.rows, h.k);
  const size_t whole = rows_message_bytes(h.segments, h.rows, h.k, pce);
  if (size != whole) refuse(e, "message has {} bytes, its header says {} ({})", size, whole, size < whole ? "truncated" : "trailing bytes");
}

}  // namespace

std::vector<TeacherRows> decode_rows(std::span<const std::byte> message, const RowsExpectation& e) {
  if (message.size() < kRowsHeaderBytes)
    refuse(e, "message has {} bytes, shorter than the {}-byte header (truncated)", message.size(), kRowsHeaderBytes);
  const Header h = read_header(message.data());
  check_header(h, message.size(), e);
  if (xxh64(message.data() + kRowsHeaderBytes, message.size() - kRowsHeaderBytes) != h.checksum)
    refuse(e, "checksum mismatch (payload corrupted in transit)");
  std::vector<TeacherRows> out(size_t(h.segments));
  Reader table(message.data() + kRowsHeaderBytes);
  int64_t total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    auto& r = out[i];
    r.segment = table.get<int64_t>(), r.doc = table.get<int64_t>();
    const auto T = table.get<int64_t>();
    r.ce = table.get<double>(), r.ce_tokens = table.get<int64_t>(), r.source_tokens = table.get<int64_t>();
    r.bytes = table.get<int64_t>(), r.piece = table.get<int32_t>();
    r.k = h.k;
    if (r.segment != e.segments[i]) refuse(e, "segment {} of the message is segment id {}, expected {}", i, r.segment, e.segments[i]);
    if (T < 0 || T > h.rows - total) refuse(e, "segment id {} claims {} rows, more than the header's {} in all", r.segment, T, h.rows);
    r.target_ids.resize(size_t(T));  // the row count, read back below
    total += T;
  }
  if (total != h.rows) refuse(e, "segments' rows sum to {}, the header says {}", total, h.rows);
  Reader parts(table.at());
  for (auto& r : out) parts.get_all(r.ids, size_t(r.rows() * r.k));
  for (auto& r : out) parts.get_all(r.probs, size_t(r.rows() * r.k));
  for (auto& r : out) parts.get_all(r.target_ids, size_t(r.rows()));
  if (e.position_ce)
    for (auto& r : out) parts.get_all(r.position_ce, size_t(r.rows()));
  for (auto& r : out) parts.get_all(r.status, size_t(r.rows()));
  return out;
}

}  // namespace fusellm::dist
