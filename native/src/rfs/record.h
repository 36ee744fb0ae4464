// The contract between the write interceptor (FUSE, on the primary) and the replication
// transport (sender on the primary, receiver/applier on the secondary).
//
// A Record is one change, already applied on the primary, described by paths relative to the
// replicated directory's root (no leading '/', "" is the root itself), so the secondary, whose
// inode numbers differ, can apply it. Records carry a sequence number assigned in the order the
// changes were applied on the primary; the secondary applies them in that order.
//
// Append-only: new Op values are added at the end, never renumbered (they are on the wire).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ha::rfs {

enum class Op : uint8_t {
  Write = 1,        // path, offset, data
  Truncate = 2,     // path, length (new size)
  Fallocate = 3,    // path, flags (fallocate mode), offset, length
  Create = 4,       // path, mode, flags (O_EXCL etc. not needed by the applier), uid, gid
  Mkdir = 5,        // path, mode, uid, gid
  Mknod = 6,        // path, mode (with file type), rdev, uid, gid
  Symlink = 7,      // path (the link), path2 (its target, verbatim), uid, gid
  Unlink = 8,       // path
  Rmdir = 9,        // path
  Rename = 10,      // path (from), path2 (to), flags (RENAME_NOREPLACE / RENAME_EXCHANGE)
  Chmod = 11,       // path, mode
  Chown = 12,       // path, uid, gid (UINT32_MAX = unchanged)
  Utimens = 13,     // path, atime, mtime (as timespec: sec/nsec; nsec UTIME_NOW/UTIME_OMIT allowed)
  SetXattr = 14,    // path, name, data (value), flags
  RemoveXattr = 15, // path, name
  Link = 16,        // path (existing), path2 (new name)
  Fsync = 17,       // path, flags (1 = datasync): a durability point for the secondary
  Barrier = 18,     // no path: everything before it must be applied before it is acknowledged
  // Resynchronisation (driven by the lead's resync; applied by the transport's applier):
  SyncEntry = 19,   // path; make the secondary's entry match: mode (with file type), uid, gid,
                    // length (size, regular files), atime/mtime, path2 (symlink target), rdev;
                    // an entry of another type (or another symlink target) is replaced
  DirList = 20,     // path (a directory), data: the complete list of its entry names, each ended
                    // by '\0'; the secondary removes entries not listed (recursively)
  // First synchronisation with block checksums (resync.cc) and verify (checksum.h):
  DirListPart = 21, // path, data: part of the next DirList of the same path (names, each ended by
                    // '\0'); a directory listing longer than one record is sent as DirListParts
                    // followed by the DirList with the rest (all submitted back to back)
  Sums = 22,        // path (must be "": the whole tree); the secondary answers, once everything
                    // before it is applied, with reply messages (transport_wire.h, kMsgReply, id =
                    // this record's seq) carrying its manifest (checksum.h); applying it changes nothing
};

// Write records' flags: the application asked for this write to be synchronous (O_SYNC/O_DSYNC
// handle, RWF_SYNC/RWF_DSYNC call). A secondary that acknowledges writes as written (durable
// mode) makes it durable before acknowledging it, as a Fsync record.
constexpr uint32_t kWriteSync = 1;
// A part of a large write that the sender split (not its last part): the next record is the next
// part, sent right after it. The receiver does not acknowledge a frame that ends with such a part
// on its own (the next frame's acknowledgement covers it; acknowledgements are cumulative): an
// acknowledgement nobody waits for would cross the link while the next part is sent on it.
constexpr uint32_t kWriteMore = 2;

struct Timespec {
  int64_t sec = 0;
  int64_t nsec = 0;
};

struct Record {
  uint64_t seq = 0;  // assigned by ChangeSink::Submit
  Op op = Op::Barrier;
  std::string path;
  std::string path2;
  std::string name;  // xattr name
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t mode = 0;
  uint32_t flags = 0;
  uint32_t uid = UINT32_MAX;
  uint32_t gid = UINT32_MAX;
  uint64_t rdev = 0;
  Timespec atime;
  Timespec mtime;
  std::vector<uint8_t> data;  // write bytes, or xattr value
  // Write bytes lent by the interceptor instead of `data` (no copy on the hot path). Valid only
  // until the ChangeSink::Submit that receives the record returns (SubmitLent: until ReleaseLent
  // returns): a sink that keeps the record longer calls Own() first. Read the bytes with
  // Bytes()/Size().
  const uint8_t* borrowed = nullptr;
  size_t borrowed_len = 0;
  // Set when the borrowed bytes live in a buffer the record shares (a receiver's frame buffer,
  // handed to the applier with the frame): they stay valid as long as the record.
  std::shared_ptr<const void> keep;

