#pragma once
// Runs a piece of code in a forked child under a time and memory bound and returns what it wrote:
// a stage that loops (an empty search string that never advances, appending as it goes) must
// fail its test within seconds, not take the machine's memory or hang the suite.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

namespace fusellm::testing {

struct BoundedRun {
  bool finished = false;  // the child returned (out is its result)
  std::string out;
  std::string why;        // when not finished: what stopped it
};

// Resident memory of process pid in bytes (/proc/<pid>/statm), 0 when it cannot be read.
inline std::size_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
  std::size_t pages = 0, resident = 0;
  if (!(in >> pages >> resident)) return 0;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// f() -> std::string runs in a child process; it is killed when it runs longer than `seconds` or
// its resident memory grows by more than `max_growth` bytes over what it started with (the
// parent's, shared at fork). An exception in f is reported in why.
template <class F>
BoundedRun run_bounded(F&& f, double seconds = 30.0, std::size_t max_growth = std::size_t(256) << 20) {
  BoundedRun r;
  int fds[2];
  if (::pipe(fds) != 0) {
    r.why = "pipe() failed";
    return r;
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    r.why = "fork() failed";
    return r;
  }
  if (pid == 0) {  // child: never returns into the test framework
    ::close(fds[0]);
    std::string out;
    int code = 0;
    try {
      out = f();
    } catch (const std::exception& e) {
      out = e.what();
      code = 3;
    } catch (...) {
      out = "unknown exception";
      code = 3;
    }
    for (std::size_t done = 0; done < out.size();) {
      const ssize_t n = ::write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) ::_exit(4);
      done += std::size_t(n);
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  const std::size_t base = resident_bytes(pid);
  const auto start = std::chrono::steady_clock::now();
  bool eof = false;
  char buf[1 << 16];
  while (!eof) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 5) > 0) {
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) r.out.append(buf, std::size_t(n));
      else eof = true;
      continue;
    }
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::size_t rss = resident_bytes(pid);
    if (t > seconds || rss > base + max_growth) {
      ::kill(pid, SIGKILL);
      r.why = t > seconds ? "did not finish in " + std::to_string(int(seconds)) + " s"
                          : "resident memory grew by more than " + std::to_string(max_growth >> 20) + " MiB in " +
                                std::to_string(t) + " s (a loop that never ends)";
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!r.why.empty()) return r;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    r.finished = true;
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    r.why = "exception: " + r.out;
  } else {
    r.why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                : "exit code " + std::to_string(WEXITSTATUS(status));
  }
  return r;
}

}  // namespace fusellm::testing
