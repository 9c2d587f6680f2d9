// Equality with the Python reference (tests/reference/align_reference.py) on real tokenizer pairs
// and >= 1,000 held-out documents (tests/reference/gen_align.py): byte ends, the vocabulary mapping
// (exact / MinED / unmapped, distances), the alignment of every target position for EM, MinED and
// byte spans, and the aligned rows (ids exactly, probabilities within 1e-6), on every backend.
#include <gtest/gtest.h>

#include <filesystem>

#include "align_fixture.hpp"
#include "align_test_util.hpp"
#include "kokkos_exec_spaces.hpp"

namespace fusellm::align {
namespace {

const std::string kDir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/align/";

template <class ExecSpace>
class AlignReference : public ::testing::Test {};
TYPED_TEST_SUITE(AlignReference, fusellm::testing::ExecSpaces);

void check_pair(const std::string& pair, auto exec_tag) {
  using ExecSpace = decltype(exec_tag);
  using Mem = typename ExecSpace::memory_space;
  testing::AlignFixture fx(kDir + pair);
  const auto& meta = fx.meta;
  const TokenVocab src = TokenVocab::from_tokenizer_json(fx.path(meta["source"]["tokenizer"]));
  const TokenVocab tgt = TokenVocab::from_tokenizer_json(fx.path(meta["target"]["tokenizer"]));
  ASSERT_EQ(src.fingerprint_hex(), meta["source"]["fingerprint"].get<std::string>());
  ASSERT_EQ(tgt.fingerprint_hex(), meta["target"]["fingerprint"].get<std::string>());
  ASSERT_EQ(to_string(src.kind), meta["source"]["kind"].get<std::string>());
  ASSERT_EQ(to_string(tgt.kind), meta["target"]["kind"].get<std::string>());

  const int64_t D = meta["docs"];
  ASSERT_GE(int64_t(meta["heldout_docs"]), 1000);
  const auto src_off = fx.get<int64_t>("src_offsets"), tgt_off = fx.get<int64_t>("tgt_offsets");
  const auto batches = testing::doc_batches(fx, src, tgt);
  const DocBatch &s = batches.first, &t = batches.second;
  ASSERT_EQ(s.byte_ends, fx.get<int64_t>("src_ends"));  // stored as int32
  ASSERT_EQ(t.byte_ends, fx.get<int64_t>("tgt_ends"));

  const int64_t model_vocab = meta["source"]["model_vocab"];
  const VocabMapping map = VocabMapping::build<ExecSpace>(src, tgt, model_vocab);
  EXPECT_EQ(map.exact, fx.get<int32_t>("map_exact"));
  EXPECT_EQ(map.full, fx.get<int32_t>("map_full"));
  EXPECT_EQ(map.dist, fx.get<int32_t>("map_dist"));
  EXPECT_EQ(map.kind, fx.get<uint8_t>("map_kind"));

  const int k = meta["k"];
  std::vector<int32_t> rid;
  std::vector<float> rpr;
  testing::all_source_rows(fx, k, model_vocab, rid, rpr);
  const uint64_t sum = testing::fnv1a(rpr.data(), rpr.size() * 4, testing::fnv1a(rid.data(), rid.size() * 4));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(sum));
  ASSERT_EQ(std::string(hex), meta["source_rows_checksum"].get<std::string>());
  SparseRows<Kokkos::HostSpace> hrows("src", s.tokens(), k);
  for (int64_t p = 0; p < s.tokens(); ++p)
    for (int c = 0; c < k; ++c) {
      hrows.ids(p, c) = rid[size_t(p * k + c)];
      hrows.probs(p, c) = rpr[size_t(p * k + c)];
    }
  SparseRows<Mem> rows;
  rows.ids = Kokkos::create_mirror_view_and_copy(Mem(), hrows.ids);
  rows.probs = Kokkos::create_mirror_view_and_copy(Mem(), hrows.probs);

  // Doc-local source positions in the fixture -> global.
  std::vector<int32_t> doc_src0(size_t(t.tokens()));
  for (int64_t d = 0; d < D; ++d)
    for (int64_t p = tgt_off[size_t(d)]; p < tgt_off[size_t(d) + 1]; ++p) doc_src0[size_t(p)] = int32_t(src_off[size_t(d)]);

  Aligner<ExecSpace> aligner(src, tgt, &map);
  for (const auto& cfg : meta["configs"]) {
    const std::string name = cfg["name"];
    SCOPED_TRACE(pair + " " + name);
    const AlignMethod method = parse_align_method(cfg["method"].get<std::string>());
    const Alignment al = aligner.align(s, t, method);
    const std::string aname = cfg.value("alignment_of", name);  // em_current shares em's
    const auto [lo, hi] = expected_lo_hi(fx, aname, doc_src0);
    ASSERT_EQ(al.lo, lo);
    ASSERT_EQ(al.hi, hi);
    ASSERT_EQ(al.status, fx.get<uint8_t>(aname + ".status"));

    const auto out = aligner.apply(al, t, rows, method, cfg["onehot_current"].get<bool>());
    const auto h = testing::to_host(out.rows);
    auto fin = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.status);
    const auto want_final = fx.get<uint8_t>(name + ".final");
    const auto count = fx.get<uint8_t>(name + ".count");
    const auto ids = fx.get<int32_t>(name + ".ids");
    const auto probs = fx.get<float>(name + ".probs");
    size_t e = 0, ep = 0;  // entries; stored probabilities (kept rows only: a fallback is 1)
    int64_t kept = 0;
    for (int64_t p = 0; p < t.tokens(); ++p) {
      ASSERT_EQ(fin(p), want_final[size_t(p)]) << "position " << p;
      ASSERT_EQ(h.ids[size_t(p)].size(), count[size_t(p)]) << "position " << p;
      const bool is_kept = align_kept(fin(p));
      for (size_t c = 0; c < h.ids[size_t(p)].size(); ++c, ++e) {
        ASSERT_EQ(h.ids[size_t(p)][c], ids[e]) << "position " << p << " slot " << c;
        const float want = is_kept ? probs[ep++] : 1.0f;
        ASSERT_NEAR(h.probs[size_t(p)][c], want, 1e-6) << "position " << p << " slot " << c;
      }
      kept += is_kept;
    }
    EXPECT_EQ(e, ids.size());
    EXPECT_EQ(ep, probs.size());
    std::printf("[ reference ] %s %-10s %lld docs, %lld target positions, %lld kept, %zu entries: equal\n",
                pair.c_str(), name.c_str(), static_cast<long long>(D), static_cast<long long>(t.tokens()),
                static_cast<long long>(kept), e);
  }
}

TYPED_TEST(AlignReference, BytelevelToSentencePiece) { check_pair("bytelevel_to_sp_bpe", TypeParam()); }
TYPED_TEST(AlignReference, SentencePieceToBytelevel) { check_pair("sp_bpe_to_bytelevel", TypeParam()); }

}  // namespace
}  // namespace fusellm::align
