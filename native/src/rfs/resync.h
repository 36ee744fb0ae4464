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
//    up to its checkpoint. With sums (default), a Sums record first asks the secondary for its
//    manifest (checksum.h: per-entry metadata and SHA-256 of each 64 KiB block), built once
//    everything before it is applied; from then until an entry is taken from the work list, no
//    live change to it is forwarded (the whole tree is pending), so the manifest is the
//    secondary's state of that entry, plus the live changes forwarded after it was taken — which
//    overwrite the same bytes on both sides, so "primary block == manifest block" still means
//    "the secondary has it". An entry whose metadata and blocks all match sends nothing; a file
//    sends only its differing blocks (a block that is a hole here is punched there). A file
//    replaced (other inode) during its own comparison is copied whole from there on. An entry is
//    compared once: taken out of the manifest when processed.
// Flow control: at most `windowBytes` of copied data unacknowledged. Abortable between chunks.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checksum.h"
#include "dirty.h"
#include "repl_sink.h"

namespace ha::rfs {

struct ResyncProgress {
  uint64_t bytesDone = 0, bytesTotal = 0;  // bytesTotal is an estimate (grows during a full sync)
  uint64_t entriesDone = 0, entriesTotal = 0;
  // Entries done whose copy the secondary has made durable (a barrier it applied), forgotten
  // here: an interrupted resynchronisation that resumes copies them again only if the secondary
  // reports them changed on its side.
  uint64_t entriesKept = 0;
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
  // Full sync with block checksums (sums): what the secondary already had.
  uint64_t bytesMatched = 0;  // data bytes found identical (not sent)
  uint64_t filesIdentical = 0;// regular files found identical (nothing sent, not even metadata)
  uint64_t holesPunched = 0;  // hole ranges punched on the secondary (a hole here, maybe bytes there)
  double sumsMs = 0;          // time to get the secondary's manifest
  std::string sumsError;      // non-empty: the manifest could not be had; a plain full copy was made
};

struct ResyncOptions {
  bool full = false;                      // FullSync
  bool sums = true;                       // FullSync: ask the secondary's block checksums first and
                                          // send only what differs (else copy everything)
  int sumsTimeoutMs = 120000;             // no part of the manifest for this long: plain full copy
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

struct VerifyResult {
  bool ok = false;
  std::string code, message;            // when !ok
  std::vector<Difference> differences;  // when ok: empty = identical
  uint64_t entries = 0, peerEntries = 0, bytes = 0;
  double ms = 0;
};

// Compares the primary's copy with the attached secondary's, by block checksums (a Sums record:
// the secondary's manifest is built once everything before it is applied; the local one at the
// same time). Blocking. Live writes during the comparison can show as differences. Errors:
// ERR_RFS_REPL_ALONE, ERR_RFS_REPL_BUSY (a resync runs), ERR_RFS_REPL_LOST, ERR_RFS_REPL_VERIFY.
VerifyResult RunVerify(const std::shared_ptr<ReplicationSink>& sink, int timeoutMs);
// The same between two local directories (tests, tools). Blocking.
VerifyResult CompareDirs(const std::string& a, const std::string& b);

}  // namespace ha::rfs
