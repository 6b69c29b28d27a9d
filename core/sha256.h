/* sha256.h - SHA-256 of files and byte strings (OpenSSL EVP), as lowercase hex.
 *
 * Hex digests are 64 characters plus a terminating NUL (R1_SHA256_HEX bytes).
 * Files are read in 1 MiB blocks, so hashing a large weight file needs no
 * more memory than that. */
#ifndef R1_SHA256_H
#define R1_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define R1_SHA256_HEX 65

/* hex receives the digest of len bytes at data. */
int r1_sha256_bytes(char hex[R1_SHA256_HEX], const void *data, size_t len);
/* hex receives the digest of the file at path; *size (when not NULL) its length in bytes.
 * R1_EIO naming path when it cannot be opened or read. */
int r1_sha256_file(char hex[R1_SHA256_HEX], uint64_t *size, const char *path);
/* 1 when s is 64 lowercase hex digits, else 0. */
int r1_sha256_is_hex(const char *s);

#endif
