// Persistent dirty tracking: see dirty.h for the model and the on-disk layout.
#include "dirty.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace ha::rfs {
namespace {

constexpr char kLogMagic[8] = {'H', 'A', 'D', 'L', 'O', 'G', '0', '1'};
constexpr char kSnapMagic[8] = {'H', 'A', 'D', 'S', 'N', 'P', '0', '1'};
constexpr size_t kLogHeader = 8 + 8 + 8 + 4;   // magic, gen, zoneBytes, crc
constexpr uint32_t kMaxFrame = 16u << 20;        // batches are cut at record boundaries below this
constexpr uint32_t kMaxClearRanges = 65536;      // ranges per clear record
constexpr uint64_t kPrealloc = 1u << 20;         // the log grows by zero-filled chunks

enum RecType : uint8_t { kMarkData = 1, kMarkMeta = 2, kRename = 3, kUnlink = 4, kClearRanges = 5, kClearAll = 6 };

// ---- CRC32C (Castagnoli): SSE4.2 instruction when available, table otherwise ----
uint32_t crc_table[8][256];
bool crc_hw = false;
struct CrcInit {
  CrcInit() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
      for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
  }
} crc_init;

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t CrcHw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) { uint64_t v; std::memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

uint32_t Crc32c(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t crc = 0xFFFFFFFFu;
#if defined(__x86_64__)
  if (crc_hw) return CrcHw(crc, p, n) ^ 0xFFFFFFFFu;
#endif
  while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
  return crc ^ 0xFFFFFFFFu;
}

// ---- little-endian encoding ----
void PutU8(std::string& s, uint8_t v) { s.push_back(static_cast<char>(v)); }
void PutU32(std::string& s, uint32_t v) { char b[4]; std::memcpy(b, &v, 4); s.append(b, 4); }
void PutU64(std::string& s, uint64_t v) { char b[8]; std::memcpy(b, &v, 8); s.append(b, 8); }
void PutStr(std::string& s, const std::string& v) { PutU32(s, static_cast<uint32_t>(v.size())); s.append(v); }

struct Reader {
  const uint8_t* p;
  size_t n;
  bool ok = true;
  bool Need(size_t k) { if (!ok || n < k) { ok = false; return false; } return true; }
  uint8_t U8() { if (!Need(1)) return 0; uint8_t v = *p; p++; n--; return v; }
  uint32_t U32() { if (!Need(4)) return 0; uint32_t v; std::memcpy(&v, p, 4); p += 4; n -= 4; return v; }
  uint64_t U64() { if (!Need(8)) return 0; uint64_t v; std::memcpy(&v, p, 8); p += 8; n -= 8; return v; }
  std::string Str() {
    uint32_t len = U32();
    if (!Need(len)) return {};
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len; n -= len;
    return s;
  }
};

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }
DirtyStatus IoErr(const std::string& what) { return DirtyStatus::Err("ERR_RFS_DIRTY_IO", Errno(what)); }

bool WriteAll(int fd, const void* buf, size_t n, uint64_t off) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) { if (errno == EINTR) continue; return false; }
    if (w == 0) { errno = EIO; return false; }
    p += w; n -= static_cast<size_t>(w); off += static_cast<uint64_t>(w);
  }
  return true;
}

bool ReadFile(const std::string& path, std::string* out, bool* missing) {
  *missing = false;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) { if (errno == ENOENT) *missing = true; return false; }
  struct stat st;
  if (fstat(fd, &st) < 0) { int e = errno; close(fd); errno = e; return false; }
  out->resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out->size()) {
    ssize_t r = pread(fd, &(*out)[got], out->size() - got, static_cast<off_t>(got));
    if (r < 0) { if (errno == EINTR) continue; int e = errno; close(fd); errno = e; return false; }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out->resize(got);
  close(fd);
  return true;
}

bool FsyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  int r = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return r == 0;
}

bool MkdirP(const std::string& dir) {
  if (dir.empty()) return true;
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) { if (S_ISDIR(st.st_mode)) return true; errno = ENOTDIR; return false; }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !MkdirP(dir.substr(0, slash))) return false;
  if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return false;
  return true;
}

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// Calls fn(it) for `base` itself and every key below it (keys "base/..."); fn returns the next
// iterator (so it may erase).
template <typename Map, typename Fn>
void ForSubtree(Map& m, const std::string& base, Fn fn) {
  auto it = m.find(base);
  if (it != m.end()) fn(it);
  const std::string lo = base + "/";
  for (it = m.lower_bound(lo); it != m.end() && it->first.compare(0, lo.size(), lo) == 0;) it = fn(it);
}

std::string LogName(const std::string& dir, uint64_t gen) { return dir + "/log." + std::to_string(gen); }

std::string EncodeFrame(const std::string& payload) {
  std::string f;
  f.reserve(payload.size() + 8);
  PutU32(f, static_cast<uint32_t>(payload.size()));
  PutU32(f, Crc32c(payload.data(), payload.size()));
  f.append(payload);
  return f;
}

