// Block checksums and manifests: see checksum.h.
#include "checksum.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

namespace ha::rfs {

BlockSum HashBlock(const uint8_t* p, size_t n) {
  BlockSum out{};
  unsigned int len = 0;
  EVP_Digest(p, n, out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

BlockSum ZeroSum(size_t n) {
  static const BlockSum full = [] {
    std::vector<uint8_t> z(kSumBlock, 0);
    return HashBlock(z.data(), z.size());
  }();
  if (n == kSumBlock) return full;
  std::vector<uint8_t> z(n, 0);
  return HashBlock(z.data(), z.size());
}

bool FileSums(int fd, uint64_t size, uint64_t firstBlock, uint64_t lastBlock, std::vector<BlockSum>& out) {
  std::vector<uint8_t> buf(kSumBlock);
  uint64_t dataAt = 0;  // next data offset known from SEEK_DATA (valid while >= block start)
  bool dataKnown = false;
  for (uint64_t b = firstBlock; b < lastBlock; b++) {
    uint64_t off = b * kSumBlock;
    if (off >= size) break;
    size_t n = static_cast<size_t>(std::min<uint64_t>(kSumBlock, size - off));
    if (!dataKnown || dataAt < off) {
      off_t d = lseek(fd, static_cast<off_t>(off), SEEK_DATA);
      dataAt = d < 0 ? UINT64_MAX : static_cast<uint64_t>(d);  // ENXIO: only a hole to the end
      dataKnown = true;
    }
    if (dataAt >= off + n) {  // the whole block is a hole
      out.push_back(ZeroSum(n));
      continue;
    }
    size_t got = 0;
    while (got < n) {
      ssize_t r = pread(fd, buf.data() + got, n - got, static_cast<off_t>(off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      if (r == 0) break;  // shrank meanwhile: the rest reads as zeros
      got += static_cast<size_t>(r);
    }
    if (got < n) std::memset(buf.data() + got, 0, n - got);
    out.push_back(HashBlock(buf.data(), n));
  }
  return true;
}

namespace {

void Fill(ManifestEntry& e, const struct stat& st) {
  e.mode = st.st_mode;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.size = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  e.mtimeSec = st.st_mtim.tv_sec;
  e.mtimeNsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  e.rdev = (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? st.st_rdev : 0;
}

struct Walker {
  const std::function<void(ManifestEntry&&)>& onEntry;
  const std::atomic<bool>* abort;
  std::string err;

  // dirfd: an open directory fd (owned here); path: its relative path.
  void Dir(int dirfd, const std::string& path) {
    DIR* d = fdopendir(dirfd);
    if (!d) { close(dirfd); if (err.empty()) err = "cannot list '" + path + "': " + std::strerror(errno); return; }
    std::vector<std::string> names;
    while (struct dirent* de = readdir(d)) {
      if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
      names.emplace_back(de->d_name);
    }
    std::sort(names.begin(), names.end());
    int fd = ::dirfd(d);
    for (const auto& n : names) {
      if (abort && abort->load()) break;
      std::string child = path.empty() ? n : path + "/" + n;
      struct stat st;
      if (fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;  // vanished
      ManifestEntry e;
      e.path = child;
      Fill(e, st);
      if (S_ISLNK(st.st_mode)) {
        std::vector<char> buf(4097);
        ssize_t r = readlinkat(fd, n.c_str(), buf.data(), buf.size());
        if (r >= 0) e.target.assign(buf.data(), static_cast<size_t>(r));
      } else if (S_ISREG(st.st_mode)) {
        int ffd = openat(fd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (ffd < 0) continue;
        struct stat fst;
        if (fstat(ffd, &fst) == 0) Fill(e, fst);
        uint64_t blocks = (e.size + kSumBlock - 1) / kSumBlock;
        e.sums.reserve(blocks);
        if (!FileSums(ffd, e.size, 0, blocks, e.sums) && err.empty()) err = "cannot read '" + child + "': " + std::strerror(errno);
        close(ffd);
      }
      bool isDir = S_ISDIR(st.st_mode);
      onEntry(std::move(e));
      if (isDir) {
        int cfd = openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) Dir(cfd, child);
      }
    }
    closedir(d);
  }
};

void PutU32(std::vector<uint8_t>& o, uint32_t v) { for (int i = 0; i < 4; i++) o.push_back(static_cast<uint8_t>(v >> (8 * i))); }
void PutU64(std::vector<uint8_t>& o, uint64_t v) { for (int i = 0; i < 8; i++) o.push_back(static_cast<uint8_t>(v >> (8 * i))); }

struct Reader {
  const uint8_t* p;
  size_t n, i = 0;
  bool ok = true;
  uint32_t U32() { if (n - i < 4) { ok = false; return 0; } uint32_t v = 0; for (int k = 3; k >= 0; k--) v = (v << 8) | p[i + k]; i += 4; return v; }
  uint64_t U64() { if (n - i < 8) { ok = false; return 0; } uint64_t v = 0; for (int k = 7; k >= 0; k--) v = (v << 8) | p[i + k]; i += 8; return v; }
  std::string Str(size_t len) { if (n - i < len) { ok = false; return {}; } std::string s(reinterpret_cast<const char*>(p + i), len); i += len; return s; }
};

std::string Oct(uint32_t m) {
  char b[16];
  std::snprintf(b, sizeof b, "%o", m);
  return b;
}

const char* TypeName(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    case S_IFSOCK: return "socket";
  }
  return "unknown";
}

}  // namespace

std::string BuildManifest(int rootFd, const std::function<void(ManifestEntry&&)>& onEntry, const std::atomic<bool>* abort) {
  struct stat st;
  if (fstat(rootFd, &st) < 0) return std::string("cannot stat the directory: ") + std::strerror(errno);
  ManifestEntry root;
  Fill(root, st);
  onEntry(std::move(root));
  int fd = openat(rootFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open the directory: ") + std::strerror(errno);
  Walker w{onEntry, abort, {}};
  w.Dir(fd, "");
  return w.err;
}

void EncodeEntry(const ManifestEntry& e, std::vector<uint8_t>& o) {
  PutU32(o, static_cast<uint32_t>(e.path.size()));
  o.insert(o.end(), e.path.begin(), e.path.end());
  PutU32(o, e.mode);
  PutU32(o, e.uid);
  PutU32(o, e.gid);
  PutU64(o, e.size);
  PutU64(o, static_cast<uint64_t>(e.mtimeSec));
  PutU32(o, e.mtimeNsec);
  PutU64(o, e.rdev);
  PutU32(o, static_cast<uint32_t>(e.target.size()));
  o.insert(o.end(), e.target.begin(), e.target.end());
  PutU32(o, static_cast<uint32_t>(e.sums.size()));
  for (const auto& s : e.sums) o.insert(o.end(), s.begin(), s.end());
}

bool DecodeManifest(const uint8_t* p, size_t n, std::unordered_map<std::string, ManifestEntry>& out, std::string& err) {
  Reader r{p, n};
  while (r.ok && r.i < n) {
    ManifestEntry e;
    uint32_t pl = r.U32();
    if (pl > 4096) { err = "manifest: path too long"; return false; }
    e.path = r.Str(pl);
    e.mode = r.U32();
    e.uid = r.U32();
    e.gid = r.U32();
    e.size = r.U64();
    e.mtimeSec = static_cast<int64_t>(r.U64());
    e.mtimeNsec = r.U32();
    e.rdev = r.U64();
    uint32_t tl = r.U32();
    if (tl > 4096) { err = "manifest: symlink target too long"; return false; }
    e.target = r.Str(tl);
    uint32_t ns = r.U32();
    if (!r.ok || static_cast<uint64_t>(ns) * 32 > n - r.i) { err = "manifest: truncated entry"; return false; }
    e.sums.resize(ns);
    for (auto& s : e.sums) { std::memcpy(s.data(), p + r.i, 32); r.i += 32; }
    std::string key = e.path;
    out[std::move(key)] = std::move(e);
  }
  if (!r.ok) { err = "manifest: truncated entry"; return false; }
  return true;
}

std::vector<Difference> CompareManifests(const std::unordered_map<std::string, ManifestEntry>& a,
                                         const std::unordered_map<std::string, ManifestEntry>& b) {
  std::vector<Difference> out;
  auto add = [&](const std::string& path, const char* kind, std::string detail) {
    Difference d;
    d.path = path;
    d.kind = kind;
    d.detail = std::move(detail);
    out.push_back(std::move(d));
  };
  for (const auto& [path, x] : a) {
    auto it = b.find(path);
    if (it == b.end()) { add(path, "missing", std::string(TypeName(x.mode)) + " missing on the peer"); continue; }
    const ManifestEntry& y = it->second;
    if ((x.mode & S_IFMT) != (y.mode & S_IFMT)) {
      add(path, "type", std::string("a ") + TypeName(x.mode) + " here, a " + TypeName(y.mode) + " on the peer");
      continue;
    }
    if (!S_ISLNK(x.mode) && (x.mode & 07777) != (y.mode & 07777)) add(path, "mode", "mode " + Oct(x.mode & 07777) + " here, " + Oct(y.mode & 07777) + " on the peer");
    if (x.uid != y.uid || x.gid != y.gid)
      add(path, "owner", "owner " + std::to_string(x.uid) + ":" + std::to_string(x.gid) + " here, " + std::to_string(y.uid) + ":" + std::to_string(y.gid) + " on the peer");
    if (S_ISLNK(x.mode) && x.target != y.target) add(path, "symlink", "target '" + x.target + "' here, '" + y.target + "' on the peer");
    if ((S_ISCHR(x.mode) || S_ISBLK(x.mode)) && x.rdev != y.rdev) add(path, "rdev", "device numbers differ");
    if (S_ISREG(x.mode)) {
      if (x.size != y.size) add(path, "size", "size " + std::to_string(x.size) + " here, " + std::to_string(y.size) + " on the peer");
      size_t nb = std::min(x.sums.size(), y.sums.size());
      uint64_t diff = 0, first = UINT64_MAX;
      for (size_t i = 0; i < nb; i++) {
        // The last common block is compared only when the sizes agree (else it is partial on one side).
        if (x.sums[i] != y.sums[i] && (x.size == y.size || i + 1 < nb)) {
          diff++;
          if (first == UINT64_MAX) first = i;
        }
      }
      if (diff) {
        Difference d;
        d.path = path;
        d.kind = "content";
        d.offset = first * kSumBlock;
        d.blocks = diff;
        d.detail = std::to_string(diff) + " block(s) of " + std::to_string(kSumBlock) + " bytes differ, the first at offset " + std::to_string(d.offset);
        out.push_back(std::move(d));
      }
    }
  }
  for (const auto& [path, y] : b)
    if (!a.count(path)) add(path, "extra", std::string(TypeName(y.mode)) + " only on the peer");
  std::sort(out.begin(), out.end(), [](const Difference& l, const Difference& r) {
    return l.path != r.path ? l.path < r.path : l.kind < r.kind;
  });
  return out;
}

}  // namespace ha::rfs
