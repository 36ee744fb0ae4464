// ReplicationSink: see repl_sink.h.
#include "repl_sink.h"

#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ha::rfs {
namespace {

constexpr auto kStaleInFlight = std::chrono::seconds(30);
constexpr uint64_t kMarkAheadZones = 16;
constexpr uint64_t kMarkAheadMaxZones = 256;
constexpr uint64_t kStreamStartBytes = 128u << 10;

std::string Parent(const std::string& p) {
  size_t i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i);
}

bool IsData(Op op) { return op == Op::Write || op == Op::Truncate || op == Op::Fallocate; }

}  // namespace

std::shared_ptr<ReplicationSink> ReplicationSink::Open(const ReplSinkOptions& opts, ReplEventFn onEvent,
                                                       std::string* code, std::string* message) {
  int fd = open(opts.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *code = "ERR_RFS_REPL_DIR";
    *message = "cannot open the replicated directory " + opts.dir + ": " + strerror(errno);
    return nullptr;
  }
  std::shared_ptr<DirtyTracker> tracker;
  DirtyStatus s = DirtyTracker::Open(opts.stateDir, opts.zoneBytes, &tracker);
  if (!s.ok()) {
    close(fd);
    *code = s.code;
    *message = "dirty tracker at " + opts.stateDir + ": " + s.message;
    return nullptr;
  }
  std::shared_ptr<ReplicationSink> sink(new ReplicationSink());
  sink->opts_ = opts;
  sink->onEvent_ = std::move(onEvent);
  sink->root_fd_ = fd;
  sink->tracker_ = std::move(tracker);
  sink->loop_ = std::thread([raw = sink.get()] {
    pthread_setname_np(pthread_self(), "rfs-sink");
    raw->Loop();
  });
  sink->ahead_ = std::thread([raw = sink.get()] {
    pthread_setname_np(pthread_self(), "rfs-sink-ahead");
    raw->AheadLoop();
  });
  return sink;
}

ReplicationSink::~ReplicationSink() { Close(); }

void ReplicationSink::Close() {
  if (closed_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lk(loop_mu_);
    stop_ = true;
  }
  loop_cv_.notify_all();
  infl_cv_.notify_all();
  if (loop_.joinable()) {
    if (loop_.get_id() == std::this_thread::get_id()) loop_.detach();
    else loop_.join();
  }
  {
    std::lock_guard<std::mutex> lk(ahead_mu_);
    ahead_stop_ = true;
  }
  ahead_cv_.notify_all();
  if (ahead_.joinable()) ahead_.join();
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    s = std::move(sender_);
    synced_ = false;
  }
  if (s) MarkUnacked(s->TakeUnacked());
  tracker_->Close();
  std::lock_guard<std::mutex> lk(mu_);  // a resync reads under mu_
  if (root_fd_ >= 0) close(root_fd_);
  root_fd_ = -1;
}

void ReplicationSink::OnMarkError(const DirtyStatus& s) {
  if (s.ok() || s.code == "ERR_RFS_DIRTY_CLOSED") return;
  bool first;
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    first = mark_errors_++ == 0;
    last_mark_error_ = s.code + ": " + s.message;
  }
  if (first && onEvent_) onEvent_({"error", s.code, "dirty tracking failed (changes may be untracked): " + s.message});
}

// Registers this thread's change as in flight (epoch 0 = "being marked": a barrier taken meanwhile
// waits). A second Before* of the same change (setattr: size and mode) keeps the first entry.
void ReplicationSink::Announce(const std::string& path) {
  std::lock_guard<std::mutex> lk(infl_mu_);
  auto it = infl_.find(std::this_thread::get_id());
  if (it == infl_.end()) infl_[std::this_thread::get_id()] = InFlight{0, path, std::chrono::steady_clock::now(), false};
  else it->second.remark = true;
}