std::string LogHeader(uint64_t gen, uint64_t zone) {
  std::string h(kLogMagic, 8);
  PutU64(h, gen);
  PutU64(h, zone);
  PutU32(h, Crc32c(h.data(), h.size()));
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Open / replay

DirtyStatus DirtyTracker::Open(const std::string& dir, uint64_t zoneBytes, std::shared_ptr<DirtyTracker>* out) {
  if (dir.empty()) return DirtyStatus::Err("ERR_RFS_DIRTY_ARG", "dirty tracker: empty state directory");
  if (zoneBytes < 4096 || zoneBytes > (1ull << 30) || (zoneBytes & (zoneBytes - 1)) != 0)
    return DirtyStatus::Err("ERR_RFS_DIRTY_ARG", "dirty tracker: zoneBytes must be a power of two from 4096 to 1 GiB, got " + std::to_string(zoneBytes));
  std::shared_ptr<DirtyTracker> t(new DirtyTracker());
  t->dir_ = dir;
  t->zone_bytes_ = zoneBytes;
  if (!MkdirP(dir)) return IoErr("dirty tracker: cannot create state directory " + dir);
  t->lock_fd_ = open((dir + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (t->lock_fd_ < 0) return IoErr("dirty tracker: " + dir + "/LOCK");
  if (flock(t->lock_fd_, LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) return DirtyStatus::Err("ERR_RFS_DIRTY_LOCKED", "dirty tracker: " + dir + " is already open (by this or another process)");
    return IoErr("dirty tracker: flock " + dir + "/LOCK");
  }
  DirtyStatus s = t->Replay();
  if (!s.ok()) { t->closed_ = true; return s; }
  *out = std::move(t);
  return DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::Replay() {
  // 1. Snapshot.
  std::string snap;
  bool missing = false;
  const std::string snap_path = dir_ + "/snapshot";
  gen_ = 0;
  if (!ReadFile(snap_path, &snap, &missing)) {
    if (!missing) return IoErr("dirty tracker: read " + snap_path);
  } else {
    const std::string where = "dirty tracker: snapshot " + snap_path;
    if (snap.size() < 8 + 8 * 4 + 4 || std::memcmp(snap.data(), kSnapMagic, 8) != 0)
      return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " has no valid header");
    uint32_t crc;
    std::memcpy(&crc, snap.data() + snap.size() - 4, 4);
    if (Crc32c(snap.data(), snap.size() - 4) != crc) return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " fails its checksum");
    Reader r{reinterpret_cast<const uint8_t*>(snap.data()) + 8, snap.size() - 12};
    gen_ = r.U64();
    uint64_t zone = r.U64();
    uint64_t epoch = r.U64();
    uint64_t count = r.U64();
    if (zone != zone_bytes_)
      return DirtyStatus::Err("ERR_RFS_DIRTY_ZONE", "dirty tracker: " + dir_ + " was created with zoneBytes " + std::to_string(zone) + ", opened with " + std::to_string(zone_bytes_));
    epoch_ = std::max<uint64_t>(epoch_, epoch);
    auto hint = entries_.end();
    for (uint64_t i = 0; i < count && r.ok; i++) {
      std::string path = r.Str();
      Entry e;
      e.meta_epoch = r.U64();
      uint32_t nr = r.U32();
      if (nr > 0) e.zones.reset(new std::map<uint64_t, Range>());
      for (uint32_t k = 0; k < nr && r.ok; k++) {
        uint64_t s = r.U64(), en = r.U64(), ep = r.U64();
        e.zones->emplace_hint(e.zones->end(), s, Range{en, ep, 0});
        epoch_ = std::max(epoch_, ep);
      }
      epoch_ = std::max(epoch_, e.meta_epoch);
      hint = entries_.emplace_hint(hint, std::move(path), std::move(e));
    }
    if (!r.ok || r.n != 0) return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " is truncated or malformed");
    snapshot_bytes_ = snap.size();
  }

  // 2. Logs: gen_, gen_+1, ... (older ones are folded into the snapshot and removed).
  std::vector<uint64_t> gens;
  DIR* d = opendir(dir_.c_str());
  if (!d) return IoErr("dirty tracker: list " + dir_);
  while (struct dirent* de = readdir(d)) {
    const char* n = de->d_name;
    if (std::strncmp(n, "log.", 4) != 0) continue;
    char* end = nullptr;
    unsigned long long g = std::strtoull(n + 4, &end, 10);
    if (end && *end == 0 && end != n + 4) gens.push_back(g);
  }
  closedir(d);
  std::sort(gens.begin(), gens.end());
  for (uint64_t g : gens)
    if (g < gen_) unlink(LogName(dir_, g).c_str());
  gens.erase(std::remove_if(gens.begin(), gens.end(), [&](uint64_t g) { return g < gen_; }), gens.end());
  if (missing && !gens.empty() && gens.front() != 0)
    return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", "dirty tracker: " + dir_ + " has logs from generation " + std::to_string(gens.front()) + " but no snapshot");
  for (size_t i = 0; i < gens.size(); i++)
    if (gens[i] != gen_ + i)
      return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", "dirty tracker: " + dir_ + " is missing log." + std::to_string(gen_ + i));

  if (gens.empty()) { epoch_++; return OpenLogForAppend(gen_, true, 0); }
  bool torn_seen = false;
  std::string torn_where;
  for (size_t i = 0; i < gens.size(); i++) {
    const bool last = i + 1 == gens.size();
    uint64_t frames = 0;
    DirtyStatus s = ReplayFrames(LogName(dir_, gens[i]), gens[i], &frames);
    if (!s.ok() && s.code != "TORN") return s;
    if (torn_seen && frames > 0)
      return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", torn_where + " is damaged, and later logs have records");
    if (!s.ok()) { torn_seen = true; torn_where = s.message; }
    if (!last) {
      old_logs_bytes_ += log_size_;
    } else {
      epoch_++;
      return OpenLogForAppend(gens[i], false, log_size_);
    }
  }
  return DirtyStatus::Ok();
}

// Replays one log file's frames. On success log_size_ = end of the valid frames. A torn tail
// returns code "TORN" (internal) after replaying what precedes it.
DirtyStatus DirtyTracker::ReplayFrames(const std::string& path, uint64_t gen, uint64_t* frames) {
  std::string buf;
  bool missing = false;
  if (!ReadFile(path, &buf, &missing)) return IoErr("dirty tracker: read " + path);
  const std::string where = "dirty tracker: log " + path;
  log_size_ = kLogHeader;
  if (buf.size() < kLogHeader) {
    // Created but its header never became durable: nothing was ever synced into it.
    log_size_ = 0;
    return DirtyStatus::Err("TORN", where);
  }
  uint32_t hcrc;
  std::memcpy(&hcrc, buf.data() + kLogHeader - 4, 4);
  if (std::memcmp(buf.data(), kLogMagic, 8) != 0 || Crc32c(buf.data(), kLogHeader - 4) != hcrc)
    return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " has no valid header");
  uint64_t hgen, hzone;
  std::memcpy(&hgen, buf.data() + 8, 8);
  std::memcpy(&hzone, buf.data() + 16, 8);
  if (hgen != gen) return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " belongs to generation " + std::to_string(hgen));
  if (hzone != zone_bytes_)
    return DirtyStatus::Err("ERR_RFS_DIRTY_ZONE", "dirty tracker: " + dir_ + " was created with zoneBytes " + std::to_string(hzone) + ", opened with " + std::to_string(zone_bytes_));

  const uint8_t* base = reinterpret_cast<const uint8_t*>(buf.data());
  const size_t size = buf.size();
  size_t pos = kLogHeader;
  auto valid_at = [&](size_t at, uint32_t* len_out) -> bool {
    if (at + 8 > size) return false;
    uint32_t len, crc;
    std::memcpy(&len, base + at, 4);
    std::memcpy(&crc, base + at + 4, 4);
    if (len == 0 || len > kMaxFrame || at + 8 + len > size) return false;
    if (Crc32c(base + at + 8, len) != crc) return false;
    *len_out = len;
    return true;
  };
  auto zeros_from = [&](size_t at) {
    for (size_t i = at; i < size; i++) if (base[i] != 0) return false;
    return true;
  };
  while (pos + 8 <= size) {
    uint32_t len = 0;
    std::memcpy(&len, base + pos, 4);
    if (len == 0 && zeros_from(pos)) break;  // clean end (zero-filled preallocation)
    if (!valid_at(pos, &len)) {
      // Torn tail (the one batch that was not yet durable when the process died), or damage?
      // The batch before the last is always durable, so a valid frame after a bad one is damage.
      uint32_t claimed;
      std::memcpy(&claimed, base + pos, 4);
      uint32_t next_len;
      bool sane = claimed > 0 && claimed <= kMaxFrame;
      bool damage = sane ? valid_at(pos + 8 + claimed, &next_len)
                         : !zeros_from(std::min<size_t>(size, pos + 8 + kMaxFrame));
      if (damage)
        return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + " has a damaged record at byte " + std::to_string(pos) + " followed by valid ones");
      log_size_ = pos;
      return DirtyStatus::Err("TORN", where);
    }
    DirtyStatus s = ApplyRecord(base + pos + 8, len, where + " at byte " + std::to_string(pos));
    if (!s.ok()) return s;
    (*frames)++;
    pos += 8 + len;
  }
  log_size_ = pos;
  return DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::ApplyRecord(const uint8_t* p, size_t n, const std::string& where) {
  Reader r{p, n};
  uint64_t ignore = 0;
  while (r.ok && r.n > 0) {
    uint8_t type = r.U8();
    switch (type) {
      case kMarkData: {
        std::string path = r.Str();
        uint64_t zs = r.U64(), ze = r.U64(), ep = r.U64();
        if (!r.ok || zs >= ze) break;
        ApplyData(path, zs, ze, ep, 0, &ignore);
        epoch_ = std::max(epoch_, ep);
        break;
      }
      case kMarkMeta: {
        std::string path = r.Str();
        uint64_t ep = r.U64();
        if (!r.ok) break;
        ApplyMeta(path, ep, 0, &ignore);
        epoch_ = std::max(epoch_, ep);
        break;
      }
      case kRename: {
        std::string from = r.Str(), to = r.Str();
        uint32_t flags = r.U32();
        uint64_t ep = r.U64();
        if (!r.ok) break;
        ApplyRename(from, to, flags, ep, 0, &ignore);
        epoch_ = std::max(epoch_, ep);
        break;
      }
      case kUnlink: {
        std::string path = r.Str();
        uint64_t ep = r.U64();
        if (!r.ok) break;
        ApplyMeta(path, ep, 0, &ignore);
        if (!path.empty()) ApplyMeta(Parent(path), ep, 0, &ignore);
        ApplyUnlinkDrop(path);
        epoch_ = std::max(epoch_, ep);
        break;
      }
      case kClearRanges: {
        std::string path = r.Str();
        bool meta = r.U8() != 0;
        uint32_t nr = r.U32();
        if (!r.ok || nr > r.n / 16) { r.ok = false; break; }
        std::vector<std::pair<uint64_t, uint64_t>> ranges(nr);
        for (auto& rg : ranges) { rg.first = r.U64(); rg.second = r.U64(); }
        ApplyClearRanges(path, ranges, meta);
        break;
      }
      case kClearAll:
        entries_.clear();
        break;
      default:
        r.ok = false;
    }
  }
  if (!r.ok) return DirtyStatus::Err("ERR_RFS_DIRTY_CORRUPT", where + ": malformed record (checksum matched: written by an incompatible version?)");
  return DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::OpenLogForAppend(uint64_t gen, bool create, uint64_t at) {
  const std::string path = LogName(dir_, gen);
  if (create || at < kLogHeader) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return IoErr("dirty tracker: create " + path);
    std::string h = LogHeader(gen, zone_bytes_);
    std::string z(kPrealloc, '\0');
    std::memcpy(&z[0], h.data(), h.size());
    if (!WriteAll(fd, z.data(), z.size(), 0) || fdatasync(fd) < 0 || !FsyncDir(dir_)) { int e = errno; close(fd); errno = e; return IoErr("dirty tracker: write " + path); }
    log_fd_ = fd;
    log_gen_ = gen;
    log_size_ = kLogHeader;
    log_alloc_ = kPrealloc;
    return DirtyStatus::Ok();
  }
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return IoErr("dirty tracker: open " + path);
  // Zero what follows the valid frames (a torn batch), so appends start on a clean tail.
  struct stat st;
  if (fstat(fd, &st) < 0) { int e = errno; close(fd); errno = e; return IoErr("dirty tracker: stat " + path); }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t end = std::max<uint64_t>(size, at + kPrealloc);
  if (end > at) {
    std::string z(static_cast<size_t>(std::min<uint64_t>(end - at, 4ull << 20)), '\0');
    for (uint64_t off = at; off < end; off += z.size()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(z.size(), end - off));
      if (!WriteAll(fd, z.data(), n, off)) { int e = errno; close(fd); errno = e; return IoErr("dirty tracker: write " + path); }
    }
    if (fdatasync(fd) < 0) { int e = errno; close(fd); errno = e; return IoErr("dirty tracker: fdatasync " + path); }
  }
  log_fd_ = fd;
  log_gen_ = gen;
  log_size_ = at;
  log_alloc_ = end;
  return DirtyStatus::Ok();
}

