// The original FuseLLM's alignment rules (align/original_rules.hpp, [distill].align_compat)
// against the Python reference's OriginalRules (tests/reference/align_reference.py, part 6;
// fixtures <pair>.original.{json,bin} from tests/reference/gen_align.py): for each rule alone and
// all of them, the vocabulary mapping, the alignment of every target position and the aligned
// rows equal the reference's. Each rule's configuration also differs from fusellm's own rules
// somewhere, so a rule that the switch failed to reach would show.
#include <gtest/gtest.h>

#include "align_fixture.hpp"
#include "align_test_util.hpp"
#include "kokkos_exec_spaces.hpp"

namespace fusellm::align {
namespace {

const std::string kDir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/align/";

template <class ExecSpace>
class AlignOriginal : public ::testing::Test {};
TYPED_TEST_SUITE(AlignOriginal, fusellm::testing::ExecSpaces);

template <class Mem>
SparseRows<Mem> rows_of(const testing::AlignFixture& fx, const std::string& side, uint64_t seed, int k,
                        int64_t vocab) {
  const int64_t D = fx.meta["docs"];
  const auto ids = fx.get<int32_t>(side + "_ids");
  const auto off = fx.get<int64_t>(side + "_offsets");
  std::vector<int32_t> rid;
  std::vector<float> rpr;
  for (int64_t d = 0; d < D; ++d)
    testing::source_rows(seed, uint64_t(d), ids.data() + off[size_t(d)], off[size_t(d) + 1] - off[size_t(d)], k, vocab,
                         rid, rpr);
  const int64_t n = int64_t(ids.size());
  SparseRows<Kokkos::HostSpace> h("rows", n, k);
  for (int64_t p = 0; p < n; ++p)
    for (int c = 0; c < k; ++c) {
      h.ids(p, c) = rid[size_t(p * k + c)];
      h.probs(p, c) = rpr[size_t(p * k + c)];
    }
  SparseRows<Mem> out;
  out.ids = Kokkos::create_mirror_view_and_copy(Mem(), h.ids);
  out.probs = Kokkos::create_mirror_view_and_copy(Mem(), h.probs);
  return out;
}

// The aligned rows of one configuration; returns how many positions differ from `other` (the
// same configuration's rows under fusellm's rules), to show the rule changed something.
void check_pair(const std::string& pair, auto exec_tag) {
  using ExecSpace = decltype(exec_tag);
  using Mem = typename ExecSpace::memory_space;
  testing::AlignFixture fx(kDir + pair + ".original");
  const auto& meta = fx.meta;
  const TokenVocab src = TokenVocab::from_tokenizer_json(fx.path(meta["source"]["tokenizer"]));
  const TokenVocab tgt = TokenVocab::from_tokenizer_json(fx.path(meta["target"]["tokenizer"]));
  ASSERT_EQ(src.fingerprint_hex(), meta["source"]["fingerprint"].get<std::string>());
  ASSERT_EQ(tgt.fingerprint_hex(), meta["target"]["fingerprint"].get<std::string>());
  const auto batches = testing::doc_batches(fx, src, tgt);
  const DocBatch &s = batches.first, &t = batches.second;
  const int64_t D = meta["docs"], model_vocab = meta["source"]["model_vocab"];
  const int k = meta["k"];
  const auto srows = rows_of<Mem>(fx, "src", meta["seed"].get<uint64_t>(), k, model_vocab);
  const auto trows = rows_of<Mem>(fx, "tgt", meta["target_seed"].get<uint64_t>(), k, tgt.size());
  const auto src_off = fx.get<int64_t>("src_offsets"), tgt_off = fx.get<int64_t>("tgt_offsets");
  std::vector<int32_t> doc_src0(size_t(t.tokens()));
  for (int64_t d = 0; d < D; ++d)
    for (int64_t p = tgt_off[size_t(d)]; p < tgt_off[size_t(d) + 1]; ++p) doc_src0[size_t(p)] = int32_t(src_off[size_t(d)]);

  const VocabMapping fusellm_map = VocabMapping::build<ExecSpace>(src, tgt, model_vocab);
  for (const auto& cfg : meta["configs"]) {
    const std::string name = cfg["name"], map_key = cfg["map"];
    SCOPED_TRACE(pair + " " + name);
    const OriginalRules rules = OriginalRules::parse(cfg["rules"].get<std::string>());
    const AlignMethod method = parse_align_method(cfg["method"].get<std::string>());
    const VocabMapping map = VocabMapping::build<ExecSpace>(src, tgt, model_vocab, {}, rules);
    EXPECT_EQ(map.exact, fx.get<int32_t>("map[" + map_key + "].exact"));
    EXPECT_EQ(map.full, fx.get<int32_t>("map[" + map_key + "].full"));
    EXPECT_EQ(map.dist, fx.get<int32_t>("map[" + map_key + "].dist"));
    EXPECT_EQ(map.kind, fx.get<uint8_t>("map[" + map_key + "].kind"));

    const Aligner<ExecSpace> aligner(src, tgt, &map, size_t(256) << 20, rules);
    const Alignment al = aligner.align(s, t, method);
    const auto [lo, hi] = expected_lo_hi(fx, name, doc_src0);
    ASSERT_EQ(al.lo, lo);
    ASSERT_EQ(al.hi, hi);
    ASSERT_EQ(al.status, fx.get<uint8_t>(name + ".status"));

    const auto out = aligner.apply(al, t, srows, method, false, rules.empty_row ? &trows : nullptr);
    const auto h = testing::to_host(out.rows);
    auto fin = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out.status);
    const auto want_final = fx.get<uint8_t>(name + ".final");
    const auto count = fx.get<uint8_t>(name + ".count");
    const auto ids = fx.get<int32_t>(name + ".ids");
    const auto probs = fx.get<float>(name + ".probs");
    size_t e = 0, ep = 0;
    for (int64_t p = 0; p < t.tokens(); ++p) {
      ASSERT_EQ(fin(p), want_final[size_t(p)]) << "position " << p;
      ASSERT_EQ(h.ids[size_t(p)].size(), count[size_t(p)]) << "position " << p;
      const bool stored = align_kept(fin(p)) || (fin(p) == kFallbackEmpty && rules.empty_row);
      for (size_t c = 0; c < h.ids[size_t(p)].size(); ++c, ++e) {
        ASSERT_EQ(h.ids[size_t(p)][c], ids[e]) << "position " << p << " slot " << c;
        const float want = stored ? probs[ep++] : 1.0f;
        ASSERT_NEAR(h.probs[size_t(p)][c], want, 1e-6) << "position " << p << " slot " << c;
      }
    }
    EXPECT_EQ(e, ids.size());
    EXPECT_EQ(ep, probs.size());

    // The same configuration under fusellm's rules differs: the switch reached the rule.
    const Aligner<ExecSpace> plain(src, tgt, &fusellm_map);
    const Alignment al0 = plain.align(s, t, method);
    const auto h0 = testing::to_host(plain.apply(al0, t, srows, method).rows);
    int64_t changed = 0;
    for (int64_t p = 0; p < t.tokens(); ++p) changed += h0.ids[size_t(p)] != h.ids[size_t(p)];
    EXPECT_GT(changed, 0) << name << ": the original's rule changed no aligned row";
    std::printf("[ original ] %s %-16s %lld docs, %lld target positions, %lld rows differ from fusellm's rules: "
                "equal to the reference\n",
                pair.c_str(), name.c_str(), static_cast<long long>(D), static_cast<long long>(t.tokens()),
                static_cast<long long>(changed));
  }
}

TYPED_TEST(AlignOriginal, BytelevelToSentencePiece) { check_pair("bytelevel_to_sp_bpe", TypeParam()); }
TYPED_TEST(AlignOriginal, SentencePieceToBytelevel) { check_pair("sp_bpe_to_bytelevel", TypeParam()); }

}  // namespace
}  // namespace fusellm::align
