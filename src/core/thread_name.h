// Names the calling thread (at most 15 characters shown), so that top, perf and gdb show
// which of the process's threads is which.
#pragma once

#include <pthread.h>

#include <string>

namespace orderflow {

inline void name_this_thread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace orderflow
