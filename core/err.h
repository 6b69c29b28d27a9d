/* err.h - error codes and the thread-local last-error message.
 *
 * Fallible functions return 0 or a negative R1_E* code and record one line with
 * r1_err_set() that names the file, the place and what to do.  Only cmd/ prints
 * the message (r1_err_last()) and picks an exit status from the code. */
#ifndef R1_ERR_H
#define R1_ERR_H

enum {
    R1_OK = 0,
    R1_EINVAL = -1,   /* bad argument or bad user input (flag, config, recipe) */
    R1_EFORMAT = -2,  /* malformed or corrupt file */
    R1_EIO = -3,      /* I/O failure (open, read, write, rename) */
    R1_ENOMEM = -4,   /* allocation failed */
    R1_ESTATE = -5,   /* call made in the wrong state (programming or sequencing error) */
    R1_ENUMERIC = -6, /* NaN/Inf met in a loss or gradient */
    R1_EINTR = -7,    /* interrupted by a signal */
};

/* Records a message (printf format) for the calling thread and returns code. */
int r1_err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (adds context on the way up). */
int r1_err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *r1_err_last(void);
int r1_err_code(void);
void r1_err_clear(void);
const char *r1_err_name(int code);

/* Exit status cmd/ uses for an error code: 2 for bad input, 130 for EINTR, else 1. */
int r1_err_exit_status(int code);

#endif
