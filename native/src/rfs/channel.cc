#include "channel.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef HA_HAVE_IPSEC_MB
#ifndef LINUX
#define LINUX  // the header aligns gcm_key_data to 64 bytes only under LINUX
#endif
#include <intel-ipsec-mb.h>
#endif

namespace ha::rfs {

#ifdef HA_HAVE_IPSEC_MB
// intel-ipsec-mb's "direct" GCM API: function pointers chosen once for this CPU, stateless (the
// state lives in the caller's gcm_context_data), so one manager serves every thread.
struct FrameCipher::Imb {
  gcm_key_data key;        // expanded key + GHASH tables (64-byte aligned by its declaration)
  gcm_context_data ctx;    // running state of the frame being sealed or opened
  IMB_MGR* mgr;            // the process's manager (ImbManager), its function pointers
};

namespace {
IMB_MGR* ImbManager() {
  static IMB_MGR* mgr = [] () -> IMB_MGR* {
    IMB_MGR* m = alloc_mb_mgr(0);
    if (!m) return nullptr;
    init_mb_mgr_auto(m, nullptr);
    // Only where it beats OpenSSL's own AES-NI/AVX2 code: AVX-512 with VAES and VPCLMULQDQ.
    const uint64_t need = IMB_FEATURE_VAES | IMB_FEATURE_VPCLMULQDQ | IMB_FEATURE_AVX512_SKX;
    if (imb_get_errno(m) != 0 || m->used_arch != IMB_ARCH_AVX512 || (m->features & need) != need) {
      free_mb_mgr(m);
      return nullptr;
    }
    return m;
  }();
  return mgr;
}

bool ForcedOpenSsl() {
  const char* v = std::getenv("HA_RFS_AES");
  return v && std::strcmp(v, "openssl") == 0;
}
}  // namespace
#else
struct FrameCipher::Imb {};
#endif

const char* CipherImplementation() {
#ifdef HA_HAVE_IPSEC_MB
  if (!ForcedOpenSsl() && ImbManager()) return "intel-ipsec-mb (avx512)";
#endif
  return "openssl";
}

FrameCipher::~FrameCipher() {
  if (ctx_) EVP_CIPHER_CTX_free(ctx_);
  if (imb_) {
    OPENSSL_cleanse(imb_, sizeof *imb_);
    delete imb_;
  }
}

bool FrameCipher::Init(const uint8_t key[32], bool encrypt) {
#ifdef HA_HAVE_IPSEC_MB
  if (!ForcedOpenSsl()) {
    if (IMB_MGR* m = ImbManager()) {
      imb_ = new Imb();
      imb_->mgr = m;
      IMB_AES256_GCM_PRE(m, key, &imb_->key);
      return true;
    }
  }
#endif
  ctx_ = EVP_CIPHER_CTX_new();
  if (!ctx_) return false;
  int ok = encrypt ? EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, nullptr, nullptr)
                   : EVP_DecryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  if (ok != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1) return false;
  ok = encrypt ? EVP_EncryptInit_ex(ctx_, nullptr, nullptr, key, nullptr)
               : EVP_DecryptInit_ex(ctx_, nullptr, nullptr, key, nullptr);
  return ok == 1;
}

void FrameCipher::Nonce(uint8_t iv[12]) const {
  std::memset(iv, 0, 4);
  for (int i = 0; i < 8; i++) iv[4 + i] = static_cast<uint8_t>(counter_ >> (56 - 8 * i));
}

uint8_t* FrameCipher::Begin(uint8_t* out, size_t plainLen) {
  uint32_t L = static_cast<uint32_t>(plainLen + kTagLen);
  out[0] = L >> 24; out[1] = L >> 16; out[2] = L >> 8; out[3] = L;
  uint8_t iv[12];
  Nonce(iv);
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    IMB_AES256_GCM_INIT(imb_->mgr, &imb_->key, &imb_->ctx, iv, out, 4);  // AAD: the length prefix
    return out + 4;
  }
#endif
  EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv);
  int outl = 0;
  EVP_EncryptUpdate(ctx_, nullptr, &outl, out, 4);  // AAD: the length prefix
  return out + 4;
}

uint8_t* FrameCipher::Update(uint8_t* out, const void* p, size_t n) {
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    if (n) IMB_AES256_GCM_ENC_UPDATE(imb_->mgr, &imb_->key, &imb_->ctx, out, static_cast<const uint8_t*>(p), n);
    return out + n;
  }
#endif
  while (n > 0) {
    int chunk = n > (1u << 30) ? (1 << 30) : static_cast<int>(n);
    int outl = 0;
    EVP_EncryptUpdate(ctx_, out, &outl, static_cast<const uint8_t*>(p), chunk);
    out += outl;
    p = static_cast<const uint8_t*>(p) + chunk;
    n -= chunk;
  }
  return out;
}

