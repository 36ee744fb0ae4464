// Resync / FullSync: see resync.h.
#include "resync.h"

#include <dirent.h>
#include <linux/falloc.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>
#include <unordered_map>

#include "checksum.h"

namespace ha::rfs {
namespace {

constexpr uint64_t kChunk = 1u << 20;
constexpr size_t kDirListPart = 1u << 20;  // names per DirListPart / DirList record (the frame limit is ~4 MiB)
constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

std::string ParentOf(const std::string& p) {
  size_t i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i);
}

int OpenBeneath(int root, const std::string& path, int flags) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = kResolve;
  const char* p = path.empty() ? "." : path.c_str();
  int fd;
  do fd = static_cast<int>(syscall(SYS_openat2, root, p, &how, sizeof how));
  while (fd < 0 && errno == EINTR);
  return fd;
}

// lstat of path under root without following any symlink on the way. 0, or -1 with errno.
int LstatBeneath(int root, const std::string& path, struct stat* st, std::string* linkTarget) {
  if (path.empty()) return fstat(root, st);
  int pfd = OpenBeneath(root, ParentOf(path), O_PATH | O_DIRECTORY);
  if (pfd < 0) return -1;
  size_t i = path.rfind('/');
  std::string base = i == std::string::npos ? path : path.substr(i + 1);
  int rc = fstatat(pfd, base.c_str(), st, AT_SYMLINK_NOFOLLOW);
  if (rc == 0 && S_ISLNK(st->st_mode) && linkTarget) {
    std::vector<char> buf(static_cast<size_t>(st->st_size) + 2 > 4098 ? static_cast<size_t>(st->st_size) + 2 : 4098);
    ssize_t n = readlinkat(pfd, base.c_str(), buf.data(), buf.size());
    if (n < 0) rc = -1;
    else linkTarget->assign(buf.data(), static_cast<size_t>(n));
  }
  int saved = errno;
  close(pfd);
  errno = saved;
  return rc;
}

// ENOENT-like results: the entry is gone (or a component is not a directory / is a symlink now).
bool Gone(int e) { return e == ENOENT || e == ENOTDIR || e == ELOOP || e == EXDEV; }

}  // namespace

class Resyncer {
 public:
  Resyncer(const std::shared_ptr<ReplicationSink>& sink, const ResyncOptions& opts, ResyncControl& ctl)
      : sink_(sink), s_(*sink), opts_(opts), ctl_(ctl), zone_(sink->tracker().zoneBytes()) {}

  ResyncResult Run();

