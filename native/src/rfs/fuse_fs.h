// The write interceptor: a libfuse3 low-level, multithreaded passthrough file system mounted OVER
// a replicated directory on the primary. The directory is opened (O_PATH) before the mount, so
// every operation reaches the real files underneath through *at() syscalls relative to fds
// derived from it, while every process keeps using the same path.
//
// Each change is applied locally, described as a Record (record.h) and handed to a ChangeSink:
//   BeforeApply (data ops, no lock) -> [ordering lock: local syscall + Submit] -> WaitAcked
// then the reply goes to the kernel. Sequence order is therefore local apply order.
// Exception, overlapped local writes (InterceptorOptions::overlap_local_writes): a large O_DIRECT
// write's record is submitted first and its local write runs on a helper thread, the reply may go
// before it ends; every later operation that could see the difference waits for it (fuse_fs.cc).
//
// When WaitAcked returns false (no secondary, link lost) the operation still SUCCEEDS locally:
// the primary must keep serving its application when it goes ALONE; the sink tracks the change
// as dirty for the later resynchronisation. The interceptor only counts it (stats.notReplicated)
// and reports the transition through the event callback.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "record.h"

namespace ha::rfs {

struct InterceptorOptions {
  std::string dir;                    // absolute, canonical path of the directory to mount over
  std::shared_ptr<ChangeSink> sink;   // required
  unsigned max_threads = 32;          // FUSE worker threads (they block in WaitAcked)
  double attr_timeout = 86400;        // seconds: we are the only writer while primary
  double entry_timeout = 86400;
  // Kernel writeback cache (durability "fsync"): write() returns once the data is in the kernel's
  // page cache; the kernel hands dirty pages to us (and so to the sink, which waits for the
  // secondary) on fsync/fdatasync, O_SYNC/O_DSYNC writes, close and background writeback. Only
  // those points are synchronous with the secondary. Off by default (every write() waits).
  bool writeback = false;
  // At most this many O_PATH fds of inodes stay open (least recently used closed first, reopened
  // on use). 0: half of RLIMIT_NOFILE.
  unsigned max_inode_fds = 0;
  // Large aligned writes (at least kDirectLocalMin bytes, offset and length multiples of 4 KiB) of
  // write-only handles (and, with writeback, the kernel's writeback of cached pages) reach the
  // real file with O_DIRECT: the primary's copy skips its page cache, and the disk write runs
  // while the same bytes travel to the secondary (kOverlapMin). Half the memory traffic of a
  // buffered write; falls back to buffered writes where the file system refuses O_DIRECT.
  bool direct_local_writes = true;
  // Overlapped local writes: such an O_DIRECT write of a plain write() (not O_SYNC/O_DSYNC, no
  // writeback cache) is made by a helper thread and answered once the secondary has its bytes,
  // even if the local disk write is still running; the next write() then travels while the disk
  // writes. Reads, stat, truncate, fsync, close and later writes of the same bytes wait for it.
  // Its space is reserved before (fallocate, keeping the size): a full disk fails the write()
  // itself. A local failure after the reply (an I/O error) is reported by the next fsync or close
  // of the file, as the kernel reports a failed writeback, and the secondary is given back what
  // the file holds. Off: the reply waits for both the secondary and the local write.
  bool overlap_local_writes = true;
};

constexpr size_t kDirectLocalMin = 128u << 10;
constexpr size_t kDirectLocalAlign = 4096;
// Writes of at least this size submit their record before the local write, lending their bytes
// (ChangeSink::SubmitLent): the sender's thread encrypts and sends them while the FUSE thread
// writes them locally (fuse_fs.cc: OpWrite, Reconcile).
constexpr size_t kOverlapMin = 128u << 10;

// One event for JS: kind is "error", "replication" (message "lost"/"restored"), "stale" (a dead
// mount of ours was detached before mounting), "closed" (the session ended).
using InterceptorEventFn = std::function<void(const std::string& kind, const std::string& code, const std::string& message)>;

// Counters index: Op values 1..18 (record.h); extra ones after.
constexpr int kStatRead = 0;        // slot 0 is unused by Op: reads
constexpr int kStatSlots = 32;

// Lower-case name of an Op value (0 = "read"), or nullptr.
const char* OpName(int op);

struct InterceptorStats {
  uint64_t ops[kStatSlots] = {0};  // by Op value; [0] = reads
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
  uint64_t errors = 0;          // operations that failed locally (errno replied)
  uint64_t not_replicated = 0;  // records whose WaitAcked returned false
  uint64_t unrecorded = 0;      // changes applied locally that had no known path (open unlinked file)
  uint64_t max_write = 0;       // negotiated with the kernel
  uint64_t inodes = 0;          // inodes known to the kernel
  uint64_t inode_fds = 0;       // of which with an open fd (the fd cache)
  uint64_t inode_fds_max = 0;   // the cache's bound
  uint64_t fd_reopens = 0;      // fds reopened after the cache closed them
  uint64_t fd_evictions = 0;    // fds the cache closed
  uint64_t direct_writes = 0;   // writes made with O_DIRECT (direct_local_writes)
  uint64_t aligned_copies = 0;  // of which copied first (their data was not page-aligned in the request buffer)
  uint64_t reconciled_writes = 0;  // large writes whose record left first and whose local write then failed or was short
  uint64_t overlapped_writes = 0;  // writes answered while their local write was still running (overlap_local_writes)
  uint64_t late_local_errors = 0;  // of which the local write then failed (reported by fsync/close)
  bool direct_unsupported = false;  // the file system refused O_DIRECT: buffered writes only
};

class Interceptor {
 public:
  virtual ~Interceptor() = default;
  // Mounts; on failure returns nullptr and sets *code (ERR_RFS_...) and *err.
  static std::shared_ptr<Interceptor> Mount(const InterceptorOptions& opts, InterceptorEventFn on_event,
                                            std::string* code, std::string* err);
  // Unmounts. lazy=false: umount2(dir, 0) (fails with ERR_RFS_BUSY while files are open);
  // lazy=true: detach, wait up to timeout_ms for the last open file to close, then abort the
  // connection. Joins the FUSE threads. Idempotent. Returns "" or an error (code in *code).
  virtual std::string Unmount(bool lazy, int timeout_ms, std::string* code) = 0;
  virtual InterceptorStats Stats() const = 0;
  virtual const std::string& Dir() const = 0;
  virtual bool Mounted() const = 0;
};

// If the top mount at `dir` is a FUSE mount of ours (fstype fuse.ha, source ha-rfs:...) whose
// daemon is gone (ENOTCONN), detach it (umount2 MNT_DETACH), repeatedly. Returns the number of
// mounts detached, or -1 with *err set (e.g. a LIVE mount of ours is there: code ERR_RFS_MOUNTED).
int StaleMountCleanup(const std::string& dir, std::string* code, std::string* err);

// Read-only bind of dir over itself (secondary). Returns "" or an error.
std::string ReadOnlyBind(const std::string& dir, std::string* code);
std::string UndoReadOnlyBind(const std::string& dir, std::string* code);

}  // namespace ha::rfs