DirtyTracker::~DirtyTracker() {
  Close();
}

DirtyStatus DirtyTracker::Close() {
  std::unique_lock<std::mutex> lk(mu_);
  if (closed_) return DirtyStatus::Ok();
  while (syncing_ || compacting_) cv_.wait(lk);
  DirtyStatus s = DirtyStatus::Ok();
  if (!pending_.empty() && failed_.ok()) s = SyncLocked(lk);
  while (syncing_ || compacting_) cv_.wait(lk);
  closed_ = true;
  stopping_ = true;
  cv_.notify_all();
  if (compactor_.joinable()) {
    lk.unlock();
    compactor_.join();
    lk.lock();
  }
  if (log_fd_ >= 0) close(log_fd_);
  log_fd_ = -1;
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
  lock_fd_ = -1;
  entries_.clear();
  cv_.notify_all();
  return s;
}

DirtyStatus DirtyTracker::CheckOpen() const {
  if (closed_) return DirtyStatus::Err("ERR_RFS_DIRTY_CLOSED", "dirty tracker " + dir_ + " is closed");
  if (!failed_.ok()) return failed_;
  return DirtyStatus::Ok();
}

void DirtyTracker::SetCompactThreshold(uint64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  compact_threshold_ = std::max<uint64_t>(bytes, 4096);
}