 private:
  using Clock = std::chrono::steady_clock;
  bool Fail(const char* code, const std::string& msg) {
    if (res_.code.empty()) { res_.code = code; res_.message = msg; }
    return false;
  }
  // Under s_.mu_: the sender is still ours and alive.
  bool LiveLocked() {
    if (s_.sender_ != sender_ || !sender_ || sender_->Lost()) return Fail("ERR_RFS_REPL_LOST", "replication was lost during the resynchronisation");
    return true;
  }
  void ForwardLocked(Record&& r) {
    size_t bytes = r.data.size();
    uint64_t seq = sender_->Submit(std::move(r));
    s_.last_fwd_ = seq;
    last_ = seq;
    res_.records++;
    if (bytes) {
      window_.push_back({seq, bytes});
      inflight_ += bytes;
      res_.bytesSent += bytes;
    }
  }
  bool SyncEntryLocked(const std::string& path, const struct stat& st, const std::string& target) {
    Record r;
    r.op = Op::SyncEntry;
    r.path = path;
    r.mode = st.st_mode;
    r.uid = st.st_uid;
    r.gid = st.st_gid;
    r.length = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
    r.atime = {static_cast<int64_t>(st.st_atim.tv_sec), static_cast<int64_t>(st.st_atim.tv_nsec)};
    r.mtime = {static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<int64_t>(st.st_mtim.tv_nsec)};
    r.rdev = st.st_rdev;
    if (S_ISLNK(st.st_mode)) r.path2 = target;
    ForwardLocked(std::move(r));
    return true;
  }
  // Lists a directory, sends its DirList, and (full) adds its entries to the work list.
  bool DirListLocked(const std::string& path, bool full) {
    int fd = OpenBeneath(s_.root_fd_, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) {
      if (Gone(errno)) return true;
      return Fail("ERR_RFS_REPL_IO", "cannot list '" + path + "': " + strerror(errno));
    }
    DIR* d = fdopendir(fd);
    if (!d) { close(fd); return Fail("ERR_RFS_REPL_IO", "cannot list '" + path + "': " + strerror(errno)); }
    Record r;
    r.op = Op::DirList;
    r.path = path;
    errno = 0;
    while (struct dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      size_t n = std::strlen(e->d_name);
      r.data.insert(r.data.end(), e->d_name, e->d_name + n + 1);
      if (full) {
        std::string child = path.empty() ? std::string(e->d_name) : path + "/" + e->d_name;
        auto& w = work_[child];
        if (!w.full) {
          w.full = true;
          total_entries_++;
        }
      }
    }
    closedir(d);
    // A long listing: DirListParts of at most kDirListPart bytes (cut after a name), then the
    // DirList with the rest, back to back under the mutex. Names, not file data: not in bytesSent.
    size_t start = 0;
    while (r.data.size() - start > kDirListPart) {
      size_t cut = start + kDirListPart;
      while (cut > start && r.data[cut - 1] != 0) cut--;
      if (cut == start) break;  // cannot happen (names are at most 255 bytes)
      Record part;
      part.op = Op::DirListPart;
      part.path = path;
      part.data.assign(r.data.begin() + static_cast<std::ptrdiff_t>(start), r.data.begin() + static_cast<std::ptrdiff_t>(cut));
      start = cut;
      SubmitNamesLocked(std::move(part));
    }
    if (start > 0) r.data.erase(r.data.begin(), r.data.begin() + static_cast<std::ptrdiff_t>(start));
    SubmitNamesLocked(std::move(r));
    return true;
  }
  void SubmitNamesLocked(Record&& r) {
    size_t bytes = r.data.size();
    uint64_t seq = sender_->Submit(std::move(r));
    s_.last_fwd_ = seq;
    last_ = seq;
    res_.records++;
    window_.push_back({seq, bytes});
    inflight_ += bytes;
  }
  bool WaitWindow(uint64_t limit) {
    while (inflight_ > limit && !window_.empty()) {
      auto [seq, bytes] = window_.front();
      // Applied, not only received: the copy does not run ahead of what the secondary has really
      // written (what an interruption would lose), and its progress can be kept (ClearDone).
      if (!sender_->WaitApplied(seq)) return Fail("ERR_RFS_REPL_LOST", "replication was lost during the resynchronisation");
      window_.pop_front();
      inflight_ -= bytes;
    }
    return true;
  }
  // Clears the finished entries the secondary acknowledged (batched unless force).
  void ClearDone(bool force) {
    if (opts_.full) return;  // a full sync clears everything at the end (ClearUpTo)
    if (done_.empty()) return;
    auto now = Clock::now();
    if (barrier_ == 0 && done_.back().second > durable_) {
      // A barrier right after a finished entry (one in flight at a time), so that what was
      // copied becomes durable on the secondary, and forgettable here, soon after it is applied.
      Record b;
      b.op = Op::Barrier;
      barrier_ = sender_->Submit(std::move(b));
    }
    if (!force && done_.size() < 64 && now - last_clear_ < std::chrono::milliseconds(100)) return;
    last_clear_ = now;
    // Only what the secondary has applied AND made durable may be forgotten (in 'received' mode an
    // ack means it is in the receiver's memory, which a SIGKILL of the secondary loses; applied
    // data is in its page cache, which a power loss loses): entries submitted before a barrier
    // the secondary acknowledged as applied (it syncs its file system for a barrier).
    const uint64_t applied = sender_->Stats().applied;
    if (barrier_ != 0 && applied >= barrier_) { durable_ = barrier_ - 1; barrier_ = 0; }
    if (barrier_ == 0 && done_.back().second > durable_) {
      Record b;
      b.op = Op::Barrier;
      barrier_ = sender_->Submit(std::move(b));
    }
    size_t ready = 0;
    while (ready < done_.size() && done_[ready].second <= durable_) ready++;
    if (ready == 0) return;
    std::vector<std::string> paths;
    paths.reserve(ready);
    for (size_t i = 0; i < ready; i++) {
      paths.push_back(std::move(done_.front().first));
      done_.pop_front();
    }
    DirtyStatus st = s_.tracker().ClearEntries(paths, checkpoint_);
    if (!st.ok()) Fail(st.code.c_str(), st.message);
    else kept_ += paths.size();
  }
  void Progress(bool force) {
    if (!ctl_.onProgress) return;
    auto now = Clock::now();
    if (!force && now - last_progress_ < std::chrono::milliseconds(opts_.progressIntervalMs)) return;
    last_progress_ = now;
    ResyncProgress p;
    p.bytesDone = res_.bytesSent + res_.bytesMatched;
    p.bytesTotal = std::max(total_bytes_, p.bytesDone);
    p.entriesDone = res_.entries;
    p.entriesTotal = std::max(total_entries_, res_.entries);
    p.entriesKept = kept_;
    double s = std::chrono::duration<double>(now - t0_).count();
    p.rate = s > 0 ? static_cast<double>(p.bytesDone) / s : 0;
    p.etaS = p.rate > 0 ? static_cast<double>(p.bytesTotal - p.bytesDone) / p.rate : -1;
    ctl_.onProgress(p);
  }
  void Throttle() {
    if (!opts_.maxBytesPerSec) return;
    double s = std::chrono::duration<double>(Clock::now() - t0_).count();
    double due = static_cast<double>(res_.bytesSent) / static_cast<double>(opts_.maxBytesPerSec);
    if (due > s) std::this_thread::sleep_for(std::chrono::duration<double>(due - s));
  }
  bool Entry(const std::string& path, ReplicationSink::WorkItem item, std::unique_lock<std::mutex>& lk);
  bool CopyRanges(const std::string& path, std::vector<std::pair<uint64_t, uint64_t>> byteRanges, bool scanHoles);
  bool CompareCopy(const std::string& path, const std::vector<BlockSum>& sums, ino_t ino, bool& sent);
  bool GetManifest();

