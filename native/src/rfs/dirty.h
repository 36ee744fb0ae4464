// Persistent dirty tracking for the replicated file system: which paths, and which zones inside
// files, may differ between this node's copy and its peer's. Used
//  - by the sender as an activity log: before each local data change (ChangeSink::BeforeApply)
//    the zone is marked durably; marks are cleared once the secondary acknowledged a barrier
//    taken after a checkpoint, so while PRIM+SECOND are in sync the set holds only in-flight zones;
//  - by the module while ALONE: every change is marked and nothing is cleared until reintegration
//    copied it (ClearAll / ClearEntries).
// After a crash of either node, the set read back covers every change that may have been applied
// locally (a mark is on disk before the caller applies its change), so reintegration never misses
// anything, and never needs to scan the tree.
//
// On disk (a directory of its own, e.g. <stateDir>/rfs/<module>/<n>/):
//   LOCK            flock()ed while open (a second opener gets ERR_RFS_DIRTY_LOCKED)
//   snapshot        compacted state, generation G (written to snapshot.tmp, fsynced, renamed)
//   log.<G>, log.<G+1>, ...   append-only logs of checksummed frames replayed after the snapshot
// Frames are written only by the group-commit leader (one write + fdatasync per batch), and a new
// batch is written only after the previous one is durable: after a crash at most the last frame
// can be torn, and it is dropped; a bad frame anywhere else is ERR_RFS_DIRTY_CORRUPT (the caller
// then falls back to a full resynchronisation).
//
// Paths are relative to the replicated directory's root, no leading '/', "" is the root (as in
// record.h). Zones are offset / zoneBytes; zone sets are stored as ranges, so multi-GiB sparse
// files cost a few bytes per written region, not per zone of the file's size.
//
// Thread-safe. Marks of already-dirty zones take one mutex and a tree lookup, no I/O; marks of new
// zones append to the log and wait for one fdatasync shared by all concurrent callers.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ha::rfs {

// Result of a tracker call: ok, or a stable code (ERR_RFS_DIRTY_...) and a message.
struct DirtyStatus {
  std::string code;  // empty when ok
  std::string message;
  bool ok() const { return code.empty(); }
  static DirtyStatus Ok() { return {}; }
  static DirtyStatus Err(std::string c, std::string m) { return {std::move(c), std::move(m)}; }
};

// One dirty path as returned by Snapshot().
struct DirtyEntry {
  std::string path;
  // Dirty zone ranges [start, end) in zone units (zone i = bytes [i*zoneBytes, (i+1)*zoneBytes)),
  // sorted, disjoint. A range reaching past the file's size covers up to its end (a truncate
  // marks from the cut point to UINT64_MAX bytes).
  std::vector<std::pair<uint64_t, uint64_t>> zones;
  // The path's existence, type, attributes or (for a directory) listing may have changed: the
  // resync must compare it as a whole (a missing or new directory: its whole subtree).
  bool meta = false;
  uint64_t epoch = 0;  // latest epoch of any of its marks
};

// One mark of a batch (MarkMany): data zones of [offset, offset+length), or a meta mark.
struct DirtyMark {
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool meta = false;
};

struct DirtyStats {
  uint64_t entries = 0;     // dirty paths
  uint64_t ranges = 0;      // zone ranges over all paths
  uint64_t zones = 0;       // dirty zones over all paths (saturates)
  uint64_t metaEntries = 0; // paths with a meta mark
  uint64_t logBytes = 0;    // bytes in the current log files (since the last compaction)
  uint64_t snapshotBytes = 0;
  uint64_t fsyncs = 0;      // fdatasync calls on the log since open
  uint64_t marks = 0;       // Mark* calls since open
  uint64_t loggedMarks = 0; // marks that had to be written to the log (new zones / new meta marks)
  uint64_t compactions = 0;
  uint64_t generation = 0;
  uint64_t epoch = 0;       // current epoch (marks made now carry it)
  uint64_t zoneBytes = 0;
};

