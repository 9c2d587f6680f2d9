// The safetensors header: parsing and the same validation the reference library
// (huggingface/safetensors, Metadata::validate) applies, with errors that name the file, the tensor
// and what was expected versus found. SafetensorsFile maps the file and points each TensorInfo
// into the mapping, so nothing is copied until convert_to_f32.
#include "fusellm/io/safetensors.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {

using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors is little-endian; fusellm reads its bytes in place");

// The reference library refuses headers above 100 MB (MAX_HEADER_SIZE); a real header of a
// 70B-parameter model is well under 1 MB, so a larger length means a corrupt or foreign file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A safetensors header nests three levels (object -> tensor object -> shape list). The limit
// keeps a hostile header from driving the recursive json::dump of an error message into the
// stack guard.
constexpr int kMaxJsonDepth = 16;

// A short rendering of a JSON value for "found ..." in messages.
std::string found(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or npos. The safetensors spec requires a UTF-8 header and
// the reference library rejects anything else before parsing.
size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Deepest bracket nesting outside strings (a pre-pass: cheap, and it bounds what the parser and
// the dump of a "found" value will recurse through).
int json_depth(std::string_view s) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// A JSON number that is a non-negative integer fitting `limit`, else nullopt. nlohmann stores
// non-negative literals as number_unsigned, negative ones as number_integer, anything with a
// fraction or exponent as number_float; only the first is accepted (as serde's u64/usize is).
std::optional<uint64_t> as_index(const json& v, uint64_t limit) {
  if (!v.is_number_unsigned()) return std::nullopt;
  const uint64_t x = v.get<uint64_t>();
  if (x > limit) return std::nullopt;
  return x;
}

std::string known_dtypes() {
  std::vector<std::string_view> names;
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::I16,
                  DType::I8, DType::U8, DType::BOOL})
    names.push_back(dtype_name(d));
  return fmt::format("{}", fmt::join(names, ", "));
}

// One tensor entry: everything about it that can be checked alone.
TensorInfo parse_entry(const std::string& origin, const std::string& name, const json& v,
                       std::span<const std::byte> buffer, uint64_t& begin_out, uint64_t& end_out) {
  if (!v.is_object())
    fail("{}: tensor '{}': expected an object with dtype, shape and data_offsets, found {}", origin, name,
         found(v));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) fail("{}: tensor '{}': field '{}' is missing", origin, name, field);

  TensorInfo t;
  t.name = name;
  t.file = origin;

  const json& dt = v["dtype"];
  if (!dt.is_string()) fail("{}: tensor '{}': dtype must be a string, found {}", origin, name, found(dt));
  const auto dtype = dtype_from_name(dt.get_ref<const std::string&>());
  if (!dtype)
    fail("{}: tensor '{}': unknown dtype {} (fusellm reads {})", origin, name, found(dt), known_dtypes());
  t.dtype = *dtype;

  const json& sh = v["shape"];
  if (!sh.is_array())
    fail("{}: tensor '{}': shape must be a list of non-negative integers, found {}", origin, name, found(sh));
  // numel is accumulated with overflow checks as the reference does (ValidationOverflow); a
  // dimension must also fit int64 because Shape is signed.
  uint64_t count = 1;
  for (const json& d : sh) {
    const auto dim = as_index(d, uint64_t(std::numeric_limits<int64_t>::max()));
    if (!dim)
      fail("{}: tensor '{}': shape must be a list of non-negative integers, found {}", origin, name,
           found(sh));
    if (__builtin_mul_overflow(count, *dim, &count))
      fail("{}: tensor '{}': shape {} has more elements than fit in 64 bits", origin, name, found(sh));
    t.shape.push_back(int64_t(*dim));
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(count, uint64_t(dtype_size(t.dtype)), &nbytes))
    fail("{}: tensor '{}': shape {} of {} has more bytes than fit in 64 bits", origin, name, found(sh),
         dtype_name(t.dtype));

  const json& off = v["data_offsets"];
  const auto begin = off.is_array() && off.size() == 2 ? as_index(off[0], UINT64_MAX) : std::nullopt;
  const auto end = off.is_array() && off.size() == 2 ? as_index(off[1], UINT64_MAX) : std::nullopt;
  if (!begin || !end || *begin > *end)
    fail("{}: tensor '{}': data_offsets must be [begin, end] with integers 0 <= begin <= end, found {}",
         origin, name, found(off));
  if (*end > buffer.size())
    fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data buffer ({} bytes)", origin,
         name, *begin, *end, buffer.size());
  if (*end - *begin != nbytes)
    fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but dtype {} with shape {} needs {}", origin,
         name, *begin, *end, *end - *begin, dtype_name(t.dtype), shape_str(t.shape), nbytes);
  t.bytes = buffer.subspan(*begin, *end - *begin);
  begin_out = *begin;
  end_out = *end;
  return t;
}