 public:
  static VerifyResult Verify(const std::shared_ptr<ReplicationSink>& sink, int timeoutMs);

 private:

  std::shared_ptr<ReplicationSink> sink_;
  ReplicationSink& s_;
  ResyncOptions opts_;
  ResyncControl& ctl_;
  uint64_t zone_;
  std::shared_ptr<Sender> sender_;
  uint64_t checkpoint_ = 0;
  ReplicationSink::WorkMap work_;
  std::deque<std::pair<uint64_t, size_t>> window_;
  uint64_t inflight_ = 0, last_ = 0;
  uint64_t barrier_ = 0;  // a barrier in flight (0: none)
  uint64_t durable_ = 0;  // every seq <= durable_ is applied and synced on the secondary
  uint64_t kept_ = 0;     // entries cleared from the tracker (durable there): see ResyncProgress
  std::deque<std::pair<std::string, uint64_t>> done_;
  uint64_t total_bytes_ = 0, total_entries_ = 0, deferred0_ = 0;
  Clock::time_point t0_, last_progress_, last_clear_;
  ResyncResult res_;
  bool useSums_ = false;
  uint64_t sumsId_ = 0;
  std::unordered_map<std::string, ManifestEntry> manifest_;
};

bool Resyncer::CopyRanges(const std::string& path, std::vector<std::pair<uint64_t, uint64_t>> ranges, bool scanHoles) {
  bool any = false;
  for (auto [start, end] : ranges) {
    uint64_t off = start;
    while (off < end) {
      if (ctl_.abort.load()) { res_.aborted = true; return Fail("ERR_RFS_REPL_ABORTED", "the resynchronisation was aborted"); }
      if (!WaitWindow(opts_.windowBytes)) return false;
      ClearDone(false);
      if (!res_.code.empty()) return false;
      Throttle();
      bool stop = false;
      {
        std::lock_guard<std::mutex> lk(s_.mu_);
        if (!LiveLocked()) return false;
        // Opened per chunk under the mutex: the bytes are the path's current bytes, ordered
        // before any live change still waiting for the mutex.
        int fd = OpenBeneath(s_.root_fd_, path, O_RDONLY | O_NOFOLLOW);
        if (fd < 0) {
          if (Gone(errno)) return any || true;
          return Fail("ERR_RFS_REPL_IO", "cannot open '" + path + "': " + strerror(errno));
        }
        struct stat st;
        fstat(fd, &st);
        uint64_t size = static_cast<uint64_t>(st.st_size);
        uint64_t lim = std::min(end, size);
        // Holes are not read: a hole here is a hole there (punched, in case the secondary had
        // bytes there; a no-op on a new file).
        if (off < lim) {
          off_t d = lseek(fd, static_cast<off_t>(off), SEEK_DATA);
          uint64_t dataAt = d < 0 ? lim : std::min<uint64_t>(static_cast<uint64_t>(d), lim);  // ENXIO: a hole to the end
          if (dataAt > off) {
            Record p;
            p.op = Op::Fallocate;
            p.path = path;
            p.flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
            p.offset = off;
            p.length = dataAt - off;
            ForwardLocked(std::move(p));
            res_.holesPunched++;
            off = dataAt;
          }
        }
        (void)scanHoles;
        if (off >= lim) {
          stop = true;
        } else {
          uint64_t n = std::min<uint64_t>(kChunk - (off % kChunk), lim - off);
          {
            off_t h = lseek(fd, static_cast<off_t>(off), SEEK_HOLE);
            if (h > 0 && static_cast<uint64_t>(h) > off) n = std::min<uint64_t>(n, static_cast<uint64_t>(h) - off);
          }
          Record r;
          r.op = Op::Write;
          r.path = path;
          r.offset = off;
          r.data.resize(n);
          ssize_t got;
          do got = pread(fd, r.data.data(), n, static_cast<off_t>(off));
          while (got < 0 && errno == EINTR);
          if (got < 0) {
            int e = errno;
            close(fd);
            return Fail("ERR_RFS_REPL_IO", "cannot read '" + path + "': " + strerror(e));
          }
          if (got == 0) {
            stop = true;
          } else {
            r.data.resize(static_cast<size_t>(got));
            ForwardLocked(std::move(r));
            any = true;
            off += static_cast<uint64_t>(got);
          }
        }
        close(fd);
      }
      Progress(false);
      if (stop) break;
    }
  }
  if (any) res_.files++;
  return true;
}

