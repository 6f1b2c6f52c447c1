#include "net/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tessera::net {

StatusOr<std::string> MakeNonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
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
    return InvalidArgument(
        "no shared secret: set TESSERA_SECRET or TESSERA_SECRET_FILE (tessera launch sets one)");
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
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string ResponseMac(std::string_view secret, std::string_view nonce, int rank) {
  std::string data(nonce);
  data += "tessera";
  data += std::to_string(rank);
  return HmacSha256(secret, data);
}

bool VerifyResponse(std::string_view secret, std::string_view nonce, int rank,
                    std::string_view mac) {
  const std::string want = ResponseMac(secret, nonce, rank);
  return mac.size() == want.size() && CRYPTO_memcmp(mac.data(), want.data(), want.size()) == 0;
}

}  // namespace tessera::net