// The mark is made (durably): the entry carries the OLDEST epoch of its marks, so a barrier that
// closes it waits for this change to be submitted.
void ReplicationSink::Announced(uint64_t epoch) {
  {
    std::lock_guard<std::mutex> lk(infl_mu_);
    auto it = infl_.find(std::this_thread::get_id());
    if (it != infl_.end()) {
      uint64_t e = epoch ? epoch : 1;
      if (!it->second.remark || it->second.epoch == 0 || e < it->second.epoch) it->second.epoch = e;
      it->second.remark = false;
    }
  }
  infl_cv_.notify_all();
}

void ReplicationSink::BeforeApply(const std::string& path, uint64_t offset, uint64_t length) {
  Announce(path);
  // Sequential writes (any FUSE thread): mark ahead past the write, so a stream of writes pays one
  // durable log write per look-ahead instead of one per zone. The look-ahead grows with the
  // stream (like a readahead window): kMarkAheadZones zones at first, then the power of two
  // below the stream's length so far, up to kMarkAheadMaxZones; once the stream is as long as its
  // look-ahead, a background thread extends the marks before the stream reaches their end. Extra
  // marks only cost a resync copying those zones (clamped to the file's size: appends are free),
  // so at most about twice the stream's length, and never more than 3 x kMarkAheadMaxZones.
  // A large write at offset 0 starts a stream too (a copy, a dump, dd).
  uint64_t ahead_end = 0, ahead = 0;
  const uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
  {
    std::lock_guard<std::mutex> lk(infl_mu_);
    auto it = last_end_.find(path);
    const bool follows = it != last_end_.end() && offset <= it->second.end && it->second.end - offset <= opts_.zoneBytes;
    Stream st = follows ? it->second : Stream{};
    if (!follows) st.start = offset;
    if (end != UINT64_MAX && (follows || (offset == 0 && length >= kStreamStartBytes))) {
      st.start = std::min(st.start, offset);
      uint64_t zones = kMarkAheadZones;
      const uint64_t run = (end - st.start) / opts_.zoneBytes;
      while (zones < kMarkAheadMaxZones && zones * 2 <= run) zones *= 2;
      // Up to a multiple of the look-ahead past the write (logged only once the write leaves
      // what is marked already).
      ahead = zones * opts_.zoneBytes;
      if (end < UINT64_MAX - 3 * ahead) ahead_end = (end / ahead + 2) * ahead;
    }
    st.end = end;
    if (last_end_.size() > 256) last_end_.clear();
    last_end_[path] = st;
  }
  uint64_t epoch = 0, marked_to = 0;
  DirtyStatus s = tracker_->MarkData(path, offset, length, &epoch, ahead_end, &marked_to);
  if (!s.ok()) OnMarkError(s);
  if (ahead_end != 0 && s.ok()) {
    // Keep the stream marked at least one look-ahead past its end, in the background: its next
    // writes then find their zones marked and wait for no log write.
    AheadReq req;
    {
      std::lock_guard<std::mutex> lk(infl_mu_);
      auto it = last_end_.find(path);
      if (it != last_end_.end() && it->second.end == end) {
        Stream& st = it->second;
        if (marked_to > st.marked) st.marked = marked_to;
        // Only for a stream at least as long as its look-ahead: a short run of writes inside a
        // big file (a few MiB changed) must not leave a resync hundreds of MiB to copy.
        if (!st.pending && st.marked >= end && st.marked - end < ahead && end - st.start >= ahead) {
          st.pending = true;
          req.path = path;
          req.from = st.marked;
          req.to = st.marked + 2 * ahead;
        }
      }
    }
    if (!req.path.empty()) {
      {
        std::lock_guard<std::mutex> lk(ahead_mu_);
        ahead_q_.push_back(std::move(req));
      }
      ahead_cv_.notify_one();
    }
  }
  Announced(epoch);
}

