// The teachers' forward pass on the GPU ([train].device = "cuda"): `fusellm teach` of both demo
// sources (a Llama and a GPT-NeoX, examples/demo) writes the same distribution cache on the GPU
// as on the CPU, up to fp32 summation order: the same per-segment CE within 1e-5 relative, the
// same top-k ids except where two probabilities are within rounding of each other, the same fp16
// probabilities within 2 fp16 ulps. With [[source]].dtype = "bf16" the GPU's GEMMs round their
// operands to bf16 where the CPU computes in fp32 on the same bf16 weights: the CE within 1e-2
// relative (METHOD.md's bf16 tolerance), 95 % of the top-k ids the same. Skips without a GPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "backend/cuda_skip.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/teach.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {

const std::string kDemo = FUSELLM_SOURCE_DIR "/examples/demo";

// A job over the demo's first documents with its cache under `dir`/cache_<device><dtype>.
std::string job_file(const fs::path& dir, const std::string& device, const std::string& dtype = "fp32") {
  const std::string name = device + (dtype == "fp32" ? "" : "_" + dtype);
  const std::string p = (dir / (name + ".toml")).string();
  const std::string d = "dtype = \"" + dtype + "\"\n";
  std::ofstream(p) << "[job]\nname = \"t\"\noutput_dir = \"" << (dir / "run").string() << "\"\n\n"
                   << "[[source]]\nname = \"llama\"\npath = \"" << kDemo << "/llama\"\n" << d << "\n"
                   << "[[source]]\nname = \"neox\"\npath = \"" << kDemo << "/neox\"\n" << d << "\n"
                   << "[target]\ninit_from = \"llama\"\n\n"
                   << "[corpus]\npath = \"" << kDemo << "/corpus.jsonl\"\nmax_len = 256\nmargin = 16\n\n"
                   << "[distill]\ntop_k = 10\nalignment = \"mined\"\n\n"
                   << "[train]\ndevice = \"" << device << "\"\n\n"
                   << "[cache]\ndir = \"" << (dir / ("cache_" + name)).string() << "\"\n";
  return p;
}

TeachResult teach_source(const std::string& job, const std::string& source) {
  TeachOptions o;
  o.source = source;
  o.limit = 24;
  o.progress = false;
  return teach(load_job(job), o);
}

// |a - b| in units of the fp16 spacing at max(|a|, |b|) (10 mantissa bits).
double f16_ulps(float a, float b) {
  const float m = std::max(std::fabs(a), std::fabs(b));
  const double ulp = m > 0 ? std::ldexp(1.0, std::ilogb(m) - 10) : std::ldexp(1.0, -24);
  return std::fabs(double(a) - double(b)) / ulp;
}

// The CPU's and the GPU's caches of one source, slot by slot: where both keep the same id, how far
// its probability moved (in fp16 ulps and absolutely), and the per-segment CE.
struct CacheDiff {
  int64_t slots = 0, same_id = 0;
  double worst_ulps = 0, worst_p = 0, worst_ce = 0;
};
void compare_caches(const DistributionCacheReader& a, const DistributionCacheReader& b, const std::string& source,
                    CacheDiff& d) {
  ASSERT_EQ(a.segments(), b.segments()) << source;
  for (int64_t i = 0; i < a.segments(); ++i) {
    const TeacherRows x = a.read_index(i), y = b.read_index(i);
    ASSERT_EQ(x.target_ids, y.target_ids) << source << " segment " << i;
    d.worst_ce = std::max(d.worst_ce, std::fabs(x.ce - y.ce) / std::max(1e-12, std::fabs(x.ce)));
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int64_t j = 0; j < x.k; ++j, ++d.slots) {
        if (x.id(t, j) != y.id(t, j)) continue;  // a near-tie ordered the other way
        ++d.same_id;
        d.worst_ulps = std::max(d.worst_ulps, f16_ulps(x.prob(t, j), y.prob(t, j)));
        d.worst_p = std::max(d.worst_p, double(std::fabs(x.prob(t, j) - y.prob(t, j))));
      }
  }
  std::printf("  %s: %lld slots, %.4f%% with the same id, worst prob difference %.1f fp16 ulps (%.2e), worst CE "
              "%.2e\n",
              source.c_str(), (long long)d.slots, 100.0 * double(d.same_id) / double(d.slots), d.worst_ulps, d.worst_p,
              d.worst_ce);
}

// `fusellm teach` of both demo sources on the CPU and on the GPU, in `dtype`; `check` gets each
// source's comparison.
template <class Check>
void teach_on_both(const std::string& tag, const std::string& dtype, Check&& check) {
  const fs::path dir = fs::temp_directory_path() / ("fusellm_teach_cuda_" + tag + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string source : {"llama", "neox"}) {
    const TeachResult cpu = teach_source(job_file(dir, "cpu", dtype), source);
    const TeachResult gpu = teach_source(job_file(dir, "cuda", dtype), source);
    const DistributionCacheReader a(cpu.cache_path), b(gpu.cache_path);
    CacheDiff d;
    ASSERT_NO_FATAL_FAILURE(compare_caches(a, b, source, d));
    check(source, a, b, gpu.cache_path, d);
  }
  fs::remove_all(dir);
}

TEST(TeachCuda, TheGpuWritesTheCpusCache) {
  SKIP_WITHOUT_GPU();
  teach_on_both("", "fp32", [](const std::string& source, const DistributionCacheReader& a,
                               const DistributionCacheReader& b, const std::string&, const CacheDiff& d) {
    ASSERT_EQ(a.rows(), b.rows()) << source;
    EXPECT_LE(d.worst_ce, 1e-5) << source;
    EXPECT_LE(d.worst_ulps, 2.0) << source;
    EXPECT_GE(double(d.same_id), 0.999 * double(d.slots)) << source;
  });
}

TEST(TeachCuda, Bf16TeachersOnTheGpuFollowTheCpus) {
  SKIP_WITHOUT_GPU();
  teach_on_both("bf16_", "bf16", [](const std::string& source, const DistributionCacheReader&,
                                    const DistributionCacheReader&, const std::string& gpu_cache, const CacheDiff& d) {
    EXPECT_EQ(DistributionCacheReader::read_provenance(gpu_cache).teacher_dtype, "bf16");
    EXPECT_LE(d.worst_ce, 1e-2) << source;
    EXPECT_GE(double(d.same_id), 0.95 * double(d.slots)) << source;
  });
}

}  // namespace
