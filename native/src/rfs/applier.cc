#include "applier.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/uio.h>
#include <unistd.h>
#include <unordered_set>
#include <vector>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

namespace ha::rfs {

namespace {

constexpr uint64_t kResolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

std::string Dirname(const std::string& p) {
  auto i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i);
}
std::string Basename(const std::string& p) {
  auto i = p.rfind('/');
  return i == std::string::npos ? p : p.substr(i + 1);
}
std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

const char* OpName(Op op) {
  switch (op) {
    case Op::Write: return "write";
    case Op::Truncate: return "truncate";
    case Op::Fallocate: return "fallocate";
    case Op::Create: return "create";
    case Op::Mkdir: return "mkdir";
    case Op::Mknod: return "mknod";
    case Op::Symlink: return "symlink";
    case Op::Unlink: return "unlink";
    case Op::Rmdir: return "rmdir";
    case Op::Rename: return "rename";
    case Op::Chmod: return "chmod";
    case Op::Chown: return "chown";
    case Op::Utimens: return "utimens";
    case Op::SetXattr: return "setxattr";
    case Op::RemoveXattr: return "removexattr";
    case Op::Link: return "link";
    case Op::Fsync: return "fsync";
    case Op::Barrier: return "barrier";
    case Op::SyncEntry: return "sync-entry";
    case Op::DirList: return "dir-list";
    case Op::DirListPart: return "dir-list-part";
    case Op::Sums: return "sums";
  }
  return "unknown";
}

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
};

struct timespec Ts(const Timespec& t) {
  struct timespec r;
  r.tv_sec = static_cast<time_t>(t.sec);
  r.tv_nsec = static_cast<long>(t.nsec);
  return r;
}

}  // namespace

Applier::Parent::~Parent() { if (owned && fd >= 0) close(fd); }

Applier::Applier(int rootFd, bool durable, size_t maxOpenFiles)
    : root_(rootFd), durable_(durable), max_(maxOpenFiles), root_user_(geteuid() == 0) {}

Applier::~Applier() { CloseAll(); }

void Applier::CloseAll() {
  for (auto& [k, e] : cache_) close(e.fd);
  cache_.clear();
  lru_.clear();
}

