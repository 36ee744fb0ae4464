// The write interceptor (see fuse_fs.h). Built like libfuse's passthrough_ll: low-level API,
// multithreaded loop, O_PATH fds instead of paths, large max_write, no writeback cache (each
// write() must reach us so it is replicated before write() returns).
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>  // the kernel protocol: request header sizes (Worker)

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <list>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <deque>
#include <mutex>
#include <thread>
#include <sched.h>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fuse_fs.h"
#include "fuse_mounts.h"

namespace ha::rfs {
namespace {

std::string Errno(const std::string& what, int e) { return what + ": " + std::strerror(e); }

struct Inode : std::enable_shared_from_this<Inode> {
  // O_PATH fd of the real entry, or -1 once the fd cache closed it (reopened from the parent's fd
  // and the recorded name on next use). Guarded by Fs::fds_mu together with pins and the LRU hook.
  int fd = -1;
  int pins = 0;          // operations using fd right now (never closed while pinned)
  bool in_lru = false;
  std::list<std::weak_ptr<Inode>>::iterator lru_it;
  std::shared_ptr<std::atomic<int64_t>> open_fds;  // the file system's count of inode fds
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t nlookup = 0;  // guarded by Fs::table_mu
  std::atomic<int> cached_opens{0};  // open file handles that use the kernel's page cache
  std::atomic<bool> synced{false};   // fsync/fdatasync was called on it (OpWrite: early writeback)
  // Local writes answered before they ended (OpWrite, overlapped local writes): how many, their
  // ranges and the first error one of them met after its reply (reported by the next fsync or
  // flush). Guarded by Fs::local_mu_ (local_n is also read without it: 0 = nothing to wait for).
  std::atomic<int> local_n{0};
  std::vector<std::pair<uint64_t, uint64_t>> local_ranges;  // [begin, end)
  int local_err = 0;
  // Guarded by Fs::paths_mu: where this inode was last seen (lookup/create/rename).
  std::shared_ptr<Inode> parent;
  std::string name;
  bool detached = false;  // its recorded name was unlinked/replaced: no known path
  ~Inode() {
    if (fd < 0) return;
    close(fd);
    if (open_fds) (*open_fds)--;
  }
};

struct KeyHash {
  size_t operator()(const std::pair<dev_t, ino_t>& k) const { return std::hash<uint64_t>()(k.second * 1000003u ^ k.first); }
};

struct DirHandle {
  DIR* dp = nullptr;
  struct dirent* entry = nullptr;
  off_t offset = 0;
};

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string Join(const std::string& dir, const char* name) { return dir.empty() ? std::string(name) : dir + "/" + name; }

// Walks the real directory `dfd` (an fd open O_RDONLY|O_DIRECTORY; closed here) whose entries have
// the relative path `sub` + "/" + name below the directory being checked ("" = that directory):
// true as soon as one such path has `room` bytes or more (it is left in *sub). Symlinks are not
// followed; one DIR at a time (its names are read, then it is closed before going down), one plain
// fd per level. Entries that vanish or cannot be opened meanwhile are skipped. Cost: proportional
// to the entries below (stops at the first path found too long).
bool SubtreeReaches(int dfd, std::string* sub, size_t room) {
  std::vector<std::string> dirs;
  bool found = false;
  {
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR* dp = dup_fd >= 0 ? fdopendir(dup_fd) : nullptr;
    if (!dp) {
      if (dup_fd >= 0) close(dup_fd);
      close(dfd);
      return false;
    }
    size_t base = sub->empty() ? 0 : sub->size() + 1;
    while (struct dirent* de = readdir(dp)) {
      const char* n = de->d_name;
      if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
      if (base + std::strlen(n) >= room) {
        if (!sub->empty()) sub->push_back('/');
        sub->append(n);
        found = true;
        break;
      }
      bool is_dir = de->d_type == DT_DIR;
      if (de->d_type == DT_UNKNOWN) {
        struct stat st;
        is_dir = fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      if (is_dir) dirs.emplace_back(n);
    }
    closedir(dp);
  }
  for (size_t i = 0; !found && i < dirs.size(); i++) {
    int cfd = openat(dfd, dirs[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd < 0) continue;
    size_t keep = sub->size();
    if (!sub->empty()) sub->push_back('/');
    sub->append(dirs[i]);
    found = SubtreeReaches(cfd, sub, room);
    if (!found) sub->resize(keep);
  }
  close(dfd);
  return found;
}

class Fs final : public Interceptor, public std::enable_shared_from_this<Fs> {
 public:
  explicit Fs(InterceptorOptions opts, InterceptorEventFn ev) : opts_(std::move(opts)), on_event_(std::move(ev)) {}
  // Only runs once the session's loop has ended (the loop holds a reference to the Fs), possibly
  // on the loop's own thread; never throws (a destructor that throws ends the process).
  ~Fs() override {
    try {
      std::string c;
      Unmount(true, 0, &c);
    } catch (...) {
    }
  }

  bool Start(std::string* code, std::string* err);
  std::string Unmount(bool lazy, int timeout_ms, std::string* code) override;
  InterceptorStats Stats() const override;
  const std::string& Dir() const override { return opts_.dir; }
  bool Mounted() const override { return mounted_.load(); }

  // --- used by the FUSE callbacks ---
  Inode* Get(fuse_ino_t ino) { return ino == FUSE_ROOT_ID ? root_.get() : reinterpret_cast<Inode*>(ino); }
  int Lookup(Inode* parent, const char* name, fuse_entry_param* e);
  // The inode's fd, pinned (kept open) until Unpin; reopened from its parent if the cache closed
  // it. Returns the fd, or -errno (ESTALE: the entry is no longer where it was recorded).
  int Pin(Inode* in);
  void Unpin(Inode* in);
  // Adds a just-opened fd to the cache (caller holds fds_mu_), then closes old unpinned ones.
  void CacheLocked(Inode* in);
  void EvictLocked();
  void Forget(fuse_ino_t ino, uint64_t n);
  // Path of an inode relative to the root ("" = root); false if unknown. Takes paths_mu.
  bool PathOf(Inode* in, std::string* out);
  bool ChildPath(Inode* parent, const char* name, std::string* out) {
    std::string p;
    if (!PathOf(parent, &p)) return false;
    *out = Join(p, name);
    return true;
  }
  // A new name whose path below the root would reach PATH_MAX: the secondary could not apply it
  // (its records are applied by relative path; the receiver drops the link on such a record). The
  // operation is refused with ENAMETOOLONG before it is made here. Reports it (event "refused").
  bool PathTooLong(Inode* parent, const char* name) {
    std::string p;
    if (!ChildPath(parent, name, &p) || p.size() < PATH_MAX) return false;
    errors_++;
    Emit("refused", "ERR_RFS_PATH_TOO_LONG",
         "'" + p.substr(0, 48) + "...': a path below " + opts_.dir + " of " + std::to_string(p.size()) +
             " bytes cannot be replicated (limit " + std::to_string(PATH_MAX - 1) + "): refused with ENAMETOOLONG");
    return true;
  }
  // A rename of a directory to a longer path lengthens the paths of everything below it, which the
  // kernel's inode table does not know (only looked-up entries): one of them reaching PATH_MAX
  // could not be applied by the secondary either. Only when `to` is longer than `from` (the
  // entry's old and new paths below the root) and the entry `name` in `parent_fd` is a directory,
  // the real tree below it is walked (SubtreeReaches: cost proportional to the entries below,
  // stopping at the first path too long); any other rename costs nothing here. Refused like
  // PathTooLong. The walk runs before the ordering lock: an entry made deeper below the directory
  // by a concurrent operation during the walk is not seen.
  bool RenameTooLong(int parent_fd, const char* name, const std::string& from, const std::string& to) {
    if (to.size() <= from.size() || to.size() >= PATH_MAX) return false;
    int dfd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return false;  // not a directory (or gone: renameat2 will say so)
    std::string sub;
    if (!SubtreeReaches(dfd, &sub, PATH_MAX - to.size() - 1)) return false;
    std::string p = to + "/" + sub;
    auto cut = [](const std::string& s) { return s.size() <= 120 ? s : s.substr(0, 56) + "..." + s.substr(s.size() - 56); };
    errors_++;
    Emit("refused", "ERR_RFS_PATH_TOO_LONG",
         "renaming the directory '" + cut(from) + "' to '" + cut(to) + "' would make '" + cut(p) + "' a path below " + opts_.dir +
             " of " + std::to_string(p.size()) + " bytes that cannot be replicated (limit " + std::to_string(PATH_MAX - 1) +
             "): refused with ENAMETOOLONG");
    return true;
  }
  // Under order_mu: submits (or counts as unrecorded when path is unknown). Returns the seq or 0.
  uint64_t Submit(Record&& r) {
    Count(static_cast<int>(r.op));
    return opts_.sink->Submit(std::move(r));
  }
  // Under order_mu: a large write whose bytes stay lent until ReleaseLent (before order_mu ends).
  uint64_t SubmitLent(Record&& r) {
    Count(static_cast<int>(r.op));
    return opts_.sink->SubmitLent(std::move(r));
  }
  void ReleaseLent(uint64_t seq) { opts_.sink->ReleaseLent(seq); }
  // Ends an operation that replies with an errno: waits for the secondary's ack, then replies.
  void FinishErr(fuse_req_t req, uint64_t seq, int err) {
    Wait(seq);
    if (err) errors_++;
    fuse_reply_err(req, err);
  }

  void Wait(uint64_t seq) {
    if (seq == 0) return;
    Note(opts_.sink->WaitAcked(seq));
  }
  void Note(bool ok) {
    if (!ok) {
      not_replicated_++;
      if (replicated_.exchange(false)) Emit("replication", "ERR_RFS_NOT_REPLICATED", "lost");
    } else if (!replicated_.load(std::memory_order_relaxed)) {
      if (!replicated_.exchange(true)) Emit("replication", "", "restored");
    }
  }
  void WaitDurable(uint64_t seq) { Note(opts_.sink->WaitDurable(seq)); }

  // With the writeback cache ('fsync' durability) the kernel answered write() long before it hands
  // us the data: our reply to its WRITE need not wait for the secondary (what the application was
  // promised is only what fsync, O_SYNC and close promise). Such records are deferred: fsync,
  // flush and the next write once more than kDeferredWindow bytes are unacknowledged wait for
  // them, so a stream of writes keeps the link full instead of paying a round trip per write,
  // and a secondary that falls behind slows the writeback instead of overflowing the queue.
  void Defer(uint64_t seq, size_t bytes) {
    if (seq == 0) return;
    uint64_t upto = 0;  // acknowledgements are cumulative: the newest record over the window
    {
      std::lock_guard<std::mutex> lk(deferred_mu_);
      deferred_.push_back({seq, bytes});
      deferred_bytes_ += bytes;
      while (deferred_bytes_ > kDeferredWindow && !deferred_.empty()) {
        upto = deferred_.front().first;
        deferred_bytes_ -= deferred_.front().second;
        deferred_.pop_front();
      }
    }
    if (upto) Wait(upto);
  }
  // Waits for every deferred record so far (acknowledgements are cumulative: the newest suffices).
  void WaitDeferred() {
    uint64_t last = 0;
    {
      std::lock_guard<std::mutex> lk(deferred_mu_);
      if (deferred_.empty()) return;
      last = deferred_.back().first;
      deferred_.clear();
      deferred_bytes_ = 0;
    }
    Wait(last);
  }
  static constexpr size_t kDeferredWindow = 16u << 20;
  std::mutex deferred_mu_;
  std::deque<std::pair<uint64_t, size_t>> deferred_;
  size_t deferred_bytes_ = 0;
  void Count(int slot) { if (slot >= 0 && slot < kStatSlots) ops_[slot].fetch_add(1, std::memory_order_relaxed); }
  void Emit(const std::string& kind, const std::string& code, const std::string& msg) { if (on_event_) on_event_(kind, code, msg); }
  // Caller identity for ownership of new nodes.
  void FixOwner(fuse_req_t req, Inode* parent, const char* name, bool is_dir_or_file_mode_fix, mode_t mode, struct stat* st);

  InterceptorOptions opts_;
  InterceptorEventFn on_event_;
  std::shared_ptr<Inode> root_;
  std::mutex table_mu_;
  std::unordered_map<std::pair<dev_t, ino_t>, std::shared_ptr<Inode>, KeyHash> table_;
  // The inode fd cache: one O_PATH fd per inode the kernel knows would run out of file
  // descriptors with a million files; at most max_fds_ stay open, least recently used closed first
  // (an unpinned fd of an inode with a known name; the root and unlinked-but-open inodes keep theirs).
  std::mutex fds_mu_;
  std::list<std::weak_ptr<Inode>> lru_;  // front: most recently used
  std::shared_ptr<std::atomic<int64_t>> open_fds_ = std::make_shared<std::atomic<int64_t>>(0);
  int64_t max_fds_ = 4096;
  std::atomic<uint64_t> fd_reopens_{0}, fd_evictions_{0};
  // Direct local writes (InterceptorOptions::direct_local_writes): the O_DIRECT twin of a
  // write-only handle's fd, opened at its first large aligned write and closed at its release,
  // before the handle's own fd (whose number could otherwise be reused by another open meanwhile).
  std::mutex dio_mu_;
  std::unordered_map<int, int> dio_fds_;  // handle fd -> O_DIRECT fd, or -1: none for this handle
  std::atomic<bool> dio_unsupported_{false};
  std::atomic<uint64_t> direct_writes_{0};
  std::atomic<uint64_t> aligned_copies_{0};
  int DirectFd(int fd);
  void CloseDirectFd(int fd);
  uint64_t Reconcile(Inode* in, const std::string& path, uint64_t off, size_t size, size_t done, uint64_t seq);
  std::atomic<uint64_t> reconciled_{0};
  // Overlapped local writes (OpWrite): see Inode::local_n. DrainLocal waits until none of the
  // inode's is running; BeginLocal until none of them covers [off, off + len), then registers it.
  std::mutex local_mu_;
  std::condition_variable local_cv_;
  std::atomic<uint64_t> overlapped_writes_{0}, late_local_errors_{0};
  void DrainLocal(Inode* in) {
    if (in->local_n.load(std::memory_order_acquire) == 0) return;
    std::unique_lock<std::mutex> lk(local_mu_);
    local_cv_.wait(lk, [&] { return in->local_ranges.empty(); });
  }
  void BeginLocal(Inode* in, uint64_t off, uint64_t len) {
    std::unique_lock<std::mutex> lk(local_mu_);
    local_cv_.wait(lk, [&] {
      for (auto& r : in->local_ranges)
        if (r.first < off + len && off < r.second) return false;
      return true;
    });
    in->local_ranges.emplace_back(off, off + len);
    in->local_n.store(static_cast<int>(in->local_ranges.size()), std::memory_order_release);
  }
  void EndLocal(Inode* in, uint64_t off, uint64_t len, int err) {
    {
      std::lock_guard<std::mutex> lk(local_mu_);
      auto& v = in->local_ranges;
      for (size_t i = 0; i < v.size(); i++)
        if (v[i].first == off && v[i].second == off + len) {
          v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        }
      if (err && !in->local_err) in->local_err = err;
      in->local_n.store(static_cast<int>(v.size()), std::memory_order_release);
    }
    local_cv_.notify_all();
  }
  // The error an overlapped local write of this inode met after its reply (once), or 0.
  int TakeLocalError(Inode* in) {
    if (late_local_errors_.load(std::memory_order_acquire) == 0) return 0;  // none ever: nothing recorded
    std::lock_guard<std::mutex> lk(local_mu_);
    int e = in->local_err;
    in->local_err = 0;
    return e;
  }
  std::mutex paths_mu_;
  std::mutex order_mu_;
  std::atomic<uint64_t> ops_[kStatSlots] = {};
  std::atomic<uint64_t> bytes_written_{0}, bytes_read_{0}, errors_{0}, not_replicated_{0}, unrecorded_{0};
  std::atomic<bool> replicated_{true};
  std::atomic<uint64_t> max_write_{0};
  bool writeback_ = false;  // negotiated in OpInit
  uid_t euid_ = geteuid();
  gid_t egid_ = getegid();

  struct fuse_session* se_ = nullptr;
  // The FUSE workers (our own loop, see RunWorkers): how many exist and wait for a request.
  void RunWorkers();
  void Worker();
  std::mutex workers_mu_;
  std::vector<std::thread> workers_;  // the first worker runs on loop_ itself
  unsigned nworkers_ = 0, idle_workers_ = 0;
  std::thread loop_;
  std::mutex life_mu_;  // Unmount
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool loop_done_ = false;
  std::atomic<bool> mounted_{false};
  std::atomic<bool> unmounting_{false};
  // The FUSE connection's device (its number under /sys/fs/fuse/connections), from the mount
  // point's own superblock: known_ false if it could not be read (no abort then, only the umount).
  bool conn_known_ = false;
  unsigned conn_major_ = 0, conn_minor_ = 0;
  bool ConnOf(unsigned* major, unsigned* minor);
  bool OursOnTop();
};

Fs* FsOf(fuse_req_t req) { return static_cast<Fs*>(fuse_req_userdata(req)); }

// An inode's fd held open for the length of an operation (see Fs::Pin). `fd` < 0: -errno.
class Pinned {
 public:
  Pinned(Fs* fs, Inode* in) : fs_(fs), in_(in), fd(fs->Pin(in)) {}
  ~Pinned() { if (fd >= 0) fs_->Unpin(in_); }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  int err() const { return fd < 0 ? -fd : 0; }

 private:
  Fs* fs_;
  Inode* in_;

 public:
  const int fd;
};

// One change on this thread, announced to the sink before its local apply (BeforeApply /
// BeforeMeta) and ended exactly once (EndChange): after its last Submit, or on any early return
// when it failed locally.
class ChangeScope {
 public:
  explicit ChangeScope(Fs* fs) : fs_(fs) {}
  ~ChangeScope() { End(); }
  ChangeScope(const ChangeScope&) = delete;
  ChangeScope& operator=(const ChangeScope&) = delete;
  void Data(const std::string& path, uint64_t offset, uint64_t length) {
    fs_->opts_.sink->BeforeApply(path, offset, length);
    open_ = true;
  }
  void Meta(Op op, const std::string& path, const std::string& path2 = std::string()) {
    fs_->opts_.sink->BeforeMeta(op, path, path2);
    open_ = true;
  }
  void End() {
    if (!open_) return;
    open_ = false;
    fs_->opts_.sink->EndChange();
  }

 private:
  Fs* fs_;
  bool open_ = false;
};

bool Fs::PathOf(Inode* in, std::string* out) {
  std::lock_guard<std::mutex> lk(paths_mu_);
  std::vector<const std::string*> parts;
  Inode* cur = in;
  for (int depth = 0; cur != root_.get(); depth++) {
    if (cur->detached || !cur->parent || depth > 4096) return false;
    parts.push_back(&cur->name);
    cur = cur->parent.get();
  }
  out->clear();
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out->empty()) out->push_back('/');
    out->append(**it);
  }
  return true;
}

int Fs::Pin(Inode* in) {
  {
    std::lock_guard<std::mutex> lk(fds_mu_);
    if (in->fd >= 0) {
      in->pins++;
      if (in->in_lru) lru_.splice(lru_.begin(), lru_, in->lru_it);
      return in->fd;
    }
  }
  // Closed by the cache: reopen it from its parent and recorded name, and check it is the same entry.
  std::shared_ptr<Inode> parent;
  std::string name;
  {
    std::lock_guard<std::mutex> lk(paths_mu_);
    if (in->detached || !in->parent) return -ESTALE;
    parent = in->parent;
    name = in->name;
  }
  int pfd = Pin(parent.get());
  if (pfd < 0) return pfd;
  int fd = openat(pfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  int err = errno;
  Unpin(parent.get());
  if (fd < 0) return err == ENOENT ? -ESTALE : -err;
  struct stat st;
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != in->dev || st.st_ino != in->ino) {
    close(fd);
    return -ESTALE;
  }
  fd_reopens_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lk(fds_mu_);
  if (in->fd >= 0) {
    close(fd);  // another thread reopened it meanwhile
  } else {
    in->fd = fd;
    (*open_fds_)++;
    CacheLocked(in);
  }
  in->pins++;
  return in->fd;
}

void Fs::Unpin(Inode* in) {
  std::lock_guard<std::mutex> lk(fds_mu_);
  if (in->pins > 0) in->pins--;
}

void Fs::CacheLocked(Inode* in) {
  if (in == root_.get()) return;
  if (in->in_lru) {
    lru_.splice(lru_.begin(), lru_, in->lru_it);
  } else {
    lru_.push_front(in->weak_from_this());
    in->lru_it = lru_.begin();
    in->in_lru = true;
  }
  EvictLocked();
}

void Fs::EvictLocked() {
  // Walks from the least recently used end; skips (and moves to the front) what must stay open.
  size_t budget = lru_.size();
  while (*open_fds_ > max_fds_ && budget-- > 0 && !lru_.empty()) {
    auto it = std::prev(lru_.end());
    std::shared_ptr<Inode> sp = it->lock();
    if (!sp) { lru_.erase(it); continue; }  // forgotten: its destructor closed the fd
    bool keep = sp->pins > 0 || sp->fd < 0;
    if (!keep) {
      std::lock_guard<std::mutex> pl(paths_mu_);
      keep = sp->detached || !sp->parent;  // no name to reopen it by
    }
    if (keep) {
      lru_.splice(lru_.begin(), lru_, it);
      continue;
    }
    close(sp->fd);
    sp->fd = -1;
    (*open_fds_)--;
    sp->in_lru = false;
    lru_.erase(it);
    fd_evictions_.fetch_add(1, std::memory_order_relaxed);
  }
}

int Fs::Lookup(Inode* parent, const char* name, fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  e->attr_timeout = opts_.attr_timeout;
  e->entry_timeout = opts_.entry_timeout;
  int pfd = Pin(parent);
  if (pfd < 0) return -pfd;
  int fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  int oerr = errno;
  Unpin(parent);
  if (fd < 0) return oerr;
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    int err = errno;
    close(fd);
    return err;
  }
  std::shared_ptr<Inode> in;
  {
    std::lock_guard<std::mutex> lk(table_mu_);
    auto key = std::make_pair(e->attr.st_dev, e->attr.st_ino);
    auto it = table_.find(key);
    if (it != table_.end()) {
      in = it->second;
    } else {
      in = std::make_shared<Inode>();
      in->open_fds = open_fds_;
      in->dev = e->attr.st_dev;
      in->ino = e->attr.st_ino;
      table_.emplace(key, in);
    }
    in->nlookup++;
  }
  {
    std::lock_guard<std::mutex> lk(paths_mu_);
    if (in.get() != root_.get()) {
      in->parent = parent->shared_from_this();
      in->name = name;
      in->detached = false;
    }
  }
  {
    std::lock_guard<std::mutex> lk(fds_mu_);
    if (in->fd >= 0) {
      close(fd);
      if (in->in_lru) lru_.splice(lru_.begin(), lru_, in->lru_it);
    } else {
      in->fd = fd;
      (*open_fds_)++;
      CacheLocked(in.get());
    }
  }
  e->ino = reinterpret_cast<uintptr_t>(in.get());
  return 0;
}

void Fs::Forget(fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID) return;
  Inode* in = Get(ino);
  std::shared_ptr<Inode> drop;  // destroyed outside the lock
  std::lock_guard<std::mutex> lk(table_mu_);
  in->nlookup = in->nlookup > n ? in->nlookup - n : 0;
  if (in->nlookup == 0) {
    auto it = table_.find(std::make_pair(in->dev, in->ino));
    if (it != table_.end() && it->second.get() == in) {
      drop = std::move(it->second);
      table_.erase(it);
    }
  }
}

