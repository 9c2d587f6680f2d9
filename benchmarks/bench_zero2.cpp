// ZeRO-2's gradient exchange (dist/sharded_gradients.hpp) against MPI's reduce-scatter of the same
// bytes, measured in the same run over the same MPI transport (dist/mpi/mpi_transport.hpp):
//
//   mpirun -np R build/benchmarks/bench_zero2 [floats parts micro reps]   (default 33554432 34 4 5)
//
// One step of a student with a gradient of `floats` fp32 values cut into `parts` equal parts (a
// Llama's layers, head and embeddings: ~1B parameters is 34 parts of 30M), `micro` micro-batches:
//   ZeRO-1   one reduce-scatter of the whole buffer per step (Zero1::reduce_gradients);
//   ZeRO-2   every micro-batch, ShardedGradients::add of each part (pieces sent point to point to
//            their shards' owners, summed there in rank order): `micro` times the bytes;
//   RS x m   the reference for the same bytes: `micro` reduce-scatters of the whole buffer, what
//            MPI's collective takes for the traffic ZeRO-2 moves.
// Prints the median seconds per step of each and the ratios ZeRO-2 / (RS x m) (the exchange's
// own efficiency against MPI's collective; 1 = as fast) and ZeRO-2 / ZeRO-1 (the price of
// sharding the gradients, at most about `micro`). Rank 0 prints; every rank times the same calls.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"
#include "fusellm/dist/shard_layout.hpp"
#include "fusellm/dist/sharded_gradients.hpp"

namespace {

using namespace fusellm;
using bench::Clock;

struct Args {
  int64_t floats = int64_t(1) << 25, parts = 34, micro = 4, reps = 5;
};

// Median seconds of `reps` calls of `f`, each after a barrier so that every rank starts together.
template <class F>
double time_step(dist::Transport& t, int64_t reps, F&& f) {
  f();  // warm-up: MPI's buffers, the pages of the receive side
  std::vector<double> s;
  for (int64_t i = 0; i < reps; ++i) {
    t.barrier();
    const auto t0 = Clock::now();
    f();
    t.barrier();
    s.push_back(bench::seconds_since(t0));
  }
  return bench::median(s);
}

void run(const Args& a) {
  auto world = dist::mpi::MpiTransport::world();
  const int R = world->size();
  const dist::ShardLayout layout = dist::ShardLayout::of(a.floats, R);
  std::vector<float> g(size_t(layout.padded()), 0.f), block(size_t(layout.shard));
  for (size_t i = 0; i < g.size(); ++i) g[i] = float((i * 2654435761u) % 1000) * 1e-6f;
  const std::span<const float> whole(g.data(), size_t(a.floats));
  dist::ShardedGradients sg(*world, a.floats);
  const int64_t part = (a.floats + a.parts - 1) / a.parts;
  const auto zero2 = [&] {
    sg.zero();
    for (int64_t m = 0; m < a.micro; ++m)
      for (int64_t b = 0; b < a.floats; b += part)
        sg.add(b, whole.subspan(size_t(b), size_t(std::min(part, a.floats - b))));
  };
  const auto reduce_scatter = [&] { world->reduce_scatter(g, block); };
  const double z1 = time_step(*world, a.reps, reduce_scatter);
  const double z2 = time_step(*world, a.reps, zero2);
  const double rsm = time_step(*world, a.reps, [&] {
    for (int64_t m = 0; m < a.micro; ++m) reduce_scatter();
  });
  if (world->rank() != 0) return;
  const double mb = double(a.floats) * 4 / 1e6;
  fmt::print("ZeRO-2 exchange: {} ranks, {:.0f} MB of fp32 gradient in {} parts, {} micro-batches a step, median of {}\n",
             R, mb, a.parts, a.micro, a.reps);
  fmt::print("  ZeRO-1, one reduce-scatter a step        {:8.4f} s\n", z1);
  fmt::print("  ZeRO-2, every part every micro-batch     {:8.4f} s\n", z2);
  fmt::print("  RS x {}, reduce-scatters of the same bytes {:8.4f} s\n", a.micro, rsm);
  fmt::print("ratio ZeRO-2 / (RS x {}) = {:.2f}   (the exchange against MPI's collective moving the same bytes)\n",
             a.micro, z2 / rsm);
  fmt::print("ratio ZeRO-2 / ZeRO-1   = {:.2f}   (the price of sharding the gradients; about {} when bandwidth-bound)\n",
             z2 / z1, a.micro);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a;
    if (argc > 1) a.floats = std::atoll(argv[1]);
    if (argc > 2) a.parts = std::atoll(argv[2]);
    if (argc > 3) a.micro = std::atoll(argv[3]);
    if (argc > 4) a.reps = std::atoll(argv[4]);
    if (a.floats < 1 || a.parts < 1 || a.micro < 1 || a.reps < 1) {
      fmt::print(stderr, "usage: mpirun -np R bench_zero2 [floats parts micro reps] (each >= 1)\n");
      return 2;
    }
    const dist::mpi::MpiSession session;
    run(a);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_zero2: {}\n", e.what());
    return 1;
  }
}
