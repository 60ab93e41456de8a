// Batched socket sends through io_uring (docs/DESIGN.md, "Writing to clients"). A worker queues
// one sendmsg per connection while it flushes a loop iteration's frames, then submits them all
// with one system call instead of one send(2) each. On this project's machines a system call
// costs about 1.1 us before it does anything, and the kernel sends a batch to many sockets for
// half the CPU of separate calls (docs/PERFORMANCE.md, "Sends through io_uring").
//
// The kernel tries each send at once and, where the socket takes all or part of it, posts the
// result before io_uring_enter returns: submit() finds it right away. A send that finds the
// socket full waits inside the kernel (io_uring polls the socket) and completes when the client
// has read; that completion wakes the loop through an eventfd.
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <uv.h>

#include <memory>
#include <string>

namespace netsvr {

class UringSender {
 public:
  // One sendmsg. The owner keeps it, its msghdr and its buffers alive until done() has run.
  struct Op {
    msghdr msg{};
    void (*done)(Op* op, int result) = nullptr;  // bytes sent, or -errno
  };

  // nullptr, with `why`, where the kernel refuses io_uring (old kernel, seccomp, sysctl
  // kernel.io_uring_disabled): the caller writes through libwebsockets as before.
  static std::unique_ptr<UringSender> create(uv_loop_t* loop, std::string& why);
  ~UringSender();
  UringSender(const UringSender&) = delete;
  UringSender& operator=(const UringSender&) = delete;

  // Queues a sendmsg of op->msg on `fd` (MSG_NOSIGNAL); it goes out at the next submit().
  void queue(int fd, Op* op);
  // Asks the kernel to drop op if it still waits for room in its socket (a connection freed
  // meanwhile): done() runs with -ECANCELED, or with its result if it was sent after all.
  void cancel(Op* op);
  // Submits everything queued and runs done() of each completion there is, until nothing is
  // queued (a done() may queue more).
  void submit();

 private:
  UringSender() = default;
  static void onEventFd(uv_poll_t* handle, int status, int events);
  void reap();

  io_uring ring_{};
  bool ringReady_ = false;
  int eventFd_ = -1;
  uv_poll_t* poll_ = nullptr;  // freed in its close callback
  unsigned queued_ = 0;        // in the submission queue, not yet submitted
  unsigned inKernel_ = 0;      // submitted, completion not yet reaped
};

}  // namespace netsvr
