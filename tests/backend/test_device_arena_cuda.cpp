// Device memory planned at start (kernels/cuda/device_arena.hpp) and the RAII streams and events
// (kernels/cuda/stream.hpp):
//   - the arena's bookkeeping (no GPU needed): 256-byte aligned offsets in order, lookup by name,
//     a duplicate name, the exhaustion message (request, bytes asked, bytes left, capacity), a last
//     request that fits unrounded, reset() giving the same offsets, planning with SIZE_MAX;
//   - a device arena: aligned non-overlapping sub-buffers inside the one allocation, the same
//     pointers after reset(), exhaustion, moves;
//   - an event's elapsed time (>= 0, and at least most of a 1 ms spin), and a cross-stream wait ordering a copy on one stream after a kernel
//     on another (which first spins 2 ms, so an unordered copy would read the poison).
// The GPU tests skip, saying why, when the machine has no usable CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda/bf16_convert.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_arena.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/stream.hpp"
#include "cuda_skip.hpp"
#include "error_of.hpp"

namespace fusellm {
namespace {

using cuda::ArenaLayout;
using cuda::DeviceArena;
using testing::expect_error;

TEST(ArenaLayout, AlignedOffsetsInOrderAndByName) {
  ArenaLayout a("step", 1 << 16);
  EXPECT_EQ(a.take("a", 1), 0u);
  EXPECT_EQ(a.take("b", 256), 256u);
  EXPECT_EQ(a.take("c", 257), 512u);
  EXPECT_EQ(a.take("d", 0), 1024u);  // an empty buffer takes no space
  EXPECT_EQ(a.take("e", 10), 1024u);
  EXPECT_EQ(a.used(), 1280u);
  EXPECT_EQ(a.left(), (1u << 16) - 1280u);
  ASSERT_NE(a.find("c"), nullptr);
  EXPECT_EQ(a.find("c")->offset, 512u);
  EXPECT_EQ(a.find("c")->bytes, 257u);
  EXPECT_EQ(a.find("zz"), nullptr);
  EXPECT_EQ(a.slots().size(), 5u);
  expect_error([&] { a.take("b", 8); }, {"device arena 'step'", "'b'", "already taken"});
}

TEST(ArenaLayout, ExhaustionNamesRequestSizesAndCapacity) {
  ArenaLayout a("activations", 2000);
  EXPECT_EQ(a.take("x", 1500), 0u);  // rounded to 1536: 464 left
  expect_error([&] { a.take("logits", 1000); },
               {"device arena 'activations'", "request 'logits'", "1000 bytes", "464 bytes left", "capacity of 2000"});
  EXPECT_EQ(a.used(), 1536u);  // a failed request takes nothing
  EXPECT_EQ(a.find("logits"), nullptr);
  // The last request may end at the capacity unrounded.
  EXPECT_EQ(a.take("tail", 464), 1536u);
  EXPECT_EQ(a.left(), 0u);
  EXPECT_EQ(a.take("empty", 0), 2000u);
  expect_error([&] { a.take("one more", 1); }, {"'one more'", "1 bytes", "0 bytes left"});
}

TEST(ArenaLayout, ResetReusesTheSameOffsets) {
  ArenaLayout a("step", 4096);
  const size_t x = a.take("x", 100), y = a.take("y", 1000);
  a.reset();
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.find("x"), nullptr);
  EXPECT_EQ(a.take("x", 100), x);
  EXPECT_EQ(a.take("y", 1000), y);
}

TEST(ArenaLayout, PlanWithUnlimitedCapacity) {
  const std::vector<std::pair<std::string, size_t>> requests{{"w", 4921 * 4}, {"m", 4921 * 4}, {"bounds", 6 * 8}};
  ArenaLayout plan("plan", SIZE_MAX);
  for (const auto& [name, bytes] : requests) plan.take(name, bytes);
  ArenaLayout real("real", plan.used());
  for (const auto& [name, bytes] : requests) real.take(name, bytes);
  EXPECT_EQ(real.left(), 0u);
  expect_error([&] { real.take("extra", 1); }, {"'extra'", "0 bytes left"});
}

// No GPU needed: an empty arena allocates nothing.
TEST(DeviceArena, EmptyArenaAndOverflowErrors) {
  DeviceArena a("empty", 0);
  EXPECT_EQ(a.base(), nullptr);
  EXPECT_EQ(a.take_bytes("nothing", 0), nullptr);
  expect_error([&] { a.take<float>("w", 1); }, {"device arena 'empty'", "'w'", "4 bytes", "0 bytes left"});
  expect_error([&] { a.take<double>("huge", SIZE_MAX / 4); }, {"'huge'", "overflows"});
  expect_error([&] { a.get<float>("w"); }, {"device arena 'empty'", "no buffer named 'w'"});
}

TEST(DeviceArena, AlignedDisjointBuffersAndReset) {
  SKIP_WITHOUT_GPU();
  const size_t cap = 1 << 16;
  DeviceArena a("step", cap);
  ASSERT_NE(a.base(), nullptr);
  float* f = a.take<float>("f", 1000);
  uint16_t* h = a.take<uint16_t>("h", 333);
  double* d = a.take<double>("d", 17);
  const std::vector<std::pair<void*, size_t>> bufs{{f, 4000}, {h, 666}, {d, 136}};
  const auto* base = static_cast<const char*>(a.base());
  for (size_t k = 0; k < bufs.size(); ++k) {
    const auto* p = static_cast<const char*>(bufs[k].first);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % cuda::kArenaAlign, 0u) << "buffer " << k;
    EXPECT_GE(p, base);
    EXPECT_LE(p + bufs[k].second, base + cap);
  }
  EXPECT_EQ(a.get<float>("f"), f);
  EXPECT_EQ(a.get<double>("d"), d);
  // Each buffer filled with its own byte: reading the whole arena back shows no overlap.
  FUSELLM_CUDA_CHECK(cudaMemset(a.base(), 0, cap));
  for (size_t k = 0; k < bufs.size(); ++k)
    FUSELLM_CUDA_CHECK(cudaMemset(bufs[k].first, int(k + 1), bufs[k].second));
  const std::vector<char> all = cuda::to_host(static_cast<const char*>(a.base()), cap);
  for (size_t k = 0; k < bufs.size(); ++k) {
    const size_t at = size_t(static_cast<const char*>(bufs[k].first) - base);
    for (size_t i = 0; i < bufs[k].second; ++i)
      if (all[at + i] != char(k + 1)) {
        ADD_FAILURE() << "buffer " << k << " byte " << i << " was overwritten";
        break;
      }
  }
  expect_error([&] { a.take<float>("too big", cap); }, {"device arena 'step'", "'too big'", "capacity of 65536"});
  a.reset();
  EXPECT_EQ(a.take<float>("f", 1000), f);
  EXPECT_EQ(a.take<uint16_t>("h", 333), h);
  EXPECT_EQ(a.take<double>("d", 17), d);