// ---------------------------------------------------------------------------------------------
// State changes (shared by live calls and replay)

bool DirtyTracker::ApplyData(const std::string& path, uint64_t zs, uint64_t ze, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn) {
  auto it = entries_.find(path);
  if (it == entries_.end()) it = entries_.emplace(path, Entry{}).first;
  Entry& e = it->second;
  if (!e.zones) e.zones.reset(new std::map<uint64_t, Range>());
  auto& z = *e.zones;
  // Coverage of [zs, ze) by existing ranges, and the lsns it relies on.
  bool fresh = false;
  uint64_t covered_to = zs;
  uint64_t max_lsn = 0;
  auto first = z.upper_bound(zs);
  if (first != z.begin()) {
    auto prev = std::prev(first);
    if (prev->second.end > zs) first = prev;
  }
  for (auto r = first; r != z.end() && r->first < ze; ++r) {
    if (r->first > covered_to) fresh = true;
    covered_to = std::max(covered_to, r->second.end);
    max_lsn = std::max(max_lsn, r->second.lsn);
  }
  if (covered_to < ze) fresh = true;
  uint64_t new_lsn = fresh ? lsn : max_lsn;
  if (!fresh && max_lsn > *need_lsn) *need_lsn = max_lsn;
  if (fresh) new_lsn = std::max(lsn, max_lsn);
  // Fast path: one range already covers it with this epoch.
  if (!fresh && first != z.end() && first->first <= zs && first->second.end >= ze && first->second.epoch == epoch) return false;
  // Carve [zs, ze) out of the overlapping ranges, keep the parts outside it.
  std::vector<std::pair<uint64_t, Range>> keep;
  auto r = first;
  while (r != z.end() && r->first < ze) {
    if (r->first < zs) keep.push_back({r->first, Range{zs, r->second.epoch, r->second.lsn}});
    if (r->second.end > ze) keep.push_back({ze, Range{r->second.end, r->second.epoch, r->second.lsn}});
    r = z.erase(r);
  }
  for (auto& k : keep) z.emplace(k.first, k.second);
  auto ins = z.emplace(zs, Range{ze, epoch, new_lsn}).first;
  // Coalesce with neighbours of the same epoch.
  if (ins != z.begin()) {
    auto prev = std::prev(ins);
    if (prev->second.end == ins->first && prev->second.epoch == epoch) {
      prev->second.end = ins->second.end;
      prev->second.lsn = std::max(prev->second.lsn, ins->second.lsn);
      z.erase(ins);
      ins = prev;
    }
  }
  auto next = std::next(ins);
  if (next != z.end() && ins->second.end == next->first && next->second.epoch == epoch) {
    ins->second.end = next->second.end;
    ins->second.lsn = std::max(ins->second.lsn, next->second.lsn);
    z.erase(next);
  }
  return fresh;
}

bool DirtyTracker::IsCovered(const std::string& path, uint64_t zs, uint64_t ze, uint64_t* need_lsn) const {
  auto it = entries_.find(path);
  if (it == entries_.end() || !it->second.zones) return false;
  const auto& z = *it->second.zones;
  auto r = z.upper_bound(zs);
  if (r == z.begin()) return false;
  --r;
  uint64_t to = zs, mx = 0;
  for (auto q = r; q != z.end() && q->first <= to && to < ze; ++q) {
    if (q->second.end <= to) continue;
    to = q->second.end;
    mx = std::max(mx, q->second.lsn);
  }
  if (to < ze) return false;
  *need_lsn = std::max(*need_lsn, mx);
  return true;
}

