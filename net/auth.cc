#include "tessera/net/auth.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <type_traits>

namespace tessera::net {
namespace {

// OpenSSL's libcrypto, loaded by the first function here that a connection's handshake calls,
// not at start: a process that never connects does not map it, which takes about 1.5 MiB of
// every process's resident memory (its relocations and initialisation).
struct CryptoLibrary {
  decltype(&RAND_bytes) rand_bytes = nullptr;
  decltype(&HMAC) hmac = nullptr;
  decltype(&EVP_sha256) sha256 = nullptr;
  decltype(&CRYPTO_memcmp) memcmp = nullptr;
  decltype(&EVP_CIPHER_fetch) cipher_fetch = nullptr;
  decltype(&EVP_CIPHER_CTX_new) ctx_new = nullptr;
  decltype(&EVP_CIPHER_CTX_free) ctx_free = nullptr;
  decltype(&EVP_CIPHER_CTX_ctrl) ctx_ctrl = nullptr;
  decltype(&EVP_EncryptInit_ex) encrypt_init = nullptr;
  decltype(&EVP_EncryptUpdate) encrypt_update = nullptr;
  decltype(&EVP_EncryptFinal_ex) encrypt_final = nullptr;
  decltype(&EVP_DecryptInit_ex) decrypt_init = nullptr;
  decltype(&EVP_DecryptUpdate) decrypt_update = nullptr;
  decltype(&EVP_DecryptFinal_ex) decrypt_final = nullptr;
  std::string error;  // why it could not be loaded; empty once loaded
};

CryptoLibrary Load() {
  CryptoLibrary lib;
  // Kept loaded for the process's life: the library the build found, else its soname.
  void* handle = dlopen(TESSERA_CRYPTO_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!handle) handle = dlopen(TESSERA_CRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    lib.error = std::string("cannot load OpenSSL's libcrypto: ") + dlerror();
    return lib;
  }
  bool all = true;
  auto find = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
    all = all && fn != nullptr;
  };
  find(lib.rand_bytes, "RAND_bytes");
  find(lib.hmac, "HMAC");
  find(lib.sha256, "EVP_sha256");
  find(lib.memcmp, "CRYPTO_memcmp");
  find(lib.cipher_fetch, "EVP_CIPHER_fetch");
  find(lib.ctx_new, "EVP_CIPHER_CTX_new");
  find(lib.ctx_free, "EVP_CIPHER_CTX_free");
  find(lib.ctx_ctrl, "EVP_CIPHER_CTX_ctrl");
  find(lib.encrypt_init, "EVP_EncryptInit_ex");
  find(lib.encrypt_update, "EVP_EncryptUpdate");
  find(lib.encrypt_final, "EVP_EncryptFinal_ex");
  find(lib.decrypt_init, "EVP_DecryptInit_ex");
  find(lib.decrypt_update, "EVP_DecryptUpdate");
  find(lib.decrypt_final, "EVP_DecryptFinal_ex");
  if (!all) lib.error = TESSERA_CRYPTO_SONAME " lacks a function of OpenSSL 3's libcrypto";
  return lib;
}

const CryptoLibrary& Crypto() {
  static const CryptoLibrary lib = Load();
  return lib;
}

// For the functions that return no Status: a handshake calls them only after MakeNonce or
// FrameCipher::ForDirection, which report a library that could not be loaded.
const CryptoLibrary& LoadedCrypto() {
  const CryptoLibrary& lib = Crypto();
  TESSERA_CHECK(lib.error.empty()) << lib.error;
  return lib;
}

}  // namespace

StatusOr<std::string> MakeNonce() {
  const CryptoLibrary& crypto = Crypto();
  if (!crypto.error.empty()) return Unavailable(crypto.error);
  std::string nonce(kNonceBytes, '\0');
  if (crypto.rand_bytes(reinterpret_cast<unsigned char*>(nonce.data()),
                        static_cast<int>(nonce.size())) != 1) {
    return Internal("RAND_bytes failed: no randomness for the connection challenge");
  }
  return nonce;
}