// Before a metadata change: what a resynchronisation must cover if the primary dies between the
// local change and its Submit (the marks Submit makes afterwards, e.g. MarkRename moving the
// source's marks, come on top). A renamed entry is marked whole (a directory: its subtree), as
// MarkDirFull does after the rename.
void ReplicationSink::BeforeMeta(Op op, const std::string& path, const std::string& path2) {
  Announce(path);
  std::vector<DirtyMark> m;
  auto meta = [&](const std::string& p) { DirtyMark d; d.path = p; d.meta = true; m.push_back(std::move(d)); };
  auto whole = [&](const std::string& p) {
    struct stat st;
    if (root_fd_ < 0 || p.empty() || fstatat(root_fd_, p.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return meta(p);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) return meta(p);
    DirtyMark d;
    d.path = p;
    d.length = S_ISDIR(st.st_mode) ? 1 : UINT64_MAX;
    m.push_back(std::move(d));
    meta(p);
  };
  switch (op) {
    case Op::Create: case Op::Mkdir: case Op::Mknod: case Op::Symlink: case Op::Unlink: case Op::Rmdir:
      meta(path);
      meta(Parent(path));
      break;
    case Op::Link:
      meta(path);
      meta(path2);
      meta(Parent(path2));
      break;
    case Op::Rename:
      whole(path);
      whole(path2);
      meta(Parent(path));
      meta(Parent(path2));
      break;
    default:
      meta(path);
  }
  uint64_t epoch = 0;
  DirtyStatus s = tracker_->MarkMany(m, &epoch);
  if (!s.ok()) OnMarkError(s);
  Announced(epoch);
}

// Background marks ahead of sequential streams (queued by BeforeApply). A mark made here covers
// no change yet: a barrier may clear it, and the stream then marks again on its own thread.
void ReplicationSink::AheadLoop() {
  for (;;) {
    AheadReq req;
    {
      std::unique_lock<std::mutex> lk(ahead_mu_);
      ahead_cv_.wait(lk, [&] { return ahead_stop_ || !ahead_q_.empty(); });
      if (ahead_stop_) return;
      req = std::move(ahead_q_.front());
      ahead_q_.pop_front();
    }
    DirtyStatus s = tracker_->MarkData(req.path, req.from, req.to - req.from);
    if (!s.ok()) OnMarkError(s);
    std::lock_guard<std::mutex> lk(infl_mu_);
    auto it = last_end_.find(req.path);
    if (it != last_end_.end()) {
      it->second.pending = false;
      if (s.ok() && req.to > it->second.marked) it->second.marked = req.to;
    }
  }
}

void ReplicationSink::EndChange() {
  {
    std::lock_guard<std::mutex> lk(infl_mu_);
    infl_.erase(std::this_thread::get_id());
  }
  infl_cv_.notify_all();
}

// An entry that moved: the peer may have its content under the old name only (the marks copied
// by MarkRename cover only what changed), so the resync copies it whole: a regular file's every
// zone, a directory's whole subtree (convention of this module: a zone mark on a directory means
// "copy the whole subtree").
void ReplicationSink::MarkDirFull(const std::string& path) {
  struct stat st;
  if (path.empty() || root_fd_ < 0) return;
  if (fstatat(root_fd_, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode)) OnMarkError(tracker_->MarkData(path, 0, 1));
  else if (S_ISREG(st.st_mode)) OnMarkError(tracker_->MarkData(path, 0, UINT64_MAX));
}

void ReplicationSink::MarkMeta(const Record& r) {
  DirtyStatus s;
  switch (r.op) {
    case Op::Write: case Op::Truncate: case Op::Fallocate: case Op::Fsync: case Op::Barrier:
    case Op::SyncEntry: case Op::DirList:
      return;
    case Op::Rename:
      s = tracker_->MarkRename(r.path, r.path2, r.flags);
      if (s.ok()) MarkDirFull(r.path2);
      if (s.ok() && (r.flags & RENAME_EXCHANGE)) MarkDirFull(r.path);
      break;
    case Op::Unlink: case Op::Rmdir:
      s = tracker_->MarkUnlink(r.path);
      break;
    case Op::Link: {
      std::vector<DirtyMark> m(3);
      m[0].path = r.path; m[0].meta = true;
      m[1].path = r.path2; m[1].meta = true;
      m[2].path = Parent(r.path2); m[2].meta = true;
      s = tracker_->MarkMany(m);
      break;
    }
    case Op::Create: case Op::Mkdir: case Op::Mknod: case Op::Symlink: {
      // A new name: its parent's listing changed too.
      std::vector<DirtyMark> m(2);
      m[0].path = r.path; m[0].meta = true;
      m[1].path = Parent(r.path); m[1].meta = true;
      s = tracker_->MarkMany(m);
      break;
    }
    default:
      s = tracker_->MarkPath(r.path);
  }
  OnMarkError(s);
}

uint64_t ReplicationSink::Submit(Record&& r) { return SubmitImpl(std::move(r), false); }

uint64_t ReplicationSink::SubmitLent(Record&& r) { return SubmitImpl(std::move(r), true); }

void ReplicationSink::ReleaseLent(uint64_t seq) {
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = lent_.find(seq);
    if (it == lent_.end()) return;  // not forwarded: nothing was lent
    s = std::move(it->second);
    lent_.erase(it);
  }
  s->ReleaseLent(seq & ((1ull << kGenShift) - 1));
}

