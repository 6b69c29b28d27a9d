/* checkpoint-internal.h - what checkpoint.c shares with checkpoint-verify.c; not a
 * public header.  Paths returned as char * are malloc'd and belong to the caller
 * (NULL, with the error set, when out of memory). */
#ifndef R1_CHECKPOINT_INTERNAL_H
#define R1_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/checkpoint.h"

#define R1_CHECKPOINT_MANIFEST "manifest.json"

/* printf into a new string. */
char *r1_checkpoint_fmt_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file into *data (NUL-terminated, *len bytes without the NUL). */

/* RUN/objects/sha256/<2 hex>/<62 hex>. */
char *r1_checkpoint_object_path(const char *run_dir, const char *hex);

/* checkpoints/<stage>/<step, 8 digits>, relative to the run directory. */
char *r1_checkpoint_rel_path(const char *stage, int64_t step);

/* Parses manifest bytes into ck (stage, kind, step, parent, recipe hash, seed, data,
 * files with paths under dir).  where names the manifest in messages. */
int r1_checkpoint_parse_manifest(struct r1_checkpoint *ck, const char *buf, size_t len,
                                 const char *where, const char *dir);

#endif