bool DirtyTracker::ApplyMeta(const std::string& path, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn) {
  auto it = entries_.find(path);
  if (it == entries_.end()) it = entries_.emplace(path, Entry{}).first;
  Entry& e = it->second;
  if (e.meta_epoch == 0) {
    e.meta_epoch = epoch;
    e.meta_lsn = lsn;
    return true;
  }
  if (e.meta_lsn > *need_lsn) *need_lsn = e.meta_lsn;
  e.meta_epoch = std::max(e.meta_epoch, epoch);
  return false;
}

bool DirtyTracker::ApplyRename(const std::string& from, const std::string& to, uint32_t flags, uint64_t epoch, uint64_t lsn, uint64_t* need_lsn) {
  bool fresh = false;
  // Collect the sources first (targets may overlap the source range in the map).
  struct Src { std::string rel; std::vector<std::pair<uint64_t, uint64_t>> zones; bool meta; };
  auto collect = [&](const std::string& base) {
    std::vector<Src> out;
    ForSubtree(entries_, base, [&](std::map<std::string, Entry>::iterator it) {
      Src s{it->first.substr(base.size()), {}, it->second.meta_epoch != 0};
      if (it->second.zones)
        for (auto& [st, rg] : *it->second.zones) s.zones.push_back({st, rg.end});
      out.push_back(std::move(s));
      return std::next(it);
    });
    return out;
  };
  const bool exchange = (flags & 2u) != 0;  // RENAME_EXCHANGE
  std::vector<Src> a = collect(from);
  std::vector<Src> b = exchange ? collect(to) : std::vector<Src>();
  auto copy = [&](const std::vector<Src>& src, const std::string& base) {
    for (const Src& s : src) {
      std::string key = base + s.rel;
      if (s.meta) fresh |= ApplyMeta(key, epoch, lsn, need_lsn);
      for (auto& [zs, ze] : s.zones) fresh |= ApplyData(key, zs, ze, epoch, lsn, need_lsn);
    }
  };
  copy(a, to);
  copy(b, from);
  fresh |= ApplyMeta(from, epoch, lsn, need_lsn);
  fresh |= ApplyMeta(to, epoch, lsn, need_lsn);
  if (!from.empty()) fresh |= ApplyMeta(Parent(from), epoch, lsn, need_lsn);
  if (!to.empty()) fresh |= ApplyMeta(Parent(to), epoch, lsn, need_lsn);
  return fresh;
}

void DirtyTracker::ApplyUnlinkDrop(const std::string& path) {
  ForSubtree(entries_, path, [&](std::map<std::string, Entry>::iterator it) {
    if (it->first == path) {
      it->second.zones.reset();
      return std::next(it);
    }
    return entries_.erase(it);
  });
}

void DirtyTracker::ApplyClearRanges(const std::string& path, const std::vector<std::pair<uint64_t, uint64_t>>& ranges, bool meta) {
  auto it = entries_.find(path);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (meta) { e.meta_epoch = 0; e.meta_lsn = 0; }
  if (e.zones) {
    auto& z = *e.zones;
    for (auto& [zs, ze] : ranges) {
      auto first = z.upper_bound(zs);
      if (first != z.begin()) {
        auto prev = std::prev(first);
        if (prev->second.end > zs) first = prev;
      }
      std::vector<std::pair<uint64_t, Range>> keep;
      auto r = first;
      while (r != z.end() && r->first < ze) {
        if (r->first < zs) keep.push_back({r->first, Range{zs, r->second.epoch, r->second.lsn}});
        if (r->second.end > ze) keep.push_back({ze, Range{r->second.end, r->second.epoch, r->second.lsn}});
        r = z.erase(r);
      }
      for (auto& k : keep) z.emplace(k.first, k.second);
    }
  }
  EraseIfEmpty(it);
}

void DirtyTracker::AppendClear(const std::string& path, bool meta, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  size_t i = 0;
  do {
    size_t n = std::min<size_t>(ranges.size() - i, kMaxClearRanges);
    std::string rec;
    PutU8(rec, kClearRanges); PutStr(rec, path); PutU8(rec, meta && i == 0 ? 1 : 0);
    PutU32(rec, static_cast<uint32_t>(n));
    for (size_t k = i; k < i + n; k++) { PutU64(rec, ranges[k].first); PutU64(rec, ranges[k].second); }
    Append(rec);
    i += n;
  } while (i < ranges.size());
}

void DirtyTracker::EraseIfEmpty(std::map<std::string, Entry>::iterator it) {
  Entry& e = it->second;
  if (e.zones && e.zones->empty()) e.zones.reset();
  if (!e.zones && e.meta_epoch == 0) entries_.erase(it);
}

// ---------------------------------------------------------------------------------------------
// Log writing: group commit

uint64_t DirtyTracker::Append(const std::string& rec) {
  size_t frame_start = pending_cuts_.empty() ? 0 : pending_cuts_.back();
  if (pending_.size() > frame_start && pending_.size() - frame_start + rec.size() > kMaxFrame) pending_cuts_.push_back(pending_.size());
  pending_.append(rec);
  appended_lsn_ += rec.size();
  return appended_lsn_;
}

DirtyStatus DirtyTracker::WaitDurable(std::unique_lock<std::mutex>& lk, uint64_t lsn) {
  while (synced_lsn_ < lsn) {
    if (!failed_.ok()) return failed_;
    if (closed_) return CheckOpen();
    if (!syncing_) {
      DirtyStatus s = SyncLocked(lk);
      if (!s.ok()) return s;
    } else {
      cv_.wait(lk);
    }
  }
  return DirtyStatus::Ok();
}

