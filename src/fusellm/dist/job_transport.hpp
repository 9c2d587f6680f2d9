#pragma once
// The world transport as the MPI job's ranks use it (issue 12): the transport it wraps, plus two
// things the job's end needs.
//
//  - It counts the point-to-point messages it sends (per destination and tag) and receives (per
//    tag). A job that stops early (a stop signal: job_end.hpp) leaves messages in flight: rows a
//    teacher sent ahead that no student will consume, credits no teacher will take, hidden states
//    between stages. drain_unreceived() makes every rank receive, and drop, exactly what was sent
//    to it and not yet received, so every send completes and nothing is left unmatched when MPI
//    finalizes (MPI-3.1 section 8.7: pending communication at MPI_Finalize is erroneous).
//  - Every wait it does (recv, a send's wait) first runs the rank's interrupt, if one is set: a
//    teacher sets one that throws JobEnded once the students' end message has arrived, so a
//    teacher blocked on a credit the stopped students will never return, or on a hidden state a
//    stopped earlier stage will never send, leaves its wait at once.
//
// Collectives and split() go to the wrapped transport unchanged (under its timeout).
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

class JobTransport final : public Transport {
 public:
  explicit JobTransport(Transport& inner);  // takes the wrapped transport's timeout

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string kind() const override { return inner_.kind(); }
  std::string describe(int r) const override { return inner_.describe(r); }

  std::unique_ptr<Request> isend(int dest, Tag tag, std::span<const std::byte> bytes) override;
  std::vector<std::byte> recv(int src, Tag tag) override;
  // Never blocks, so never runs the interrupt (an interrupt looks for its message with it).
  std::optional<std::vector<std::byte>> try_recv(int src, Tag tag) override;

  void reduce_scatter(std::span<const float> in, std::span<float> out) override { inner_.reduce_scatter(in, out); }
  void all_gather(std::span<const float> in, std::span<float> out) override { inner_.all_gather(in, out); }
  void all_reduce(std::span<double> values) override { inner_.all_reduce(values); }
  void broadcast(std::span<std::byte> bytes, int root) override { inner_.broadcast(bytes, root); }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<Transport> split(int color, int key) override { return inner_.split(color, key); }

  // Run in every wait, before each poll; it may throw to leave the wait. Empty: none.
  void set_interrupt(std::function<void()> check) { interrupt_ = std::move(check); }
  void check_interrupt() const {
    if (interrupt_) interrupt_();
  }
  // Every rank calls it, after its last send of the job: receives and drops each message sent to
  // it and not yet received (an all-reduce of the counts tells each rank how many, per tag).
  // Returns how many it dropped.
  int64_t drain_unreceived();

 private:
  static constexpr int kTags = 7;  // Tag values 1..6 index 0..5; 6: Tag::test
  static int slot(Tag tag);

  Transport& inner_;
  std::function<void()> interrupt_;
  std::vector<int64_t> sent_;      // [destination * kTags + slot]
  std::vector<int64_t> received_;  // [slot]
};

}  // namespace fusellm::dist