uint8_t* FrameCipher::Finish(uint8_t* out) {
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    IMB_AES256_GCM_ENC_FINALIZE(imb_->mgr, &imb_->key, &imb_->ctx, out, 16);
    counter_++;
    return out + 16;
  }
#endif
  int outl = 0;
  EVP_EncryptFinal_ex(ctx_, out, &outl);  // GCM: no output
  out += outl;
  EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, 16, out);
  counter_++;
  return out + 16;
}

bool FrameCipher::BeginOpen(const uint8_t prefix[4]) {
  uint8_t iv[12];
  Nonce(iv);
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    IMB_AES256_GCM_INIT(imb_->mgr, &imb_->key, &imb_->ctx, iv, prefix, 4);
    return true;
  }
#endif
  if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1) return false;
  int outl = 0;
  return EVP_DecryptUpdate(ctx_, nullptr, &outl, prefix, 4) == 1;
}

bool FrameCipher::Decrypt(const uint8_t* src, size_t n, uint8_t* dst) {
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    if (n) IMB_AES256_GCM_DEC_UPDATE(imb_->mgr, &imb_->key, &imb_->ctx, dst, src, n);
    return true;
  }
#endif
  while (n > 0) {
    int chunk = n > (1u << 30) ? (1 << 30) : static_cast<int>(n);
    int outl = 0;
    if (EVP_DecryptUpdate(ctx_, dst, &outl, src, chunk) != 1) return false;
    src += chunk; dst += outl; n -= chunk;
  }
  return true;
}

bool FrameCipher::FinishOpen(const uint8_t tag[16]) {
#ifdef HA_HAVE_IPSEC_MB
  if (imb_) {
    uint8_t computed[16];
    IMB_AES256_GCM_DEC_FINALIZE(imb_->mgr, &imb_->key, &imb_->ctx, computed, 16);
    bool ok = CRYPTO_memcmp(computed, tag, 16) == 0;
    if (ok) counter_++;
    return ok;
  }
#endif
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(tag)) != 1) return false;
  int outl = 0;
  uint8_t dummy[16];
  bool ok = EVP_DecryptFinal_ex(ctx_, dummy, &outl) == 1;
  if (ok) counter_++;
  return ok;
}