class DirtyTracker {
 public:
  // Opens (creating if needed) the state in `dir` and replays it. zoneBytes: a power of two from
  // 4096 to 1 GiB; must match the value the state was created with (else ERR_RFS_DIRTY_ZONE).
  // Errors: ERR_RFS_DIRTY_IO, ERR_RFS_DIRTY_LOCKED, ERR_RFS_DIRTY_CORRUPT, ERR_RFS_DIRTY_ZONE.
  static DirtyStatus Open(const std::string& dir, uint64_t zoneBytes, std::shared_ptr<DirtyTracker>* out);

  ~DirtyTracker();
  DirtyTracker(const DirtyTracker&) = delete;
  DirtyTracker& operator=(const DirtyTracker&) = delete;

  // The zones covering [offset, offset+length) of `path` become dirty; on disk before this returns
  // (no I/O if they already were). length 0 marks the zone holding `offset`; offset + length
  // saturates at UINT64_MAX (so length UINT64_MAX - offset means "to the end of the file").
  // `epoch_out`, if given, receives the epoch the mark carries.
  // ahead_end (> offset + length): when the change's zones are not all marked yet, the logged mark
  // runs up to there (a sequential stream marks ahead: one durable log write per look-ahead).
  // `marked_to`, if given, receives the end (bytes, zone-aligned) of the mark logged by this call,
  // or 0 when the change was covered already.
  DirtyStatus MarkData(const std::string& path, uint64_t offset, uint64_t length, uint64_t* epoch_out = nullptr,
                       uint64_t ahead_end = 0, uint64_t* marked_to = nullptr);
  // Many marks, durable together with one log write and at most one fdatasync (e.g. the entries
  // of a directory, or a batch of writes).
  DirtyStatus MarkMany(const std::vector<DirtyMark>& marks, uint64_t* epoch_out = nullptr);
  // A metadata change of `path` (create, chmod, chown, utimens, xattr, link, mknod, ...).
  DirtyStatus MarkPath(const std::string& path, uint64_t* epoch_out = nullptr);
  // Call BEFORE a rename is applied: marks `from`, `to` and both parent directories, and copies
  // the marks of `from` and everything below it to the same names under `to` (with
  // RENAME_EXCHANGE, both ways). Copies, not moves: if the rename then fails nothing is lost; the
  // leftover marks under `from` name paths that no longer exist, which a resync skips.
  DirtyStatus MarkRename(const std::string& from, const std::string& to, uint32_t flags = 0, uint64_t* epoch_out = nullptr);
  // Call AFTER an unlink/rmdir succeeded (before it, use MarkPath): marks `path` and its parent,
  // and drops the zones of `path` and every entry below it (they name data that no longer exists).
  DirtyStatus MarkUnlink(const std::string& path, uint64_t* epoch_out = nullptr);

  // Starts a new epoch and returns the one just closed: every mark made before this call carries
  // an epoch <= the returned value. ClearUpTo(e) is safe once every change whose mark was made
  // before Checkpoint() returned e has been acknowledged by the peer (the caller must make sure a
  // change marked before the checkpoint is not submitted after the barrier it waits for).
  uint64_t Checkpoint();
  // Removes marks whose latest epoch is <= epoch (not made durable at once: losing a clear in a
  // crash only leaves extra dirty zones).
  DirtyStatus ClearUpTo(uint64_t epoch);
  // Removes everything (after a successful full resynchronisation); compacts the state.
  DirtyStatus ClearAll();
  // Removes the marks of these paths whose epoch <= maxEpoch (UINT64_MAX: all of them), e.g. the
  // entries a resync pass finished (take a Checkpoint before copying, pass it here: marks made
  // while copying stay).
  DirtyStatus ClearEntries(const std::vector<std::string>& paths, uint64_t maxEpoch = UINT64_MAX);

  std::vector<DirtyEntry> Snapshot();
  DirtyStats Stats();
  // Rewrites the snapshot and starts a new log (also done automatically past a size bound).
  DirtyStatus Compact();
  // Writes pending log records (clears) to disk.
  DirtyStatus Flush();
  // Flushes and releases the files; further calls return ERR_RFS_DIRTY_CLOSED. Idempotent.
  DirtyStatus Close();

  uint64_t zoneBytes() const { return zone_bytes_; }
  const std::string& dir() const { return dir_; }

  // Compaction bound: compact when the log files exceed max(this, 2 x snapshot size).
  void SetCompactThreshold(uint64_t bytes);

