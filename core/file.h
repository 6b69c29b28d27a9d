/* file.h - whole-file reads and atomic whole-file writes.
 *
 * r1_file_write_atomic writes path.tmp, fsyncs it and renames it over path, so a
 * reader (or a run killed mid-write) sees the old file or the new one, never half. */
#ifndef R1_FILE_H
#define R1_FILE_H

#include <stddef.h>

/* *data: malloc'd, NUL-terminated (the NUL not counted in *len).  R1_EIO naming path. */
int r1_file_read(const char *path, char **data, size_t *len);
/* R1_EIO naming path; the temporary file is removed on failure. */
int r1_file_write_atomic(const char *path, const void *data, size_t len);

/* o (a jansson json_t) dumped with jansson's flags plus a final newline, written
 * atomically.  R1_ENOMEM (or R1_EFORMAT for a string that is not UTF-8) naming path when
 * it cannot be formatted.  o stays the caller's. */
struct json_t;
int r1_file_write_json(const char *path, const struct json_t *o, size_t flags);

/* Copies src to dst (created or truncated, fsynced); dst is removed on failure. */
int r1_file_copy(const char *src, const char *dst);

#endif
