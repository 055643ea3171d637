#include "CFrameMAC.h"

/* The few BoringSSL functions used, under the prefix swift-crypto builds them with (see
 * boringssl/include/openssl/hmac.h and digest.h in swift-crypto's CCryptoBoringSSL). */
typedef struct cframemac_md cframemac_md; /* EVP_MD */
cframemac_ctx *CCryptoBoringSSL_HMAC_CTX_new(void);
void CCryptoBoringSSL_HMAC_CTX_free(cframemac_ctx *ctx);
int CCryptoBoringSSL_HMAC_Init_ex(cframemac_ctx *ctx, const void *key, size_t key_len,
                                  const cframemac_md *md, void *engine);
int CCryptoBoringSSL_HMAC_Update(cframemac_ctx *ctx, const uint8_t *data, size_t data_len);
int CCryptoBoringSSL_HMAC_Final(cframemac_ctx *ctx, uint8_t *out, unsigned int *out_len);
const cframemac_md *CCryptoBoringSSL_EVP_sha256(void);
int CCryptoBoringSSL_CRYPTO_memcmp(const void *a, const void *b, size_t len);
void CCryptoBoringSSL_OPENSSL_cleanse(void *ptr, size_t len);

cframemac_ctx *cframemac_new(const void *key, size_t key_len) {
    cframemac_ctx *ctx = CCryptoBoringSSL_HMAC_CTX_new();
    if (ctx == NULL) return NULL;
    if (!cframemac_rekey(ctx, key, key_len)) {
        CCryptoBoringSSL_HMAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int cframemac_rekey(cframemac_ctx *ctx, const void *key, size_t key_len) {
    return CCryptoBoringSSL_HMAC_Init_ex(ctx, key, key_len, CCryptoBoringSSL_EVP_sha256(), NULL);
}

void cframemac_free(cframemac_ctx *ctx) {
    if (ctx != NULL) CCryptoBoringSSL_HMAC_CTX_free(ctx);
}

/* The full HMAC into `out` (32 bytes): restart from the keyed state (no allocation), then the
 * counter and the data. */
static int cframemac_compute(cframemac_ctx *ctx, uint64_t counter, const void *data, size_t len,
                             uint8_t out[32]) {
    uint8_t be[8];
    unsigned int out_len = 0;
    for (int i = 0; i < 8; i++) be[i] = (uint8_t)(counter >> (56 - 8 * i));
    if (!CCryptoBoringSSL_HMAC_Init_ex(ctx, NULL, 0, NULL, NULL)) return 0;
    if (!CCryptoBoringSSL_HMAC_Update(ctx, be, sizeof be)) return 0;
    if (len > 0 && !CCryptoBoringSSL_HMAC_Update(ctx, data, len)) return 0;
    return CCryptoBoringSSL_HMAC_Final(ctx, out, &out_len) && out_len == 32;
}

int cframemac_tag(cframemac_ctx *ctx, uint64_t counter, const void *data, size_t len,
                  uint8_t *tag, size_t tag_len) {
    uint8_t mac[32];
    if (tag_len > sizeof mac || !cframemac_compute(ctx, counter, data, len, mac)) return 0;
    for (size_t i = 0; i < tag_len; i++) tag[i] = mac[i];
    CCryptoBoringSSL_OPENSSL_cleanse(mac, sizeof mac);
    return 1;
}

int cframemac_verify(cframemac_ctx *ctx, uint64_t counter, const void *data, size_t len,
                     const uint8_t *tag, size_t tag_len) {
    uint8_t mac[32];
    if (tag_len > sizeof mac || !cframemac_compute(ctx, counter, data, len, mac)) return 0;
    int equal = CCryptoBoringSSL_CRYPTO_memcmp(mac, tag, tag_len) == 0;
    CCryptoBoringSSL_OPENSSL_cleanse(mac, sizeof mac);
    return equal;
}

/* The AEAD functions used (boringssl/include/openssl/aead.h in swift-crypto's CCryptoBoringSSL). */
typedef struct cdatagrammac_aead cdatagrammac_aead; /* EVP_AEAD */
const cdatagrammac_aead *CCryptoBoringSSL_EVP_aead_aes_256_gcm(void);
cdatagrammac_ctx *CCryptoBoringSSL_EVP_AEAD_CTX_new(const cdatagrammac_aead *aead, const uint8_t *key,
                                                    size_t key_len, size_t tag_len);
void CCryptoBoringSSL_EVP_AEAD_CTX_free(cdatagrammac_ctx *ctx);
int CCryptoBoringSSL_EVP_AEAD_CTX_seal(const cdatagrammac_ctx *ctx, uint8_t *out, size_t *out_len,
                                       size_t max_out_len, const uint8_t *nonce, size_t nonce_len,
                                       const uint8_t *in, size_t in_len, const uint8_t *ad, size_t ad_len);
int CCryptoBoringSSL_EVP_AEAD_CTX_open(const cdatagrammac_ctx *ctx, uint8_t *out, size_t *out_len,
                                       size_t max_out_len, const uint8_t *nonce, size_t nonce_len,
                                       const uint8_t *in, size_t in_len, const uint8_t *ad, size_t ad_len);

enum { datagram_signed = 80, datagram_tag = 16 };

cdatagrammac_ctx *cdatagrammac_new(const uint8_t key[32]) {
    return CCryptoBoringSSL_EVP_AEAD_CTX_new(CCryptoBoringSSL_EVP_aead_aes_256_gcm(), key, 32, datagram_tag);
}

void cdatagrammac_free(cdatagrammac_ctx *ctx) {
    if (ctx != NULL) CCryptoBoringSSL_EVP_AEAD_CTX_free(ctx);
}

/* The nonce: generation (4 bytes) then counter (8 bytes), as the header carries them. */
static void cdatagrammac_nonce(const uint8_t *datagram, uint8_t nonce[12]) {
    for (int i = 0; i < 4; i++) nonce[i] = datagram[4 + i];
    for (int i = 0; i < 8; i++) nonce[4 + i] = datagram[16 + i];
}

int cdatagrammac_seal(const cdatagrammac_ctx *ctx, uint8_t *datagram, uint32_t generation, uint64_t counter) {
    uint8_t nonce[12];
    size_t out_len = 0;
    datagram[1] = 1;
    for (int i = 0; i < 4; i++) datagram[4 + i] = (uint8_t)(generation >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) datagram[16 + i] = (uint8_t)(counter >> (56 - 8 * i));
    cdatagrammac_nonce(datagram, nonce);
    return CCryptoBoringSSL_EVP_AEAD_CTX_seal(ctx, datagram + datagram_signed, &out_len, datagram_tag, nonce,
                                              sizeof nonce, NULL, 0, datagram, datagram_signed) &&
           out_len == datagram_tag;
}

int cdatagrammac_open(const cdatagrammac_ctx *ctx, const uint8_t *datagram) {
    uint8_t nonce[12], none[1];
    size_t out_len = 0;
    cdatagrammac_nonce(datagram, nonce);
    return CCryptoBoringSSL_EVP_AEAD_CTX_open(ctx, none, &out_len, 0, nonce, sizeof nonce,
                                              datagram + datagram_signed, datagram_tag, datagram, datagram_signed) == 1;
}
