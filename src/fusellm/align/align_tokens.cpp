#include "fusellm/align/align_tokens.hpp"

#include <algorithm>

#include "fusellm/align/align_device.hpp"
#include "fusellm/align/original_host.hpp"
#include "fusellm/core/error.hpp"
#include "kokkos/apply_alignment.hpp"
#include "kokkos/byte_span_alignment.hpp"
#include "kokkos/token_alignment.hpp"

namespace fusellm::align {
namespace {

using detail::strings_to_device;
using detail::to_device;

void check_batch(const TokenVocab& v, const DocBatch& b, const char* side) {
  if (b.offsets.empty() || b.offsets.front() != 0 || b.offsets.back() != b.tokens())
    fail("align: the {} batch's offsets do not cover its {} tokens", side, b.tokens());
  for (size_t d = 1; d < b.offsets.size(); ++d)
    if (b.offsets[d] < b.offsets[d - 1]) fail("align: the {} batch's offsets decrease at document {}", side, d - 1);
  for (size_t i = 0; i < b.ids.size(); ++i)
    if (b.ids[i] < 0 || b.ids[i] >= v.size())
      fail("align: {} token id {} at position {} is outside the vocabulary of '{}' ({} entries)", side, b.ids[i],
           i, v.name, v.size());
}

}  // namespace

const char* to_string(AlignMethod m) {
  switch (m) {
    case AlignMethod::kEM: return "em";
    case AlignMethod::kMinED: return "mined";
    case AlignMethod::kByteSpan: return "bytespan";
  }
  return "em";
}

AlignMethod parse_align_method(std::string_view s) {
  if (s == "em") return AlignMethod::kEM;
  if (s == "mined") return AlignMethod::kMinED;
  if (s == "bytespan") return AlignMethod::kByteSpan;
  fail("alignment method '{}': expected one of em, mined, bytespan", s);
}

void DocBatch::add(const TokenVocab& vocab, std::span<const int32_t> doc_ids, std::string_view text) {
  add(vocab, doc_ids, vocab.dummy_inserted(text));
}

void DocBatch::add(const TokenVocab& vocab, std::span<const int32_t> doc_ids, bool dummy_inserted) {
  const auto ends = vocab.byte_ends(doc_ids, dummy_inserted);  // also checks the ids
  ids.insert(ids.end(), doc_ids.begin(), doc_ids.end());
  byte_ends.insert(byte_ends.end(), ends.begin(), ends.end());
  offsets.push_back(int64_t(ids.size()));
}

template <class ExecSpace>
Aligner<ExecSpace>::Aligner(const TokenVocab& src, const TokenVocab& tgt, const VocabMapping* mapping,
                            size_t workspace_bytes, const OriginalRules& rules)
    : src_(&src), tgt_(&tgt), mapping_(mapping), rules_(rules), has_mapping_(mapping != nullptr),
      workspace_bytes_(workspace_bytes) {
  if (src.max_normalized_len() > size_t(kAlignMaxLongBytes) && tgt.max_normalized_len() > size_t(kAlignMaxLongBytes))
    fail("align: both '{}' and '{}' have tokens longer than {} bytes ({} and {}); alignment supports that on "
         "one side only", src.name, tgt.name, kAlignMaxLongBytes, src.max_normalized_len(), tgt.max_normalized_len());
  src_norm_ = strings_to_device<Mem>(src.normalized);
  tgt_norm_ = strings_to_device<Mem>(tgt.normalized);
  std::vector<std::string> sc, tc;
  sc.reserve(src.normalized.size());
  tc.reserve(tgt.normalized.size());
  for (const auto& s : src.normalized) sc.push_back(cost_string(s));
  for (const auto& s : tgt.normalized) tc.push_back(cost_string(s));
  src_cost_ = strings_to_device<Mem>(sc);
  tgt_cost_ = strings_to_device<Mem>(tc);
  src_flags_ = to_device<Mem>(src.flags);
  tgt_flags_ = to_device<Mem>(tgt.flags);
  if (mapping) {
    mapping->check(src, tgt);
    OriginalRules want;
    want.strings = rules.strings;
    want.specials = rules.specials;
    if (mapping->rules != want.to_string())
      fail("align: the vocabulary mapping of '{}' -> '{}' was built under the rules '{}', the aligner follows '{}'",
           src.name, tgt.name, mapping->rules, want.to_string());
    map_exact_ = to_device<Mem>(mapping->exact);
    map_full_ = to_device<Mem>(mapping->full);
  }
}

namespace {

// The DTW's host-side plan for a batch. Per document: content ranges, the distinct content ids of
// each side (the cost table's rows and columns), and the workspace: the U_src x U_tgt cost table
// (int32) and one move byte per DP cell ((n + m - 1) x n, room for either traversal's layout).
// Documents go in chunks whose workspace fits the budget (a single document may exceed it).
struct DtwPlan {
  std::vector<int32_t> src_u, tgt_u;  // each position's index among its document's distinct ids
  std::vector<int32_t> src_uid, tgt_uid;
  std::vector<int64_t> src_uid_off{0}, tgt_uid_off{0};
  std::vector<int64_t> dir_bytes, table_len, src_content, tgt_content;  // per document
  std::vector<std::pair<int64_t, int64_t>> chunks;                      // [first, last) documents
  int64_t max_dirs = 1, max_table = 1;                                  // the largest chunk's
};

// Appends document d's distinct ids in [first content, last content) to `uid` (first-seen order)
// and writes each position's index among them to `u`. `stamp`/`local` (vocabulary-sized) avoid a
// hash map: stamp[id] == d marks an id seen in this document.
void collect_uniques(const DocBatch& b, int64_t d, std::pair<size_t, size_t> runs, std::vector<int32_t>& u,
                     std::vector<int32_t>& uid, std::vector<int64_t>& uid_off, std::vector<int32_t>& stamp,
                     std::vector<int32_t>& local) {
  const int64_t p0 = b.offsets[size_t(d)] + int64_t(runs.first);
  const int64_t p1 = b.offsets[size_t(d) + 1] - int64_t(runs.second);
  const int64_t first = int64_t(uid.size());
  for (int64_t p = p0; p < p1; ++p) {
    const int32_t id = b.ids[size_t(p)];
    if (stamp[size_t(id)] != int32_t(d)) {
      stamp[size_t(id)] = int32_t(d);
      local[size_t(id)] = int32_t(int64_t(uid.size()) - first);
      uid.push_back(id);
    }
    u[size_t(p)] = local[size_t(id)];
  }
  uid_off.push_back(int64_t(uid.size()));
}

void plan_chunks(DtwPlan& p, int64_t D, size_t workspace_bytes) {
  for (int64_t a = 0; a < D;) {
    int64_t b = a, dbytes = 0, tlen = 0;
    while (b < D && (b == a || dbytes + p.dir_bytes[size_t(b)] + 4 * (tlen + p.table_len[size_t(b)]) <=
                                   int64_t(workspace_bytes))) {
      dbytes += p.dir_bytes[size_t(b)];
      tlen += p.table_len[size_t(b++)];
    }
    p.chunks.emplace_back(a, b);
    p.max_dirs = std::max(p.max_dirs, dbytes);
    p.max_table = std::max(p.max_table, tlen);
    a = b;
  }
}

DtwPlan plan_dtw(const TokenVocab& sv, const TokenVocab& tv, const DocBatch& src_docs, const DocBatch& tgt_docs,
                 size_t workspace_bytes) {
  const int64_t D = src_docs.docs();
  DtwPlan p;
  p.src_u.assign(src_docs.ids.size(), -1);
  p.tgt_u.assign(tgt_docs.ids.size(), -1);
  for (auto* v : {&p.dir_bytes, &p.table_len, &p.src_content, &p.tgt_content}) v->assign(size_t(D), 0);
  std::vector<int32_t> stamp_s(size_t(sv.size()), -1), local_s(size_t(sv.size()));
  std::vector<int32_t> stamp_t(size_t(tv.size()), -1), local_t(size_t(tv.size()));
  for (int64_t d = 0; d < D; ++d) {
    const int64_t s0 = src_docs.offsets[size_t(d)], n = src_docs.offsets[size_t(d) + 1] - s0;
    const int64_t t0 = tgt_docs.offsets[size_t(d)], m = tgt_docs.offsets[size_t(d) + 1] - t0;
    const auto cs = sv.edge_runs(std::span<const int32_t>(src_docs.ids.data() + s0, size_t(n)));
    const auto ct = tv.edge_runs(std::span<const int32_t>(tgt_docs.ids.data() + t0, size_t(m)));
    const int64_t nc = n - int64_t(cs.first + cs.second), mc = m - int64_t(ct.first + ct.second);
    p.src_content[size_t(d)] = nc;
    p.tgt_content[size_t(d)] = mc;
    if (nc == 0 || mc == 0) {  // nothing to align: no uniques, no workspace
      p.src_uid_off.push_back(int64_t(p.src_uid.size()));
      p.tgt_uid_off.push_back(int64_t(p.tgt_uid.size()));
      continue;
    }
    collect_uniques(src_docs, d, cs, p.src_u, p.src_uid, p.src_uid_off, stamp_s, local_s);
    collect_uniques(tgt_docs, d, ct, p.tgt_u, p.tgt_uid, p.tgt_uid_off, stamp_t, local_t);
    p.table_len[size_t(d)] = (p.src_uid_off.back() - p.src_uid_off[p.src_uid_off.size() - 2]) *
                             (p.tgt_uid_off.back() - p.tgt_uid_off[p.tgt_uid_off.size() - 2]);
    p.dir_bytes[size_t(d)] = (nc + mc - 1) * nc;
  }
  plan_chunks(p, D, workspace_bytes);
  return p;
}

}  // namespace

template <class ExecSpace>
Alignment Aligner<ExecSpace>::align(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method) const {
  check_batch(*src_, src_docs, "source");
  check_batch(*tgt_, tgt_docs, "target");
  if (src_docs.docs() != tgt_docs.docs())
    fail("align: {} source documents but {} target documents", src_docs.docs(), tgt_docs.docs());
  if (method == AlignMethod::kMinED && !has_mapping_)
    fail("align: MinED needs the vocabulary mapping of '{}' -> '{}'", src_->name, tgt_->name);
  if (rules_.changes_dtw() && method != AlignMethod::kByteSpan) return align_host(src_docs, tgt_docs, method);
  const int64_t T = tgt_docs.tokens();
  Alignment al;
  al.source_tokens = src_docs.tokens();
  Outputs out{Kokkos::View<int32_t*, Mem>("fusellm::align::lo", size_t(T)),
              Kokkos::View<int32_t*, Mem>("fusellm::align::hi", size_t(T)),
              Kokkos::View<uint8_t*, Mem>("fusellm::align::status", size_t(T))};
  if (method == AlignMethod::kByteSpan)
    align_byte_span(src_docs, tgt_docs, out);
  else
    align_dtw(src_docs, tgt_docs, method, out);
  auto hlo = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.lo);
  auto hhi = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.hi);
  auto hst = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.status);
  al.lo.assign(hlo.data(), hlo.data() + T);
  al.hi.assign(hhi.data(), hhi.data() + T);
  al.status.assign(hst.data(), hst.data() + T);
  return al;
}

