// The shared secret and the HMAC challenge every connection answers before anything else is
// read from it: a peer without the credentials is dropped.
//
//   acceptor -> connector:  Challenge{nonce: 32 random bytes}
//   connector -> acceptor:  Response{rank, mac: HMAC-SHA256(secret, nonce || "tessera" || rank)}
//
// The acceptor compares in constant time and drops the connection on a mismatch. The secret
// comes from TESSERA_SECRET (the value) or TESSERA_SECRET_FILE (a file holding it); `tessera
// launch` generates one per run.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

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
// HMAC-SHA256(key, data), 32 bytes.
std::string HmacSha256(std::string_view key, std::string_view data);
// HMAC-SHA256(secret, nonce || "tessera" || decimal rank).
std::string ResponseMac(std::string_view secret, std::string_view nonce, int rank);
// Constant-time check of a response.
bool VerifyResponse(std::string_view secret, std::string_view nonce, int rank,
                    std::string_view mac);

}  // namespace tessera::net
