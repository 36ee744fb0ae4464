// Mount-table helpers of the interceptor: stale FUSE mounts of ours, and the read-only bind of
// a replicated directory over itself on the secondary.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <vector>

#include "fuse_fs.h"
#include "fuse_mounts.h"

namespace ha::rfs {

namespace {
bool IsOct(char c) { return c >= '0' && c <= '7'; }
std::string Unescape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && IsOct(s[i + 1]) && IsOct(s[i + 2]) && IsOct(s[i + 3])) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}
std::string Errno(const std::string& what, int e) { return what + ": " + std::strerror(e); }
}  // namespace

std::vector<MountEntry> ReadMountInfo() {
  std::vector<MountEntry> out;
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    MountEntry m;
    std::string majmin, tok;
    ss >> m.id >> m.parent >> majmin >> m.root >> m.mount_point >> m.options;
    while (ss >> tok && tok != "-") {}
    ss >> m.fstype >> m.source >> m.super_options;
    unsigned maj = 0, min = 0;
    if (sscanf(majmin.c_str(), "%u:%u", &maj, &min) == 2) { m.major = maj; m.minor = min; }
    m.root = Unescape(m.root);
    m.mount_point = Unescape(m.mount_point);
    m.source = Unescape(m.source);
    out.push_back(std::move(m));
  }
  return out;
}

bool TopMount(const std::string& dir, MountEntry* out) {
  bool found = false;
  for (auto& m : ReadMountInfo()) {
    if (m.mount_point == dir) { *out = m; found = true; }
  }
  return found;
}

bool IsOurFuse(const MountEntry& m) { return m.fstype == "fuse.ha" && m.source.rfind("ha-rfs:", 0) == 0; }

int StaleMountCleanup(const std::string& dir, std::string* code, std::string* err) {
  int detached = 0;
  for (int round = 0; round < 16; round++) {
    MountEntry m;
    if (!TopMount(dir, &m) || !IsOurFuse(m)) return detached;
    // statfs, not stat: the interceptor's attributes are cached for a day (attr_timeout), so stat
    // of a dead mount's root succeeds from the cache; STATFS always reaches the (dead) connection.
    struct statfs sf;
    if (statfs(dir.c_str(), &sf) == 0 || errno != ENOTCONN) {
      *code = "ERR_RFS_MOUNTED";
      *err = dir + " is already mounted by a live ha-rfs interceptor (" + m.source + ")";
      return -1;
    }
    if (umount2(dir.c_str(), MNT_DETACH) != 0) {
      *code = "ERR_RFS_UNMOUNT";
      *err = Errno("umount2(" + dir + ", MNT_DETACH) of a stale ha-rfs mount", errno);
      return -1;
    }
    detached++;
  }
  return detached;
}

std::string ReadOnlyBind(const std::string& dir, std::string* code) {
  MountEntry m;
  if (TopMount(dir, &m) && (m.options + ",").rfind("ro,", 0) == 0) {
    // Already our read-only bind (idempotent).
    return "";
  }
  if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    *code = "ERR_RFS_BIND";
    return Errno("mount --bind " + dir + " " + dir, errno);
  }
  if (mount(nullptr, dir.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    int e = errno;
    umount2(dir.c_str(), MNT_DETACH);
    *code = "ERR_RFS_BIND";
    return Errno("remount read-only " + dir, e);
  }
  return "";
}

std::string UndoReadOnlyBind(const std::string& dir, std::string* code) {
  MountEntry m;
  if (!TopMount(dir, &m) || (m.options + ",").rfind("ro,", 0) != 0) {
    *code = "ERR_RFS_NOT_BOUND";
    return dir + " has no read-only bind mount on it";
  }
  if (umount2(dir.c_str(), 0) != 0 && umount2(dir.c_str(), MNT_DETACH) != 0) {
    *code = "ERR_RFS_UNMOUNT";
    return Errno("umount " + dir, errno);
  }
  return "";
}

}  // namespace ha::rfs