// Becomes the leader: writes the pending batch as one frame (or a few, if huge) and fdatasyncs.
// Called with mu_ held and !syncing_; releases mu_ during the I/O.
DirtyStatus DirtyTracker::SyncLocked(std::unique_lock<std::mutex>& lk) {
  syncing_ = true;
  std::string batch;
  batch.swap(pending_);
  std::vector<size_t> cuts;
  cuts.swap(pending_cuts_);
  const uint64_t target = appended_lsn_;
  const int fd = log_fd_;
  const uint64_t off = log_size_;
  std::string frames;
  cuts.push_back(batch.size());
  for (size_t at = 0, c = 0; at < batch.size(); at = cuts[c++]) {
    if (cuts[c] <= at) continue;
    frames.append(EncodeFrame(batch.substr(at, cuts[c] - at)));
  }
  log_size_ += frames.size();
  // Keep a zero-filled area ahead of the frames, so an fdatasync after an overwrite in place has
  // no size or allocation change to commit (one device flush instead of a journal commit).
  const uint64_t alloc_from = log_alloc_;
  uint64_t alloc_to = log_alloc_;
  while (alloc_to < log_size_ + 8) alloc_to += kPrealloc;
  log_alloc_ = alloc_to;
  const std::string path = LogName(dir_, log_gen_);
  lk.unlock();
  DirtyStatus s = DirtyStatus::Ok();
  if (!frames.empty()) {
    if (alloc_to > alloc_from) {
      std::string z(kPrealloc, '\0');
      for (uint64_t o = alloc_from; o < alloc_to && s.ok(); o += kPrealloc)
        if (!WriteAll(fd, z.data(), z.size(), o)) s = IoErr("dirty tracker: grow " + path);
    }
    if (s.ok() && !WriteAll(fd, frames.data(), frames.size(), off)) s = IoErr("dirty tracker: write " + path);
    if (s.ok() && fdatasync(fd) < 0) s = IoErr("dirty tracker: fdatasync " + path);
  }
  lk.lock();
  if (!frames.empty()) fsyncs_++;
  syncing_ = false;
  if (s.ok()) synced_lsn_ = std::max(synced_lsn_, target);
  else failed_ = s;
  cv_.notify_all();
  if (s.ok()) MaybeCompact(lk);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Public marks

DirtyStatus DirtyTracker::MarkData(const std::string& path, uint64_t offset, uint64_t length, uint64_t* epoch_out,
                                   uint64_t ahead_end, uint64_t* marked_to) {
  if (marked_to) *marked_to = 0;
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  marks_++;
  const uint64_t zs = offset / zone_bytes_;
  const uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
  uint64_t ze = length == 0 ? zs + 1 : (end - 1) / zone_bytes_ + 1;
  const uint64_t epoch = epoch_;
  if (epoch_out) *epoch_out = epoch;
  // Already covered? Then no log record is needed (maybe a wait for that mark's durability).
  uint64_t need = 0;
  const bool covered = IsCovered(path, zs, ze, &need);
  if (covered) {
    ApplyData(path, zs, ze, epoch, 0, &need);  // refreshes the epoch in memory only
    if (need > synced_lsn_) return WaitDurable(lk, need);
    return DirtyStatus::Ok();
  }
  if (ahead_end > end && end != UINT64_MAX) ze = std::max(ze, (ahead_end - 1) / zone_bytes_ + 1);
  if (marked_to && ze <= UINT64_MAX / zone_bytes_) *marked_to = ze * zone_bytes_;
  std::string rec;
  PutU8(rec, kMarkData); PutStr(rec, path); PutU64(rec, zs); PutU64(rec, ze); PutU64(rec, epoch);
  uint64_t lsn = Append(rec);
  logged_marks_++;
  ApplyData(path, zs, ze, epoch, lsn, &need);
  return WaitDurable(lk, std::max(lsn, need));
}

DirtyStatus DirtyTracker::MarkMany(const std::vector<DirtyMark>& marks, uint64_t* epoch_out) {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  const uint64_t epoch = epoch_;
  if (epoch_out) *epoch_out = epoch;
  uint64_t need = 0;
  for (const DirtyMark& m : marks) {
    marks_++;
    std::string rec;
    uint64_t probe = 0;
    if (m.meta) {
      auto it = entries_.find(m.path);
      if (it != entries_.end() && it->second.meta_epoch != 0) { ApplyMeta(m.path, epoch, 0, &need); continue; }
      PutU8(rec, kMarkMeta); PutStr(rec, m.path); PutU64(rec, epoch);
      uint64_t lsn = Append(rec);
      logged_marks_++;
      ApplyMeta(m.path, epoch, lsn, &probe);
      need = std::max(need, std::max(lsn, probe));
      continue;
    }
    const uint64_t zs = m.offset / zone_bytes_;
    const uint64_t end = m.length > UINT64_MAX - m.offset ? UINT64_MAX : m.offset + m.length;
    const uint64_t ze = m.length == 0 ? zs + 1 : (end - 1) / zone_bytes_ + 1;
    if (IsCovered(m.path, zs, ze, &probe)) {
      ApplyData(m.path, zs, ze, epoch, 0, &probe);  // refreshes the epoch in memory only
      need = std::max(need, probe);
      continue;
    }
    PutU8(rec, kMarkData); PutStr(rec, m.path); PutU64(rec, zs); PutU64(rec, ze); PutU64(rec, epoch);
    uint64_t lsn = Append(rec);
    logged_marks_++;
    ApplyData(m.path, zs, ze, epoch, lsn, &probe);
    need = std::max(need, lsn);
  }
  return need > synced_lsn_ ? WaitDurable(lk, need) : DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::MarkPath(const std::string& path, uint64_t* epoch_out) {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  marks_++;
  const uint64_t epoch = epoch_;
  if (epoch_out) *epoch_out = epoch;
  uint64_t need = 0;
  auto it = entries_.find(path);
  if (it != entries_.end() && it->second.meta_epoch != 0) {
    ApplyMeta(path, epoch, 0, &need);
    return need > synced_lsn_ ? WaitDurable(lk, need) : DirtyStatus::Ok();
  }
  std::string rec;
  PutU8(rec, kMarkMeta); PutStr(rec, path); PutU64(rec, epoch);
  uint64_t lsn = Append(rec);
  logged_marks_++;
  ApplyMeta(path, epoch, lsn, &need);
  return WaitDurable(lk, std::max(lsn, need));
}

DirtyStatus DirtyTracker::MarkRename(const std::string& from, const std::string& to, uint32_t flags, uint64_t* epoch_out) {
  if (from.empty() || to.empty()) return DirtyStatus::Err("ERR_RFS_DIRTY_ARG", "dirty tracker: cannot rename the root");
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  marks_++;
  const uint64_t epoch = epoch_;
  if (epoch_out) *epoch_out = epoch;
  std::string rec;
  PutU8(rec, kRename); PutStr(rec, from); PutStr(rec, to); PutU32(rec, flags); PutU64(rec, epoch);
  uint64_t lsn = Append(rec);
  logged_marks_++;
  uint64_t need = 0;
  ApplyRename(from, to, flags, epoch, lsn, &need);
  return WaitDurable(lk, std::max(lsn, need));
}

DirtyStatus DirtyTracker::MarkUnlink(const std::string& path, uint64_t* epoch_out) {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  marks_++;
  const uint64_t epoch = epoch_;
  if (epoch_out) *epoch_out = epoch;
  std::string rec;
  PutU8(rec, kUnlink); PutStr(rec, path); PutU64(rec, epoch);
  uint64_t lsn = Append(rec);
  uint64_t need = 0;
  bool fresh = ApplyMeta(path, epoch, lsn, &need);
  if (!path.empty()) fresh |= ApplyMeta(Parent(path), epoch, lsn, &need);
  ApplyUnlinkDrop(path);
  if (fresh) { logged_marks_++; need = std::max(need, lsn); }
  // Dropping zones needs no durability (a lost drop only leaves extra dirty zones).
  return need > synced_lsn_ ? WaitDurable(lk, need) : DirtyStatus::Ok();
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and clearing

uint64_t DirtyTracker::Checkpoint() {
  std::lock_guard<std::mutex> lk(mu_);
  return epoch_++;
}

DirtyStatus DirtyTracker::ClearUpTo(uint64_t epoch) {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    bool meta = e.meta_epoch != 0 && e.meta_epoch <= epoch;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (e.zones)
      for (auto& [st, rg] : *e.zones)
        if (rg.epoch <= epoch) ranges.push_back({st, rg.end});
    if (!meta && ranges.empty()) { ++it; continue; }
    AppendClear(it->first, meta, ranges);
    auto cur = it++;
    ApplyClearRanges(cur->first, ranges, meta);
  }
  if (pending_.size() > (1u << 20) && !syncing_) return SyncLocked(lk);
  return DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::ClearEntries(const std::vector<std::string>& paths, uint64_t maxEpoch) {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  for (const std::string& p : paths) {
    auto it = entries_.find(p);
    if (it == entries_.end()) continue;
    Entry& e = it->second;
    bool meta = e.meta_epoch != 0 && e.meta_epoch <= maxEpoch;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (e.zones)
      for (auto& [st, rg] : *e.zones)
        if (rg.epoch <= maxEpoch) ranges.push_back({st, rg.end});
    if (!meta && ranges.empty()) continue;
    AppendClear(p, meta, ranges);
    ApplyClearRanges(p, ranges, meta);
  }
  if (pending_.size() > (1u << 20) && !syncing_) return SyncLocked(lk);
  return DirtyStatus::Ok();
}

DirtyStatus DirtyTracker::ClearAll() {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  std::string rec;
  PutU8(rec, kClearAll);
  Append(rec);
  entries_.clear();
  return CompactLocked(lk);
}

DirtyStatus DirtyTracker::Flush() {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  return WaitDurable(lk, appended_lsn_);
}

// ---------------------------------------------------------------------------------------------
// Snapshot / stats

std::vector<DirtyEntry> DirtyTracker::Snapshot() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<DirtyEntry> out;
  out.reserve(entries_.size());
  for (auto& [path, e] : entries_) {
    DirtyEntry d;
    d.path = path;
    d.meta = e.meta_epoch != 0;
    d.epoch = e.meta_epoch;
    if (e.zones) {
      d.zones.reserve(e.zones->size());
      for (auto& [st, rg] : *e.zones) {
        // Ranges split by epoch are merged for the caller.
        if (!d.zones.empty() && d.zones.back().second == st) d.zones.back().second = rg.end;
        else d.zones.push_back({st, rg.end});
        d.epoch = std::max(d.epoch, rg.epoch);
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

DirtyStats DirtyTracker::Stats() {
  std::lock_guard<std::mutex> lk(mu_);
  DirtyStats s;
  s.entries = entries_.size();
  for (auto& [path, e] : entries_) {
    (void)path;
    if (e.meta_epoch) s.metaEntries++;
    if (!e.zones) continue;
    s.ranges += e.zones->size();
    for (auto& [st, rg] : *e.zones) {
      uint64_t n = rg.end - st;
      s.zones = (UINT64_MAX - s.zones < n) ? UINT64_MAX : s.zones + n;
    }
  }
  s.logBytes = old_logs_bytes_ + log_size_;
  s.snapshotBytes = snapshot_bytes_;
  s.fsyncs = fsyncs_;
  s.marks = marks_;
  s.loggedMarks = logged_marks_;
  s.compactions = compactions_;
  s.generation = gen_;
  s.epoch = epoch_;
  s.zoneBytes = zone_bytes_;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Compaction

DirtyStatus DirtyTracker::Compact() {
  std::unique_lock<std::mutex> lk(mu_);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  return CompactLocked(lk);
}

// Past the bound, asks the compactor thread (started on first use) to compact: the writer that
// crossed the bound does not wait for the snapshot. mu_ held.
void DirtyTracker::MaybeCompact(std::unique_lock<std::mutex>& lk) {
  (void)lk;
  if (compact_requested_ || compacting_ || closed_ || stopping_) return;
  uint64_t bytes = old_logs_bytes_ + log_size_;
  if (bytes <= std::max(compact_threshold_, 2 * snapshot_bytes_)) return;
  compact_requested_ = true;
  if (!compactor_.joinable()) compactor_ = std::thread([this]() { CompactorLoop(); });
  cv_.notify_all();
}

void DirtyTracker::CompactorLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    while (!compact_requested_ && !stopping_) cv_.wait(lk);
    if (stopping_) return;
    compact_requested_ = false;
    if (!closed_ && failed_.ok()) CompactLocked(lk);
  }
}

DirtyStatus DirtyTracker::CompactLocked(std::unique_lock<std::mutex>& lk) {
  while (syncing_ || compacting_) cv_.wait(lk);
  DirtyStatus s = CheckOpen();
  if (!s.ok()) return s;
  syncing_ = true;
  compacting_ = true;
  // State as of now, and the records that led to it (written to the old log).
  std::string snap(kSnapMagic, 8);
  const uint64_t new_gen = log_gen_ + 1;
  PutU64(snap, new_gen);
  PutU64(snap, zone_bytes_);
  PutU64(snap, epoch_);
  PutU64(snap, entries_.size());
  for (auto& [path, e] : entries_) {
    PutStr(snap, path);
    PutU64(snap, e.meta_epoch);
    PutU32(snap, e.zones ? static_cast<uint32_t>(e.zones->size()) : 0);
    if (e.zones)
      for (auto& [st, rg] : *e.zones) { PutU64(snap, st); PutU64(snap, rg.end); PutU64(snap, rg.epoch); }
  }
  std::string batch;
  batch.swap(pending_);
  std::vector<size_t> cuts;
  cuts.swap(pending_cuts_);
  const uint64_t target = appended_lsn_;
  const int old_fd = log_fd_;
  const uint64_t old_off = log_size_;
  const uint64_t old_gen = log_gen_;
  lk.unlock();

  // The old log gets the last records (made durable: writers wait for them), then the new log
  // starts; only then is the snapshot written (until its rename, replay uses old snapshot + logs).
  std::string frames;
  cuts.push_back(batch.size());
  for (size_t at = 0, c = 0; at < batch.size(); at = cuts[c++]) {
    if (cuts[c] <= at) continue;
    frames.append(EncodeFrame(batch.substr(at, cuts[c] - at)));
  }
  if (!frames.empty()) {
    // Appended past the preallocation if needed (a size change: one journal commit, once).
    if (!WriteAll(old_fd, frames.data(), frames.size(), old_off) || fdatasync(old_fd) < 0) s = IoErr("dirty tracker: write " + LogName(dir_, old_gen));
  }
  const std::string new_log = LogName(dir_, new_gen);
  int new_fd = -1;
  if (s.ok()) {
    new_fd = open(new_log.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    std::string z(kPrealloc, '\0');
    std::string h = LogHeader(new_gen, zone_bytes_);
    std::memcpy(&z[0], h.data(), h.size());
    if (new_fd < 0 || !WriteAll(new_fd, z.data(), z.size(), 0) || fdatasync(new_fd) < 0 || !FsyncDir(dir_)) s = IoErr("dirty tracker: create " + new_log);
  }
  lk.lock();
  if (!frames.empty()) fsyncs_++;
  if (!s.ok()) {
    failed_ = s;
    if (new_fd >= 0) close(new_fd);
    syncing_ = false;
    compacting_ = false;
    cv_.notify_all();
    return s;
  }
  synced_lsn_ = std::max(synced_lsn_, target);
  old_logs_bytes_ += old_off + frames.size();
  log_fd_ = new_fd;
  log_gen_ = new_gen;
  log_size_ = kLogHeader;
  log_alloc_ = kPrealloc;
  syncing_ = false;  // writers may use the new log while the snapshot is written
  cv_.notify_all();
  lk.unlock();

  PutU32(snap, Crc32c(snap.data(), snap.size()));
  const std::string tmp = dir_ + "/snapshot.tmp", final_path = dir_ + "/snapshot";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || !WriteAll(fd, snap.data(), snap.size(), 0) || fsync(fd) < 0) s = IoErr("dirty tracker: write " + tmp);
  if (fd >= 0) close(fd);
  if (s.ok() && rename(tmp.c_str(), final_path.c_str()) < 0) s = IoErr("dirty tracker: rename " + tmp);
  if (s.ok() && !FsyncDir(dir_)) s = IoErr("dirty tracker: fsync " + dir_);
  close(old_fd);
  if (s.ok())
    for (uint64_t g = gen_; g < new_gen; g++) unlink(LogName(dir_, g).c_str());

  lk.lock();
  if (s.ok()) {
    gen_ = new_gen;
    snapshot_bytes_ = snap.size();
    old_logs_bytes_ = 0;
    compactions_++;
  } else {
    failed_ = s;
  }
  compacting_ = false;
  cv_.notify_all();
  return s;
}

}  // namespace ha::rfs