StatusOr<std::string> GenerateSecret() {
  TESSERA_ASSIGN_OR_RETURN(std::string raw, MakeNonce());
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return hex;
}

StatusOr<std::string> UserSecret() {
  std::string dir;
  if (const char* d = std::getenv("TESSERA_SECRET_DIR"); d && *d) {
    dir = d;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    dir = std::string(home) + "/.tessera";
  } else {
    return InvalidArgument(
        "no shared secret: set TESSERA_SECRET, TESSERA_SECRET_FILE or TESSERA_SECRET_DIR "
        "(tessera launch sets one; HOME is not set either)");
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return FailedPrecondition(dir +
                              ": cannot make the secret's directory: " + std::strerror(errno));
  }
  const std::string path = dir + "/secret";
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      struct stat st {};
      std::string secret;
      char buf[256];
      bool ok = fstat(fd, &st) == 0;
      for (ssize_t n; ok && (n = read(fd, buf, sizeof buf)) > 0;) {
        secret.append(buf, static_cast<std::size_t>(n));
        ok = secret.size() <= 4096;
      }
      close(fd);
      if (!ok) return FailedPrecondition(path + ": not a secret file of at most 4096 bytes");
      if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        return FailedPrecondition(path +
                                  ": the secret must belong to you and be readable by "
                                  "you alone (chmod 600 " +
                                  path + ")");
      }
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
        secret.pop_back();
      }
      return secret;
    }
    if (errno != ENOENT) {
      return FailedPrecondition(path + ": cannot read the secret: " + std::strerror(errno));
    }
    // None yet: write one under a name of this process, then link it into place, which
    // fails if another process was first (its file is then the one read).
    TESSERA_ASSIGN_OR_RETURN(std::string hex, GenerateSecret());
    hex += '\n';
    static std::atomic<unsigned> made{0};  // tells this process's threads' files apart
    const std::string tmp =
        path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(made.fetch_add(1));
    const int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
      return FailedPrecondition(tmp + ": cannot write the secret: " + std::strerror(errno));
    }
    const bool written =
        write(out, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) && fsync(out) == 0;
    close(out);
    const bool linked = written && (link(tmp.c_str(), path.c_str()) == 0 || errno == EEXIST);
    unlink(tmp.c_str());
    if (!linked) {
      return FailedPrecondition(path + ": cannot write the secret: " + std::strerror(errno));
    }
  }
  return Internal(path + ": the secret vanished while it was made");
}