// New nodes are created by root (the daemon): give them to the caller, and undo our process
// umask (the kernel already applied the caller's).
void Fs::FixOwner(fuse_req_t req, Inode* parent, const char* name, bool fix_mode, mode_t mode, struct stat* st) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid != euid_ || ctx->gid != egid_) {
    struct stat pst;
    gid_t gid = ctx->gid;
    if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID)) gid = static_cast<gid_t>(-1);
    fchownat(parent->fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW);
  }
  if (fstatat(parent->fd, name, st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (fix_mode && (st->st_mode & 0777) != (mode & 0777)) {
    mode_t m = (st->st_mode & 07000) | (mode & 0777);
    if (fchmodat(parent->fd, name, m, 0) == 0) st->st_mode = (st->st_mode & S_IFMT) | m;
  }
}

// ---------------------------------------------------------------- FUSE callbacks

void OpInit(void* userdata, struct fuse_conn_info* conn) {
  Fs* fs = static_cast<Fs*>(userdata);
  conn->max_write = 1u << 20;
  // Strict (default): no writeback cache, every write() must reach us and wait for the secondary.
  // writeback: the kernel caches writes; fsync, O_SYNC, close and background writeback send them.
  if (fs->opts_.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  fs->writeback_ = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;  // read replies by splice
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  fs->max_write_ = conn->max_write;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Fs* fs = FsOf(req);
  fuse_entry_param e;
  int err = fs->Lookup(fs->Get(parent), name, &e);
  if (err == ENOENT) {
    std::memset(&e, 0, sizeof e);
    e.entry_timeout = fs->opts_.entry_timeout;  // negative entry: we are the only writer
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  FsOf(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
  Fs* fs = FsOf(req);
  for (size_t i = 0; i < count; i++) fs->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  struct stat st;
  fs->DrainLocal(fs->Get(ino));  // the size and times after the overlapped writes answered so far
  if (fi) {  // an open file: its own fd (works for an unlinked file too)
    if (fstat(static_cast<int>(fi->fh), &st) != 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_attr(req, &st, fs->opts_.attr_timeout);
  }
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  if (fstatat(pin.fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_attr(req, &st, fs->opts_.attr_timeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  Pinned pin(fs, in);
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(in->fd);
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->PathOf(in, &p)) {
      if (valid & FUSE_SET_ATTR_SIZE) scope.Data(p, static_cast<uint64_t>(attr->st_size), UINT64_MAX - static_cast<uint64_t>(attr->st_size));
      if (valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) scope.Meta(Op::Chmod, p);
    }
  }
  std::vector<uint64_t> seqs;
  int err = 0;
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    fs->DrainLocal(in);  // a truncate or new times come after the writes answered before them
    std::string path;
    bool known = fs->PathOf(in, &path);
    auto submit = [&](Record&& r) {
      if (!known) { fs->unrecorded_++; return; }
      r.path = path;
      seqs.push_back(fs->Submit(std::move(r)));
    };
    if (valid & FUSE_SET_ATTR_MODE) {
      int res = fi ? fchmod(static_cast<int>(fi->fh), attr->st_mode) : chmod(proc.c_str(), attr->st_mode);
      if (res != 0) err = errno;
      else { Record r; r.op = Op::Chmod; r.mode = attr->st_mode & 07777; submit(std::move(r)); }
    }
    if (!err && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
      uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
      gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
      if (fchownat(in->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) err = errno;
      else { Record r; r.op = Op::Chown; r.uid = uid; r.gid = gid; submit(std::move(r)); }
    }
    if (!err && (valid & FUSE_SET_ATTR_SIZE)) {
      int res = fi ? ftruncate(static_cast<int>(fi->fh), attr->st_size) : truncate(proc.c_str(), attr->st_size);
      if (res != 0) err = errno;
      else { Record r; r.op = Op::Truncate; r.length = static_cast<uint64_t>(attr->st_size); submit(std::move(r)); }
    }
    if (!err && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
      struct timespec tv[2];
      tv[0].tv_sec = tv[1].tv_sec = 0;
      tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
      if (valid & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
      else if (valid & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
      if (valid & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
      else if (valid & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
      int res = fi ? futimens(static_cast<int>(fi->fh), tv) : utimensat(AT_FDCWD, proc.c_str(), tv, 0);
      if (res != 0) err = errno;
      else {
        // Record the resulting times (UTIME_NOW resolved) so the secondary gets the same values.
        struct stat st;
        Record r;
        r.op = Op::Utimens;
        r.atime = {0, UTIME_OMIT};
        r.mtime = {0, UTIME_OMIT};
        if (fstatat(in->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0) {
          if (valid & FUSE_SET_ATTR_ATIME) r.atime = {st.st_atim.tv_sec, st.st_atim.tv_nsec};
          if (valid & FUSE_SET_ATTR_MTIME) r.mtime = {st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
        } else {
          r.atime = {tv[0].tv_sec, tv[0].tv_nsec};
          r.mtime = {tv[1].tv_sec, tv[1].tv_nsec};
        }
        submit(std::move(r));
      }
    }
  }
  scope.End();
  for (uint64_t s : seqs) fs->Wait(s);
  if (err) { fs->errors_++; return (void)fuse_reply_err(req, err); }
  struct stat st;
  if (fstatat(in->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_attr(req, &st, fs->opts_.attr_timeout);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  char buf[PATH_MAX + 1];
  Fs* fs = FsOf(req);
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  ssize_t n = readlinkat(pin.fd, "", buf, sizeof buf);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  if (n >= static_cast<ssize_t>(sizeof buf)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  buf[n] = 0;
  fuse_reply_readlink(req, buf);
}

// mknod/mkdir/symlink share this: create under the ordering lock, record, reply with the entry.
void MakeNode(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode, dev_t rdev, const char* link) {
  Fs* fs = FsOf(req);
  Inode* parent = fs->Get(parent_ino);
  Pinned ppin(fs, parent);
  if (ppin.fd < 0) return (void)fuse_reply_err(req, ppin.err());
  if (fs->PathTooLong(parent, name)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  fuse_entry_param e;
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->ChildPath(parent, name, &p)) scope.Meta(link ? Op::Symlink : S_ISDIR(mode) ? Op::Mkdir : Op::Mknod, p);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    int res;
    if (link) res = symlinkat(link, parent->fd, name);
    else if (S_ISDIR(mode)) res = mkdirat(parent->fd, name, mode & 07777);
    else res = mknodat(parent->fd, name, mode, rdev);
    if (res != 0) {
      err = errno;
    } else {
      struct stat st;
      fs->FixOwner(req, parent, name, link == nullptr, mode, &st);
      Record r;
      if (link) { r.op = Op::Symlink; r.path2 = link; }
      else if (S_ISDIR(mode)) { r.op = Op::Mkdir; r.mode = st.st_mode & 07777; }
      else { r.op = Op::Mknod; r.mode = st.st_mode; r.rdev = rdev; }
      r.uid = st.st_uid;
      r.gid = st.st_gid;
      if (fs->ChildPath(parent, name, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
      err = fs->Lookup(parent, name, &e);
    }
  }
  scope.End();
  fs->Wait(seq);
  if (err) { fs->errors_++; return (void)fuse_reply_err(req, err); }
  fuse_reply_entry(req, &e);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) { MakeNode(req, parent, name, mode, rdev, nullptr); }
void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) { MakeNode(req, parent, name, S_IFDIR | mode, 0, nullptr); }
void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) { MakeNode(req, parent, name, S_IFLNK | 0777, 0, link); }

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  Inode* np = fs->Get(newparent);
  Pinned pin(fs, in);
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  Pinned nppin(fs, np);
  if (nppin.fd < 0) return (void)fuse_reply_err(req, nppin.err());
  if (fs->PathTooLong(np, newname)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  fuse_entry_param e;
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  {
    std::string a, b;
    if (fs->PathOf(in, &a) && fs->ChildPath(np, newname, &b)) scope.Meta(Op::Link, a, b);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    Record r;
    r.op = Op::Link;
    bool known = fs->PathOf(in, &r.path) && fs->ChildPath(np, newname, &r.path2);
    if (linkat(AT_FDCWD, ProcPath(in->fd).c_str(), np->fd, newname, AT_SYMLINK_FOLLOW) != 0) {
      err = errno;
    } else {
      if (known) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
      // The existing inode keeps its recorded name unless it had none.
      std::memset(&e, 0, sizeof e);
      e.attr_timeout = fs->opts_.attr_timeout;
      e.entry_timeout = fs->opts_.entry_timeout;
      if (fstatat(in->fd, "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) err = errno;
      else {
        {
          std::lock_guard<std::mutex> tl(fs->table_mu_);
          in->nlookup++;
        }
        std::lock_guard<std::mutex> pl(fs->paths_mu_);
        if (in->detached || !in->parent) { in->parent = np->shared_from_this(); in->name = newname; in->detached = false; }
        e.ino = ino;
      }
    }
  }
  scope.End();
  fs->Wait(seq);
  if (err) { fs->errors_++; return (void)fuse_reply_err(req, err); }
  fuse_reply_entry(req, &e);
}

// After `name` in `parent` stopped naming inode `key`: if that was its recorded name, it has
// none until a later lookup gives it one (writes to an open, unlinked file are not replicated).
void DetachName(Fs* fs, Inode* parent, const char* name, const struct stat& st) {
  std::shared_ptr<Inode> in;
  {
    std::lock_guard<std::mutex> lk(fs->table_mu_);
    auto it = fs->table_.find(std::make_pair(st.st_dev, st.st_ino));
    if (it == fs->table_.end()) return;
    in = it->second;
  }
  std::lock_guard<std::mutex> lk(fs->paths_mu_);
  if (in->parent.get() == parent && in->name == name) in->detached = true;
}

void RemoveEntry(fuse_req_t req, fuse_ino_t parent_ino, const char* name, bool dir) {
  Fs* fs = FsOf(req);
  Inode* parent = fs->Get(parent_ino);
  Pinned ppin(fs, parent);
  if (ppin.fd < 0) return (void)fuse_reply_err(req, ppin.err());
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->ChildPath(parent, name, &p)) scope.Meta(dir ? Op::Rmdir : Op::Unlink, p);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    struct stat st;
    bool had = fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (unlinkat(parent->fd, name, dir ? AT_REMOVEDIR : 0) != 0) {
      err = errno;
    } else {
      if (had) DetachName(fs, parent, name, st);
      Record r;
      r.op = dir ? Op::Rmdir : Op::Unlink;
      if (fs->ChildPath(parent, name, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  }
  scope.End();
  fs->FinishErr(req, seq, err);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) { RemoveEntry(req, parent, name, false); }
void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { RemoveEntry(req, parent, name, true); }

void OpRename(fuse_req_t req, fuse_ino_t parent_ino, const char* name, fuse_ino_t newparent_ino, const char* newname, unsigned int flags) {
  Fs* fs = FsOf(req);
  Inode* p = fs->Get(parent_ino);
  Inode* np = fs->Get(newparent_ino);
  Pinned ppin(fs, p);
  if (ppin.fd < 0) return (void)fuse_reply_err(req, ppin.err());
  Pinned nppin(fs, np);
  if (nppin.fd < 0) return (void)fuse_reply_err(req, nppin.err());
  if (fs->PathTooLong(np, newname)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  std::string from, to;
  bool paths = fs->ChildPath(p, name, &from) && fs->ChildPath(np, newname, &to);
  // A directory moved to a longer path (with RENAME_EXCHANGE, also the one moved the other way).
  if (paths && (fs->RenameTooLong(p->fd, name, from, to) ||
                ((flags & RENAME_EXCHANGE) && fs->RenameTooLong(np->fd, newname, to, from))))
    return (void)fuse_reply_err(req, ENAMETOOLONG);
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  if (paths) scope.Meta(Op::Rename, from, to);
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    Record r;
    r.op = Op::Rename;
    r.flags = flags;
    bool known = fs->ChildPath(p, name, &r.path) && fs->ChildPath(np, newname, &r.path2);
    struct stat src, dst;
    bool has_src = fstatat(p->fd, name, &src, AT_SYMLINK_NOFOLLOW) == 0;
    bool has_dst = fstatat(np->fd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (renameat2(p->fd, name, np->fd, newname, flags) != 0) {
      err = errno;
    } else {
      if (has_dst && !(flags & RENAME_EXCHANGE)) DetachName(fs, np, newname, dst);
      std::shared_ptr<Inode> a, b;
      {
        std::lock_guard<std::mutex> tl(fs->table_mu_);
        if (has_src) { auto it = fs->table_.find(std::make_pair(src.st_dev, src.st_ino)); if (it != fs->table_.end()) a = it->second; }
        if (has_dst && (flags & RENAME_EXCHANGE)) { auto it = fs->table_.find(std::make_pair(dst.st_dev, dst.st_ino)); if (it != fs->table_.end()) b = it->second; }
      }
      {
        std::lock_guard<std::mutex> pl(fs->paths_mu_);
        if (a) { a->parent = np->shared_from_this(); a->name = newname; a->detached = false; }
        if (b) { b->parent = p->shared_from_this(); b->name = name; b->detached = false; }
      }
      if (known) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  }
  scope.End();
  fs->FinishErr(req, seq, err);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  int fd = openat(pin.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  auto* d = new DirHandle();
  d->dp = fdopendir(fd);
  if (!d->dp) { int e = errno; close(fd); delete d; return (void)fuse_reply_err(req, e); }
  fi->fh = reinterpret_cast<uintptr_t>(d);
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  if (fuse_reply_open(req, fi) == -ENOENT) { closedir(d->dp); delete d; }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info* fi) {
  (void)ino;
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  std::vector<char> buf(size);
  char* p = buf.data();
  size_t rem = size;
  int err = 0;
  if (offset != d->offset) {
    seekdir(d->dp, offset);
    d->entry = nullptr;
    d->offset = offset;
  }
  for (;;) {
    if (!d->entry) {
      errno = 0;
      d->entry = readdir(d->dp);
      if (!d->entry) { err = errno; break; }
    }
    struct stat st;
    std::memset(&st, 0, sizeof st);
    st.st_ino = d->entry->d_ino;
    st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
    size_t n = fuse_add_direntry(req, p, rem, d->entry->d_name, &st, d->entry->d_off);
    if (n > rem) break;
    p += n;
    rem -= n;
    d->offset = d->entry->d_off;
    d->entry = nullptr;
  }
  if (err && rem == size) fuse_reply_err(req, err);
  else fuse_reply_buf(req, buf.data(), size - rem);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  (void)ino;
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  closedir(d->dp);
  delete d;
  fuse_reply_err(req, 0);
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, int fd) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  // The Fsync record goes first, so the secondary's fsync (in "written" mode) runs while ours does.
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    Record r;
    r.op = Op::Fsync;
    r.flags = datasync ? 1 : 0;
    if (fs->PathOf(in, &r.path)) seq = fs->Submit(std::move(r));
  }
  in->synced.store(true, std::memory_order_relaxed);
  fs->DrainLocal(in);  // the overlapped writes answered so far are on the disk's way first
  int res = datasync ? fdatasync(fd) : fsync(fd);  // outside the ordering lock: may take ms
  int err = res != 0 ? errno : 0;
  if (!err) err = fs->TakeLocalError(in);  // an overlapped write that failed after its reply
  fs->WaitDeferred();
  if (seq != 0) {
    fs->Wait(seq);  // received mode: the writes before it (deferred ones included) are there
    fs->WaitDurable(seq);
  }
  if (err) { fs->errors_++; return (void)fuse_reply_err(req, err); }
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi) {
  Fsync(req, ino, datasync, dirfd(reinterpret_cast<DirHandle*>(fi->fh)->dp));
}

int OpenFlags(int flags, bool writeback) {
  // The kernel computes O_APPEND offsets from its i_size (we are the only writer): pwrite must
  // write where the kernel says, which Linux ignores for an O_APPEND fd.
  flags = (flags & ~(O_NOFOLLOW | O_APPEND | O_CREAT | O_EXCL)) | O_CLOEXEC;
  // With the writeback cache the kernel may read a page to complete a partial write through a
  // write-only handle (like passthrough_ll: open write-only files read-write).
  if (writeback && (flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
  return flags;
}

// Write-only handles (loggers, streaming writers, dd) bypass the kernel's page cache of the mount
// (direct I/O): each write() still reaches us and waits for the secondary, but without the copy
// into, and the locking of, the mount's page cache, which halves sequential throughput here. A
// write-only handle cannot be mmapped, so nothing is lost; handles that can read keep the cache
// (and mmap). The direct handle is marked in fh's bit 62 (the fd is in the low 32 bits).
constexpr uint64_t kDirectFh = 1ull << 62;

void SetOpenMode(Fs* fs, Inode* in, struct fuse_file_info* fi, int fd) {
  fi->fh = static_cast<uint64_t>(fd);
  if (!fs->writeback_ && (fi->flags & O_ACCMODE) == O_WRONLY) {
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->fh |= kDirectFh;
  } else {
    fi->keep_cache = 1;
    in->cached_opens.fetch_add(1, std::memory_order_relaxed);
  }
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  Pinned pin(fs, in);
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(in->fd);
  uint64_t seq = 0;
  int fd;
  bool trunc = (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY;
  ChangeScope scope(fs);
  if (trunc) {
    std::string p;
    if (fs->PathOf(in, &p)) scope.Data(p, 0, UINT64_MAX);
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    fs->DrainLocal(in);  // the truncate comes after the overlapped writes answered before it
    fd = open(proc.c_str(), OpenFlags(fi->flags, fs->writeback_));
    if (fd >= 0) {
      Record r;
      r.op = Op::Truncate;
      r.length = 0;
      if (fs->PathOf(in, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  } else {
    fd = open(proc.c_str(), OpenFlags(fi->flags, fs->writeback_));
  }
  int err = fd < 0 ? errno : 0;
  scope.End();
  fs->Wait(seq);
  if (fd < 0) return (void)fuse_reply_err(req, err);
  SetOpenMode(fs, in, fi, fd);
  if (fuse_reply_open(req, fi) == -ENOENT) {
    close(fd);
    if (!(fi->fh & kDirectFh)) in->cached_opens.fetch_sub(1, std::memory_order_relaxed);
  }
}

void OpCreate(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Inode* parent = fs->Get(parent_ino);
  Pinned ppin(fs, parent);
  if (ppin.fd < 0) return (void)fuse_reply_err(req, ppin.err());
  if (fs->PathTooLong(parent, name)) return (void)fuse_reply_err(req, ENAMETOOLONG);
  fuse_entry_param e;
  std::vector<uint64_t> seqs;
  int err = 0;
  int fd = -1;
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->ChildPath(parent, name, &p)) scope.Meta(Op::Create, p);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    fd = openat(parent->fd, name, (OpenFlags(fi->flags, fs->writeback_) | O_CREAT) | (fi->flags & O_EXCL), mode);
    if (fd < 0) {
      err = errno;
    } else {
      struct stat st;
      fs->FixOwner(req, parent, name, true, mode, &st);
      std::string path;
      if (fs->ChildPath(parent, name, &path)) {
        Record r;
        r.op = Op::Create;
        r.path = path;
        r.mode = st.st_mode & 07777;
        r.flags = static_cast<uint32_t>(fi->flags);
        r.uid = st.st_uid;
        r.gid = st.st_gid;
        seqs.push_back(fs->Submit(std::move(r)));
        if ((fi->flags & O_TRUNC) && !(fi->flags & O_EXCL)) {
          Record t;
          t.op = Op::Truncate;
          t.path = path;
          seqs.push_back(fs->Submit(std::move(t)));
        }
      } else {
        fs->unrecorded_++;
      }
      err = fs->Lookup(parent, name, &e);
    }
  }
  scope.End();
  for (uint64_t s : seqs) fs->Wait(s);
  if (err) {
    if (fd >= 0) close(fd);
    fs->errors_++;
    return (void)fuse_reply_err(req, err);
  }
  Inode* child = fs->Get(e.ino);
  SetOpenMode(fs, child, fi, fd);
  if (fuse_reply_create(req, &e, fi) == -ENOENT) {
    close(fd);
    if (!(fi->fh & kDirectFh)) child->cached_opens.fetch_sub(1, std::memory_order_relaxed);
  }
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  fs->Count(kStatRead);
  fs->DrainLocal(fs->Get(ino));  // reads see the overlapped writes answered before them
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<enum fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = static_cast<int>(fi->fh);
  buf.buf[0].pos = off;
  fs->bytes_read_.fetch_add(size, std::memory_order_relaxed);
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

// This thread's buffer for O_DIRECT writes (aligned, grown as needed), holding a copy of data.
const uint8_t* AlignedCopy(const char* data, size_t size) {
  struct Buf {
    void* p = nullptr;
    size_t cap = 0;
    ~Buf() { free(p); }
  };
  thread_local Buf b;
  if (b.cap < size) {
    free(b.p);
    b.p = nullptr;
    b.cap = 0;
    if (posix_memalign(&b.p, kDirectLocalAlign, size) != 0) return nullptr;
    b.cap = size;
  }
  std::memcpy(b.p, data, size);
  return static_cast<const uint8_t*>(b.p);
}

// A write the application asked to be synchronous (an O_SYNC/O_DSYNC handle, or RWF_SYNC/RWF_DSYNC
// on this call: the kernel passes them in the request's flags) is made locally with the same
// durability, also through the handle's O_DIRECT twin fd, which has no O_DSYNC of its own (an
// O_DIRECT write alone leaves the data in the disk's cache and a new file size unsynced).
int SyncWriteFlags(int flags) {
  if ((flags & O_SYNC) == O_SYNC) return RWF_SYNC;
  return (flags & O_DSYNC) ? RWF_DSYNC : 0;
}

ssize_t WriteAt(int fd, const void* p, size_t n, off_t off, int rwf) {
  if (!rwf) return pwrite(fd, p, n, off);
  struct iovec iov = {const_cast<void*>(p), n};
  return pwritev2(fd, &iov, 1, off, rwf);
}

// A FUSE worker's helper thread for the local half of an overlapped write (OpWrite): it makes the
// O_DIRECT write while the worker waits for the secondary and replies to the kernel, so that the
// disk write of one write() runs during the next one's trip through FUSE and the network (the
// disk no longer idles while a write travels). One job at a time: the worker waits for it before
// it takes another request, so its request buffer (the data) stays valid.
class LocalWriteHelper {
 public:
  ~LocalWriteHelper() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (t_.joinable()) t_.join();
  }
  // This worker thread's helper (made at its first use), or nullptr if no thread could be made.
  static LocalWriteHelper* Mine() {
    thread_local std::unique_ptr<LocalWriteHelper> h;
    if (!h) {
      auto n = std::make_unique<LocalWriteHelper>();
      try {
        n->t_ = std::thread([p = n.get()] { p->Loop(); });
      } catch (...) {
        return nullptr;
      }
      h = std::move(n);
    }
    return h.get();
  }
  void Start(int fd, const void* p, size_t n, off_t off) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      fd_ = fd;
      p_ = p;
      n_ = n;
      off_ = off;
      job_ = true;
      done_ = false;
    }
    cv_.notify_all();
  }
  bool Done() {
    std::lock_guard<std::mutex> lk(mu_);
    return done_;
  }
  // The pwrite's result (and errno when < 0).
  ssize_t Wait(int* err) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    *err = err_;
    return res_;
  }

 private:
  void Loop() {
    pthread_setname_np(pthread_self(), "rfs-fuse-local");
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || job_; });
      if (stop_) return;
      job_ = false;
      const int fd = fd_;
      const void* p = p_;
      const size_t n = n_;
      const off_t off = off_;
      lk.unlock();
      ssize_t r;
      do r = pwrite(fd, p, n, off);
      while (r < 0 && errno == EINTR);
      const int e = r < 0 ? errno : 0;
      lk.lock();
      res_ = r;
      err_ = e;
      done_ = true;
      cv_.notify_all();
    }
  }
  std::thread t_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, job_ = false, done_ = false;
  int fd_ = -1, err_ = 0;
  const void* p_ = nullptr;
  size_t n_ = 0;
  off_t off_ = 0;
  ssize_t res_ = 0;
};

// The rest of an overlapped write (OpWrite): its record is submitted and its local write started.
void OverlappedWrite(Fs* fs, fuse_req_t req, fuse_ino_t ino, Inode* in, struct fuse_file_info* fi, LocalWriteHelper* helper,
                     const char* data, size_t size, off_t off, uint64_t seq, const std::string& path, ChangeScope* scope,
                     bool reserved) {
  fs->Wait(seq);  // the secondary has the bytes (or replication was given up: ALONE)
  bool replied = false;
  if (reserved && !helper->Done()) {
    // The local write still runs: the application goes on (its next write() travels meanwhile).
    fuse_reply_write(req, size);
    replied = true;
    fs->overlapped_writes_.fetch_add(1, std::memory_order_relaxed);
  }
  int e = 0;
  ssize_t n = helper->Wait(&e);
  fs->ReleaseLent(seq);  // the request buffer (data) is reused once we return
  size_t done = n < 0 ? 0 : static_cast<size_t>(n);
  if (done < size) {
    // Refused (EINVAL: O_DIRECT after all) or short: the rest buffered, then as a failed write.
    ssize_t t = WriteAt(static_cast<int>(fi->fh), data + done, size - done, off + static_cast<off_t>(done), 0);
    if (t > 0) done += static_cast<size_t>(t);
    else if (t < 0) e = errno;
    if (done < size && e == 0) e = ENOSPC;  // short without an error: the space ran out
  } else {
    fs->direct_writes_.fetch_add(1, std::memory_order_relaxed);
  }
  const bool late = done < size && replied;
  if (late) fs->late_local_errors_.fetch_add(1, std::memory_order_relaxed);  // before EndLocal: TakeLocalError looks
  fs->EndLocal(in, static_cast<uint64_t>(off), size, late ? e : 0);
  if (done < size) {
    // The secondary has bytes the file does not hold: send what it holds, after every other
    // overlapped write of the file (under order_mu_, no new one starts meanwhile).
    uint64_t rseq;
    {
      std::lock_guard<std::mutex> lk(fs->order_mu_);
      fs->DrainLocal(in);
      rseq = fs->Reconcile(in, path, static_cast<uint64_t>(off), size, done, 0);
    }
    fs->Wait(rseq);
    if (replied) {
      // Answered already: fsync and close of the file report it (as the kernel's writeback would).
      fs->errors_++;
      fs->Emit("error", "ERR_RFS_LOCAL_WRITE",
               "the local write of " + std::to_string(size) + " bytes at " + std::to_string(off) + " in " + path +
                   " failed after the application was answered (" + std::strerror(e) + ", " + std::to_string(done) +
                   " bytes written): the secondary was given back what the file holds, and the next fsync or close of the file reports the error");
    }
  }
  scope->End();
  if (!replied) {
    if (done == 0) {
      fs->errors_++;
      return (void)fuse_reply_err(req, e);
    }
    fuse_reply_write(req, done);
  }
  fs->bytes_written_.fetch_add(done, std::memory_order_relaxed);
  if ((fi->fh & kDirectFh) && done > 0 && in->cached_opens.load(std::memory_order_relaxed) > 0)
    fuse_lowlevel_notify_inval_inode(fs->se_, ino, off, static_cast<off_t>(done));
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  ChangeScope scope(fs);
  std::string p0;
  if (fs->PathOf(in, &p0)) scope.Data(p0, static_cast<uint64_t>(off), size);
  Record r;
  r.op = Op::Write;
  r.offset = static_cast<uint64_t>(off);
  r.borrowed = reinterpret_cast<const uint8_t*>(data);  // lent for the Submit (no copy)
  uint64_t seq = 0;
  ssize_t n;
  int err = 0;
  const int rwf = SyncWriteFlags(fi->flags);
  if (rwf) r.flags = kWriteSync;  // the secondary makes it durable too (durable mode)
  // A large aligned write of a write-only handle: O_DIRECT, straight from the request buffer
  // (our workers put write data on a page boundary), or else from an aligned copy (a copy in this
  // thread's warm buffer costs far less than the page cache's fresh pages).
  // The whole pages go with O_DIRECT, a partial last page buffered after them: a 1 MiB write from
  // a buffer that is not page-aligned (most Node Buffers) reaches us split by the kernel at a
  // page boundary, as a large request of (1 MiB - a few bytes) and a tiny one.
  int dfd = -1;
  const size_t head = size & ~(kDirectLocalAlign - 1);
  if (((fi->fh & kDirectFh) || fs->writeback_) && fs->opts_.direct_local_writes && head >= kDirectLocalMin &&
      off % kDirectLocalAlign == 0)
    dfd = fs->DirectFd(static_cast<int>(fi->fh));
  // Our workers' buffers put write data on a page boundary (see Worker): no copy needed.
  const uint8_t* aligned = nullptr;
  if (dfd >= 0 && reinterpret_cast<uintptr_t>(data) % kDirectLocalAlign == 0) {
    aligned = reinterpret_cast<const uint8_t*>(data);
  } else if (dfd >= 0) {
    aligned = AlignedCopy(data, head);
    fs->aligned_copies_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!aligned) dfd = -1;
  // An overlapped write (InterceptorOptions::overlap_local_writes): a whole-page O_DIRECT write of
  // a plain (not O_SYNC) write() is made by this worker's helper thread, and answered as soon as
  // the secondary has the bytes, before the local write ends if it is slower. Its space is
  // reserved before its local write (fallocate, keeping the size), so a full disk still fails
  // the write() itself. The record goes out first and the space is reserved while it travels: the reservation (which
  // may wait for the file's lock while the previous write's O_DIRECT write still holds it) is
  // off the write's critical path. If it fails, the write is answered only once the local write
  // has ended (as a write that is not overlapped), with its error, and the secondary is given
  // back what the file holds (as when a local write fails after its record was sent).
  LocalWriteHelper* helper = nullptr;
  if (dfd >= 0 && head == size && rwf == 0 && !fs->writeback_ && fs->opts_.overlap_local_writes && size >= kOverlapMin)
    helper = LocalWriteHelper::Mine();
  std::string opath;  // the overlapped write's path
  if (helper) {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    if (fs->PathOf(in, &opath)) {
      // Our local write must not race an earlier one of the same bytes still running (it ends
      // without taking order_mu_: no deadlock).
      fs->BeginLocal(in, static_cast<uint64_t>(off), size);
      r.path = opath;
      r.borrowed_len = size;
      r.length = size;
      seq = fs->SubmitLent(std::move(r));
    } else {
      helper = nullptr;
    }
  }
  if (helper) {
    const bool reserved = fallocate(static_cast<int>(fi->fh), FALLOC_FL_KEEP_SIZE, off, static_cast<off_t>(size)) == 0;
    helper->Start(dfd, aligned, size, off);
    return OverlappedWrite(fs, req, ino, in, fi, helper, data, size, off, seq, opath, &scope, reserved);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    std::string path;
    // Earlier overlapped writes of this file end first: the local order is the records' order.
    fs->DrainLocal(in);
    if (size >= kOverlapMin && fs->PathOf(in, &path)) {
      // A large write: its record is submitted first, its bytes lent to the sink, whose sender
      // thread encrypts and sends them while this thread writes them to the local disk (the disk
      // write overlaps the network). If the local write then fails or is short, Reconcile sends
      // what the file really holds in the range, before the reply.
      r.path = path;
      r.borrowed_len = size;
      r.length = size;
      seq = fs->SubmitLent(std::move(r));
      // The local write, on this thread, while the sender's thread encrypts and sends the bytes.
      const int fh = static_cast<int>(fi->fh);
      int e = 0;
      if (dfd >= 0) {
        n = WriteAt(dfd, aligned, head, off, rwf);
        if (n < 0) {
          e = errno;
        } else if (n == static_cast<ssize_t>(head) && head < size) {
          ssize_t t = WriteAt(fh, data + head, size - head, off + static_cast<off_t>(head), rwf);
          if (t > 0) n += t;  // else short (Reconcile below): the application hears of the error on its retry
        }
      } else {
        n = WriteAt(fh, data, size, off, rwf);
        e = n < 0 ? errno : 0;
      }
      fs->ReleaseLent(seq);
      if (dfd >= 0 && n < 0 && e == EINVAL) {  // not for O_DIRECT after all: buffered
        dfd = -1;
        n = WriteAt(static_cast<int>(fi->fh), data, size, off, rwf);
        e = n < 0 ? errno : 0;
      }
      if (dfd >= 0 && n >= 0) fs->direct_writes_.fetch_add(1, std::memory_order_relaxed);
      if (n < 0) err = e;
      if (n != static_cast<ssize_t>(size)) seq = fs->Reconcile(in, path, static_cast<uint64_t>(off), size, n < 0 ? 0 : static_cast<size_t>(n), seq);
    } else {
      // A small write (or one of a file that is no longer reachable: nothing to replicate):
      // buffered, then its record.
      dfd = -1;
      n = WriteAt(static_cast<int>(fi->fh), data, size, off, rwf);
      if (n < 0) {
        err = errno;
      } else if (n > 0) {
        // Recomputed under the lock: a concurrent rename may have moved the file.
        if (fs->PathOf(in, &r.path)) {
          r.borrowed_len = static_cast<size_t>(n);
          r.length = static_cast<uint64_t>(n);
          seq = fs->Submit(std::move(r));
        } else {
          fs->unrecorded_++;
        }
      }
    }
  }
  if (err) {
    // The record (if it left first) must be acknowledged, or replication given up, before the
    // application hears of the failure: Reconcile's records follow it.
    scope.End();
    fs->Wait(seq);
    fs->errors_++;
    return (void)fuse_reply_err(req, err);
  }
  scope.End();
  fs->bytes_written_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  const bool inval = (fi->fh & kDirectFh) && n > 0 && in->cached_opens.load(std::memory_order_relaxed) > 0;
  // A buffered write to a file that gets fsynced: start writing it to the disk now, while the
  // secondary's acknowledgement travels, so that the fsync that likely follows finds it on its way.
  if (n > 0 && dfd < 0 && rwf == 0 && in->synced.load(std::memory_order_relaxed))
    sync_file_range(static_cast<int>(fi->fh), off, n, SYNC_FILE_RANGE_WRITE);
  if (fs->writeback_) fs->Defer(seq, static_cast<size_t>(n));
  else fs->Wait(seq);
  fuse_reply_write(req, static_cast<size_t>(n));
  // A direct write: drop what other (cached) handles of this file hold of the range (recent kernels
  // do it themselves). After the reply: libfuse forbids notifications in the execution path of
  // the operation they concern (the writer may hold the inode's lock).
  if (inval) fuse_lowlevel_notify_inval_inode(fs->se_, ino, off, n);
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  fs->WaitDeferred();  // close: the kernel has handed us its dirty pages; they reach the secondary first
  Inode* in = fs->Get(ino);
  fs->DrainLocal(in);
  int res = close(dup(static_cast<int>(fi->fh)));
  int err = res == -1 ? errno : fs->TakeLocalError(in);  // close reports a late local write error
  fuse_reply_err(req, err);
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  fs->DrainLocal(fs->Get(ino));  // its fds are closed below
  if (!(fi->fh & kDirectFh)) fs->Get(ino)->cached_opens.fetch_sub(1, std::memory_order_relaxed);
  fs->CloseDirectFd(static_cast<int>(fi->fh));
  close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi) { Fsync(req, ino, datasync, static_cast<int>(fi->fh)); }

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs s;
  Fs* fs = FsOf(req);
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  if (fstatvfs(pin.fd, &s) != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_statfs(req, &s);
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info* fi) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  ChangeScope scope(fs);
  std::string p0;
  if (fs->PathOf(in, &p0)) scope.Data(p0, static_cast<uint64_t>(offset), static_cast<uint64_t>(length));
  uint64_t seq = 0;
  int err = 0;
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    fs->DrainLocal(in);  // after the overlapped writes answered before it
    if (fallocate(static_cast<int>(fi->fh), mode, offset, length) != 0) {
      err = errno;
    } else {
      Record r;
      r.op = Op::Fallocate;
      r.flags = static_cast<uint32_t>(mode);
      r.offset = static_cast<uint64_t>(offset);
      r.length = static_cast<uint64_t>(length);
      if (fs->PathOf(in, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  }
  scope.End();
  fs->FinishErr(req, seq, err);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Fs* fs = FsOf(req);
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(pin.fd);
  if (size == 0) {
    ssize_t n = getxattr(proc.c_str(), name, nullptr, 0);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> v(size);
  ssize_t n = getxattr(proc.c_str(), name, v.data(), size);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_buf(req, v.data(), static_cast<size_t>(n));
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Fs* fs = FsOf(req);
  Pinned pin(fs, fs->Get(ino));
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(pin.fd);
  if (size == 0) {
    ssize_t n = listxattr(proc.c_str(), nullptr, 0);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> v(size);
  ssize_t n = listxattr(proc.c_str(), v.data(), size);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_buf(req, v.data(), static_cast<size_t>(n));
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  Pinned pin(fs, in);
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(in->fd);
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->PathOf(in, &p)) scope.Meta(Op::SetXattr, p);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    if (setxattr(proc.c_str(), name, value, size, flags) != 0) {
      err = errno;
    } else {
      Record r;
      r.op = Op::SetXattr;
      r.name = name;
      r.flags = static_cast<uint32_t>(flags);
      r.data.assign(reinterpret_cast<const uint8_t*>(value), reinterpret_cast<const uint8_t*>(value) + size);
      if (fs->PathOf(in, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  }
  scope.End();
  fs->FinishErr(req, seq, err);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Fs* fs = FsOf(req);
  Inode* in = fs->Get(ino);
  Pinned pin(fs, in);
  if (pin.fd < 0) return (void)fuse_reply_err(req, pin.err());
  std::string proc = ProcPath(in->fd);
  uint64_t seq = 0;
  int err = 0;
  ChangeScope scope(fs);
  {
    std::string p;
    if (fs->PathOf(in, &p)) scope.Meta(Op::RemoveXattr, p);
  }
  {
    std::lock_guard<std::mutex> lk(fs->order_mu_);
    if (removexattr(proc.c_str(), name) != 0) {
      err = errno;
    } else {
      Record r;
      r.op = Op::RemoveXattr;
      r.name = name;
      if (fs->PathOf(in, &r.path)) seq = fs->Submit(std::move(r));
      else fs->unrecorded_++;
    }
  }
  scope.End();
  fs->FinishErr(req, seq, err);
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi) {
  FsOf(req)->DrainLocal(FsOf(req)->Get(ino));  // SEEK_END, SEEK_DATA, SEEK_HOLE
  off_t res = lseek(static_cast<int>(fi->fh), off, whence);
  if (res == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_lseek(req, res);
}

struct fuse_lowlevel_ops MakeOps() {
  struct fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.statfs = OpStatfs;
  ops.fallocate = OpFallocate;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.setxattr = OpSetxattr;
  ops.removexattr = OpRemovexattr;
  ops.lseek = OpLseek;
  return ops;
}

std::string EscapeOpt(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// ---------------------------------------------------------------- worker loop

// Our own loop instead of fuse_session_loop_mt, for one reason: where the request lands in the
// buffer. The kernel copies a WRITE as fuse_in_header, fuse_write_in, then the data; each
// worker's buffer starts kWriteHeader bytes before a page boundary, so the data of every write is
// page-aligned and a large write goes to the disk with O_DIRECT straight from it (no aligned
// copy on the write's critical path). Otherwise as libfuse's loop: a worker is added when none is
// left waiting for a request (up to max_threads; FORGETs do not count), workers block signals,
// and they end when the session ends (unmount, abort).
constexpr size_t kWriteHeader = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
// libfuse reads up to its session's bufsize into the buffer (libfuse 3: at most 256 pages + 4 KiB,
// and max_write + 4 KiB after INIT, with our max_write of 1 MiB). Twice that, for any 3.x: only
// the pages a request fills are ever touched.
constexpr size_t kWorkerBuf = (2u << 20) + (64u << 10);
static_assert(sizeof(struct fuse_in_header) == 40 && sizeof(struct fuse_write_in) == 40, "FUSE protocol 7.9+ request headers");

void Fs::RunWorkers() {
  {
    std::lock_guard<std::mutex> lk(workers_mu_);
    nworkers_ = 1;
  }
  Worker();
  for (;;) {
    std::thread t;
    {
      std::lock_guard<std::mutex> lk(workers_mu_);
      if (workers_.empty()) break;
      t = std::move(workers_.back());
      workers_.pop_back();
    }
    t.join();
  }
}

void Fs::Worker() {
  pthread_setname_np(pthread_self(), "rfs-fuse");  // top -H, /proc/PID/task/*/comm
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* raw = nullptr;
  if (posix_memalign(&raw, page, kWorkerBuf + page) != 0) raw = nullptr;
  struct fuse_buf fbuf;
  std::memset(&fbuf, 0, sizeof fbuf);
  if (raw) {
    fbuf.mem = static_cast<char*>(raw) + page - kWriteHeader;
    fbuf.size = kWorkerBuf;
  }  // else libfuse allocates its own (writes then take the aligned copy)
  while (!fuse_session_exited(se_)) {
    {
      std::lock_guard<std::mutex> lk(workers_mu_);
      idle_workers_++;
    }
    int res = fuse_session_receive_buf(se_, &fbuf);
    {
      std::lock_guard<std::mutex> lk(workers_mu_);
      idle_workers_--;
      if (res > 0 && fbuf.mem) {
        auto* in = static_cast<const struct fuse_in_header*>(fbuf.mem);
        bool forget = in->opcode == FUSE_FORGET || in->opcode == FUSE_BATCH_FORGET;
        if (!forget && idle_workers_ == 0 && nworkers_ < opts_.max_threads) {
          try {
            workers_.emplace_back([this] { Worker(); });
            nworkers_++;
          } catch (...) {
            // no thread: the existing ones go on
          }
        }
      }
    }
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      if (res < 0) fuse_session_exit(se_);
      break;
    }
    fuse_session_process_buf(se_, &fbuf);
  }
  if (raw) free(raw);
  else free(fbuf.mem);
}

// ---------------------------------------------------------------- lifecycle

bool Fs::Start(std::string* code, std::string* err) {
  if (StaleMountCleanup(opts_.dir, code, err) < 0) return false;
  // Opened BEFORE mounting over it: the real directory stays reachable through this fd.
  int fd = open(opts_.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) { *code = "ERR_RFS_DIR"; *err = Errno("open " + opts_.dir, errno); return false; }
  root_ = std::make_shared<Inode>();
  root_->fd = fd;
  root_->open_fds = open_fds_;
  (*open_fds_)++;
  {
    // The inode fd cache: half the process's descriptor limit (the other half is for the files
    // the applications open through the mount, each an fd here too, and the rest of the process).
    struct rlimit rl;
    int64_t lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? static_cast<int64_t>(rl.rlim_cur) : 65536;
    max_fds_ = opts_.max_inode_fds > 0 ? static_cast<int64_t>(opts_.max_inode_fds) : std::max<int64_t>(64, std::min<int64_t>(lim / 2, 1 << 20));
  }
  root_->nlookup = 2;
  struct stat st;
  if (fstat(fd, &st) == 0) { root_->dev = st.st_dev; root_->ino = st.st_ino; }

  std::string o = "allow_other,default_permissions,fsname=ha-rfs:" + EscapeOpt(opts_.dir) + ",subtype=ha";
  const char* argv[] = {"ha-rfs", "-o", o.c_str()};
  struct fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  static const struct fuse_lowlevel_ops ops = MakeOps();
  se_ = fuse_session_new(&args, &ops, sizeof ops, this);
  if (!se_) { *code = "ERR_RFS_MOUNT"; *err = "fuse_session_new failed (see stderr)"; return false; }
  if (fuse_session_mount(se_, opts_.dir.c_str()) != 0) {
    fuse_session_destroy(se_);
    se_ = nullptr;
    *code = "ERR_RFS_MOUNT";
    *err = "mounting FUSE over " + opts_.dir + " failed (root and /dev/fuse needed; see stderr)";
    return false;
  }
  mounted_ = true;
  // The loop holds a reference to this Fs until it ends, so that an unmount that must give up
  // waiting for it (a request stuck in the kernel) can leave it running without freeing what it
  // uses; the Fs is then destroyed when the loop ends, possibly on its own thread.
  loop_ = std::thread([this, self = shared_from_this()]() {
    RunWorkers();
    {
      std::lock_guard<std::mutex> lk(done_mu_);
      loop_done_ = true;
    }
    done_cv_.notify_all();
    if (!unmounting_) mounted_ = false;  // unmounted by someone else
    if (!unmounting_) Emit("closed", "ERR_RFS_SESSION_ENDED", "the FUSE session over " + opts_.dir + " ended");
  });
  // The connection's number, for aborting it if an unmount must. From the mount table, else from
  // the mount point's superblock (statx without a request to the file system).
  MountEntry m;
  if (TopMount(opts_.dir, &m) && IsOurFuse(m)) {
    conn_major_ = m.major;
    conn_minor_ = m.minor;
    conn_known_ = true;
  } else {
    conn_known_ = ConnOf(&conn_major_, &conn_minor_);
  }
  return true;
}

// Aborts FUSE connection `id` through the kernel's FUSE control file system
// (<fusectl>/<id>/abort), the only way to end a session whose superblock is still referenced
// elsewhere: a lazily detached mount lives on while a file is open on it, and so does any copy of
// it in a mount namespace made while it was mounted (`ip netns exec`, `unshare -m`, a container
// started then), which an unmount here does not reach where mounts are not shared. Systemd mounts
// fusectl on /sys/fs/fuse/connections at boot; a bare VM or container may not: then (root) a
// thread of our own moves to a mount namespace of its own, mounts it there and writes the abort;
// the namespace, and the mount with it, go when the thread ends: nothing is left behind, nothing
// is seen by other processes. Gone: the connection has ended already (its directory is not there).
namespace {
enum class AbortResult { Aborted, Gone, Failed };
AbortResult AbortFuseConnection(unsigned id, std::string* why) {
  static const char* const kDir = "/sys/fs/fuse/connections";
  constexpr long kFusectlMagic = 0x65735543;
  const std::string path = std::string(kDir) + "/" + std::to_string(id) + "/abort";
  auto write_abort = [&]() {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    int e = fd < 0 ? errno : (write(fd, "1", 1) < 0 ? errno : 0);
    if (fd >= 0) close(fd);
    if (e == 0) return AbortResult::Aborted;
    *why = Errno("abort FUSE connection (" + path + ")", e);
    return e == ENOENT ? AbortResult::Gone : AbortResult::Failed;
  };
  struct statfs sf;
  if (statfs(kDir, &sf) == 0 && static_cast<long>(sf.f_type) == kFusectlMagic) return write_abort();
  AbortResult r = AbortResult::Failed;
  std::thread([&] {
    // CLONE_NEWNS unshares this thread's file system context too, not the process's.
    if (unshare(CLONE_NEWNS) != 0) {
      *why = Errno("abort FUSE connection: the FUSE control file system is not mounted on " + std::string(kDir) + ", and no mount namespace could be made to mount it", errno);
    } else if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
               mount("fusectl", kDir, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      *why = Errno("abort FUSE connection: the FUSE control file system is not mounted on " + std::string(kDir) + ", and mounting it failed", errno);
    } else {
      r = write_abort();
    }
  }).join();
  return r;
}
}  // namespace

bool Fs::ConnOf(unsigned* major, unsigned* minor) {
  struct statx stx;
  if (statx(AT_FDCWD, opts_.dir.c_str(), AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) != 0) return false;
  *major = stx.stx_dev_major;
  *minor = stx.stx_dev_minor;
  return true;
}

// Whether the mount on top of the directory is this session's (not a later interceptor's, not a
// bind over it): by the connection's number; by the mount's name where that number is unknown.
bool Fs::OursOnTop() {
  MountEntry m;
  if (TopMount(opts_.dir, &m)) {
    if (!IsOurFuse(m)) return false;
    return conn_known_ ? m.major == conn_major_ && m.minor == conn_minor_ : m.source == "ha-rfs:" + opts_.dir;
  }
  unsigned ma = 0, mi = 0;
  return conn_known_ && ConnOf(&ma, &mi) && ma == conn_major_ && mi == conn_minor_;
}

std::string Fs::Unmount(bool lazy, int timeout_ms, std::string* code) {
  std::lock_guard<std::mutex> life(life_mu_);
  if (!se_) return "";
  unmounting_ = true;
  std::string result;
  if (mounted_) {
    if (OursOnTop()) {
      if (umount2(opts_.dir.c_str(), 0) != 0) {
        int e = errno;
        if (!lazy) {
          unmounting_ = false;
          *code = e == EBUSY ? "ERR_RFS_BUSY" : "ERR_RFS_UNMOUNT";
          return Errno("umount " + opts_.dir + (e == EBUSY ? " (files are open; use lazy)" : ""), e);
        }
        umount2(opts_.dir.c_str(), MNT_DETACH);
      }
    }
    mounted_ = false;
  }
  // Wait for the session to end (the kernel ends it when the last reference goes); abort the
  // connection after timeout_ms.
  {
    std::unique_lock<std::mutex> lk(done_mu_);
    if (!done_cv_.wait_for(lk, std::chrono::milliseconds(std::max(timeout_ms, 0)), [this] { return loop_done_; })) {
      lk.unlock();
      std::string why;  // why the session is still there, if it stays
      std::string err;
      const AbortResult ar = conn_known_ ? AbortFuseConnection((conn_major_ << 20) | conn_minor_, &err) : AbortResult::Failed;
      if (ar == AbortResult::Aborted) {
        why = "its connection is aborted, but a worker is still busy with a request";
      } else if (ar == AbortResult::Gone) {
        // The kernel has ended the connection already (aborted, or its last mount gone).
        fuse_session_exit(se_);
        why = "its connection is closed, but a worker is still busy with a request";
      } else {
        fuse_session_exit(se_);
        result = conn_known_ ? err : "abort FUSE connection: its number is unknown";
        why = result;
        *code = "ERR_RFS_UNMOUNT";
      }
      lk.lock();
      done_cv_.wait_for(lk, std::chrono::seconds(5), [this] { return loop_done_; });
      if (!loop_done_) {
        // Cannot end it: leave the loop running (it holds its own reference to this Fs) rather
        // than block forever; a later call waits and tries the abort again.
        if (loop_.joinable()) loop_.detach();
        *code = "ERR_RFS_UNMOUNT";
        return "the FUSE session over " + opts_.dir + " did not end (" + why + ")";
      }
    }
  }
  if (loop_.joinable()) {
    // The last reference to this Fs may be the loop's own, dropped as its thread ends.
    if (loop_.get_id() == std::this_thread::get_id()) loop_.detach();
    else loop_.join();
  }
  fuse_session_destroy(se_);
  se_ = nullptr;
  {
    std::lock_guard<std::mutex> lk(table_mu_);
    table_.clear();
  }
  return result;
}

// A large write's record went to the secondary before the local write, which then wrote only
// `done` of its `size` bytes (an error, or a short write: disk full). Called under order_mu_
// right after it: sends what the primary's file holds now from off + done to the end of the
// range (and its size, if the record made the secondary's copy longer), so both copies match
// again before the application hears of the failure. If that cannot be read, the copies may
// differ: the sink is told (Diverged), which gives replication up and leaves the zone, marked
// before the write, to the next resynchronisation. Returns the last seq submitted.
uint64_t Fs::Reconcile(Inode* in, const std::string& path, uint64_t off, size_t size, size_t done, uint64_t seq) {
  reconciled_.fetch_add(1, std::memory_order_relaxed);
  std::string why;
  {
    Pinned pin(this, in);
    int rfd = pin.fd >= 0 ? open(ProcPath(pin.fd).c_str(), O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (rfd < 0 || fstat(rfd, &st) != 0) {
      why = std::string("cannot reopen it to read back: ") + std::strerror(pin.fd < 0 ? pin.err() : errno);
    } else {
      const uint64_t end = off + size, fsize = static_cast<uint64_t>(st.st_size);
      if (fsize < end) {
        Record t;
        t.op = Op::Truncate;
        t.path = path;
        t.length = fsize;
        seq = Submit(std::move(t));
      }
      for (uint64_t from = off + done, to = std::min(end, fsize); from < to;) {
        Record w;
        w.data.resize(static_cast<size_t>(std::min<uint64_t>(to - from, 1u << 20)));
        ssize_t k = pread(rfd, w.data.data(), w.data.size(), static_cast<off_t>(from));
        if (k <= 0) {
          why = std::string("cannot read it back: ") + (k < 0 ? std::strerror(errno) : "end of file");
          break;
        }
        w.data.resize(static_cast<size_t>(k));
        w.op = Op::Write;
        w.path = path;
        w.offset = from;
        w.length = static_cast<uint64_t>(k);
        seq = Submit(std::move(w));
        from += static_cast<uint64_t>(k);
      }
    }
    if (rfd >= 0) close(rfd);
  }
  if (!why.empty()) {
    std::string msg = "the local write of " + std::to_string(size) + " bytes at " + std::to_string(off) + " in " + path +
                      " made only " + std::to_string(done) + " after its record was sent, and the file " + why +
                      ": replication given up, the zone is left to the next resynchronisation";
    opts_.sink->Diverged(msg);
    Emit("error", "ERR_RFS_DIVERGED", msg);
  }
  return seq;
}

int Fs::DirectFd(int fd) {
  if (dio_unsupported_.load(std::memory_order_relaxed)) return -1;
  std::lock_guard<std::mutex> lk(dio_mu_);
  auto it = dio_fds_.find(fd);
  if (it != dio_fds_.end()) return it->second;
  int dfd = open(ProcPath(fd).c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (dfd < 0 && errno == EINVAL) {
    if (!dio_unsupported_.exchange(true))
      Emit("notice", "", "the file system under " + opts_.dir + " refuses O_DIRECT: large writes stay buffered");
  }
  dio_fds_[fd] = dfd < 0 ? -1 : dfd;
  return dfd < 0 ? -1 : dfd;
}

void Fs::CloseDirectFd(int fd) {
  std::lock_guard<std::mutex> lk(dio_mu_);
  auto it = dio_fds_.find(fd);
  if (it == dio_fds_.end()) return;
  if (it->second >= 0) close(it->second);
  dio_fds_.erase(it);
}

InterceptorStats Fs::Stats() const {
  InterceptorStats s;
  for (int i = 0; i < kStatSlots; i++) s.ops[i] = ops_[i].load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_;
  s.bytes_read = bytes_read_;
  s.errors = errors_;
  s.not_replicated = not_replicated_;
  s.unrecorded = unrecorded_;
  s.max_write = max_write_;
  {
    std::lock_guard<std::mutex> lk(const_cast<Fs*>(this)->table_mu_);
    s.inodes = table_.size();
  }
  {
    s.inode_fds = static_cast<uint64_t>(std::max<int64_t>(0, open_fds_->load()));
    s.inode_fds_max = static_cast<uint64_t>(max_fds_);
    s.fd_reopens = fd_reopens_.load();
    s.fd_evictions = fd_evictions_.load();
  }
  s.direct_writes = direct_writes_.load(std::memory_order_relaxed);
  s.aligned_copies = aligned_copies_.load(std::memory_order_relaxed);
  s.reconciled_writes = reconciled_.load(std::memory_order_relaxed);
  s.overlapped_writes = overlapped_writes_.load(std::memory_order_relaxed);
  s.late_local_errors = late_local_errors_.load(std::memory_order_relaxed);
  s.direct_unsupported = dio_unsupported_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace

const char* OpName(int op) {
  static const char* names[] = {"read", "write", "truncate", "fallocate", "create", "mkdir", "mknod", "symlink",
                                "unlink", "rmdir", "rename", "chmod", "chown", "utimens", "setxattr",
                                "removexattr", "link", "fsync", "barrier"};
  if (op >= 0 && op < static_cast<int>(sizeof names / sizeof names[0])) return names[op];
  return nullptr;
}

std::shared_ptr<Interceptor> Interceptor::Mount(const InterceptorOptions& opts, InterceptorEventFn on_event, std::string* code, std::string* err) {
  if (!opts.sink) { *code = "ERR_RFS_ARG"; *err = "no change sink"; return nullptr; }
  auto fs = std::make_shared<Fs>(opts, std::move(on_event));
  if (!fs->Start(code, err)) return nullptr;
  return fs;
}

}  // namespace ha::rfs
