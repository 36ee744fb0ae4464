// Block checksums of a replicated directory ("manifest"): for every entry, its type, mode,
// owner, size, mtime, symlink target, device number and, for a regular file, the SHA-256 of each
// block of kSumBlock bytes (holes are hashed as zeros without being read: SEEK_DATA). Used by
//  - the first synchronisation (resync.cc, full): the secondary sends its manifest; the primary
//    sends only the blocks whose checksum differs (rsync-like, the receiver's checksums first);
//  - verify: both manifests are compared and every difference is listed.
// Manifests travel as a flat byte string (EncodeEntry ...); the secondary builds its own on a
// thread of the receiver when a Sums record arrives (transport_receiver.cc).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace ha::rfs {

constexpr uint32_t kSumBlock = 64u << 10;
using BlockSum = std::array<uint8_t, 32>;

struct ManifestEntry {
  std::string path;  // relative, "" = root
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t mtimeSec = 0;
  uint32_t mtimeNsec = 0;
  uint64_t rdev = 0;
  std::string target;  // symlink target
  std::vector<BlockSum> sums;  // regular files: one per block (the last one may be partial)
};

// SHA-256 of n bytes.
BlockSum HashBlock(const uint8_t* p, size_t n);
// SHA-256 of n zero bytes (cached for kSumBlock).
BlockSum ZeroSum(size_t n);

// Block sums of the regular file open as fd (size bytes), blocks [firstBlock, lastBlock).
// Returns false with errno on a read error.
bool FileSums(int fd, uint64_t size, uint64_t firstBlock, uint64_t lastBlock, std::vector<BlockSum>& out);

// Walks the tree under rootFd (an O_PATH/O_RDONLY directory fd), without following symlinks,
// calling onEntry for each entry (the root first, then depth-first). Returns "" or an error text.
// A file vanishing during the walk is skipped. abort (optional) stops it.
std::string BuildManifest(int rootFd, const std::function<void(ManifestEntry&&)>& onEntry,
                          const std::atomic<bool>* abort = nullptr);

void EncodeEntry(const ManifestEntry& e, std::vector<uint8_t>& out);
// Decodes every entry of buf; false with err on malformed input.
bool DecodeManifest(const uint8_t* p, size_t n, std::unordered_map<std::string, ManifestEntry>& out, std::string& err);

// One difference between two manifests (a = this/primary side, b = the peer/secondary side).
struct Difference {
  std::string path;
  std::string kind;    // missing | extra | type | size | content | mode | owner | symlink | rdev
  std::string detail;  // human-readable
  uint64_t offset = 0; // content: first differing block's offset
  uint64_t blocks = 0; // content: differing blocks
};

// Every difference between a and b (sorted by path). mtimes are not compared.
std::vector<Difference> CompareManifests(const std::unordered_map<std::string, ManifestEntry>& a,
                                         const std::unordered_map<std::string, ManifestEntry>& b);

}  // namespace ha::rfs