// Full sync with sums: the secondary's manifest (see resync.h). False only when the sender is
// lost; another failure leaves useSums_ false (plain full copy) with res_.sumsError.
bool Resyncer::GetManifest() {
  auto t = Clock::now();
  std::vector<uint8_t> data;
  std::string err;
  bool ok = sender_->WaitReply(sumsId_, data, err, opts_.sumsTimeoutMs);
  res_.sumsMs = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  if (ok) ok = DecodeManifest(data.data(), data.size(), manifest_, err);
  if (ok) return true;
  useSums_ = false;
  manifest_.clear();
  res_.sumsError = err;
  if (sender_->Lost()) return Fail("ERR_RFS_REPL_LOST", "replication was lost during the resynchronisation");
  return true;
}

bool Resyncer::CompareCopy(const std::string& path, const std::vector<BlockSum>& sums, ino_t ino, bool& sent) {
  const uint64_t B = kSumBlock;
  uint64_t off = 0;
  bool compare = true;
  bool any = false;
  std::vector<uint8_t> buf(kChunk);
  while (true) {
    if (ctl_.abort.load()) { res_.aborted = true; return Fail("ERR_RFS_REPL_ABORTED", "the resynchronisation was aborted"); }
    if (!WaitWindow(opts_.windowBytes)) return false;
    Throttle();
    bool stop = false;
    {
      std::lock_guard<std::mutex> lk(s_.mu_);
      if (!LiveLocked()) return false;
      int fd = OpenBeneath(s_.root_fd_, path, O_RDONLY | O_NOFOLLOW);
      if (fd < 0) {
        if (Gone(errno)) break;
        return Fail("ERR_RFS_REPL_IO", "cannot open '" + path + "': " + strerror(errno));
      }
      struct stat st;
      fstat(fd, &st);
      if (st.st_ino != ino) compare = false;  // replaced meanwhile: copy the rest whole
      uint64_t size = static_cast<uint64_t>(st.st_size);
      if (off >= size) {
        stop = true;
      } else {
        uint64_t end = std::min(off + kChunk, size);
        uint64_t dataAt = 0;
        bool dataKnown = false;
        uint64_t runStart = 0, runEnd = 0;  // a run of differing data blocks [runStart, runEnd)
        auto flush = [&]() {
          if (runEnd <= runStart) return;
          Record r;
          r.op = Op::Write;
          r.path = path;
          r.offset = runStart;
          r.data.assign(buf.begin() + static_cast<std::ptrdiff_t>(runStart - off), buf.begin() + static_cast<std::ptrdiff_t>(runEnd - off));
          ForwardLocked(std::move(r));
          any = true;
          runStart = runEnd = 0;
        };
        for (uint64_t boff = off; boff < end; boff += B) {
          uint64_t b = boff / B;
          size_t n = static_cast<size_t>(std::min<uint64_t>(B, size - boff));
          if (!dataKnown || dataAt < boff) {
            off_t d = lseek(fd, static_cast<off_t>(boff), SEEK_DATA);
            dataAt = d < 0 ? UINT64_MAX : static_cast<uint64_t>(d);
            dataKnown = true;
          }
          bool hole = dataAt >= boff + n;
          BlockSum sum;
          if (hole) {
            sum = ZeroSum(n);
          } else {
            uint8_t* p = buf.data() + (boff - off);
            size_t got = 0;
            while (got < n) {
              ssize_t r = pread(fd, p + got, n - got, static_cast<off_t>(boff + got));
              if (r < 0) {
                if (errno == EINTR) continue;
                int e = errno;
                close(fd);
                return Fail("ERR_RFS_REPL_IO", "cannot read '" + path + "': " + strerror(e));
              }
              if (r == 0) break;
              got += static_cast<size_t>(r);
            }
            if (got < n) std::memset(p + got, 0, n - got);
            sum = HashBlock(p, n);
          }
          bool same = compare && b < sums.size() && sums[b] == sum;
          if (same) {
            flush();
            if (!hole) res_.bytesMatched += n;
            continue;
          }
          if (hole) {
            flush();
            if (b < sums.size()) {  // the secondary had bytes here (beyond its old size it is a hole already)
              Record r;
              r.op = Op::Fallocate;
              r.path = path;
              r.flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
              r.offset = boff;
              r.length = n;
              ForwardLocked(std::move(r));
              res_.holesPunched++;
              any = true;
            }
            continue;
          }
          if (runEnd != boff) { flush(); runStart = boff; }
          runEnd = boff + n;
        }
        flush();
        off = end;
      }
      close(fd);
    }
    Progress(false);
    if (stop) break;
  }
  if (any) res_.files++;
  sent = any;
  return true;
}

