// The primary's change sink for one replicated directory: the interceptor (fuse_fs.h) hands it
// every change; it keeps the persistent dirty tracker (dirty.h) up to date in every state and
// forwards the changes to the replication sender (transport_sender.h) when one is attached.
//
// States:
//   ALONE     no sender: changes are marked dirty and never acknowledged (WaitAcked -> false);
//   ATTACHED  a sender is attached (PRIM): changes are marked and forwarded; the peer is not yet
//             known to be in sync, so nothing is cleared until a resync/fullSync succeeds;
//   SYNCED    ATTACHED and the last resync/fullSync succeeded: a barrier thread clears, every
//             barrierIntervalMs, the marks the secondary acknowledged (so the tracker only holds
//             in-flight zones).
// A sender that reports "lost" is detached by the monitor thread (its unacknowledged records are
// marked dirty) and the sink goes ALONE; the JS side gets a 'lost' event.
//
// Sequence numbers returned by Submit encode the sender generation: (gen << 48) | senderSeq.
// Generation 0 means "not forwarded" (ALONE): WaitAcked returns false at once.
//
// Every change is marked durably BEFORE it is applied locally (BeforeApply for data, BeforeMeta for
// metadata), so a crash of the primary between its local change and the Submit loses no mark.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dirty.h"
#include "record.h"
#include "transport_sender.h"

namespace ha::rfs {

struct ReplSinkOptions {
  std::string dir;             // the replicated directory (absolute), opened before the mount
  std::string stateDir;        // the dirty tracker's directory
  uint64_t zoneBytes = 1u << 20;
  int barrierIntervalMs = 500;
};

struct ReplSinkStats {
  std::string state;               // "alone" | "attached" | "synced"
  uint64_t generation = 0;         // sender generation (0: never attached)
  uint64_t forwarded = 0;          // records forwarded to a sender
  uint64_t notForwarded = 0;       // records submitted while ALONE
  uint64_t deferred = 0;           // records left to the running resync (their path was still to copy)
  uint64_t barriers = 0;           // barriers acknowledged
  uint64_t clears = 0;             // ClearUpTo calls after an acknowledged barrier
  uint64_t lastBarrierUs = 0;      // round trip of the last barrier
  uint64_t markErrors = 0;         // tracker calls that failed (the change may be untracked)
  std::string lastMarkError;
  uint64_t losses = 0;             // senders detached because they were lost
  uint64_t staleInFlight = 0;      // in-flight marks given up (no Submit followed within 30 s)
  bool resyncRunning = false;
};

// Events for JS (called on sink threads; must not block).
struct ReplEvent {
  std::string type;  // "lost" | "error"
  std::string code;
  std::string message;
};
using ReplEventFn = std::function<void(ReplEvent&&)>;

class ReplicationSink : public ChangeSink, public std::enable_shared_from_this<ReplicationSink> {
 public:
  // Opens the directory (O_PATH) and the tracker; starts the barrier/monitor thread.
  // Errors: ERR_RFS_REPL_DIR, ERR_RFS_DIRTY_* (from the tracker).
  static std::shared_ptr<ReplicationSink> Open(const ReplSinkOptions& opts, ReplEventFn onEvent, std::string* code,
                                               std::string* message);
  ~ReplicationSink() override;

  // ChangeSink
  void BeforeApply(const std::string& path, uint64_t offset, uint64_t length) override;
  void BeforeMeta(Op op, const std::string& path, const std::string& path2) override;
  void EndChange() override;
  uint64_t Submit(Record&& r) override;
  uint64_t SubmitLent(Record&& r) override;
  void ReleaseLent(uint64_t seq) override;
  bool WaitAcked(uint64_t seq) override;
  bool WaitDurable(uint64_t seq) override;
  void Diverged(const std::string& reason) override;

  // Attaches a connected sender (PRIM). Fails (returns false, *code/*message) if the sink is
  // closed, a sender is already attached, or the sender is already lost.
  // holdUntilResync: until a resync/fullSync has succeeded, live changes are forwarded only while
  // one runs; in between (before it starts, after it failed) they are left to the next one (they
  // are marked dirty in every state). Without it a change made between the attach and the start of
  // the resync reaches a secondary that may not have its file yet (its apply fails: ENOENT).
  bool AttachSender(std::shared_ptr<Sender> sender, std::string* code, std::string* message, bool holdUntilResync = false);
  // Planned detach: the sender's unacknowledged records are marked dirty; the sink goes ALONE.
  void DetachSender();

