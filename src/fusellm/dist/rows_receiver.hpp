#pragma once
// A student's rows source for one source of the online job (data/rows_source.hpp): the second
// implementation beside the distribution cache, so a student fed over the transport assembles
// the packed sequences a student fed from caches does (issue 11: online equals offline by
// construction). For each micro-batch the trainer announces, it receives the rows message from
// the replica that serves it (Topology::serving_replica; the replica's last stage sends), checks
// it against what it expects (rows_message.hpp: the micro-batch, the source, the segments in
// order, k, the sender), and returns the credit (credit.hpp) when the trainer is done with it.
//
// Test hook: FUSELLM_TEST_STUDENT_DELAY_MS=<ms> (read once) makes end_micro_batch sleep that long
// before it returns the credit, a student slowed down on purpose, so that the bounded-memory test
// sees teachers that run ahead until their credits are spent (issue 11, "Bounded memory").
#include <deque>
#include <map>

#include "fusellm/data/rows_source.hpp"
#include "fusellm/dist/timeline.hpp"
#include "fusellm/dist/topology.hpp"
#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

class RowsReceiver final : public RowsSource {
 public:
  // world: every rank of the job (the teachers' world ranks send); k: [distill].top_k.
  // position_ce: the rows carry per-position CE (the job fuses with MinCE per position).
  RowsReceiver(const Topology& topo, Transport& world, int source, std::string source_name, int64_t k,
               bool position_ce, Timeline* timeline = nullptr);
  TeacherRows rows(int64_t segment) override;
  std::string describe() const override;
  void begin_micro_batch(int64_t id, std::span<const int64_t> segments) override;
  void end_micro_batch(int64_t id) override;

  int64_t bytes_received() const { return bytes_; }

 private:
  int sender(int64_t micro_batch) const;  // world rank of the serving replica's last stage

  const Topology& topo_;
  Transport& world_;
  int source_;
  std::string name_;
  int64_t k_;
  bool position_ce_;
  Timeline* timeline_;
  Timeline off_;
  int64_t current_ = -1;                    // the micro-batch being consumed
  std::map<int64_t, TeacherRows> ready_;    // its rows, by segment
  std::deque<std::pair<std::vector<std::byte>, std::unique_ptr<Request>>> credits_;  // in flight
  int64_t bytes_ = 0;
};

}  // namespace fusellm::dist
