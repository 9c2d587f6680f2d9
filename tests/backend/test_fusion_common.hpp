#pragma once
// Shared by the fusion kernel tests (test_topk, test_sequence_ce, test_fusion,
// test_fused_classifier): the fixture reader for tests/fixtures/fused_loss (written by
// tests/reference/gen_fused_loss.py), Views built from host vectors on a test's execution space,
// and the team sizes each row kernel is run with.
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "kokkos/sparse_rows.hpp"
#include "kokkos_exec_spaces.hpp"

namespace fusellm::testing {

// ---- fixtures -------------------------------------------------------------------------------------
class FusedLossFixtures {
 public:
  static const FusedLossFixtures& get() {
    static FusedLossFixtures f;
    return f;
  }
  const nlohmann::json& meta(const std::string& c) const { return meta_.at("cases").at(c); }
  std::vector<int64_t> shape(const std::string& c, const std::string& a) const {
    return meta(c).at("arrays").at(a).at("shape").get<std::vector<int64_t>>();
  }
  template <class T>
  std::vector<T> array(const std::string& c, const std::string& a) const {
    const auto& m = meta(c).at("arrays").at(a);
    const std::string dt = m.at("dtype");
    const size_t width = (dt == "float64" || dt == "int64") ? 8 : 4;
    EXPECT_EQ(width, sizeof(T)) << c << "." << a << " is " << dt;
    int64_t n = 1;
    for (int64_t d : m.at("shape").get<std::vector<int64_t>>()) n *= d;
    std::vector<T> v(n);
    std::ifstream in(dir_ + "/" + m.at("file").get<std::string>(), std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T)));
    EXPECT_TRUE(in.good()) << "reading " << m.at("file");
    return v;
  }
  double scalar(const std::string& c, const std::string& s) const {
    return meta(c).at("scalars").at(s).get<double>();
  }
  const nlohmann::json& scalar_json(const std::string& c, const std::string& s) const {
    return meta(c).at("scalars").at(s);
  }

 private:
  FusedLossFixtures() : dir_(std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/fused_loss") {
    std::ifstream in(dir_ + "/meta.json");
    if (!in) throw std::runtime_error("missing " + dir_ + "/meta.json");
    meta_ = nlohmann::json::parse(in);
  }
  std::string dir_;
  nlohmann::json meta_;
};

// ---- Views on the execution space under test -----------------------------------------------------
template <class Exec, class T>
Kokkos::View<T*, typename Exec::memory_space> view1(const std::vector<T>& v,
                                                    const std::string& label = "v") {
  Kokkos::View<T*, typename Exec::memory_space> d(label, v.size());
  auto h = Kokkos::create_mirror_view(d);
  for (size_t i = 0; i < v.size(); ++i) h(i) = v[i];
  Kokkos::deep_copy(d, h);
  return d;
}
template <class Exec, class T>
Kokkos::View<T**, Kokkos::LayoutRight, typename Exec::memory_space> view2(
    const std::vector<T>& v, int64_t rows, int64_t cols, const std::string& label = "m") {
  EXPECT_EQ(int64_t(v.size()), rows * cols);
  Kokkos::View<T**, Kokkos::LayoutRight, typename Exec::memory_space> d(label, rows, cols);
  auto h = Kokkos::create_mirror_view(d);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) h(i, j) = v[i * cols + j];
  Kokkos::deep_copy(d, h);
  return d;
}
template <class V>
auto host_vector(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<typename V::non_const_value_type>(h.data(), h.data() + h.size());
}

template <class Exec>
SparseRows<typename Exec::memory_space> make_rows(const std::vector<int32_t>& ids,
                                                  const std::vector<float>& probs, int64_t T,
                                                  int64_t k, const std::vector<float>& tail = {}) {
  SparseRows<typename Exec::memory_space> r("rows", T, k, !tail.empty());
  Kokkos::deep_copy(r.ids, view2<Exec>(ids, T, k));
  Kokkos::deep_copy(r.probs, view2<Exec>(probs, T, k));
  if (!tail.empty()) Kokkos::deep_copy(r.tail, view1<Exec>(tail));
  return r;
}

// Dense [T, V] from sparse rows (ids -1 skipped, repeated ids summed), for comparisons.
template <class Rows>
std::vector<double> densify(const Rows& r, int64_t V) {
  auto ids = host_vector(r.ids);
  auto pr = host_vector(r.probs);
  const int64_t T = r.rows(), k = r.k();
  std::vector<double> d(size_t(T * V), 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < k; ++j)
      if (ids[i * k + j] >= 0) d[i * V + ids[i * k + j]] += pr[i * k + j];
  return d;
}

// The SparseRows order: probability descending, ties by ascending id, empty slots (-1, 0) last.
template <class Rows>
void expect_sorted_rows(const Rows& r) {
  auto ids = host_vector(r.ids);
  auto pr = host_vector(r.probs);
  const int64_t T = r.rows(), k = r.k();
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 1; j < k; ++j) {
      const int32_t a = ids[i * k + j - 1], b = ids[i * k + j];
      if (b < 0) {
        EXPECT_EQ(pr[i * k + j], 0.f) << "row " << i;
        continue;
      }
      ASSERT_GE(a, 0) << "id after an empty slot in row " << i;
      const float pa = pr[i * k + j - 1], pb = pr[i * k + j];
      EXPECT_TRUE(pa > pb || (pa == pb && a < b))
          << "row " << i << " slots " << j - 1 << "," << j << ": (" << a << ", " << pa << ") ("
          << b << ", " << pb << ")";
    }
}

// Team sizes every row kernel runs with on this backend: the default (1 thread per row on the
// host) and, where the backend has threads, 2, which exercises the cross-thread merges.
template <class Exec>
std::vector<int> team_sizes() {
  std::vector<int> t{0};
  if (Exec::concurrency() >= 2) t.push_back(2);
  return t;
}

// Runs f and expects fusellm::Error whose message contains every string in `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no fusellm::Error thrown";
  } catch (const fusellm::Error& e) {
    const std::string what = e.what();
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}

}  // namespace fusellm::testing
