#ifndef CFRAMEMAC_H
#define CFRAMEMAC_H

#include <stddef.h>
#include <stdint.h>

/*
 * The per-frame MAC of keyed links: HMAC-SHA256 from the BoringSSL that swift-crypto builds
 * and links into every binary that uses it (its symbols carry the CCryptoBoringSSL_ prefix).
 *
 * Why not swift-crypto's `HMAC`: it cannot be reset to its keyed state in place, so every tag
 * copies that state (two heap allocations per tag), and its generic entry points look up
 * metadata at run time. BoringSSL's HMAC_CTX keeps the keyed inner and outer states and
 * `HMAC_Init_ex(ctx, NULL, 0, NULL, NULL)` restarts from them without allocating. Nothing here
 * is cryptography of our own: these functions only call BoringSSL's HMAC.
 *
 * Ownership: a context comes from `cframemac_new` and is freed (and its key material wiped) by
 * `cframemac_free`, once; the Swift `FrameMAC` class holds one and frees it in its deinit.
 */

/// BoringSSL's HMAC_CTX, opaque here.
typedef struct cframemac_ctx cframemac_ctx;

/// A new context keyed with `key` (HMAC-SHA256), or NULL when out of memory.
cframemac_ctx *cframemac_new(const void *key, size_t key_len);

/// Re-keys a context with `key`; returns 1 on success.
int cframemac_rekey(cframemac_ctx *ctx, const void *key, size_t key_len);

/// Frees a context from `cframemac_new` (NULL is ignored).
void cframemac_free(cframemac_ctx *ctx);

/// Writes the first `tag_len` (at most 32) bytes of HMAC(key, counter as 8 bytes big-endian ||
/// data) to `tag`; returns 1 on success.
int cframemac_tag(cframemac_ctx *ctx, uint64_t counter, const void *data, size_t len,
                  uint8_t *tag, size_t tag_len);

/// 1 when the first `tag_len` bytes of HMAC(key, counter || data) equal `tag` (compared in
/// constant time), else 0.
int cframemac_verify(cframemac_ctx *ctx, uint64_t counter, const void *data, size_t len,
                     const uint8_t *tag, size_t tag_len);

/*
 * Heartbeat datagrams (PROTOCOL.md, "Datagram heartbeats"): a tag from BoringSSL's AES-256-GCM
 * AEAD (EVP_AEAD_CTX_seal with no plaintext: the datagram's 80 bytes are the additional data,
 * the nonce is the key generation and the counter), made and checked in one call, in place.
 * A datagram key is used by one direction of one link and the counter never repeats under it,
 * so no nonce repeats under a key. Nothing here is cryptography of our own.
 *
 * Ownership: a context comes from `cdatagrammac_new` and is freed (key schedule wiped) by
 * `cdatagrammac_free`, once; the Swift `DatagramMAC` class holds one and frees it in its deinit.
 */

/// BoringSSL's EVP_AEAD_CTX, opaque here.
typedef struct cdatagrammac_ctx cdatagrammac_ctx;

/// A context keyed with the 32-byte `key`, or NULL when out of memory.
cdatagrammac_ctx *cdatagrammac_new(const uint8_t key[32]);

/// Frees a context from `cdatagrammac_new` (NULL is ignored).
void cdatagrammac_free(cdatagrammac_ctx *ctx);

/// Seals the 96-byte datagram at `datagram` in place: writes its flags byte (1: keyed), the
/// generation (bytes 4..<8) and the counter (16..<24), big-endian, then the 16-byte tag of bytes
/// 0..<80 at 80. Returns 1 on success.
int cdatagrammac_seal(const cdatagrammac_ctx *ctx, uint8_t *datagram, uint32_t generation, uint64_t counter);

/// 1 when the 96-byte datagram's tag (at 80) is the tag of its first 80 bytes under the
/// generation and counter its header carries, else 0.
int cdatagrammac_open(const cdatagrammac_ctx *ctx, const uint8_t *datagram);

#endif
