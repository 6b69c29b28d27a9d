/* sandbox.h - runs an untrusted program (a model's code) as a contained child process:
 * resource limits, a private working directory, an empty environment, no network, no
 * writes outside the working directory, a wall-clock timeout, capped output, and nothing
 * left running or unreaped afterwards.  Linux only.  Used by the `code` reward (code.c);
 * docs/rewards.md ("code") says what is and is not guaranteed.
 *
 * Process layout: the caller forks a supervisor S (new session, and when the kernel
 * allows it new PID + network namespaces, so S is PID 1 of its own namespace); S drops
 * privileges and forks the program P.  P gets the rlimits, Landlock and seccomp and execs.
 * When P exits S reports P's wait status and exits, which (in a PID namespace) kills
 * everything P left behind; the caller also SIGKILLs the whole process group.
 *
 * Units: seconds, bytes.  Errors: int 0 or a negative R1_E* code with r1_err_set(); a
 * program that fails, crashes or times out is not an error (see the result). */
#ifndef R1_STAGES_SANDBOX_H
#define R1_STAGES_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* Isolation mechanisms, as a bit mask (r1_sandbox_result.isolation, limits.require). */
enum {
    R1_SANDBOX_UID_DROP = 1 << 0,       /* started as root: runs as nobody (65534:65534) */
    R1_SANDBOX_USERNS = 1 << 1,         /* own user namespace (own RLIMIT_NPROC count) */
    R1_SANDBOX_NETNS = 1 << 2,          /* own network namespace: only a down loopback */
    R1_SANDBOX_PIDNS = 1 << 3,          /* own PID namespace: sees no host process by pid */
    R1_SANDBOX_LANDLOCK_FS = 1 << 4,    /* Landlock: writes only beneath the work dir */
    R1_SANDBOX_LANDLOCK_NET = 1 << 5,   /* Landlock: no TCP bind/connect */
    R1_SANDBOX_LANDLOCK_SCOPE = 1 << 6, /* Landlock: no signals/abstract sockets outside */
    R1_SANDBOX_SECCOMP = 1 << 7,        /* seccomp filter: no non-unix sockets, no ptrace, ... */
};

/* A zero field (<= 0 for the signed ones) takes its default (r1_sandbox_limits_default). */
struct r1_sandbox_limits {
    double cpu_seconds;   /* RLIMIT_CPU of the program (per process, rounded up to 1 s) */
    double wall_seconds;  /* from fork to SIGKILL of the whole group */
    size_t address_space; /* RLIMIT_AS, bytes */
    size_t file_size;     /* RLIMIT_FSIZE, bytes: largest file the program may write */
    int processes;        /* processes + threads the program may have, itself included */
    int open_files;       /* RLIMIT_NOFILE; <= 0: 64 */
    size_t output_cap;    /* bytes kept of stdout and of stderr; more kills the group */
    unsigned require;     /* R1_SANDBOX_* that must engage, else the run fails (R1_ESTATE) */
};

struct r1_sandbox_result {
    int exit_status;       /* the program's exit code, -1 when it did not exit normally */
    int signal;            /* the signal that ended it, 0 when it exited */
    bool timed_out;        /* killed at wall_seconds */
    bool output_truncated; /* stdout or stderr passed output_cap (the group was killed) */
    char *out, *err;       /* stdout, stderr (NUL-terminated, owned; release below) */
    size_t out_len, err_len;
    double wall_seconds; /* measured */
    unsigned isolation;  /* R1_SANDBOX_* that engaged */
    int pgid;            /* the process group that ran (all of it is dead on return) */
};

/* Defaults for a short test run: 2 s CPU, 5 s wall, 256 MiB address space, 1 MiB files,
 * 8 processes, 64 open files, 64 KiB output. */
struct r1_sandbox_limits r1_sandbox_limits_default(void);

/* A private work directory for r1_sandbox_run: mkdtemp under $TMPDIR (else /tmp), mode
 * 0700, owned by nobody when the caller is root (so the dropped-privilege program can use
 * it).  *out is malloc'd; remove with r1_sandbox_dir_remove. */
int r1_sandbox_dir_create(char **out);

/* Removes dir and everything under it, never following symbolic links (a link is removed,
 * not its target).  Missing dir: 0. */
int r1_sandbox_dir_remove(const char *dir);

/* Writes data to dir/name (mode 0644, created or truncated; name holds no '/'). */
int r1_sandbox_write_file(const char *dir, const char *name, const char *data, size_t len);

/* Runs argv (argv[0] without a '/' is looked up in /usr/local/bin:/usr/bin:/bin) in
 * workdir (from r1_sandbox_dir_create), feeding stdin_data (may be NULL), under lim (NULL:
 * the defaults).  workdir NULL: a fresh private directory, removed afterwards.  The
 * environment is only PATH, LANG=C.UTF-8, HOME and TMPDIR (= workdir).  *res is filled
 * (release with r1_sandbox_result_release) on 0 and zeroed on error.  Thread-safe apart
 * from the usual fork caveats (no locks are taken in the child). */
int r1_sandbox_run(const char *const *argv, const char *stdin_data, size_t stdin_len,
                   const char *workdir, const struct r1_sandbox_limits *lim,
                   struct r1_sandbox_result *res);

void r1_sandbox_result_release(struct r1_sandbox_result *res);

/* The names of the bits in mask, comma-separated ("uid_drop,netns,..."), into buf. */
const char *r1_sandbox_isolation_str(unsigned mask, char *buf, size_t cap);

#endif
