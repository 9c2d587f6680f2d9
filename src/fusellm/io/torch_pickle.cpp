// A pickle stack machine for torch state dicts that builds descriptors and calls nothing.
// Opcode semantics follow Python's Lib/pickletools.py (the opcode table) and Lib/pickle.py
// (_Unpickler.load_*); only those a torch.save pickle of a state dict uses are known, plus the
// protocol-4 framing ones (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL) that
// torch.save(..., pickle_protocol=4) adds. Anything else is an error naming the opcode and offset.
#include "fusellm/io/torch_pickle.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <utility>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {

constexpr std::string_view kOrderedDict = "collections.OrderedDict";
constexpr std::string_view kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr std::string_view kRebuildParameter = "torch._utils._rebuild_parameter";

// torch/storage.py's legacy typed storages; torch.save still names them (_pickle_storage_type).
constexpr std::array<std::pair<std::string_view, DType>, 10> kStorages{{
    {"torch.FloatStorage", DType::F32}, {"torch.HalfStorage", DType::F16}, {"torch.BFloat16Storage", DType::BF16},
    {"torch.DoubleStorage", DType::F64}, {"torch.LongStorage", DType::I64}, {"torch.IntStorage", DType::I32},
    {"torch.ShortStorage", DType::I16}, {"torch.CharStorage", DType::I8}, {"torch.ByteStorage", DType::U8},
    {"torch.BoolStorage", DType::BOOL},
}};

bool allowed_global(std::string_view name) {
  if (name == kOrderedDict || name == kRebuildTensor || name == kRebuildParameter) return true;
  for (const auto& [n, d] : kStorages)
    if (n == name) return true;
  return false;
}

struct Value;
using Ref = Value*;

// What the stack holds. Values live in the Unpickler's arena and are shared by pointer (the memo
// and the stack see one object, as in pickle, so SETITEMS on a memoized dict changes the one
// dict). The arena, not reference counts, owns them: a hostile pickle can put a dict inside itself
// or nest tuples thousands deep, and neither a cycle nor a recursive destructor may follow.
struct Value {
  enum class Kind { none, boolean, integer, string, tuple, dict, global, storage, tensor };
  Kind kind = Kind::none;
  int64_t integer = 0;
  std::string text;        // string, or a global's "module.name"
  std::vector<Ref> items;  // tuple; dict as key, value, key, value, ...
  TorchTensorRef tensor;   // storage (key, dtype, numel) or tensor
};

class Unpickler {
 public:
  Unpickler(std::span<const std::byte> pkl, const std::string& origin) : p_(pkl), origin_(origin) {}
  std::vector<TorchTensorRef> run();

 private:
  std::span<const std::byte> p_;
  const std::string& origin_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Ref> memo_;
  std::vector<std::unique_ptr<Value>> arena_;

  Ref make(Value::Kind k) {
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  Ref make_int(int64_t i) {
    Ref v = make(Value::Kind::integer);
    v->integer = i;
    return v;
  }

  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}: data.pkl byte {}: {}", origin_, op_at_, fmt::format(f, std::forward<Args>(args)...));
  }
  std::span<const std::byte> take(size_t n);
  uint64_t le(size_t n);
  std::string line();
  Ref pop();
  Ref& top();
  std::vector<Ref> pop_mark();
  bool step(uint8_t op);
  void global(std::string name);
  void reduce();
  void setitems(std::vector<Ref> kv);
  Ref rebuild_tensor(const std::vector<Ref>& args);
  Ref persistent_load(const Ref& pid);
  std::vector<int64_t> ints(const Ref& v, const char* what);
  std::vector<TorchTensorRef> result(const Ref& v);
};

std::span<const std::byte> Unpickler::take(size_t n) {
  if (n > p_.size() - pos_) bad("truncated: {} bytes needed, {} left", n, p_.size() - pos_);
  const auto s = p_.subspan(pos_, n);
  pos_ += n;
  return s;
}

