/* safetensors.h - reading and writing .safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, "name": {"dtype": "F32"|"BF16"|"F16"|"I32",
 *    "shape": [...], "data_offsets": [begin, end]}, ...}
 * then the data region; offsets are relative to its start.  Every offset,
 * size and shape is checked against the file before any byte is read, so a
 * truncated or corrupt file gives R1_EFORMAT with a message naming the file and
 * the tensor, never a crash. */
#ifndef R1_SAFETENSORS_H
#define R1_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

struct r1_st_entry {
    char *name;
    enum r1_dtype dtype;
    int ndim;
    int64_t shape[R1_TENSOR_MAX_DIMS];
    uint64_t offset; /* from the start of the data region */
    uint64_t nbytes;
};

struct r1_st_file {
    char *path;
    int n;
    struct r1_st_entry *entries; /* in file order */
    int n_meta;
    char **meta_keys, **meta_values;
    uint64_t data_start; /* 8 + header length */
    uint64_t file_size;
    void *fp; /* FILE * */
};

/* Opens and validates the header; data is read on demand. */
int r1_st_open(struct r1_st_file **out, const char *path);
void r1_st_close(struct r1_st_file *f);
const struct r1_st_entry *r1_st_find(const struct r1_st_file *f, const char *name);
const char *r1_st_meta(const struct r1_st_file *f, const char *key); /* NULL when absent */
/* Reads a tensor converted to f32 into host dst of n elements; n must equal its numel. */
int r1_st_read_f32(const struct r1_st_file *f, const struct r1_st_entry *e, float *dst, int64_t n);
/* Reads the raw bytes of a tensor (nbytes must match). */
int r1_st_read_raw(const struct r1_st_file *f, const struct r1_st_entry *e, void *dst,
                   size_t nbytes);

/* Writing: collect tensors (host memory, borrowed until r1_st_write), then write.
 * Data is converted from f32 to the requested dtype when src_f32 is set. */
struct r1_st_writer;
int r1_st_writer_create(struct r1_st_writer **out);
void r1_st_writer_free(struct r1_st_writer *w);
int r1_st_writer_meta(struct r1_st_writer *w, const char *key, const char *value);
/* data: host pointer in dtype dt (borrowed). */
int r1_st_writer_add(struct r1_st_writer *w, const char *name, enum r1_dtype dt, int ndim,
                     const int64_t *shape, const void *data);
/* data: host f32 pointer written out as dtype dt (converted at write time). */
int r1_st_writer_add_f32(struct r1_st_writer *w, const char *name, enum r1_dtype dt, int ndim,
                         const int64_t *shape, const float *data);
/* Writes path atomically (path.tmp, fsync, rename).  Tensors sorted by element
 * size (largest first) then name, as the reference writer does, so each starts
 * aligned to its element size; header padded with spaces to 8 bytes. */
int r1_st_writer_write(struct r1_st_writer *w, const char *path);

#endif
