// The shared secret, the mutual handshake every connection passes before anything else is
// read from it, and the sealing of every frame after it.
//
//   acceptor A -> connector C:  Challenge{nonce_a: 32 random bytes}
//   C -> A:  Response{rank c, nonce_c, HMAC(secret, "tessera connector" | nonce_a | nonce_c | c |
//   a)} A -> C:  Confirm{HMAC(secret, "tessera acceptor" | nonce_a | nonce_c | c | a)}
//
// Each side checks the other's MAC in constant time (A: that C holds the secret and is process c;
// C: that A holds it and is the process a it dialled) and drops the connection on a mismatch.
// Both nonces are fresh, so neither MAC can be replayed on another connection. Every frame after
// the handshake is sealed with AES-256-GCM under a key of its direction, derived (HKDF-SHA256)
// from the secret and both nonces, with the frame's sequence number as the IV: a relay in
// between can read nothing, and a frame it injects, alters, replays, reorders or drops fails
// the next frame's check, which fails the run naming the connection. The secret comes from
// TESSERA_SECRET (the value) or TESSERA_SECRET_FILE (a file holding it); `tessera launch`
// generates one per run.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tessera/core/status.h"

namespace tessera::net {

inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMinSecretBytes = 16;

// kNonceBytes from the operating system's CSPRNG.
StatusOr<std::string> MakeNonce();
// A fresh secret: 32 random bytes as 64 hex digits.
StatusOr<std::string> GenerateSecret();
// The secret from the environment (TESSERA_SECRET, else the file named by
// TESSERA_SECRET_FILE, trailing newline removed); an error says which is missing or too short.
StatusOr<std::string> SecretFromEnvironment();
// Without TESSERA_SECRET and TESSERA_SECRET_FILE, the secret SecretFromEnvironment reads:
// $TESSERA_SECRET_DIR/secret, else ~/.tessera/secret, made (32 random bytes, hex, mode 0600)
// by the first process that finds none. Every process of a run on one host, or on hosts that
// share the home directory (as cluster nodes usually do), reads the same one; a file that
// others may read or that is not the user's is refused.
StatusOr<std::string> UserSecret();
// HMAC-SHA256(key, data), 32 bytes.
std::string HmacSha256(std::string_view key, std::string_view data);
// The handshake's MACs (see above): the connector's, and the acceptor's confirmation.
std::string ConnectorMac(std::string_view secret, std::string_view nonce_a,
                         std::string_view nonce_c, int connector, int acceptor);
std::string AcceptorMac(std::string_view secret, std::string_view nonce_a, std::string_view nonce_c,
                        int connector, int acceptor);
// Constant-time comparison of a MAC with the expected one.
bool SameMac(std::string_view got, std::string_view want);

// The frame size a sealed frame adds: the GCM tag.
inline constexpr std::size_t kSealBytes = 16;

// One direction of a connection: seals frames (Seal) or opens them (Open), numbering them from
// 0. Sealing encrypts the body and authenticates it (AES-256-GCM), or, with `encrypt` off,
// only authenticates it (AES-256-GMAC: the body stays readable, but a frame altered, injected,
// replayed, reordered or dropped still fails to open). Not thread-safe: a connection seals
// under its send lock and opens on its reader.
class FrameCipher {
 public:
  ~FrameCipher();
  FrameCipher(const FrameCipher&) = delete;
  FrameCipher& operator=(const FrameCipher&) = delete;
  // The key of direction connector -> acceptor (to_acceptor) or back, from the handshake.
  static StatusOr<std::unique_ptr<FrameCipher>> ForDirection(std::string_view secret,
                                                             std::string_view nonce_a,
                                                             std::string_view nonce_c,
                                                             int connector, int acceptor,
                                                             bool to_acceptor, bool encrypt = true);
  // Both directions of a connection, as this end uses them: `seal` for what it sends, `open`
  // for what it receives (`connecting`: this end is the connector).
  struct Pair {
    std::unique_ptr<FrameCipher> seal, open;
  };
  static StatusOr<Pair> ForConnection(std::string_view secret, std::string_view nonce_a,
                                      std::string_view nonce_c, int connector, int acceptor,
                                      bool connecting, bool encrypt = true);
  // `framed` is a 4-byte length and a body (AppendFrame's output); encrypts the body in place,
  // appends the tag and rewrites the length.
  void Seal(std::string& framed);
  // A sealed body as FrameReader cut it: the plaintext into `plain`, or an error when the frame
  // is not the next one this direction sealed (altered, injected, replayed, out of order).
  Status Open(std::string_view sealed, std::string& plain);
  // The same, decrypting in place: the plaintext is the returned view, at the start of
  // `sealed` (whose bytes are then no longer the sealed frame, whatever the outcome).
  StatusOr<std::string_view> OpenInPlace(std::span<char> sealed);

 private:
  struct Ctx;
  FrameCipher(std::string key, bool encrypt);
  std::string key_;
  bool encrypt_;
  std::uint64_t sequence_ = 0;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace tessera::net