  DeviceArena b = std::move(a);  // the allocation moves with it (freed once, by b)
  EXPECT_EQ(b.base(), static_cast<const void*>(base));
  EXPECT_EQ(b.get<float>("f"), f);
}

TEST(CudaEvent, ElapsedTimeOfASpin) {
  SKIP_WITHOUT_GPU();
  cuda::Stream s;
  cuda::Event start, stop;
  start.record(s);
  cuda::spin_for(s, 1'000'000);  // 1 ms
  stop.record(s);
  stop.synchronize();
  EXPECT_TRUE(stop.done());
  const float ms = cuda::elapsed_ms(start, stop);
  EXPECT_GE(ms, 0.f);
  EXPECT_GE(ms, 0.5f) << "a 1 ms spin measured as " << ms << " ms";
  // (Not tested: elapsed_ms of an event made without timing throws, but the failing API call would
  // count as an error under compute-sanitizer.)
}

TEST(CudaStream, CrossStreamWaitOrdersCopyAfterKernel) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 5000;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = 0.25f * float(i) - 7.f;
  auto src = cuda::to_device(x);
  auto dst = cuda::dev_alloc<uint16_t>(size_t(n)), copy = cuda::dev_alloc<uint16_t>(size_t(n));
  FUSELLM_CUDA_CHECK(cudaMemset(dst.get(), 0xff, size_t(n) * 2));   // poison the kernel overwrites
  FUSELLM_CUDA_CHECK(cudaMemset(copy.get(), 0, size_t(n) * 2));
  FUSELLM_CUDA_CHECK(cudaDeviceSynchronize());

  cuda::Stream producer, consumer;
  cuda::Event written(false);
  cuda::spin_for(producer, 2'000'000);  // 2 ms: an unordered copy would read the poison
  cuda::f32_to_bf16(reinterpret_cast<__nv_bfloat16*>(dst.get()), src.get(), n, producer);
  written.record(producer);
  consumer.wait(written);
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(copy.get(), dst.get(), size_t(n) * 2, cudaMemcpyDeviceToDevice, consumer));
  consumer.synchronize();  // the consumer only: its copy must have waited for the producer
  EXPECT_TRUE(written.done());
  const std::vector<uint16_t> got = cuda::to_host(copy.get(), size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[size_t(i)], 4);
    const auto want = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    if (got[size_t(i)] != want) {
      ADD_FAILURE() << "element " << i << " of the copy is 0x" << std::hex << got[size_t(i)] << ", expected 0x"
                    << want << std::dec << " (the copy did not wait for the kernel)";
      break;
    }
  }
  producer.synchronize();

  cuda::Stream moved = std::move(producer);
  EXPECT_EQ(producer.get(), nullptr);
  EXPECT_NE(moved.get(), nullptr);
}

}  // namespace
}  // namespace fusellm