// Called with lk (s_.mu_) held: the entry was just taken from the work list under it, so no live
// change to it was forwarded in between. Returns with lk held or not.
bool Resyncer::Entry(const std::string& path, ReplicationSink::WorkItem item, std::unique_lock<std::mutex>& lk) {
  struct stat st;
  std::string target;
  bool isReg = false;
  bool metaSame = false;
  std::vector<BlockSum> sums;
  bool haveSums = false;
  {
    if (!LiveLocked()) return false;
    ManifestEntry m;
    bool inManifest = false;
    if (useSums_) {
      auto node = manifest_.extract(path);  // compared once (a second pass copies it whole)
      if (!node.empty()) { m = std::move(node.mapped()); inManifest = true; }
    }
    if (LstatBeneath(s_.root_fd_, path, &st, &target) < 0) {
      if (!Gone(errno)) return Fail("ERR_RFS_REPL_IO", "cannot stat '" + path + "': " + strerror(errno));
      // Gone here: its parent's DirList (planned with it) removes it on the secondary.
      return true;
    }
    if (S_ISDIR(st.st_mode) && !item.zones.empty()) item.full = true;  // a moved directory: whole subtree
    if (inManifest && (m.mode & S_IFMT) == (st.st_mode & S_IFMT)) {
      metaSame = m.mode == st.st_mode && m.uid == st.st_uid && m.gid == st.st_gid;
      if (S_ISREG(st.st_mode))
        metaSame = metaSame && m.size == static_cast<uint64_t>(st.st_size) && m.mtimeSec == st.st_mtim.tv_sec &&
                   m.mtimeNsec == static_cast<uint32_t>(st.st_mtim.tv_nsec);
      if (S_ISLNK(st.st_mode)) metaSame = metaSame && m.target == target;
      if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) metaSame = metaSame && m.rdev == st.st_rdev;
      if (S_ISREG(st.st_mode)) { sums = std::move(m.sums); haveSums = true; }
    }
    if (!metaSame) SyncEntryLocked(path, st, target);
    if (S_ISDIR(st.st_mode) && (item.meta || item.full)) {
      if (!DirListLocked(path, item.full)) return false;
    }
    isReg = S_ISREG(st.st_mode);
  }
  lk.unlock();
  if (!isReg) return true;
  bool sent = false;
  if (item.full && haveSums) {
    if (!CompareCopy(path, sums, st.st_ino, sent)) return false;
    if (!sent && metaSame) { res_.filesIdentical++; return true; }
  } else {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (item.full) {
      ranges.push_back({0, UINT64_MAX});
    } else {
      std::sort(item.zones.begin(), item.zones.end());
      for (auto [zs, ze] : item.zones) {
        uint64_t bs = zs > UINT64_MAX / zone_ ? UINT64_MAX : zs * zone_;
        uint64_t be = ze > UINT64_MAX / zone_ ? UINT64_MAX : ze * zone_;
        if (!ranges.empty() && bs <= ranges.back().second) ranges.back().second = std::max(ranges.back().second, be);
        else ranges.push_back({bs, be});
      }
    }
    if (ranges.empty()) return true;
    if (!CopyRanges(path, ranges, item.full)) return false;
  }
  // Times again (the writes moved the secondary's mtime); size and mode at the same time.
  std::lock_guard<std::mutex> g(s_.mu_);
  if (!LiveLocked()) return false;
  if (LstatBeneath(s_.root_fd_, path, &st, &target) == 0) SyncEntryLocked(path, st, target);
  return true;
}

