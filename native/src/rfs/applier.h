// Applies replication Records to the secondary's copy of a replicated directory, through a
// directory fd opened before anything is mounted over it. Every path is checked (relative, no
// empty, '.' or '..' components) and resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// | RESOLVE_NO_MAGICLINKS): a path that would leave the directory, or pass through a symlink,
// is a bad record. Files being written stay open in a small LRU cache.
#pragma once
#include <list>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "record.h"

namespace ha::rfs {

struct ApplyResult {
  enum Kind { Ok, BadRecord, Failed } kind = Ok;
  int err = 0;           // errno for Failed (ENOSPC, EIO, ...)
  std::string path;      // the path concerned
  std::string message;   // human-readable reason
};

class Applier {
 public:
  // rootFd: an fd of the directory (O_PATH | O_DIRECTORY is enough), owned by the caller.
  // durable: Fsync records fsync/fdatasync on the secondary (else they only order).
  Applier(int rootFd, bool durable, size_t maxOpenFiles = 64);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  ApplyResult Apply(const Record& r);
  // Closes every cached fd (end of a stream).
  void CloseAll();

  // Path syntax check: "" (the root) only if allowRoot; else components separated by single
  // '/', none empty, '.' or '..', no NUL, at most 4096 bytes. Returns an error text or "".
  static std::string CheckPath(const std::string& path, bool allowRoot);

 private:
  struct Parent {
    int fd = -1;
    bool owned = false;
    std::string base;
    ~Parent();
  };
  int OpenBeneath(const std::string& path, int flags, unsigned mode);
  bool ResolveParent(const std::string& path, Parent& out);
  int FileFd(const std::string& path);  // cached O_RDWR fd, -1 with errno
  void Evict(const std::string& path);  // path and everything below it
  void Cache(const std::string& path, int fd);

  ApplyResult Fail(const std::string& path, const char* what);
  ApplyResult ApplyOne(const Record& r);
  void Note(const Record& r);     // what a later barrier must make durable
  ApplyResult SyncBarrier();      // makes everything applied since the last barrier durable
  ApplyResult SyncEntry(const Record& r);
  ApplyResult DirList(const Record& r);
  int RemoveTree(int dirfd, const std::string& name);
  int Own(int pfd, const std::string& base, uint32_t uid, uint32_t gid);

  int root_;
  bool durable_;
  size_t max_;
  bool root_user_;
  std::list<std::string> lru_;  // front = most recent
  struct Entry { int fd; std::list<std::string>::iterator it; };
  std::unordered_map<std::string, Entry> cache_;
  std::string part_path_;          // DirListPart names waiting for their DirList
  // Applied since the last barrier, not yet durable: entries whose data or inode changed, and
  // directories whose entries changed. A barrier fsyncs them (or syncfs when there are many).
  std::unordered_set<std::string> unsynced_files_, unsynced_dirs_;
  std::vector<uint8_t> part_data_;
};

}  // namespace ha::rfs
