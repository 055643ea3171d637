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

#endif