uint64_t ReplicationSink::SubmitImpl(Record&& r, bool lent) {
  const bool data = IsData(r.op);
  const auto tid = std::this_thread::get_id();
  bool marked = !data;
  if (data) {
    std::lock_guard<std::mutex> lk(infl_mu_);
    auto it = infl_.find(tid);
    marked = it != infl_.end() && it->second.path == r.path;
  }
  if (!marked) {
    // A data change without a BeforeApply (e.g. the truncate of a create with O_TRUNC).
    uint64_t off = r.op == Op::Truncate ? r.length : r.offset;
    uint64_t len = r.op == Op::Write ? r.Size() : r.op == Op::Truncate ? UINT64_MAX - off : r.length;
    OnMarkError(tracker_->MarkData(r.path, off, len));
  }
  std::unique_lock<std::mutex> lk(mu_);
  // Metadata marks under mu_: a barrier (which takes mu_) cannot slip between the mark and the
  // forward, so the marks it clears are of changes forwarded before it.
  if (!data) MarkMeta(r);
  uint64_t out;
  if (sender_ && !sender_->Lost() && work_ &&
      (PendingLocked(r.path) || ((r.op == Op::Rename || r.op == Op::Link) && PendingLocked(r.path2)))) {
    // The resync has not copied this path yet: it will, with this change (the data is read later,
    // under mu_). Acknowledged as "as replicated as everything forwarded so far".
    AddFullLocked(r.path);
    if (r.op == Op::Rename || r.op == Op::Link) AddFullLocked(r.path2);
    out = Encode(gen_, last_fwd_);
    deferred_++;
  } else if (sender_ && !sender_->Lost() && hold_ && !synced_ && !work_) {
    // Held (AttachSender holdUntilResync): no resync runs yet; the change is marked, the next
    // resync copies it. Acknowledged as "as replicated as everything forwarded so far".
    out = Encode(gen_, last_fwd_);
    deferred_++;
  } else if (sender_ && !sender_->Lost() && r.op == Op::Fsync && sender_->Mode() == AckMode::Received) {
    // Nothing to do there: in 'received' mode the secondary does not fsync for its application's
    // fsync (its copy is made durable at each barrier), and nothing waits for it.
    out = Encode(gen_, last_fwd_);
  } else if (sender_ && !sender_->Lost()) {
    last_fwd_ = lent ? sender_->SubmitLent(std::move(r)) : sender_->Submit(std::move(r));
    out = Encode(gen_, last_fwd_);
    if (lent) lent_[out] = sender_;  // the sender may read the bytes until ReleaseLent
    forwarded_++;
  } else {
    out = Encode(0, ++alone_seq_);
    not_forwarded_++;
  }
  lk.unlock();
  // The in-flight entry ends with EndChange (after the change's last Submit).
  return out;
}

bool ReplicationSink::WaitAcked(uint64_t seq) { return Wait(seq, false); }
bool ReplicationSink::WaitDurable(uint64_t seq) { return Wait(seq, true); }

void ReplicationSink::Diverged(const std::string& reason) {
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    s = sender_;
  }
  if (s) s->Diverged(reason);  // lost: the monitor detaches it, the sink goes ALONE
}