  // Resynchronisation work list (resync.cc): while a resync runs, a live change touching a path
  // still in the list (or below one) is not forwarded (the secondary may not have the path yet);
  // the path is added to the list instead, and the resync copies it later. Guarded by mu_.
  struct WorkItem {
    bool meta = false;
    bool full = false;  // everything: data (holes skipped) and, for a directory, its whole subtree
    std::vector<std::pair<uint64_t, uint64_t>> zones;  // zone ranges [start, end)
  };
  using WorkMap = std::map<std::string, WorkItem>;

  DirtyTracker& tracker() { return *tracker_; }
  int rootFd() const { return root_fd_; }
  const ReplSinkOptions& options() const { return opts_; }
  ReplSinkStats Stats();
  // Stops the thread, closes the tracker and the directory fd. Idempotent. Later changes are
  // accepted and not tracked (the interceptor should be unmounted first).
  void Close();
  bool Closed() const { return closed_.load(); }

  static constexpr int kGenShift = 48;
  static uint64_t Encode(uint64_t gen, uint64_t seq) { return (gen << kGenShift) | (seq & ((1ull << kGenShift) - 1)); }

  // Marks what a lost/detached sender's unacknowledged records touched.
  void MarkUnacked(const std::vector<UnackedRecord>& list);

 private:
  ReplicationSink() = default;
  void Loop();
  void Announce(const std::string& path);
  void Announced(uint64_t epoch);
  bool Wait(uint64_t seq, bool durable);
  void OnMarkError(const DirtyStatus& s);
  void MarkMeta(const Record& r);
  void MarkDirFull(const std::string& path);
  void HandleLost();
  bool PendingLocked(const std::string& path) const;
  void AddFullLocked(const std::string& path);
  friend class Resyncer;
  bool WaitInFlight(uint64_t epoch);

  ReplSinkOptions opts_;
  ReplEventFn onEvent_;
  int root_fd_ = -1;
  std::shared_ptr<DirtyTracker> tracker_;

  std::mutex mu_;  // forwarding decisions and sender swap
  std::shared_ptr<Sender> sender_;
  uint64_t gen_ = 0;
  bool synced_ = false;
  bool hold_ = false;          // AttachSender(holdUntilResync): nothing forwarded outside a resync until synced
  uint64_t alone_seq_ = 0;
  uint64_t forwarded_ = 0, not_forwarded_ = 0, deferred_ = 0;
  uint64_t last_fwd_ = 0;      // last sender seq forwarded in this generation
  uint64_t SubmitImpl(Record&& r, bool lent);
  std::map<uint64_t, std::shared_ptr<Sender>> lent_;  // SubmitLent records not released yet (by encoded seq)
  WorkMap* work_ = nullptr;    // the running resync's work list

  // Changes announced (BeforeApply/BeforeMeta) and not yet ended (EndChange), by thread.
  struct InFlight {
    uint64_t epoch;  // 0: being marked
    std::string path;
    std::chrono::steady_clock::time_point since;
    bool remark;     // a second mark of the same change is being made (keep the oldest epoch)
  };
  std::mutex infl_mu_;
  std::condition_variable infl_cv_;
  std::unordered_map<std::thread::id, InFlight> infl_;
  struct Stream {
    uint64_t end = 0;     // end of the last data change
    uint64_t start = 0;   // where its run of sequential changes began
    uint64_t marked = 0;  // marked (durably, or being marked in the background) up to here
    bool pending = false; // a background mark-ahead is queued or running
  };
  // Mark-ahead of sequential streams, made durable in the background (BeforeApply).
  struct AheadReq {
    std::string path;
    uint64_t from = 0, to = 0;
  };
  void AheadLoop();
  std::thread ahead_;
  std::mutex ahead_mu_;
  std::condition_variable ahead_cv_;
  std::deque<AheadReq> ahead_q_;
  bool ahead_stop_ = false;
  std::unordered_map<std::string, Stream> last_end_;  // by path (mark-ahead)

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stop_ = false;
  bool lost_pending_ = false;
  std::thread loop_;

  std::mutex stats_mu_;
  uint64_t barriers_ = 0, clears_ = 0, last_barrier_us_ = 0, mark_errors_ = 0, losses_ = 0, stale_ = 0;
  std::string last_mark_error_;
  std::atomic<bool> resync_running_{false};
  std::atomic<bool> closed_{false};
};

}  // namespace ha::rfs