bool WriteAll(int fd, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* p, size_t n) {
  uint8_t* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = recv(fd, b, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) { errno = 0; return false; }
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool ReadFrame(int fd, FrameCipher& rx, std::vector<uint8_t>& buf, size_t& plainLen,
               std::string& code, std::string& message) {
  uint8_t hdr[4];
  if (!ReadAll(fd, hdr, 4)) {
    code = "ERR_RFS_LINK";
    message = errno ? std::string("link down: ") + std::strerror(errno) : "link down: connection closed by peer";
    return false;
  }
  size_t L = (size_t(hdr[0]) << 24) | (size_t(hdr[1]) << 16) | (size_t(hdr[2]) << 8) | hdr[3];
  if (L < kTagLen || L > kMaxFrameLen) {
    code = "ERR_RFS_FRAME";
    message = "bad frame length " + std::to_string(L) + " (garbage or oversized frame)";
    return false;
  }
  if (buf.size() < L) buf.resize(L);
  if (!ReadAll(fd, buf.data(), L)) {
    code = "ERR_RFS_LINK";
    message = errno ? std::string("link down: ") + std::strerror(errno) : "link down: connection closed by peer";
    return false;
  }
  plainLen = L - kTagLen;
  if (!rx.BeginOpen(hdr) || !rx.Decrypt(buf.data(), plainLen, buf.data()) || !rx.FinishOpen(buf.data() + plainLen)) {
    code = "ERR_RFS_AUTH";
    message = "frame failed authentication (tampered, replayed, reordered or wrong key)";
    return false;
  }
  return true;
}

bool WriteFrame(int fd, FrameCipher& tx, const uint8_t* plain, size_t n) {
  std::vector<uint8_t> out(kFrameHeader + n + kTagLen);
  uint8_t* p = tx.Begin(out.data(), n);
  p = tx.Update(p, plain, n);
  tx.Finish(p);
  return WriteAll(fd, out.data(), out.size());
}

namespace {

const char kDomain[] = "ha-sdk/rfs/v1";
const uint8_t kMagic[6] = {'H', 'A', 'R', 'F', 'S', 1};

bool Hkdf(const std::vector<uint8_t>& ikm, const uint8_t* salt, size_t saltLen, const std::string& info, uint8_t out[32]) {
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  if (!pctx) return false;
  size_t outLen = 32;
  static const uint8_t kNoSalt[1] = {0};
  bool ok = EVP_PKEY_derive_init(pctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(pctx, saltLen ? salt : kNoSalt, static_cast<int>(saltLen)) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_key(pctx, ikm.data(), static_cast<int>(ikm.size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const uint8_t*>(info.data()), static_cast<int>(info.size())) > 0 &&
            EVP_PKEY_derive(pctx, out, &outLen) > 0 && outLen == 32;
  EVP_PKEY_CTX_free(pctx);
  return ok;
}

void Proof(const uint8_t ka[32], const char* role, const uint8_t nc[32], const uint8_t ns[32], uint8_t out[32]) {
  std::vector<uint8_t> msg;
  msg.insert(msg.end(), kDomain, kDomain + sizeof kDomain - 1);
  msg.push_back(' ');
  msg.insert(msg.end(), role, role + std::strlen(role));
  msg.insert(msg.end(), nc, nc + 32);
  msg.insert(msg.end(), ns, ns + 32);
  unsigned int len = 32;
  HMAC(EVP_sha256(), ka, 32, msg.data(), msg.size(), out, &len);
}

std::string LinkError(const char* what) {
  if (errno == 0) return std::string(what) + ": connection closed by peer";
  if (errno == EAGAIN || errno == EWOULDBLOCK) return std::string(what) + ": timed out";
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

bool Handshake(int fd, const std::vector<uint8_t>& clusterKey, bool client, ChannelKeys& keys,
               std::string& code, std::string& message) {
  uint8_t ka[32];
  if (!Hkdf(clusterKey, nullptr, 0, std::string(kDomain) + " auth", ka)) {
    code = "ERR_RFS_AUTH"; message = "HKDF failed"; return false;
  }
  uint8_t nc[32], ns[32], mine[32], theirs[32], expect[32];
  uint8_t hello[40];
  auto fail = [&](const char* c, std::string m) { code = c; message = std::move(m); return false; };
  if (client) {
    if (RAND_bytes(nc, 32) != 1) return fail("ERR_RFS_AUTH", "no randomness");
    std::memcpy(hello, kMagic, 6); hello[6] = hello[7] = 0; std::memcpy(hello + 8, nc, 32);
    if (!WriteAll(fd, hello, 40)) return fail("ERR_RFS_LINK", LinkError("handshake send"));
    uint8_t reply[72];
    if (!ReadAll(fd, reply, 72)) return fail("ERR_RFS_AUTH", LinkError("handshake: no valid server hello"));
    if (std::memcmp(reply, kMagic, 6) != 0) return fail("ERR_RFS_AUTH", "handshake: the peer is not an rfs receiver (bad magic)");
    std::memcpy(ns, reply + 8, 32);
    std::memcpy(theirs, reply + 40, 32);
    Proof(ka, "server", nc, ns, expect);
    if (CRYPTO_memcmp(expect, theirs, 32) != 0) return fail("ERR_RFS_AUTH", "handshake: the receiver does not know the cluster key (wrong key)");
    Proof(ka, "client", nc, ns, mine);
    if (!WriteAll(fd, mine, 32)) return fail("ERR_RFS_LINK", LinkError("handshake send"));
  } else {
    if (!ReadAll(fd, hello, 40)) return fail("ERR_RFS_AUTH", LinkError("handshake: no valid client hello"));
    if (std::memcmp(hello, kMagic, 6) != 0) return fail("ERR_RFS_AUTH", "handshake: the peer is not an rfs sender (bad magic)");
    std::memcpy(nc, hello + 8, 32);
    if (RAND_bytes(ns, 32) != 1) return fail("ERR_RFS_AUTH", "no randomness");
    uint8_t reply[72];
    std::memcpy(reply, kMagic, 6); reply[6] = reply[7] = 0;
    std::memcpy(reply + 8, ns, 32);
    Proof(ka, "server", nc, ns, reply + 40);
    if (!WriteAll(fd, reply, 72)) return fail("ERR_RFS_LINK", LinkError("handshake send"));
    if (!ReadAll(fd, theirs, 32)) return fail("ERR_RFS_AUTH", LinkError("handshake: no client proof (wrong key?)"));
    Proof(ka, "client", nc, ns, expect);
    if (CRYPTO_memcmp(expect, theirs, 32) != 0) return fail("ERR_RFS_AUTH", "handshake: the sender does not know the cluster key (wrong key)");
  }
  uint8_t salt[64];
  std::memcpy(salt, nc, 32);
  std::memcpy(salt + 32, ns, 32);
  uint8_t c2s[32], s2c[32];
  if (!Hkdf(clusterKey, salt, 64, std::string(kDomain) + " c2s", c2s) ||
      !Hkdf(clusterKey, salt, 64, std::string(kDomain) + " s2c", s2c))
    return fail("ERR_RFS_AUTH", "HKDF failed");
  std::memcpy(keys.send, client ? c2s : s2c, 32);
  std::memcpy(keys.recv, client ? s2c : c2s, 32);
  OPENSSL_cleanse(ka, 32); OPENSSL_cleanse(c2s, 32); OPENSSL_cleanse(s2c, 32);
  return true;
}

}  // namespace ha::rfs