template <class ExecSpace>
void Aligner<ExecSpace>::align_byte_span(const DocBatch& src_docs, const DocBatch& tgt_docs, const Outputs& out) const {
  if (src_docs.byte_ends.size() != src_docs.ids.size() || tgt_docs.byte_ends.size() != tgt_docs.ids.size())
    fail("align: byte-span alignment needs the byte ends of every token (DocBatch::add)");
  ByteSpanAlignment<ExecSpace> f;
  f.src_ids = to_device<Mem>(src_docs.ids);
  f.tgt_ids = to_device<Mem>(tgt_docs.ids);
  f.src_doc = to_device<Mem>(src_docs.offsets);
  f.tgt_doc = to_device<Mem>(tgt_docs.offsets);
  f.src_ends = to_device<Mem>(src_docs.byte_ends);
  f.tgt_ends = to_device<Mem>(tgt_docs.byte_ends);
  f.src_flags = src_flags_;
  f.tgt_flags = tgt_flags_;
  f.lo = out.lo;
  f.hi = out.hi;
  f.status = out.status;
  byte_span_alignment(f, src_docs.docs());
}

template <class ExecSpace>
void Aligner<ExecSpace>::align_dtw(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method,
                                   const Outputs& out) const {
  const DtwPlan p = plan_dtw(*src_, *tgt_, src_docs, tgt_docs, workspace_bytes_);
  TokenAlignmentDTW<ExecSpace> f;
  f.src_ids = to_device<Mem>(src_docs.ids);
  f.tgt_ids = to_device<Mem>(tgt_docs.ids);
  f.src_u = to_device<Mem>(p.src_u);
  f.tgt_u = to_device<Mem>(p.tgt_u);
  f.src_uid = to_device<Mem>(p.src_uid);
  f.tgt_uid = to_device<Mem>(p.tgt_uid);
  f.src_norm = src_norm_;
  f.tgt_norm = tgt_norm_;
  f.src_cost = src_cost_;
  f.tgt_cost = tgt_cost_;
  f.src_flags = src_flags_;
  f.tgt_flags = tgt_flags_;
  f.map_full = map_full_;
  f.method = int(method == AlignMethod::kMinED ? DtwMethod::kMinED : DtwMethod::kEM);
  f.dirs = Kokkos::View<uint8_t*, Mem>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fusellm::align::dtw_moves"),
                                       size_t(p.max_dirs));
  f.costs = Kokkos::View<int32_t*, Mem>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "fusellm::align::dtw_costs"),
                                        size_t(p.max_table));
  f.lo = out.lo;
  f.hi = out.hi;
  f.status = out.status;
  f.force_wavefront = dtw_wavefront;
  const auto src_doc = to_device<Mem>(src_docs.offsets), tgt_doc = to_device<Mem>(tgt_docs.offsets);
  const auto src_uid_off_d = to_device<Mem>(p.src_uid_off), tgt_uid_off_d = to_device<Mem>(p.tgt_uid_off);
  for (const auto& [a, b] : p.chunks) {
    std::vector<int64_t> doff(size_t(b - a + 1), 0), coff(size_t(b - a + 1), 0);
    int64_t max_src = 1, max_tgt = 1;
    for (int64_t d = a; d < b; ++d) {
      doff[size_t(d - a + 1)] = doff[size_t(d - a)] + p.dir_bytes[size_t(d)];
      coff[size_t(d - a + 1)] = coff[size_t(d - a)] + p.table_len[size_t(d)];
      max_src = std::max(max_src, p.src_content[size_t(d)]);
      max_tgt = std::max(max_tgt, p.tgt_content[size_t(d)]);
    }
    const auto sub = std::make_pair(size_t(a), size_t(b + 1));
    f.dir_off = to_device<Mem>(doff);
    f.cost_off = to_device<Mem>(coff);
    f.src_doc = Kokkos::subview(src_doc, sub);
    f.tgt_doc = Kokkos::subview(tgt_doc, sub);
    f.src_uid_off = Kokkos::subview(src_uid_off_d, sub);
    f.tgt_uid_off = Kokkos::subview(tgt_uid_off_d, sub);
    token_alignment_dtw(f, b - a, max_src, max_tgt);
  }
}

