#include "worker/uring_sender.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "common/log.hpp"

namespace netsvr {

namespace {
// Submission-queue slots: one per connection written in a batch; a larger batch is submitted in
// parts. Small, so that the rings (64 B per slot, 16 B per completion) cost ~24 KiB.
constexpr unsigned kEntries = 256;
}  // namespace

std::unique_ptr<UringSender> UringSender::create(uv_loop_t* loop, std::string& why) {
  std::unique_ptr<UringSender> s(new UringSender);
  int rc = io_uring_queue_init(kEntries, &s->ring_, 0);
  if (rc < 0) {
    why = std::string("io_uring_queue_init: ") + strerror(-rc);
    return nullptr;
  }
  s->ringReady_ = true;
  s->eventFd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->eventFd_ < 0) {
    why = std::string("eventfd: ") + strerror(errno);
    return nullptr;
  }
  // Not io_uring_register_eventfd_async: a send that waited for room completes in this
  // process's own context (task work, run when the loop's epoll_wait is interrupted), which the
  // "async" eventfd does not signal; the loop then slept with the completion in the ring (a
  // client stalled for good). submit() turns the eventfd off while it reaps inline results.
  rc = io_uring_register_eventfd(&s->ring_, s->eventFd_);
  if (rc < 0) {
    why = std::string("io_uring_register_eventfd: ") + strerror(-rc);
    return nullptr;
  }
  s->poll_ = new uv_poll_t;
  s->poll_->data = s.get();
  uv_poll_init(loop, s->poll_, s->eventFd_);
  uv_poll_start(s->poll_, UV_READABLE, onEventFd);
  uv_unref(reinterpret_cast<uv_handle_t*>(s->poll_));  // keeps no loop alive
  return s;
}

UringSender::~UringSender() {
  if (poll_) {
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  if (ringReady_) io_uring_queue_exit(&ring_);  // cancels what is left; no done() runs
  if (eventFd_ >= 0) close(eventFd_);
}

void UringSender::queue(int fd, Op* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {  // the submission queue is full: send what it holds first
    submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_sendmsg(sqe, fd, &op->msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
  ++queued_;
}

void UringSender::cancel(Op* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_prep_cancel(sqe, op, 0);
  io_uring_sqe_set_data(sqe, nullptr);  // its own completion is skipped in reap()
  ++queued_;
}

void UringSender::submit() {
  do {
    // Results reaped here need no wake-up: the eventfd is off meanwhile (a flag in the ring,
    // no system call); it stays on for completions that come while the loop waits.
    io_uring_cq_eventfd_toggle(&ring_, false);
    reap();  // completions that came meanwhile (their done() may queue more)
    // Until nothing is queued: a completion queues the connection's next frames at once, so a
    // long queue is a chain of submits (a cap on them left its tail unsent, the client stalled).
    // Only failures are counted.
    int failures = 0;
    while (queued_ > 0 && failures < 16) {
      int rc = io_uring_submit(&ring_);
      if (rc >= 0) {
        inKernel_ += unsigned(rc);
        queued_ -= unsigned(rc);
      } else if (++failures, rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
        // EINTR, or EBUSY while completions wait, are tried again after reaping. Anything else
        // is logged; the entries stay queued and go with the next submit().
        LOG_ERROR("io_uring_submit: %s", strerror(-rc));
        break;
      }
      reap();
    }
    io_uring_cq_eventfd_toggle(&ring_, true);
  } while (io_uring_cq_ready(&ring_) > 0);  // posted before the eventfd was on again
}

void UringSender::reap() {
  io_uring_cqe* cqe;
  while (inKernel_ > 0 && io_uring_peek_cqe(&ring_, &cqe) == 0) {
    auto* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --inKernel_;
    if (op) op->done(op, result);  // may queue more: submit() sends it
  }
}

void UringSender::onEventFd(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<UringSender*>(handle->data);
  if (!self || status < 0) return;
  uint64_t count;
  while (read(self->eventFd_, &count, sizeof count) > 0) {
  }
  LOG_DEBUG("io_uring: sends completed after a full socket drained");
  self->submit();  // reaps them first
}

}  // namespace netsvr
