/* err.c - thread-local last-error message (see err.h). */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define R1_ERR_MSG_MAX 1024

static _Thread_local char err_msg[R1_ERR_MSG_MAX];
static _Thread_local int err_code;

int r1_err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
    va_end(ap);
    err_code = code;
    return code;
}

int r1_err_wrap(int code, const char *fmt, ...)
{
    char prefix[R1_ERR_MSG_MAX / 2], old[R1_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof(old));
    /* the message is cut at R1_ERR_MSG_MAX bytes; the prefix gets at most half */
    size_t n = strlen(prefix);
    memcpy(err_msg, prefix, n);
    err_msg[n] = ':';
    err_msg[n + 1] = ' ';
    size_t room = sizeof(err_msg) - n - 3;
    size_t ol = strnlen(old, room);
    memcpy(err_msg + n + 2, old, ol);
    err_msg[n + 2 + ol] = '\0';
    err_code = code;
    return code;
}

const char *r1_err_last(void) { return err_msg[0] ? err_msg : "unknown error"; }
int r1_err_code(void) { return err_code; }

void r1_err_clear(void)
{
    err_msg[0] = '\0';
    err_code = 0;
}

const char *r1_err_name(int code)
{
    switch (code) {
    case R1_OK: return "ok";
    case R1_EINVAL: return "invalid input";
    case R1_EFORMAT: return "bad file format";
    case R1_EIO: return "I/O error";
    case R1_ENOMEM: return "out of memory";
    case R1_ESTATE: return "bad state";
    case R1_ENUMERIC: return "non-finite value";
    case R1_EINTR: return "interrupted";
    default: return "error";
    }
}

int r1_err_exit_status(int code)
{
    switch (code) {
    case R1_OK: return 0;
    case R1_EINVAL:
    case R1_EFORMAT: return 2;
    case R1_EINTR: return 130;
    default: return 1;
    }
}