// The DTW under the original's rules, one document after another on the host
// (original_rules.cpp; the reference's align_dtw with rules).
template <class ExecSpace>
Alignment Aligner<ExecSpace>::align_host(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method) const {
  const RuleStrings ss = rule_strings(*src_, *tgt_, rules_.strings), ts = rule_strings(*tgt_, *tgt_, rules_.strings);
  Alignment al;
  al.source_tokens = src_docs.tokens();
  const size_t T = size_t(tgt_docs.tokens());
  al.lo.assign(T, -1);
  al.hi.assign(T, -1);
  al.status.assign(T, kFallbackUnaligned);
  const int64_t D = src_docs.docs();
  Kokkos::parallel_for(
      "fusellm::align::dtw_host", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace, Kokkos::Schedule<Kokkos::Dynamic>>(0, D),
      [&](const int64_t d) {
        const int64_t s0 = src_docs.offsets[size_t(d)], s1 = src_docs.offsets[size_t(d) + 1];
        const int64_t t0 = tgt_docs.offsets[size_t(d)], t1 = tgt_docs.offsets[size_t(d) + 1];
        detail::align_dtw_host(*src_, *tgt_, std::span<const int32_t>(src_docs.ids.data() + s0, size_t(s1 - s0)),
                               std::span<const int32_t>(tgt_docs.ids.data() + t0, size_t(t1 - t0)),
                               method == AlignMethod::kMinED, mapping_, rules_, ss, ts, s0, al.lo.data() + t0,
                               al.hi.data() + t0, al.status.data() + t0);
      });
  return al;
}