ResyncResult Resyncer::Run() {
  t0_ = Clock::now();
  if (s_.resync_running_.exchange(true)) {
    Fail("ERR_RFS_REPL_BUSY", "a resynchronisation is already running");
    return res_;
  }
  struct Guard {
    ReplicationSink& s;
    ~Guard() {
      std::lock_guard<std::mutex> lk(s.mu_);
      s.work_ = nullptr;
      s.resync_running_ = false;
    }
  } guard{s_};

  // Checkpoint first: marks made from now on (epoch > checkpoint) survive this pass's clears.
  checkpoint_ = s_.tracker().Checkpoint();
  {
    std::lock_guard<std::mutex> lk(s_.mu_);
    if (!s_.sender_ || s_.sender_->Lost()) {
      Fail("ERR_RFS_REPL_ALONE", "no live sender attached (attachSender first)");
      return res_;
    }
    sender_ = s_.sender_;
    s_.synced_ = false;
    deferred0_ = s_.deferred_;
    if (opts_.full) {
      work_[""].full = true;
      if (opts_.sums) {
        // Ordered after everything forwarded so far; nothing more is forwarded for the tree
        // (all pending) until entries are taken from the work list, after the manifest came.
        Record r;
        r.op = Op::Sums;
        ForwardLocked(std::move(r));
        sumsId_ = last_;
        useSums_ = true;
      }
    } else {
      std::vector<DirtyEntry> snap = s_.tracker().Snapshot();
      for (const auto* list : {&snap, &opts_.extra}) {
        for (const DirtyEntry& e : *list) {
          auto& w = work_[e.path];
          w.meta = w.meta || e.meta;
          w.zones.insert(w.zones.end(), e.zones.begin(), e.zones.end());
          if (e.meta) {
            // Its ancestors' listings: a gone entry is removed by its parent's DirList.
            std::string p = e.path;
            while (!p.empty()) {
              p = ParentOf(p);
              work_[p].meta = true;
            }
          }
        }
      }
    }
    s_.work_ = &work_;
  }
  // Estimates for progress.
  total_entries_ = work_.size();
  {
    std::lock_guard<std::mutex> lk(s_.mu_);
    for (auto& [path, w] : work_) {
      if (w.zones.empty() && !w.full) continue;
      struct stat st;
      if (LstatBeneath(s_.root_fd_, path, &st, nullptr) < 0 || !S_ISREG(st.st_mode)) continue;
      uint64_t size = static_cast<uint64_t>(st.st_size);
      if (w.full) { total_bytes_ += std::min<uint64_t>(size, static_cast<uint64_t>(st.st_blocks) * 512); continue; }
      for (auto [zs, ze] : w.zones) {
        uint64_t bs = zs * zone_, be = ze > size / zone_ + 1 ? size : std::min(size, ze * zone_);
        if (be > bs) total_bytes_ += be - bs;
      }
    }
  }
  Progress(true);
  if (useSums_) GetManifest();

  while (res_.code.empty()) {
    std::string path;
    ReplicationSink::WorkItem item;
    std::unique_lock<std::mutex> lk(s_.mu_);
    if (work_.empty()) break;
    auto it = work_.begin();
    path = it->first;
    item = std::move(it->second);
    work_.erase(it);
    if (ctl_.abort.load()) { res_.aborted = true; Fail("ERR_RFS_REPL_ABORTED", "the resynchronisation was aborted"); break; }
    bool ok = Entry(path, std::move(item), lk);
    if (lk.owns_lock()) lk.unlock();
    if (!ok) break;
    res_.entries++;
    done_.emplace_back(path, last_);
    ClearDone(false);
    if (!res_.code.empty()) break;
    Progress(false);
  }
  if (res_.code.empty() && last_ > 0) {
    // A final barrier: everything sent is applied and synced on the secondary before the marks go.
    Record b;
    b.op = Op::Barrier;
    uint64_t seq = sender_->Submit(std::move(b));
    if (!sender_->WaitApplied(seq)) Fail("ERR_RFS_REPL_LOST", "replication was lost during the resynchronisation");
    else { durable_ = seq - 1; barrier_ = 0; }
  }
  if (res_.code.empty()) {
    if (opts_.full) {
      DirtyStatus st = s_.tracker().ClearUpTo(checkpoint_);
      if (!st.ok()) Fail(st.code.c_str(), st.message);
    } else {
      ClearDone(true);
    }
  } else if (!opts_.full) {
    // What was acknowledged before the failure is done: keep that progress.
    ClearDone(true);
  }
  {
    std::lock_guard<std::mutex> lk(s_.mu_);
    res_.deferred = s_.deferred_ - deferred0_;
    if (res_.code.empty() && s_.sender_ == sender_ && !sender_->Lost()) s_.synced_ = true;
  }
  res_.ok = res_.code.empty();
  res_.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
  Progress(true);
  return res_;
}

