/* sha256.c - SHA-256 over OpenSSL EVP (see sha256.h). */
#include "core/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"

#define BLOCK (1u << 20)

static void to_hex(char hex[R1_SHA256_HEX], const unsigned char *md)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

int r1_sha256_bytes(char hex[R1_SHA256_HEX], const void *data, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return r1_err_set(R1_EIO, "sha256: OpenSSL digest failed; check the libcrypto install");
    to_hex(hex, md);
    return 0;
}

int r1_sha256_file(char hex[R1_SHA256_HEX], uint64_t *size, const char *path)
{
    int rc = 0;
    unsigned char *buf = NULL;
    EVP_MD_CTX *ctx = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return r1_err_set(R1_EIO, "%s: cannot open for hashing: %s", path, strerror(errno));
    buf = malloc(BLOCK);
    ctx = EVP_MD_CTX_new();
    if (!buf || !ctx) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory while hashing", path);
        goto out;
    }
    if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        rc = r1_err_set(R1_EIO, "%s: OpenSSL digest init failed", path);
        goto out;
    }
    uint64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, BLOCK, fp)) > 0) {
        if (!EVP_DigestUpdate(ctx, buf, n)) {
            rc = r1_err_set(R1_EIO, "%s: OpenSSL digest update failed", path);
            goto out;
        }
        total += n;
    }
    if (ferror(fp)) {
        rc = r1_err_set(R1_EIO, "%s: read error while hashing: %s", path, strerror(errno));
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_DigestFinal_ex(ctx, md, &mdlen) || mdlen != 32) {
        rc = r1_err_set(R1_EIO, "%s: OpenSSL digest final failed", path);
        goto out;
    }
    to_hex(hex, md);
    if (size)
        *size = total;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(fp);
    return rc;
}

int r1_sha256_is_hex(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[64] == '\0';
}