uint64_t Unpickler::le(size_t n) {  // pickle's fixed-width arguments are little-endian
  const auto s = take(n);
  uint64_t x = 0;
  for (size_t i = 0; i < n; ++i) x |= uint64_t(s[i]) << (8 * i);
  return x;
}

std::string Unpickler::line() {  // GLOBAL's newline-terminated module and name
  const size_t start = pos_;
  while (pos_ < p_.size() && p_[pos_] != std::byte{'\n'}) ++pos_;
  if (pos_ == p_.size()) bad("truncated: GLOBAL's name has no terminating newline");
  return std::string(reinterpret_cast<const char*>(p_.data()) + start, pos_++ - start);
}

Ref Unpickler::pop() {
  if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) bad("stack underflow");
  Ref v = stack_.back();
  stack_.pop_back();
  return v;
}

Ref& Unpickler::top() {
  if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) bad("stack underflow");
  return stack_.back();
}

std::vector<Ref> Unpickler::pop_mark() {
  if (marks_.empty()) bad("no MARK before this opcode");
  std::vector<Ref> out(stack_.begin() + std::ptrdiff_t(marks_.back()), stack_.end());
  stack_.resize(marks_.back());
  marks_.pop_back();
  return out;
}

void Unpickler::global(std::string name) {
  if (!allowed_global(name))
    bad("global '{}' is not allowed: a checkpoint may only name {} (fusellm never runs code from a checkpoint)", name,
        torch_pickle_allowed_globals());
  Ref g = make(Value::Kind::global);
  g->text = std::move(name);
  stack_.push_back(std::move(g));
}