bool ReplicationSink::Wait(uint64_t seq, bool durable) {
  uint64_t gen = seq >> kGenShift;
  if (gen == 0) return false;
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (gen != gen_ || !sender_) return false;
    s = sender_;
  }
  uint64_t local = seq & ((1ull << kGenShift) - 1);
  return durable ? s->WaitDurable(local) : s->WaitAcked(local);
}

bool ReplicationSink::AttachSender(std::shared_ptr<Sender> sender, std::string* code, std::string* message,
                                   bool holdUntilResync) {
  if (closed_) { *code = "ERR_RFS_REPL_CLOSED"; *message = "the replicated directory is closed"; return false; }
  if (!sender) { *code = "ERR_RFS_REPL_ARG"; *message = "no sender"; return false; }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (sender_ && !sender_->Lost()) { *code = "ERR_RFS_REPL_ATTACHED"; *message = "a sender is already attached (detachSender first)"; return false; }
    if (sender_) { *code = "ERR_RFS_REPL_ATTACHED"; *message = "the previous sender was lost and is being detached; retry"; return false; }
    if (sender->Lost()) { *code = "ERR_RFS_REPL_LOST"; *message = "the sender is already lost"; return false; }
    sender_ = sender;
    gen_++;
    last_fwd_ = 0;
    synced_ = false;
    hold_ = holdUntilResync;
  }
  std::weak_ptr<ReplicationSink> weak = weak_from_this();
  sender->OnLost([weak](const std::string&, const std::string&) {
    // Runs on a sender thread, possibly inside our own Submit (queue overflow): only flag it.
    if (auto self = weak.lock()) {
      std::lock_guard<std::mutex> lk(self->loop_mu_);
      self->lost_pending_ = true;
      self->loop_cv_.notify_all();
    }
  });
  if (sender->Lost()) {  // lost before the callback was registered
    std::lock_guard<std::mutex> lk(loop_mu_);
    lost_pending_ = true;
    loop_cv_.notify_all();
  }
  return true;
}

void ReplicationSink::DetachSender() {
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    s = std::move(sender_);
    synced_ = false;
  }
  if (s) MarkUnacked(s->TakeUnacked());
}

void ReplicationSink::MarkUnacked(const std::vector<UnackedRecord>& list) {
  if (list.empty()) return;
  std::vector<DirtyMark> marks;
  for (const auto& u : list) {
    if (u.op == Op::Barrier) continue;
    if (u.op == Op::Rename) {
      OnMarkError(tracker_->MarkRename(u.path, u.path2));
      MarkDirFull(u.path2);
      MarkDirFull(u.path);
      continue;
    }
    if (u.op == Op::Unlink || u.op == Op::Rmdir) {
      OnMarkError(tracker_->MarkUnlink(u.path));
      continue;
    }
    DirtyMark m;
    m.path = u.path;
    m.meta = true;
    marks.push_back(m);
    if (u.op == Op::Write || u.op == Op::Fallocate) {
      DirtyMark d;
      d.path = u.path;
      d.offset = u.offset;
      d.length = u.length;
      marks.push_back(d);
    } else if (u.op == Op::Truncate) {
      DirtyMark d;
      d.path = u.path;
      d.offset = u.length;
      d.length = UINT64_MAX - u.length;
      marks.push_back(d);
    }
    if (!u.path2.empty()) {
      DirtyMark p;
      p.path = u.path2;
      p.meta = true;
      marks.push_back(p);
    }
  }
  if (!marks.empty()) OnMarkError(tracker_->MarkMany(marks));
}

void ReplicationSink::HandleLost() {
  std::shared_ptr<Sender> s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!sender_ || !sender_->Lost()) return;
    s = std::move(sender_);
    synced_ = false;
  }
  MarkUnacked(s->TakeUnacked());
  SenderStats st = s->Stats();
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    losses_++;
  }
  if (onEvent_) onEvent_({"lost", st.lostCode.empty() ? "ERR_RFS_LINK" : st.lostCode, st.lostReason});
}

