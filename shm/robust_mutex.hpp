// A process-shared robust mutex that lives inside a shared-memory segment. Boost.Interprocess
// 1.74 has no robust mutex; a worker killed while holding its lock must not block the others
// (DESIGN.md §3 rule 2), so this wraps pthread's PTHREAD_MUTEX_ROBUST.
#pragma once

#include <pthread.h>

#include <cerrno>

namespace netsvr::shm {

class RobustMutex {
 public:
  // Called once by the creator of the segment, before any other process maps it.
  void init() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&mutex_, &attr);
    pthread_mutexattr_destroy(&attr);
  }

  // Returns true when the lock is held and the data it protects is trustworthy. False means the
  // previous owner died inside the critical section: the lock was made consistent and released,
  // and the caller must treat the protected data as gone.
  bool lock() {
    int rc = pthread_mutex_lock(&mutex_);
    if (rc == 0) return true;
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&mutex_);
      ownerDied_ = true;
      pthread_mutex_unlock(&mutex_);
    }
    return false;
  }
  void unlock() { pthread_mutex_unlock(&mutex_); }
  // True once any locker saw the owner die while holding the lock.
  bool ownerDied() const { return ownerDied_; }

 private:
  pthread_mutex_t mutex_;
  volatile bool ownerDied_ = false;
};

// Scoped lock; check held() before touching the protected data.
class RobustLock {
 public:
  explicit RobustLock(RobustMutex& m) : mutex_(m), held_(m.lock()) {}
  ~RobustLock() {
    if (held_) mutex_.unlock();
  }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  bool held() const { return held_; }

 private:
  RobustMutex& mutex_;
  bool held_;
};

}  // namespace netsvr::shm