std::string Applier::CheckPath(const std::string& path, bool allowRoot) {
  if (path.empty()) return allowRoot ? "" : "empty path";
  if (path.size() > 4096) return "path longer than 4096 bytes";
  if (path.find('\0') != std::string::npos) return "path contains a NUL byte";
  if (path[0] == '/') return "absolute path '" + path + "'";
  size_t start = 0;
  while (true) {
    size_t end = path.find('/', start);
    std::string c = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (c.empty()) return "empty component in '" + path + "'";
    if (c == "." || c == "..") return "'" + c + "' component in '" + path + "'";
    if (c.size() > 255) return "component longer than 255 bytes in '" + path + "'";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

int Applier::OpenBeneath(const std::string& path, int flags, unsigned mode) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = kResolve;
  const char* p = path.empty() ? "." : path.c_str();
  long fd;
  do fd = syscall(SYS_openat2, root_, p, &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  return static_cast<int>(fd);
}

bool Applier::ResolveParent(const std::string& path, Parent& out) {
  if (path.empty()) { out.fd = root_; out.owned = false; out.base = "."; return true; }
  std::string dir = Dirname(path);
  out.base = Basename(path);
  if (dir.empty()) { out.fd = root_; out.owned = false; return true; }
  out.fd = OpenBeneath(dir, O_PATH | O_DIRECTORY, 0);
  out.owned = true;
  return out.fd >= 0;
}

void Applier::Cache(const std::string& path, int fd) {
  Evict(path);
  lru_.push_front(path);
  cache_[path] = Entry{fd, lru_.begin()};
  while (cache_.size() > max_) {
    auto it = cache_.find(lru_.back());
    if (it != cache_.end()) { close(it->second.fd); cache_.erase(it); }
    lru_.pop_back();
  }
}

int Applier::FileFd(const std::string& path) {
  auto it = cache_.find(path);
  if (it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.it);
    return it->second.fd;
  }
  int fd = OpenBeneath(path, O_RDWR | O_NOFOLLOW, 0);
  if (fd < 0) return -1;
  Cache(path, fd);
  return fd;
}

void Applier::Evict(const std::string& path) {
  if (cache_.empty()) return;
  std::string prefix = path + "/";
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (path.empty() || it->first == path || it->first.compare(0, prefix.size(), prefix) == 0) {
      close(it->second.fd);
      lru_.erase(it->second.it);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

ApplyResult Applier::Fail(const std::string& path, const char* what) {
  ApplyResult res;
  res.path = path;
  res.err = errno;
  if (errno == ELOOP || errno == EXDEV) {
    res.kind = ApplyResult::BadRecord;
    res.message = std::string(what) + " '" + path + "': the path leaves the directory or passes through a symlink";
  } else {
    res.kind = ApplyResult::Failed;
    res.message = std::string(what) + " '" + path + "': " + std::strerror(res.err);
  }
  return res;
}

int Applier::Own(int pfd, const std::string& base, uint32_t uid, uint32_t gid) {
  if (uid == UINT32_MAX && gid == UINT32_MAX) return 0;
  if (fchownat(pfd, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  if (errno == EPERM && !root_user_) return 0;  // an unprivileged receiver cannot give files away
  return -1;
}

namespace {
std::string ParentPath(const std::string& p) {
  size_t i = p.rfind('/');
  return i == std::string::npos ? std::string() : p.substr(0, i);
}
constexpr size_t kSyncfsAbove = 4096;  // more unsynced entries than this: one syncfs instead
}  // namespace

ApplyResult Applier::Apply(const Record& r) {
  ApplyResult res = ApplyOne(r);
  if (res.kind == ApplyResult::Ok) Note(r);
  return res;
}

void Applier::Note(const Record& r) {
  switch (r.op) {
    case Op::Write: case Op::Truncate: case Op::Fallocate: case Op::Chmod: case Op::Chown: case Op::Utimens:
    case Op::SetXattr: case Op::RemoveXattr: case Op::DirList: case Op::DirListPart:
      unsynced_files_.insert(r.path);
      break;
    case Op::Create: case Op::Mkdir: case Op::Mknod: case Op::Symlink: case Op::Unlink: case Op::Rmdir:
    case Op::SyncEntry:
      unsynced_files_.insert(r.path);
      unsynced_dirs_.insert(ParentPath(r.path));
      break;
    case Op::Rename: case Op::Link:
      unsynced_dirs_.insert(ParentPath(r.path));
      unsynced_dirs_.insert(ParentPath(r.path2));
      unsynced_files_.insert(r.path2);
      break;
    default:
      break;
  }
}

ApplyResult Applier::SyncBarrier() {
  const bool all = unsynced_files_.size() + unsynced_dirs_.size() > kSyncfsAbove;
  if (all) {
    Fd d(openat(root_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.fd < 0 || syncfs(d.fd) != 0) return Fail("", "barrier (syncfs)");
  } else {
    for (const std::string& p : unsynced_files_) {
      auto it = cache_.find(p);
      if (it != cache_.end()) {
        if (fsync(it->second.fd) != 0) return Fail(p, "barrier (fsync)");
        continue;
      }
      // Gone since (renamed, removed: its directory is synced), a symlink (O_NOFOLLOW: ELOOP; its
      // directory is synced) or a special file: nothing to sync by itself.
      Fd f(OpenBeneath(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
      if (f.fd < 0) continue;
      if (fsync(f.fd) != 0 && errno != EINVAL) return Fail(p, "barrier (fsync)");
    }
    for (const std::string& p : unsynced_dirs_) {
      Fd d(OpenBeneath(p, O_RDONLY | O_DIRECTORY, 0));
      if (d.fd < 0) continue;  // removed since: its parent is in the set
      if (fsync(d.fd) != 0) return Fail(p, "barrier (fsync)");
    }
  }
  unsynced_files_.clear();
  unsynced_dirs_.clear();
  return {};
}

ApplyResult Applier::ApplyOne(const Record& r) {
  ApplyResult bad;
  bad.kind = ApplyResult::BadRecord;
  bad.path = r.path;
  const char* name = OpName(r.op);
  if (std::string(name) == "unknown") {
    bad.message = "unknown op " + std::to_string(static_cast<int>(r.op));
    return bad;
  }
  bool rootOk = r.op == Op::Chmod || r.op == Op::Chown || r.op == Op::Utimens || r.op == Op::SetXattr ||
                r.op == Op::RemoveXattr || r.op == Op::Fsync || r.op == Op::SyncEntry || r.op == Op::DirList ||
                r.op == Op::DirListPart || r.op == Op::Sums;
  if (r.op != Op::Barrier) {
    std::string e = CheckPath(r.path, rootOk);
    if (e.empty() && (r.op == Op::Rename || r.op == Op::Link)) e = CheckPath(r.path2, false);
    if (!e.empty()) { bad.message = std::string(name) + ": " + e; return bad; }
  }
  if ((r.op == Op::Symlink || r.op == Op::SyncEntry) && r.path2.find('\0') != std::string::npos) {
    bad.message = std::string(name) + ": symlink target contains a NUL byte";
    return bad;
  }

  switch (r.op) {
    case Op::Barrier:
      // Everything before it is applied: make it durable too. The primary forgets the dirty
      // marks of what a barrier covers once it is acknowledged as applied, so the copy must
      // survive a power loss of this node from then on.
      return SyncBarrier();
    case Op::Write: {
      int fd = FileFd(r.path);
      if (fd < 0) return Fail(r.path, name);
      const uint8_t* p = r.Bytes();  // a received write may still be in its frame buffer (Record::keep)
      size_t n = r.Size();
      off_t off = static_cast<off_t>(r.offset);
      // A synchronous write of the application (kWriteSync): durable before it is acknowledged.
      const int rwf = durable_ && (r.flags & kWriteSync) ? RWF_DSYNC : 0;
      while (n > 0) {
        struct iovec iov = {const_cast<uint8_t*>(p), n};
        ssize_t w = rwf ? pwritev2(fd, &iov, 1, off, rwf) : pwrite(fd, p, n, off);
        if (w < 0) { if (errno == EINTR) continue; return Fail(r.path, name); }
        if (w == 0) { errno = ENOSPC; return Fail(r.path, name); }
        p += w; n -= static_cast<size_t>(w); off += w;
      }
      return {};
    }
    case Op::Truncate: {
      int fd = FileFd(r.path);
      if (fd < 0 || ftruncate(fd, static_cast<off_t>(r.length)) < 0) return Fail(r.path, name);
      return {};
    }
    case Op::Fallocate: {
      int fd = FileFd(r.path);
      if (fd < 0 || fallocate(fd, static_cast<int>(r.flags), static_cast<off_t>(r.offset), static_cast<off_t>(r.length)) < 0)
        return Fail(r.path, name);
      return {};
    }
    case Op::Create: {
      int flags = O_RDWR | O_CREAT | O_NOFOLLOW | ((r.flags & O_TRUNC) ? O_TRUNC : 0);
      int fd = OpenBeneath(r.path, flags, r.mode & 07777);
      if (fd < 0) return Fail(r.path, name);
      Cache(r.path, fd);
      if (fchmod(fd, r.mode & 07777) < 0) return Fail(r.path, name);
      if ((r.uid != UINT32_MAX || r.gid != UINT32_MAX) && fchown(fd, r.uid, r.gid) < 0 && !(errno == EPERM && !root_user_))
        return Fail(r.path, name);
      return {};
    }
    case Op::Mkdir:
    case Op::Mknod:
    case Op::Symlink: {
      Parent p;
      if (!ResolveParent(r.path, p)) return Fail(r.path, name);
      int rc;
      if (r.op == Op::Mkdir) {
        rc = mkdirat(p.fd, p.base.c_str(), r.mode & 07777);
        if (rc < 0 && errno == EEXIST) {
          struct stat st;
          if (fstatat(p.fd, p.base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) rc = 0;
          else errno = EEXIST;
        }
        if (rc == 0) rc = fchmodat(p.fd, p.base.c_str(), r.mode & 07777, 0);
      } else if (r.op == Op::Mknod) {
        rc = mknodat(p.fd, p.base.c_str(), r.mode, static_cast<dev_t>(r.rdev));
        if (rc == 0 && !S_ISLNK(r.mode)) rc = fchmodat(p.fd, p.base.c_str(), r.mode & 07777, 0);
      } else {
        rc = symlinkat(r.path2.c_str(), p.fd, p.base.c_str());
      }
      if (rc < 0 || Own(p.fd, p.base, r.uid, r.gid) < 0) return Fail(r.path, name);
      return {};
    }
    case Op::Unlink:
    case Op::Rmdir: {
      Parent p;
      if (!ResolveParent(r.path, p)) return Fail(r.path, name);
      Evict(r.path);
      if (unlinkat(p.fd, p.base.c_str(), r.op == Op::Rmdir ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
        return Fail(r.path, name);
      return {};
    }
    case Op::Rename:
    case Op::Link: {
      Parent a, b;
      if (!ResolveParent(r.path, a)) return Fail(r.path, name);
      if (!ResolveParent(r.path2, b)) return Fail(r.path2, name);
      int rc;
      if (r.op == Op::Rename) {
        Evict(r.path);
        Evict(r.path2);
        rc = renameat2(a.fd, a.base.c_str(), b.fd, b.base.c_str(), r.flags);
      } else {
        rc = linkat(a.fd, a.base.c_str(), b.fd, b.base.c_str(), 0);
      }
      if (rc < 0) return Fail(r.path, name);
      return {};
    }
    case Op::Chmod: {
      Parent p;
      if (!ResolveParent(r.path, p)) return Fail(r.path, name);
      struct stat st;
      if (fstatat(p.fd, p.base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return Fail(r.path, name);
      if (S_ISLNK(st.st_mode)) return {};  // Linux has no symlink modes
      if (fchmodat(p.fd, p.base.c_str(), r.mode & 07777, 0) < 0) return Fail(r.path, name);
      return {};
    }
    case Op::Chown: {
      Parent p;
      if (!ResolveParent(r.path, p) || Own(p.fd, p.base, r.uid, r.gid) < 0) return Fail(r.path, name);
      return {};
    }
    case Op::Utimens: {
      Parent p;
      if (!ResolveParent(r.path, p)) return Fail(r.path, name);
      struct timespec ts[2] = {Ts(r.atime), Ts(r.mtime)};
      if (utimensat(p.fd, p.base.c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0) return Fail(r.path, name);
      return {};
    }
    case Op::SetXattr:
    case Op::RemoveXattr: {
      if (r.name.empty() || r.name.find('\0') != std::string::npos) {
        bad.message = std::string(name) + ": invalid xattr name";
        return bad;
      }
      Fd fd(OpenBeneath(r.path, O_PATH | O_NOFOLLOW, 0));
      if (fd.fd < 0) return Fail(r.path, name);
      std::string proc = ProcPath(fd.fd);
      int rc = r.op == Op::SetXattr
                   ? setxattr(proc.c_str(), r.name.c_str(), r.data.data(), r.data.size(), static_cast<int>(r.flags))
                   : removexattr(proc.c_str(), r.name.c_str());
      if (rc < 0 && !(r.op == Op::RemoveXattr && errno == ENODATA)) return Fail(r.path, name);
      return {};
    }
    case Op::Fsync: {
      if (!durable_) return {};
      auto it = cache_.find(r.path);
      int rc;
      if (it != cache_.end()) {
        rc = (r.flags & 1) ? fdatasync(it->second.fd) : fsync(it->second.fd);
      } else {
        Fd fd(OpenBeneath(r.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0));
        if (fd.fd < 0) return Fail(r.path, name);
        rc = (r.flags & 1) ? fdatasync(fd.fd) : fsync(fd.fd);
      }
      if (rc < 0) return Fail(r.path, name);
      return {};
    }
    case Op::SyncEntry:
      return SyncEntry(r);
    case Op::DirList:
      return DirList(r);
    case Op::DirListPart: {
      // Kept until the DirList of the same path; a part for another path drops the old ones.
      if (part_path_ != r.path) { part_path_ = r.path; part_data_.clear(); }
      if (part_data_.size() + r.data.size() > (256u << 20)) {
        part_data_.clear();
        bad.message = "dir-list-part: listing of '" + r.path + "' longer than 256 MiB";
        return bad;
      }
      part_data_.insert(part_data_.end(), r.data.begin(), r.data.end());
      return {};
    }
    case Op::Sums:
      if (!r.path.empty()) { bad.message = "sums: only the whole tree (\"\") can be summed"; return bad; }
      return {};  // answered by the receiver (transport_receiver.cc)
  }
  return bad;
}

int Applier::RemoveTree(int dirfd, const std::string& name) {
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlinkat(dirfd, name.c_str(), 0) < 0 && errno != ENOENT ? -1 : 0;
  int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  DIR* d = fdopendir(fd);
  if (!d) { close(fd); return -1; }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  int rc = 0;
  for (auto& n : names)
    if (RemoveTree(::dirfd(d), n) < 0) { rc = -1; break; }
  int saved = errno;
  closedir(d);
  errno = saved;
  if (rc < 0) return -1;
  return unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT ? -1 : 0;
}

ApplyResult Applier::SyncEntry(const Record& r) {
  const char* name = "sync-entry";
  mode_t type = r.mode & S_IFMT;
  if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFIFO && type != S_IFCHR &&
      type != S_IFBLK && type != S_IFSOCK) {
    ApplyResult bad;
    bad.kind = ApplyResult::BadRecord;
    bad.path = r.path;
    bad.message = "sync-entry: mode has no valid file type for '" + r.path + "'";
    return bad;
  }
  if (r.path.empty() && type != S_IFDIR) {
    ApplyResult bad;
    bad.kind = ApplyResult::BadRecord;
    bad.message = "sync-entry: the root must be a directory";
    return bad;
  }
  Parent p;
  if (!ResolveParent(r.path, p)) return Fail(r.path, name);
  const char* base = p.base.c_str();
  struct stat st;
  bool exists = fstatat(p.fd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (!exists && errno != ENOENT) return Fail(r.path, name);
  if (exists && !r.path.empty()) {
    bool replace = (st.st_mode & S_IFMT) != type;
    if (!replace && type == S_IFLNK) {
      std::vector<char> buf(r.path2.size() + 2);
      ssize_t n = readlinkat(p.fd, base, buf.data(), buf.size());
      replace = n < 0 || std::string(buf.data(), static_cast<size_t>(n)) != r.path2;
    }
    if (!replace && (type == S_IFCHR || type == S_IFBLK)) replace = st.st_rdev != static_cast<dev_t>(r.rdev);
    if (replace) {
      Evict(r.path);
      if (RemoveTree(p.fd, p.base) < 0) return Fail(r.path, name);
      exists = false;
    }
  }
  if (!exists) {
    int rc;
    if (type == S_IFREG) {
      int fd = openat(p.fd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, r.mode & 07777);
      rc = fd < 0 ? -1 : close(fd);
    } else if (type == S_IFDIR) {
      rc = mkdirat(p.fd, base, r.mode & 07777);
    } else if (type == S_IFLNK) {
      rc = symlinkat(r.path2.c_str(), p.fd, base);
    } else {
      rc = mknodat(p.fd, base, r.mode, static_cast<dev_t>(r.rdev));
    }
    if (rc < 0) return Fail(r.path, name);
    st.st_size = 0;
  }
  if (type == S_IFREG && static_cast<uint64_t>(st.st_size) != r.length) {
    int fd = FileFd(r.path);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(r.length)) < 0) return Fail(r.path, name);
  }
  if (Own(p.fd, p.base, r.uid, r.gid) < 0) return Fail(r.path, name);
  if (type != S_IFLNK && fchmodat(p.fd, base, r.mode & 07777, 0) < 0) return Fail(r.path, name);
  struct timespec ts[2] = {Ts(r.atime), Ts(r.mtime)};
  if (utimensat(p.fd, base, ts, AT_SYMLINK_NOFOLLOW) < 0) return Fail(r.path, name);
  return {};
}

ApplyResult Applier::DirList(const Record& r) {
  const char* name = "dir-list";
  std::unordered_set<std::string> keep;
  std::vector<uint8_t> all;
  if (!part_data_.empty() && part_path_ == r.path) {
    all.swap(part_data_);
    all.insert(all.end(), r.data.begin(), r.data.end());
  }
  part_data_.clear();
  part_path_.clear();
  const std::vector<uint8_t>& data = all.empty() ? r.data : all;
  size_t start = 0;
  const char* d = reinterpret_cast<const char*>(data.data());
  for (size_t i = 0; i < data.size(); i++) {
    if (d[i] != '\0') continue;
    std::string n(d + start, i - start);
    start = i + 1;
    if (n.empty() || n == "." || n == ".." || n.find('/') != std::string::npos || n.size() > 255) {
      ApplyResult bad;
      bad.kind = ApplyResult::BadRecord;
      bad.path = r.path;
      bad.message = "dir-list: invalid entry name '" + n + "' in '" + r.path + "'";
      return bad;
    }
    keep.insert(std::move(n));
  }
  if (start != data.size()) {
    ApplyResult bad;
    bad.kind = ApplyResult::BadRecord;
    bad.path = r.path;
    bad.message = "dir-list: the name list must end with a NUL byte";
    return bad;
  }
  int fd = OpenBeneath(r.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
  if (fd < 0) return Fail(r.path, name);
  DIR* dir = fdopendir(fd);
  if (!dir) { close(fd); return Fail(r.path, name); }
  std::vector<std::string> extra;
  while (struct dirent* e = readdir(dir)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (!keep.count(e->d_name)) extra.emplace_back(e->d_name);
  }
  for (auto& n : extra) {
    std::string full = r.path.empty() ? n : r.path + "/" + n;
    Evict(full);
    if (RemoveTree(::dirfd(dir), n) < 0) {
      int saved = errno;
      closedir(dir);
      errno = saved;
      return Fail(full, name);
    }
  }
  closedir(dir);
  return {};
}

}  // namespace ha::rfs