bool ReplicationSink::PendingLocked(const std::string& path) const {
  if (work_->empty()) return false;
  std::string p = path;
  while (true) {
    if (work_->count(p)) return true;
    if (p.empty()) return false;
    p = Parent(p);
  }
}

void ReplicationSink::AddFullLocked(const std::string& path) {
  (*work_)[path].full = true;
  if (!path.empty()) (*work_)[Parent(path)].meta = true;
}

// Waits until no change marked in BeforeApply with an epoch <= `epoch` is still to be submitted.
bool ReplicationSink::WaitInFlight(uint64_t epoch) {
  std::unique_lock<std::mutex> lk(infl_mu_);
  while (true) {
    bool busy = false;
    auto now = std::chrono::steady_clock::now();
    for (auto it = infl_.begin(); it != infl_.end();) {
      if (it->second.epoch <= epoch) {
        if (it->second.epoch != 0 && now - it->second.since > kStaleInFlight) {
          // Safety net: the interceptor ends every change (EndChange); one that never ended is given up.
          it = infl_.erase(it);
          std::lock_guard<std::mutex> slk(stats_mu_);
          stale_++;
          continue;
        }
        busy = true;
      }
      ++it;
    }
    if (!busy) return true;
    {
      std::lock_guard<std::mutex> llk(loop_mu_);
      if (stop_) return false;
    }
    infl_cv_.wait_for(lk, std::chrono::milliseconds(20));
  }
}

void ReplicationSink::Loop() {
  auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.barrierIntervalMs);
  while (true) {
    bool lost;
    {
      std::unique_lock<std::mutex> lk(loop_mu_);
      loop_cv_.wait_until(lk, next, [&] { return stop_ || lost_pending_; });
      if (stop_) return;
      lost = lost_pending_;
      lost_pending_ = false;
    }
    if (lost) { HandleLost(); continue; }
    if (std::chrono::steady_clock::now() < next) continue;
    next = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.barrierIntervalMs);

    // Barrier round: only while SYNCED (before, the marks are the resync's work list).
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!sender_ || !synced_ || sender_->Lost()) continue;
    }
    uint64_t e = tracker_->Checkpoint();
    if (!WaitInFlight(e)) return;
    std::shared_ptr<Sender> s;
    uint64_t seq = 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!sender_ || !synced_ || sender_->Lost()) continue;
      s = sender_;
      Record b;
      b.op = Op::Barrier;
      seq = s->Submit(std::move(b));
    }
    auto t0 = std::chrono::steady_clock::now();
    if (!s->WaitApplied(seq)) continue;  // applied (and synced) by the secondary, not only received; lost: the monitor detaches it
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    bool still;
    {
      // A resync started meanwhile (after a loss and re-attach) owns the marks: do not clear.
      std::lock_guard<std::mutex> lk(mu_);
      still = sender_ == s && synced_;
    }
    if (!still) continue;
    DirtyStatus st = tracker_->ClearUpTo(e);
    OnMarkError(st);
    std::lock_guard<std::mutex> lk(stats_mu_);
    barriers_++;
    clears_++;
    last_barrier_us_ = static_cast<uint64_t>(us);
  }
}

ReplSinkStats ReplicationSink::Stats() {
  ReplSinkStats s;
  {
    std::lock_guard<std::mutex> lk(mu_);
    bool live = sender_ && !sender_->Lost();
    s.state = !live ? "alone" : synced_ ? "synced" : "attached";
    s.generation = gen_;
    s.forwarded = forwarded_;
    s.notForwarded = not_forwarded_;
    s.deferred = deferred_;
  }
  std::lock_guard<std::mutex> lk(stats_mu_);
  s.barriers = barriers_;
  s.clears = clears_;
  s.lastBarrierUs = last_barrier_us_;
  s.markErrors = mark_errors_;
  s.lastMarkError = last_mark_error_;
  s.losses = losses_;
  s.staleInFlight = stale_;
  s.resyncRunning = resync_running_;
  return s;
}

}  // namespace ha::rfs