  // The fields below are internal (public only for the .cc helpers).
  struct Range {
    uint64_t end;
    uint64_t epoch;
    uint64_t lsn;  // log position that makes this mark durable
  };
  struct Entry {
    std::unique_ptr<std::map<uint64_t, Range>> zones;  // start -> range; null when none
    uint64_t meta_epoch = 0;                            // 0: no meta mark
    uint64_t meta_lsn = 0;
  };

 private:
  DirtyTracker() = default;

  // State changes, shared by the live calls and log replay; each returns true if the change made a
  // new mark (the caller must log it durably), and raises *need_lsn to the lsn of what it relied on.
  bool ApplyData(const std::string& path, uint64_t zs, uint64_t ze, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn);
  bool ApplyMeta(const std::string& path, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn);
  bool ApplyRename(const std::string& from, const std::string& to, uint32_t flags, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn);
  bool IsCovered(const std::string& path, uint64_t zs, uint64_t ze, uint64_t* need_lsn) const;
  void ApplyUnlinkDrop(const std::string& path);
  void ApplyClearRanges(const std::string& path, const std::vector<std::pair<uint64_t, uint64_t>>& ranges, bool meta);
  void EraseIfEmpty(std::map<std::string, Entry>::iterator it);

  DirtyStatus Replay();
  DirtyStatus ReplayFrames(const std::string& path, uint64_t gen, uint64_t* frames);
  void CompactorLoop();
  void AppendClear(const std::string& path, bool meta, const std::vector<std::pair<uint64_t, uint64_t>>& ranges);
  DirtyStatus ApplyRecord(const uint8_t* p, size_t n, const std::string& where);
  DirtyStatus OpenLogForAppend(uint64_t gen, bool truncate, uint64_t at);

  // Appends a record to the pending batch; returns its lsn. mu_ held.
  uint64_t Append(const std::string& rec);
  // Waits (leader/follower group commit) until lsn is durable. lk holds mu_.
  DirtyStatus WaitDurable(std::unique_lock<std::mutex>& lk, uint64_t lsn);
  DirtyStatus SyncLocked(std::unique_lock<std::mutex>& lk);
  DirtyStatus CompactLocked(std::unique_lock<std::mutex>& lk);
  void MaybeCompact(std::unique_lock<std::mutex>& lk);
  DirtyStatus CheckOpen() const;

  std::string dir_;
  uint64_t zone_bytes_ = 0;
  int lock_fd_ = -1;
  int log_fd_ = -1;
  uint64_t gen_ = 0;            // generation of the snapshot
  uint64_t log_gen_ = 0;        // generation of the log being appended
  uint64_t log_size_ = 0;       // bytes of frames (and header) in log_gen_'s file
  uint64_t log_alloc_ = 0;      // zero-filled size of log_gen_'s file
  uint64_t old_logs_bytes_ = 0; // bytes in older logs not yet folded into a snapshot
  uint64_t snapshot_bytes_ = 0;
  uint64_t compact_threshold_ = 64ull << 20;

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
  uint64_t epoch_ = 1;
  std::string pending_;          // records not yet written
  std::vector<size_t> pending_cuts_;  // offsets in pending_ where a new frame starts
  uint64_t appended_lsn_ = 0;    // logical bytes appended since open (records)
  uint64_t synced_lsn_ = 0;      // appended_lsn_ value known durable
  bool syncing_ = false;         // a leader is writing/syncing
  bool compacting_ = false;
  bool closed_ = false;
  bool stopping_ = false;
  bool compact_requested_ = false;
  std::thread compactor_;
  DirtyStatus failed_;           // sticky I/O failure

  uint64_t fsyncs_ = 0, marks_ = 0, logged_marks_ = 0, compactions_ = 0;
};

}  // namespace ha::rfs

// For other native modules: the tracker behind the opaque value JS passes around (the
// `external` property of the object openDirtyTracker returns). Returns nullptr if `value` is not
// such an external. Defined in dirty_napi.cc; include <napi.h> before this header to use it.
#ifdef SRC_NAPI_H_
namespace ha::rfs {
std::shared_ptr<DirtyTracker> DirtyTrackerFromValue(Napi::Env env, Napi::Value value);
}
#endif