StatusOr<std::string> SecretFromEnvironment() {
  std::string secret;
  std::string source;
  if (const char* v = std::getenv("TESSERA_SECRET"); v && *v) {
    secret = v;
    source = "TESSERA_SECRET";
  } else if (const char* f = std::getenv("TESSERA_SECRET_FILE"); f && *f) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return NotFound(std::string(f) + ": cannot read the secret (TESSERA_SECRET_FILE)");
    std::stringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    source = f;
  } else {
    TESSERA_ASSIGN_OR_RETURN(secret, UserSecret());
    source = "the user's secret file";
  }
  if (secret.size() < kMinSecretBytes) {
    return InvalidArgument(source + ": the secret has " + std::to_string(secret.size()) +
                           " bytes; at least " + std::to_string(kMinSecretBytes) + " needed");
  }
  return secret;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const CryptoLibrary& crypto = LoadedCrypto();
  crypto.hmac(crypto.sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

namespace {

// label | nonce_a | nonce_c | connector | acceptor, the ranks as 4 bytes big-endian.
std::string Transcript(std::string_view label, std::string_view nonce_a, std::string_view nonce_c,
                       int connector, int acceptor) {
  std::string data(label);
  data += '\0';
  data += nonce_a;
  data += nonce_c;
  for (const int r : {connector, acceptor}) {
    const auto u = static_cast<std::uint32_t>(r);
    for (int shift = 24; shift >= 0; shift -= 8) data += static_cast<char>((u >> shift) & 0xff);
  }
  return data;
}

}  // namespace

std::string ConnectorMac(std::string_view secret, std::string_view nonce_a,
                         std::string_view nonce_c, int connector, int acceptor) {
  return HmacSha256(secret, Transcript("tessera connector", nonce_a, nonce_c, connector, acceptor));
}

std::string AcceptorMac(std::string_view secret, std::string_view nonce_a, std::string_view nonce_c,
                        int connector, int acceptor) {
  return HmacSha256(secret, Transcript("tessera acceptor", nonce_a, nonce_c, connector, acceptor));
}

bool SameMac(std::string_view got, std::string_view want) {
  return got.size() == want.size() && !want.empty() &&
         LoadedCrypto().memcmp(got.data(), want.data(), want.size()) == 0;
}

struct FrameCipher::Ctx {
  const CryptoLibrary& crypto = Crypto();
  EVP_CIPHER_CTX* ctx = crypto.error.empty() ? crypto.ctx_new() : nullptr;
  int mode = 0;  // 1 once keyed for sealing, 2 for opening
  ~Ctx() {
    if (ctx) crypto.ctx_free(ctx);
  }
};

namespace {
// AES-256-GCM, fetched once: OpenSSL 3 looks a cipher up in its providers on every
// EVP_aes_256_gcm() initialisation, which costs more than sealing a small frame.
const EVP_CIPHER* Aes256Gcm() {
  static EVP_CIPHER* cipher = LoadedCrypto().cipher_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}
}  // namespace

FrameCipher::FrameCipher(std::string key, bool encrypt)
    : key_(std::move(key)), encrypt_(encrypt), ctx_(std::make_unique<Ctx>()) {}
FrameCipher::~FrameCipher() = default;

StatusOr<FrameCipher::Pair> FrameCipher::ForConnection(std::string_view secret,
                                                       std::string_view nonce_a,
                                                       std::string_view nonce_c, int connector,
                                                       int acceptor, bool connecting,
                                                       bool encrypt) {
  Pair keys;
  TESSERA_ASSIGN_OR_RETURN(
      keys.seal, ForDirection(secret, nonce_a, nonce_c, connector, acceptor, connecting, encrypt));
  TESSERA_ASSIGN_OR_RETURN(
      keys.open, ForDirection(secret, nonce_a, nonce_c, connector, acceptor, !connecting, encrypt));
  return keys;
}

StatusOr<std::unique_ptr<FrameCipher>> FrameCipher::ForDirection(std::string_view secret,
                                                                 std::string_view nonce_a,
                                                                 std::string_view nonce_c,
                                                                 int connector, int acceptor,
                                                                 bool to_acceptor, bool encrypt) {
  if (!Crypto().error.empty()) return Unavailable(Crypto().error);
  // HKDF-SHA256 (RFC 5869): extract with both nonces as the salt, expand to the direction's key.
  const std::string salt = std::string(nonce_a) + std::string(nonce_c);
  const std::string prk = HmacSha256(salt, secret);
  // (Keys of the two modes differ: a frame sealed one way never opens the other.)
  std::string info =
      Transcript(std::string(to_acceptor ? "tessera key to acceptor" : "tessera key to connector") +
                     (encrypt ? "" : " (authentication only)"),
                 "", "", connector, acceptor);
  info += '\x01';
  auto cipher = std::unique_ptr<FrameCipher>(new FrameCipher(HmacSha256(prk, info), encrypt));
  if (!cipher->ctx_->ctx || !Aes256Gcm()) return Internal("OpenSSL has no AES-256-GCM context");
  return cipher;
}

namespace {
// The 12-byte GCM IV of frame `sequence`: 4 zero bytes, then the number big-endian. A key
// serves one direction of one connection, so no IV repeats under a key.
void Iv(std::uint64_t sequence, unsigned char iv[12]) {
  for (int i = 0; i < 4; ++i) iv[i] = 0;
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<unsigned char>(sequence >> (56 - 8 * i));
}
}  // namespace

void FrameCipher::Seal(std::string& framed) {
  unsigned char iv[12];
  Iv(sequence_++, iv);
  const std::size_t n = framed.size() - 4;
  auto* body = reinterpret_cast<unsigned char*>(framed.data() + 4);
  EVP_CIPHER_CTX* c = ctx_->ctx;
  const CryptoLibrary& crypto = ctx_->crypto;
  int len = 0;
  // Each call checks nothing it could fail on: the key and IV sizes are fixed, the context is
  // valid; a failure would leave the frame unsealed, which the peer refuses.
  if (ctx_->mode != 1) {  // the key once; each frame only sets its IV
    crypto.encrypt_init(c, Aes256Gcm(), nullptr,
                        reinterpret_cast<const unsigned char*>(key_.data()), nullptr);
    ctx_->mode = 1;
  }
  crypto.encrypt_init(c, nullptr, nullptr, nullptr, iv);
  if (encrypt_) {
    crypto.encrypt_update(c, body, &len, body, static_cast<int>(n));
    crypto.encrypt_final(c, body + len, &len);
  } else {  // GMAC: the body as additional authenticated data, nothing encrypted
    crypto.encrypt_update(c, nullptr, &len, body, static_cast<int>(n));
    crypto.encrypt_final(c, body, &len);
  }
  unsigned char tag[kSealBytes];
  crypto.ctx_ctrl(c, EVP_CTRL_GCM_GET_TAG, kSealBytes, tag);
  framed.append(reinterpret_cast<const char*>(tag), kSealBytes);
  const auto total = static_cast<std::uint32_t>(n + kSealBytes);
  for (int i = 0; i < 4; ++i) framed[i] = static_cast<char>(total >> (24 - 8 * i));
}

Status FrameCipher::Open(std::string_view sealed, std::string& plain) {
  plain.assign(sealed);
  auto opened = OpenInPlace(plain);
  if (!opened.ok()) {
    plain.clear();
    return opened.status();
  }
  plain.resize(opened->size());
  return Status::Ok();
}

StatusOr<std::string_view> FrameCipher::OpenInPlace(std::span<char> sealed) {
  if (sealed.size() < kSealBytes) {
    return InvalidArgument("frame " + std::to_string(sequence_) + " failed authentication (" +
                           std::to_string(sealed.size()) + " bytes, shorter than a seal)");
  }
  unsigned char iv[12];
  Iv(sequence_, iv);
  const std::size_t n = sealed.size() - kSealBytes;
  auto* body = reinterpret_cast<unsigned char*>(sealed.data());
  EVP_CIPHER_CTX* c = ctx_->ctx;
  const CryptoLibrary& crypto = ctx_->crypto;
  int len = 0;
  if (ctx_->mode != 2) {
    crypto.decrypt_init(c, Aes256Gcm(), nullptr,
                        reinterpret_cast<const unsigned char*>(key_.data()), nullptr);
    ctx_->mode = 2;
  }
  crypto.decrypt_init(c, nullptr, nullptr, nullptr, iv);
  crypto.decrypt_update(c, encrypt_ ? body : nullptr, &len, body, static_cast<int>(n));
  if (!encrypt_) len = 0;  // GMAC: the body was only authenticated
  crypto.ctx_ctrl(c, EVP_CTRL_GCM_SET_TAG, kSealBytes, body + n);
  if (crypto.decrypt_final(c, body + len, &len) != 1) {
    return InvalidArgument("frame " + std::to_string(sequence_) +
                           " failed authentication (altered, injected, replayed or out of order)");
  }
  ++sequence_;
  return std::string_view(sealed.data(), n);
}

}  // namespace tessera::net