std::vector<int64_t> Unpickler::ints(const Ref& v, const char* what) {
  if (v->kind != Value::Kind::tuple) bad("{} must be a tuple of integers", what);
  std::vector<int64_t> out;
  for (const Ref& x : v->items) {
    if (x->kind != Value::Kind::integer || x->integer < 0) bad("{} must be a tuple of non-negative integers", what);
    out.push_back(x->integer);
  }
  return out;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
Ref Unpickler::rebuild_tensor(const std::vector<Ref>& a) {
  if (a.size() != 6 && a.size() != 7) bad("_rebuild_tensor_v2 takes 6 or 7 arguments, found {}", a.size());
  if (a[0]->kind != Value::Kind::storage) bad("_rebuild_tensor_v2: the first argument is not a storage");
  if (a[1]->kind != Value::Kind::integer || a[1]->integer < 0)
    bad("_rebuild_tensor_v2: the storage offset must be a non-negative integer");
  if (a[5]->kind != Value::Kind::dict || !a[5]->items.empty())
    bad("_rebuild_tensor_v2: backward hooks must be an empty OrderedDict");
  Ref t = make(Value::Kind::tensor);
  t->tensor = a[0]->tensor;
  t->tensor.offset = a[1]->integer;
  t->tensor.shape = ints(a[2], "_rebuild_tensor_v2: size");
  t->tensor.stride = ints(a[3], "_rebuild_tensor_v2: stride");
  if (t->tensor.shape.size() != t->tensor.stride.size())
    bad("_rebuild_tensor_v2: size has {} dimensions but stride {}", t->tensor.shape.size(), t->tensor.stride.size());
  return t;
}

void Unpickler::reduce() {
  const Ref args = pop();
  const Ref f = pop();
  if (f->kind != Value::Kind::global) bad("REDUCE of something that is not an allowed global");
  if (args->kind != Value::Kind::tuple) bad("REDUCE of '{}' without an argument tuple", f->text);
  const auto& a = args->items;
  if (f->text == kOrderedDict) {
    if (!a.empty()) bad("OrderedDict with arguments (torch.save writes OrderedDict())");
    stack_.push_back(make(Value::Kind::dict));
  } else if (f->text == kRebuildTensor) {
    stack_.push_back(rebuild_tensor(a));
  } else if (f->text == kRebuildParameter) {  // (data, requires_grad, backward_hooks): the data is the tensor
    if (a.size() != 3 || a[0]->kind != Value::Kind::tensor) bad("_rebuild_parameter expects (tensor, bool, hooks)");
    stack_.push_back(a[0]);
  } else {
    bad("'{}' is a type, not something a checkpoint may call", f->text);
  }
}

// BINPERSID: torch/serialization.py's persistent_id for a storage.
Ref Unpickler::persistent_load(const Ref& pid) {
  const auto& a = pid->items;
  if (pid->kind != Value::Kind::tuple || a.size() != 5 || a[0]->kind != Value::Kind::string || a[0]->text != "storage")
    bad("persistent id is not ('storage', type, key, location, numel)");
  if (a[1]->kind != Value::Kind::global) bad("persistent id: the storage type is not a global");
  Ref s = make(Value::Kind::storage);
  const auto* type = std::find_if(kStorages.begin(), kStorages.end(), [&](const auto& e) { return e.first == a[1]->text; });
  if (type == kStorages.end()) bad("persistent id: '{}' is not a storage type", a[1]->text);
  s->tensor.dtype = type->second;
  if (a[2]->kind != Value::Kind::string || a[4]->kind != Value::Kind::integer || a[4]->integer < 0)
    bad("persistent id: the storage key must be a string and its size a non-negative integer");
  s->tensor.storage_key = a[2]->text;
  s->tensor.storage_numel = a[4]->integer;
  return s;
}

void Unpickler::setitems(std::vector<Ref> kv) {
  Ref& d = top();
  if (d->kind != Value::Kind::dict) bad("SETITEM(S) on something that is not a dict");
  if (kv.size() % 2) bad("SETITEMS with an odd number of items");
  d->items.insert(d->items.end(), kv.begin(), kv.end());
}

// One opcode; false at STOP. long: one case per opcode, as pickletools' table lists them; split,
// the dispatch would be spread over files a reader has to join again.
bool Unpickler::step(uint8_t op) {
  using K = Value::Kind;
  switch (op) {
    case 0x80: if (le(1) > 5) bad("pickle protocol above 5"); break;  // PROTO
    case 0x95: le(8); break;                                            // FRAME: its length only
    case '.': return false;                                             // STOP
    case '(': marks_.push_back(stack_.size()); break;                   // MARK
    case '}': stack_.push_back(make(K::dict)); break;                   // EMPTY_DICT
    case ')': stack_.push_back(make(K::tuple)); break;                  // EMPTY_TUPLE
    case 'N': stack_.push_back(make(K::none)); break;                   // NONE
    case 0x88: case 0x89: {                                             // NEWTRUE, NEWFALSE
      Ref b = make(K::boolean);
      b->integer = op == 0x88;
      stack_.push_back(std::move(b));
      break;
    }
    case 'K': stack_.push_back(make_int(int64_t(le(1)))); break;                 // BININT1
    case 'M': stack_.push_back(make_int(int64_t(le(2)))); break;                 // BININT2
    case 'J': stack_.push_back(make_int(int32_t(uint32_t(le(4))))); break;       // BININT (signed)
    case 0x8a: {                                                                 // LONG1: n bytes, two's complement
      const size_t n = size_t(le(1));
      if (n > 8) bad("LONG1 of {} bytes does not fit 64 bits", n);
      uint64_t x = le(n);
      if (n > 0 && n < 8 && (x >> (8 * n - 1)) & 1) x |= ~uint64_t(0) << (8 * n);
      stack_.push_back(make_int(int64_t(x)));
      break;
    }
    case 'X': case 0x8c: case 0x8d: {  // BINUNICODE (u32 length), SHORT_BINUNICODE (u8), BINUNICODE8 (u64)
      const auto s = take(size_t(le(op == 'X' ? 4 : op == 0x8c ? 1 : 8)));
      Ref v = make(K::string);
      v->text.assign(reinterpret_cast<const char*>(s.data()), s.size());
      stack_.push_back(std::move(v));
      break;
    }
    case 'c': {  // GLOBAL "module\nname\n": checked here, before anything could use it
      std::string module = line();
      global(module + "." + line());
      break;
    }
    case 0x93: {  // STACK_GLOBAL: name and module strings from the stack
      const Ref name = pop(), module = pop();
      if (name->kind != K::string || module->kind != K::string) bad("STACK_GLOBAL of non-strings");
      global(module->text + "." + name->text);
      break;
    }
    case 't': {  // TUPLE
      Ref t = make(K::tuple);
      t->items = pop_mark();
      stack_.push_back(std::move(t));
      break;
    }
    case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
      Ref t = make(K::tuple);
      t->items.resize(size_t(op - 0x84));
      for (size_t i = t->items.size(); i-- > 0;) t->items[i] = pop();
      stack_.push_back(std::move(t));
      break;
    }
    case 'q': memo_[le(1)] = top(); break;                    // BINPUT
    case 'r': memo_[le(4)] = top(); break;                    // LONG_BINPUT
    case 0x94: memo_[memo_.size()] = top(); break;            // MEMOIZE
    case 'h': case 'j': {                                     // BINGET, LONG_BINGET
      const uint64_t i = le(op == 'h' ? 1 : 4);
      const auto it = memo_.find(i);
      if (it == memo_.end()) bad("memo entry {} was never stored", i);
      stack_.push_back(it->second);
      break;
    }
    case 'Q': stack_.push_back(persistent_load(pop())); break;  // BINPERSID
    case 'R': reduce(); break;                                   // REDUCE
    case 'b': {                                                  // BUILD: an OrderedDict's __dict__ (_metadata)
      pop();
      if (top()->kind != K::dict) bad("BUILD on something that is not an OrderedDict");
      break;
    }
    case 's': {  // SETITEM
      const Ref v = pop(), k = pop();
      setitems({k, v});
      break;
    }
    case 'u': setitems(pop_mark()); break;  // SETITEMS
    default:
      bad("opcode 0x{:02x} is not one a torch state dict uses (fusellm reads only those)", op);
  }
  return true;
}