template <class ExecSpace>
typename Aligner<ExecSpace>::Rows Aligner<ExecSpace>::apply(const Alignment& al, const DocBatch& tgt_docs,
                                                           const SparseRows<Mem>& src_rows, AlignMethod method,
                                                           bool onehot_current,
                                                           const SparseRows<Mem>* target_rows) const {
  if (!has_mapping_)
    fail("align: applying an alignment needs the vocabulary mapping of '{}' -> '{}'", src_->name, tgt_->name);
  const int64_t T = tgt_docs.tokens();
  if (int64_t(al.status.size()) != T || int64_t(al.lo.size()) != T)
    fail("align: the alignment has {} target positions, the target batch {}", al.status.size(), T);
  if (src_rows.rows() != al.source_tokens)
    fail("align: the source rows have {} positions, the aligned source batch {} tokens", src_rows.rows(),
         al.source_tokens);
  if (src_rows.k() > kApplyMaxK) fail("align: top-k of {} exceeds the supported {}", src_rows.k(), kApplyMaxK);
  if (rules_.empty_row && !target_rows)
    fail("align: the original's empty-row rule takes the target model's own rows where nothing survives the "
         "mapping of '{}' -> '{}'; none were given", src_->name, tgt_->name);
  if (target_rows && target_rows->rows() != T)
    fail("align: the target rows have {} positions, the target batch {}", target_rows->rows(), T);
  ApplyAlignment<ExecSpace> f;
  f.tgt_ids = to_device<Mem>(tgt_docs.ids);
  f.tgt_doc = to_device<Mem>(tgt_docs.offsets);
  f.src_pos = to_device<Mem>(al.lo);
  f.status_in = to_device<Mem>(al.status);
  f.id_map = method == AlignMethod::kEM ? map_exact_ : map_full_;
  f.src = src_rows;
  Rows out{SparseRows<Mem>("fusellm::align::aligned", T, src_rows.k(), src_rows.tail.extent(0) > 0),
           Kokkos::View<uint8_t*, Mem>("fusellm::align::aligned.status", size_t(T))};
  f.out = out.rows;
  f.status_out = out.status;
  f.onehot_current = onehot_current || rules_.onehot_current;
  if (rules_.empty_row) {
    f.target = *target_rows;
    f.use_target = true;
  }
  apply_alignment(f, tgt_docs.docs());
  return out;
}

Alignment align_tokens(const TokenVocab& src, std::span<const int32_t> src_ids, const TokenVocab& tgt,
                       std::span<const int32_t> tgt_ids, AlignMethod method, const VocabMapping* mapping,
                       std::string_view text, const OriginalRules& rules) {
  DocBatch s, t;
  s.add(src, src_ids, text);
  t.add(tgt, tgt_ids, text);
  Aligner<Kokkos::DefaultExecutionSpace> aligner(src, tgt, mapping, size_t(256) << 20, rules);
  return aligner.align(s, t, method);
}

#define FUSELLM_ALIGN_INSTANTIATE(S) template class Aligner<S>;
FUSELLM_ALIGN_FOR_EACH_SPACE(FUSELLM_ALIGN_INSTANTIATE)
#undef FUSELLM_ALIGN_INSTANTIATE

}  // namespace fusellm::align