  const uint8_t* Bytes() const { return borrowed ? borrowed : data.data(); }
  size_t Size() const { return borrowed ? borrowed_len : data.size(); }
  void Own() {
    if (!borrowed) return;
    data.assign(borrowed, borrowed + borrowed_len);
    borrowed = nullptr;
    borrowed_len = 0;
    keep.reset();
  }
};

// Where the interceptor sends changes: the replication sender, or a test sink.
class ChangeSink {
 public:
  virtual ~ChangeSink() = default;

  // Called BEFORE a data change (Write/Truncate/Fallocate) is applied locally, outside any
  // global lock: the sink may persist "this zone is in flight" (activity log) so that after a
  // crash of the primary, the zone is resynchronised even if its change was never acknowledged.
  virtual void BeforeApply(const std::string& path, uint64_t offset, uint64_t length) { (void)path; (void)offset; (void)length; }

  // Called BEFORE a metadata change (create, mkdir, mknod, symlink, link, unlink, rmdir, rename,
  // chmod, chown, utimens, xattrs) is applied locally, outside any global lock: the sink may
  // persist the paths it touches (path, and path2 for rename/link), so that after a crash of the
  // primary between the local change and its Submit, a resynchronisation still covers them.
  virtual void BeforeMeta(Op op, const std::string& path, const std::string& path2) { (void)op; (void)path; (void)path2; }

  // Ends the change announced by BeforeApply/BeforeMeta on this thread: called after its last
  // Submit, or without any Submit when the change failed locally (nothing to replicate). Lets the
  // sink stop treating the announced marks as in flight at once.
  virtual void EndChange() {}

  // Called with the change already applied locally, while the interceptor holds its ordering
  // lock (so sequence order = local apply order). Assigns r.seq, enqueues, returns the seq.
  // Must not block on the network. Exception: a large Write (fuse_fs.h, kOverlapMin) is submitted
  // just before its local write, still under the lock; if that write then fails or is short, the
  // interceptor submits, under the same lock, records restoring the range to what the file holds
  // (Truncate, Write), or calls Diverged.
  virtual uint64_t Submit(Record&& r) = 0;

  // Like Submit, for a large Write (kOverlapMin) submitted just before its local write: its lent
  // bytes stay valid until ReleaseLent(seq) returns, so the sink may read them on another thread
  // (the sender encrypts and sends them while the caller's thread writes them to the local disk)
  // instead of during the call. The caller calls ReleaseLent before its ordering lock is released.
  // Default: Submit (the bytes are read during the call).
  virtual uint64_t SubmitLent(Record&& r) { return Submit(std::move(r)); }
  // Returns once the sink reads nothing more of the bytes lent with `seq` (sent, or dropped with
  // the link). Never blocks forever.
  virtual void ReleaseLent(uint64_t seq) { (void)seq; }

  // Blocks the calling (FUSE worker) thread until `seq` is acknowledged by the secondary, or
  // replication is not possible (no secondary, link lost, ack timeout). Returns true if
  // acknowledged; false if the change was not replicated (it must then be tracked as dirty by
  // the sink, so a later resynchronisation copies it). Never blocks forever.
  virtual bool WaitAcked(uint64_t seq) = 0;

  // Like WaitAcked, for a durability point (an Fsync record), called after WaitAcked(seq): a sink
  // whose acknowledgement level is "received" (the secondary holds the bytes in memory; its disk
  // is not part of the guarantee) may return at once; a "written" sink waits for the secondary's
  // own fsync.
  virtual bool WaitDurable(uint64_t seq) { return WaitAcked(seq); }

  // The interceptor could not make the secondary's copy match a change it already sent (a large
  // write's record leaves before the local write; when that write fails or is short, the file's
  // real content is sent after it, and here even that failed). A sink that replicates gives
  // replication up (the zone was marked by BeforeApply and stays marked for the next resync).
  virtual void Diverged(const std::string& reason) { (void)reason; }
};

}  // namespace ha::rfs
