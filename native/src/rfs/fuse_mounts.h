// /proc/self/mountinfo parsing for the interceptor (stale mounts, read-only binds).
#pragma once
#include <string>
#include <vector>

namespace ha::rfs {

struct MountEntry {
  int id = 0, parent = 0;
  unsigned major = 0, minor = 0;
  std::string root, mount_point, options, fstype, source, super_options;
};

std::vector<MountEntry> ReadMountInfo();
// The last (topmost) mount whose mount point is exactly `dir`.
bool TopMount(const std::string& dir, MountEntry* out);
// fstype fuse.ha with source ha-rfs:...
bool IsOurFuse(const MountEntry& m);

}  // namespace ha::rfs
