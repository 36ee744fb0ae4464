// Resynchronisation of a replicated directory (the primary's side), run on its own thread with
// a sender attached while the application keeps writing through the interceptor:
//  - Resync: copies what the dirty tracker (plus the returning node's own dirty list) names:
//    per entry (sorted by path, parents first) a SyncEntry (type, mode, owner, size, times,
//    symlink target), a DirList for a directory with a meta mark, and the dirty zones' bytes as
//    Write records of at most 1 MiB. Each entry's state is read and submitted under the sink's
//    mutex (per chunk), so a live change to the same path is ordered after the copied state.
//    A finished, acknowledged entry is cleared from the tracker (marks up to the checkpoint taken
//    at the start), so an interrupted resync resumes from what is left.
//  - FullSync: the same with the whole tree ("" copied whole: every directory listed, every
//    file's data regions sent, holes skipped with SEEK_DATA/SEEK_HOLE); then clears the tracker
//    up to its checkpoint.
// Flow control: at most `windowBytes` of copied data unacknowledged. Abortable between chunks.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dirty.h"
#include "repl_sink.h"

namespace ha::rfs {

struct ResyncProgress {
  uint64_t bytesDone = 0, bytesTotal = 0;  // bytesTotal is an estimate (grows during a full sync)
  uint64_t entriesDone = 0, entriesTotal = 0;
  double rate = 0;   // bytes/s since the start
  double etaS = -1;  // -1: unknown
};

struct ResyncResult {
  bool ok = false;
  bool aborted = false;
  std::string code, message;  // when !ok
  uint64_t entries = 0;       // entries processed
  uint64_t files = 0;         // regular files whose data was copied
  uint64_t bytesSent = 0;     // data bytes submitted
  uint64_t records = 0;       // records submitted
  uint64_t deferred = 0;      // live changes left to this resync
  double ms = 0;
};

struct ResyncOptions {
  bool full = false;                      // FullSync
  std::vector<DirtyEntry> extra;          // the returning node's dirty entries (Resync)
  uint64_t windowBytes = 16u << 20;
  uint64_t maxBytesPerSec = 0;            // 0: unlimited
  int progressIntervalMs = 200;
};

struct ResyncControl {
  std::atomic<bool> abort{false};
  std::function<void(const ResyncProgress&)> onProgress;  // on the resync thread
};

// Runs to completion on the calling thread. Errors: ERR_RFS_REPL_ALONE (no sender),
// ERR_RFS_REPL_BUSY (another resync runs), ERR_RFS_REPL_LOST (the sender was lost or replaced),
// ERR_RFS_REPL_IO (reading the local copy failed), ERR_RFS_DIRTY_*; aborted -> ERR_RFS_REPL_ABORTED.
ResyncResult RunResync(const std::shared_ptr<ReplicationSink>& sink, const ResyncOptions& opts, ResyncControl& ctl);

}  // namespace ha::rfs
