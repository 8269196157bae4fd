// A submission entry of an io_uring, handing the kernel what is queued when the queue is full.
// Shared by the HTTP server's io_uring transport and `orderflow bench`'s; the ring's owning
// thread only.
#pragma once

#include <liburing.h>

namespace orderflow::http {

inline io_uring_sqe* next_sqe(io_uring& ring) {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  while (s == nullptr) {  // the queue is full: hand it to the kernel and take a fresh entry
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

}  // namespace orderflow::http
