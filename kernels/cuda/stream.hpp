#pragma once
// CUDA streams and events as RAII handles (move-only), every call checked with
// FUSELLM_CUDA_CHECK (a failure throws fusellm::Error naming the call). Destruction does not
// throw: an error there belongs to earlier work, and the next checked call reports it.
//
// Streams are created non-blocking: they do not synchronize with the legacy default stream, so
// work on the default stream (cudaMemcpy, a launch without a stream) is NOT ordered with them;
// order across streams with an Event (record on one, Stream::wait on another).
// Includable from C++17 and C++20; definitions in stream.cu.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

namespace fusellm::cuda {

class Event;

class Stream {
 public:
  Stream();  // cudaStreamCreateWithFlags(cudaStreamNonBlocking)

  cudaStream_t get() const { return s_.get(); }
  operator cudaStream_t() const { return s_.get(); }
  // Work enqueued on this stream after the call waits for the event's recorded work.
  void wait(const Event& e) const;
  void synchronize() const;

 private:
  struct Destroy {
    void operator()(cudaStream_t s) const;
  };
  std::unique_ptr<CUstream_st, Destroy> s_;
};

class Event {
 public:
  // timing false: cudaEventDisableTiming, the cheaper event for cross-stream waits only.
  explicit Event(bool timing = true);

  void record(cudaStream_t stream);
  void synchronize() const;
  // Whether the recorded work is complete (cudaEventQuery; other errors throw).
  bool done() const;
  cudaEvent_t get() const { return e_.get(); }

 private:
  struct Destroy {
    void operator()(cudaEvent_t e) const;
  };
  std::unique_ptr<CUevent_st, Destroy> e_;
};

// Milliseconds between two recorded timing events (cudaEventElapsedTime; stop must be complete:
// call stop.synchronize() first). Error for an event created without timing.
float elapsed_ms(const Event& start, const Event& stop);

// Occupies `stream` for at least `ns` nanoseconds of the device's global timer (one thread
// spinning): for tests and benchmarks of ordering and overlap between streams.
void spin_for(cudaStream_t stream, int64_t ns);

}  // namespace fusellm::cuda