std::vector<TorchTensorRef> Unpickler::result(const Ref& v) {
  if (v->kind != Value::Kind::dict) fail("{}: data.pkl does not hold a dict of tensors (a state dict)", origin_);
  std::vector<TorchTensorRef> out;
  for (size_t i = 0; i + 1 < v->items.size(); i += 2) {
    const Ref& k = v->items[i];
    const Ref& t = v->items[i + 1];
    if (k->kind != Value::Kind::string) fail("{}: data.pkl: a state dict key is not a string", origin_);
    if (t->kind != Value::Kind::tensor) fail("{}: data.pkl: entry '{}' is not a tensor", origin_, k->text);
    out.push_back(t->tensor);
    out.back().name = k->text;
  }
  return out;
}

std::vector<TorchTensorRef> Unpickler::run() {
  while (true) {
    op_at_ = pos_;
    if (pos_ >= p_.size()) bad("truncated: the pickle ends without STOP");
    if (!step(uint8_t(p_[pos_++]))) break;
  }
  op_at_ = pos_ - 1;
  if (stack_.size() != 1 || !marks_.empty()) bad("STOP with {} values on the stack, expected 1", stack_.size());
  return result(stack_.back());
}

}  // namespace

std::vector<TorchTensorRef> parse_torch_pickle(std::span<const std::byte> pkl, const std::string& origin) {
  return Unpickler(pkl, origin).run();
}

std::string torch_pickle_allowed_globals() {
  std::vector<std::string_view> names{kOrderedDict, kRebuildTensor, kRebuildParameter};
  for (const auto& [n, d] : kStorages) names.push_back(n);
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace fusellm