ResyncResult RunResync(const std::shared_ptr<ReplicationSink>& sink, const ResyncOptions& opts, ResyncControl& ctl) {
  Resyncer r(sink, opts, ctl);
  return r.Run();
}

namespace {
// The end of a verify: counts `mine` (entries, bytes of regular files), compares it with `theirs`.
VerifyResult Compared(VerifyResult res, const std::unordered_map<std::string, ManifestEntry>& mine,
                      const std::unordered_map<std::string, ManifestEntry>& theirs, std::chrono::steady_clock::time_point t0) {
  for (const auto& [k, e] : mine) {
    res.entries++;
    if (S_ISREG(e.mode)) res.bytes += e.size;
  }
  res.peerEntries = theirs.size();
  res.differences = CompareManifests(mine, theirs);
  res.ok = true;
  res.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return res;
}
}  // namespace

VerifyResult Resyncer::Verify(const std::shared_ptr<ReplicationSink>& sink, int timeoutMs) {
  VerifyResult res;
  auto t0 = Clock::now();
  ReplicationSink& s = *sink;
  std::shared_ptr<Sender> sender;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lk(s.mu_);
    if (!s.sender_ || s.sender_->Lost()) {
      res.code = "ERR_RFS_REPL_ALONE";
      res.message = "no live sender attached: there is no secondary to compare with";
      return res;
    }
    if (s.resync_running_.load()) {
      res.code = "ERR_RFS_REPL_BUSY";
      res.message = "a resynchronisation is running: verify once it is done";
      return res;
    }
    sender = s.sender_;
    Record r;
    r.op = Op::Sums;
    id = sender->Submit(std::move(r));
    s.last_fwd_ = id;
  }
  // Both manifests at the same time: the secondary's once everything before the request is applied.
  std::unordered_map<std::string, ManifestEntry> local, peer;
  std::string err = BuildManifest(s.root_fd_, [&](ManifestEntry&& e) { std::string k = e.path; local.emplace(std::move(k), std::move(e)); });
  if (!err.empty()) {
    res.code = "ERR_RFS_REPL_IO";
    res.message = "reading the local copy: " + err;
    return res;
  }
  std::vector<uint8_t> data;
  if (!sender->WaitReply(id, data, err, timeoutMs) || !DecodeManifest(data.data(), data.size(), peer, err)) {
    res.code = sender->Lost() ? "ERR_RFS_REPL_LOST" : "ERR_RFS_REPL_VERIFY";
    res.message = err;
    return res;
  }
  return Compared(std::move(res), local, peer, t0);
}

VerifyResult RunVerify(const std::shared_ptr<ReplicationSink>& sink, int timeoutMs) { return Resyncer::Verify(sink, timeoutMs); }

VerifyResult CompareDirs(const std::string& a, const std::string& b) {
  VerifyResult res;
  auto t0 = std::chrono::steady_clock::now();
  std::unordered_map<std::string, ManifestEntry> ma, mb;
  for (auto [dir, m] : {std::pair{&a, &ma}, std::pair{&b, &mb}}) {
    int fd = open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      res.code = "ERR_RFS_VERIFY_DIR";
      res.message = "cannot open directory " + *dir + ": " + strerror(errno);
      return res;
    }
    std::string err = BuildManifest(fd, [m = m](ManifestEntry&& e) { std::string k = e.path; m->emplace(std::move(k), std::move(e)); });
    close(fd);
    if (!err.empty()) {
      res.code = "ERR_RFS_REPL_IO";
      res.message = *dir + ": " + err;
      return res;
    }
  }
  return Compared(std::move(res), ma, mb, t0);
}

}  // namespace ha::rfs