// The 8-byte length, then the header as a JSON object, with the limits the reference enforces.
json parse_header_json(std::span<const std::byte> file_bytes, const std::string& origin, uint64_t& n) {
  if (file_bytes.size() < 8)
    fail("{}: file is {} bytes, too short for the 8-byte safetensors header length", origin, file_bytes.size());
  std::memcpy(&n, file_bytes.data(), 8);  // little-endian, checked above
  if (n > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the {}-byte limit of the format (not a safetensors file?)", origin, n,
         kMaxHeaderBytes);
  if (n > file_bytes.size() - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes, so at most {} for the header)",
         origin, n, file_bytes.size(), file_bytes.size() - 8);

  const std::string_view text(reinterpret_cast<const char*>(file_bytes.data()) + 8, n);
  if (const size_t bad = invalid_utf8_at(text); bad != std::string_view::npos)
    fail("{}: header is not valid UTF-8 (byte {} of the header)", origin, bad);
  if (const int depth = json_depth(text); depth > kMaxJsonDepth)
    fail("{}: header JSON nests {} levels deep, expected at most {}", origin, depth, kMaxJsonDepth);

  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: header is not valid JSON (byte {} of the header): {}", origin, e.byte, e.what());
  } catch (const json::exception& e) {  // out_of_range: a number literal beyond double ("1e999")
    fail("{}: header is not valid JSON: {}", origin, e.what());
  }
  if (!header.is_object())
    fail("{}: header must be a JSON object, found {}", origin, header.type_name());
  return header;
}

struct Range {
  uint64_t begin, end;
  const std::string* name;
};

// Tensors must tile the buffer exactly: sorted by offsets, each begins where the previous
// ended. Overlaps would alias weights; holes are bytes no tensor owns, which the reference
// rejects as InvalidOffset / MetadataIncompleteBuffer. Zero-byte tensors sit anywhere on a
// boundary.
void check_tiling(std::vector<Range>& ranges, uint64_t buffer_size, const std::string& origin) {
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0, last_begin = 0;
  const std::string* last = nullptr;
  for (const Range& r : ranges) {
    if (r.begin < covered)
      fail("{}: tensors '{}' and '{}' overlap: bytes [{}, {}) and [{}, {}) of the data buffer", origin, *last,
           *r.name, last_begin, covered, r.begin, r.end);
    if (r.begin > covered)
      fail("{}: tensor '{}' begins at byte {} of the data buffer but the tensors before it end at {}: "
           "bytes [{}, {}) belong to no tensor (incomplete buffer)",
           origin, *r.name, r.begin, covered, covered, r.begin);
    if (r.end > covered) {
      covered = r.end;
      last_begin = r.begin;
      last = r.name;
    }
  }
  if (covered != buffer_size)
    fail("{}: the tensors end at byte {} of the data buffer but it has {} bytes: bytes [{}, {}) belong to "
         "no tensor (incomplete buffer)",
         origin, covered, buffer_size, covered, buffer_size);
}

}  // namespace

std::map<std::string, TensorInfo> parse_safetensors_header(std::span<const std::byte> file_bytes,
                                                           const std::string& origin,
                                                           std::map<std::string, std::string>* metadata) {
  uint64_t n = 0;
  const json header = parse_header_json(file_bytes, origin, n);
  const std::span<const std::byte> buffer = file_bytes.subspan(8 + n);
  std::map<std::string, TensorInfo> tensors;
  std::vector<Range> ranges;
  ranges.reserve(header.size());
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object())
        fail("{}: '__metadata__' must be an object of strings, found {}", origin, found(v));
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string())
          fail("{}: '__metadata__' field '{}' must be a string, found {}", origin, k, found(s));
        if (metadata) (*metadata)[k] = s.get<std::string>();
      }
      continue;
    }
    uint64_t b = 0, e = 0;
    TensorInfo t = parse_entry(origin, name, v, buffer, b, e);
    const auto it = tensors.emplace(name, std::move(t)).first;
    ranges.push_back({b, e, &it->first});
  }

  check_tiling(ranges, buffer.size(), origin);
  return tensors;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  tensors_ = parse_safetensors_header(file_.bytes(), file_.path(), &metadata_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace fusellm
