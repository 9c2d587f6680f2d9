#pragma once
// A request to stop at the next step boundary, from a signal (issue 12, item 2): SIGUSR1 (what
// Slurm's `--signal=B:USR1@<seconds>` makes the batch script forward before the time limit) and
// SIGTERM (what Slurm sends every task on preemption, `scancel` or the time limit, KillWait
// seconds before SIGKILL). The handler only records the signal (an atomic store is
// async-signal-safe); the training loop reads it at a step boundary, the students agree on it
// (train/trainer.cpp), write a checkpoint of that step, and the command exits with
// kExitRequeue. As Megatron-LM's `--exit-signal-handler` and torchtitan's checkpoint-on-signal:
// the step in progress finishes, nothing half-done is saved.
#include <string>

namespace fusellm {

// `fusellm train`'s exit status after a stop on a signal: "checkpointed, requeue me". 75 is
// EX_TEMPFAIL of sysexits.h ("a temporary failure: the user is invited to retry"); the batch
// scripts in slurm/ requeue on it, and on nothing else.
constexpr int kExitRequeue = 75;

// Installs the handler for SIGUSR1 and SIGTERM (again: no effect). A second signal after the
// first is recorded too, not fatal: the job is already on its way to a checkpoint.
void install_stop_handlers();

// The signal that asked for a stop (SIGUSR1 or SIGTERM), 0 when none has.
int stop_signal();
inline bool stop_requested() { return stop_signal() != 0; }
// "SIGUSR1", "SIGTERM", or "a signal <n>".
std::string signal_name(int sig);

// What the handler does, for tests of one process: as if `sig` had arrived. clear_stop() forgets it.
void request_stop(int sig);
void clear_stop();

}  // namespace fusellm
