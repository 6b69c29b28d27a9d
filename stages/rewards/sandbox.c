/* sandbox.c - r1_sandbox_run: a contained child process for untrusted code (see sandbox.h
 * for the process layout, docs/rewards.md for the guarantees).
 *
 * Everything the children need (argv, environment, seccomp program, paths) is built
 * before fork: between fork and exec the children make raw system calls only (no malloc,
 * no stdio, no locks), since the caller may be multi-threaded.  The children report to the
 * caller through a status pipe of fixed-size records. */
#include "stages/rewards/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

#define NOBODY 65534
#define SANDBOX_PATH "/usr/local/bin:/usr/bin:/bin"
#define MAX_DEPTH 256 /* directory nesting r1_sandbox_dir_remove descends */

/* ---- Landlock (defined here: the installed headers may predate ABI 4-6) ---- */

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define LL_CREATE_VERSION (1u << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_FS_EXECUTE (1ull << 0)
#define LL_FS_WRITE_FILE (1ull << 1)
#define LL_FS_READ_FILE (1ull << 2)
#define LL_FS_READ_DIR (1ull << 3)
#define LL_FS_REMOVE_DIR (1ull << 4)
#define LL_FS_REMOVE_FILE (1ull << 5)
#define LL_FS_MAKE_CHAR (1ull << 6)
#define LL_FS_MAKE_DIR (1ull << 7)
#define LL_FS_MAKE_REG (1ull << 8)
#define LL_FS_MAKE_SOCK (1ull << 9)
#define LL_FS_MAKE_FIFO (1ull << 10)
#define LL_FS_MAKE_BLOCK (1ull << 11)
#define LL_FS_MAKE_SYM (1ull << 12)
#define LL_FS_REFER (1ull << 13)    /* ABI 2 */
#define LL_FS_TRUNCATE (1ull << 14) /* ABI 3 */
#define LL_NET_BIND_TCP (1ull << 0) /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ull << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ull << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ull << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs, handled_access_net, scoped;
};

struct ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

/* ---- seccomp ---- */

#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

#define CLONE_NS_MASK                                                                              \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |  \
     CLONE_NEWNET)

#define FILTER_MAX 96

struct filter {
    struct sock_filter ins[FILTER_MAX];
    int n;
};

static void emit(struct filter *f, uint16_t code, uint32_t k, uint8_t jt, uint8_t jf)
{
    if (f->n < FILTER_MAX)
        f->ins[f->n++] = (struct sock_filter){code, jt, jf, k};
}

#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))

/* The program's filter: wrong architecture kills; sockets other than AF_UNIX, clone with
 * namespace flags and the listed calls fail with EPERM; clone3 fails with ENOSYS (libc
 * falls back to clone, whose flags a filter can read).  Returns false when this
 * architecture has no filter. */
static bool filter_build(struct filter *f)
{
#ifdef SECCOMP_ARCH
    static const int deny[] = {
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_setsid,
        SYS_setpgid,
        SYS_unshare,
        SYS_setns,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_userfaultfd,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_kcmp,
#ifdef SYS_chroot
        SYS_chroot,
#endif
    };
    f->n = 0;
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0);
    emit(f, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
#if defined(__x86_64__)
    emit(f, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1); /* x32 system calls */
    emit(f, BPF_RET | BPF_K, RET_ERRNO(EPERM), 0, 0);
#endif
    for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++) {
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)deny[i], 0, 1);
        emit(f, BPF_RET | BPF_K, RET_ERRNO(EPERM), 0, 0);
    }
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    emit(f, BPF_RET | BPF_K, RET_ERRNO(ENOSYS), 0, 0);
    /* socket(domain, ...): only AF_UNIX (the low 32 bits of args[0], little-endian) */
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 4);
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
    emit(f, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    emit(f, BPF_RET | BPF_K, RET_ERRNO(EPERM), 0, 0);
    /* clone(flags, ...): no new namespaces */
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
    emit(f, BPF_JMP | BPF_JSET | BPF_K, CLONE_NS_MASK, 0, 1);
    emit(f, BPF_RET | BPF_K, RET_ERRNO(EPERM), 0, 0);
    emit(f, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    emit(f, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    return f->n < FILTER_MAX;
#else
    f->n = 0;
    return false;
#endif
}

/* ---- what the children get, prepared before fork ---- */

enum { REC_ENGAGED = 1, REC_FAIL, REC_EXIT };
enum {
    STAGE_SETUP = 1, /* setsid, descriptors, chdir */
    STAGE_PRIV,      /* dropping to nobody */
    STAGE_FORK,      /* the supervisor's fork */
    STAGE_RLIMIT,
    STAGE_EXEC,
    STAGE_REQUIRE, /* a required mechanism did not engage */
};

struct record {
    int kind, a, b;
};

struct plan {
    const char *path;  /* resolved argv[0] */
    char *const *argv; /* NULL-terminated */
    char *const *envp;
    const char *workdir;
    struct r1_sandbox_limits lim;
    struct filter filter;
    bool have_filter;
    bool root;
    bool pidns; /* the supervisor was cloned into new PID + net namespaces */
    int fd_in, fd_out, fd_err, fd_status; /* the child ends */
};

static void put_record(int fd, int kind, int a, int b)
{
    struct record r = {kind, a, b};
    ssize_t w;
    do
        w = write(fd, &r, sizeof(r));
    while (w < 0 && errno == EINTR);
}

static void fail_child(const struct plan *p, int stage)
{
    put_record(p->fd_status, REC_FAIL, stage, errno);
    _exit(127);
}

static void set_limit(const struct plan *p, int res, rlim_t soft, rlim_t hard)
{
    struct rlimit r = {soft, hard};
    if (setrlimit(res, &r) != 0)
        fail_child(p, STAGE_RLIMIT);
}

/* Landlock for the program: writes only beneath the work dir (and to /dev/null), no TCP,
 * no signals or abstract sockets outside the sandbox.  Returns the R1_SANDBOX_* bits. */
static unsigned landlock_apply(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_VERSION);
    if (abi < 1)
        return 0;
    uint64_t write_fs = LL_FS_WRITE_FILE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE | LL_FS_MAKE_CHAR |
                        LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SOCK | LL_FS_MAKE_FIFO |
                        LL_FS_MAKE_BLOCK | LL_FS_MAKE_SYM;
    if (abi >= 2)
        write_fs |= LL_FS_REFER;
    if (abi >= 3)
        write_fs |= LL_FS_TRUNCATE;
    struct ll_ruleset_attr attr = {write_fs, 0, 0};
    size_t size = sizeof(uint64_t);
    unsigned got = R1_SANDBOX_LANDLOCK_FS;
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
        size = 2 * sizeof(uint64_t);
        got |= R1_SANDBOX_LANDLOCK_NET;
    }
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
        size = 3 * sizeof(uint64_t);
        got |= R1_SANDBOX_LANDLOCK_SCOPE;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0)
        return 0;
    int ok = 1;
    struct ll_path_beneath rule = {write_fs, open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)};
    if (rule.parent_fd < 0 || syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &rule, 0))
        ok = 0;
    if (rule.parent_fd >= 0)
        close(rule.parent_fd);
    rule.allowed_access = LL_FS_WRITE_FILE | (abi >= 3 ? LL_FS_TRUNCATE : 0);
    rule.parent_fd = open("/dev/null", O_PATH | O_CLOEXEC);
    if (rule.parent_fd >= 0) { /* best effort: programs may write to /dev/null */
        syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &rule, 0);
        close(rule.parent_fd);
    }
    if (ok && syscall(SYS_landlock_restrict_self, rs, 0) != 0)
        ok = 0;
    close(rs);
    return ok ? got : 0;
}

/* The program P: limits, Landlock, seccomp, exec.  Never returns. */
static void run_program(const struct plan *p, unsigned engaged)
{
    const struct r1_sandbox_limits *l = &p->lim;
    rlim_t cpu = (rlim_t)(l->cpu_seconds > 1 ? l->cpu_seconds + 0.999 : 1);
    set_limit(p, RLIMIT_CPU, cpu, cpu + 1); /* SIGXCPU, then SIGKILL a second later */
    set_limit(p, RLIMIT_AS, l->address_space, l->address_space);
    set_limit(p, RLIMIT_FSIZE, l->file_size, l->file_size);
    set_limit(p, RLIMIT_CORE, 0, 0);
    set_limit(p, RLIMIT_NOFILE, (rlim_t)l->open_files, (rlim_t)l->open_files);
    set_limit(p, RLIMIT_MEMLOCK, 0, 0);
    set_limit(p, RLIMIT_MSGQUEUE, 0, 0);
    /* the supervisor counts too when the count is per user namespace */
    rlim_t nproc = (rlim_t)l->processes + ((engaged & R1_SANDBOX_USERNS) ? 1 : 0);
    set_limit(p, RLIMIT_NPROC, nproc, nproc);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_child(p, STAGE_SETUP);
    engaged |= landlock_apply();
    if (p->have_filter) {
        struct sock_fprog prog = {(unsigned short)p->filter.n, (struct sock_filter *)p->filter.ins};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0)
            engaged |= R1_SANDBOX_SECCOMP;
    }
    if ((engaged & l->require) != l->require) {
        errno = 0;
        put_record(p->fd_status, REC_ENGAGED, (int)engaged, 0);
        put_record(p->fd_status, REC_FAIL, STAGE_REQUIRE, (int)(l->require & ~engaged));
        _exit(127);
    }
    put_record(p->fd_status, REC_ENGAGED, (int)engaged, 0);
    fcntl(p->fd_status, F_SETFD, FD_CLOEXEC);
    execve(p->path, p->argv, p->envp);
    fail_child(p, STAGE_EXEC);
}

/* The supervisor S (PID 1 of its namespace when p->pidns).  Never returns. */
static void supervise(const struct plan *p)
{
    unsigned engaged = p->pidns ? (R1_SANDBOX_PIDNS | R1_SANDBOX_NETNS) : 0;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    if (setsid() < 0)
        fail_child(p, STAGE_SETUP);
    /* descriptors: move the four ends above 9, then onto 0, 1, 2 and 3 */
    int src[4] = {p->fd_in, p->fd_out, p->fd_err, p->fd_status}, hi[4];
    for (int i = 0; i < 4; i++)
        if ((hi[i] = fcntl(src[i], F_DUPFD, 10)) < 0)
            fail_child(p, STAGE_SETUP);
    for (int i = 0; i < 4; i++)
        if (dup2(hi[i], i) != i)
            fail_child(p, STAGE_SETUP);
    struct plan q = *p;
    q.fd_status = 3;
    p = &q;
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
        for (int fd = 4; fd < 1024; fd++)
            close(fd);
    if (chdir(p->workdir) != 0)
        fail_child(p, STAGE_SETUP);
    umask(077);
    if (p->root) {
        if (!p->pidns && unshare(CLONE_NEWNET) == 0)
            engaged |= R1_SANDBOX_NETNS;
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, NOBODY, NOBODY, NOBODY) != 0 ||
            syscall(SYS_setresuid, NOBODY, NOBODY, NOBODY) != 0 || getuid() != NOBODY)
            fail_child(p, STAGE_PRIV);
        engaged |= R1_SANDBOX_UID_DROP;
        /* a user namespace of its own: RLIMIT_NPROC then counts this sandbox only */
        if (unshare(CLONE_NEWUSER) == 0)
            engaged |= R1_SANDBOX_USERNS;
    } else if (!p->pidns) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0)
            engaged |= R1_SANDBOX_USERNS | R1_SANDBOX_NETNS;
    } else {
        engaged |= R1_SANDBOX_USERNS; /* cloned with CLONE_NEWUSER */
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* after the uid change, which clears it */
    /* a raw clone, not fork(): libc's fork runs atfork handlers and takes locks that another
     * thread of the caller may have held when S was forked */
    pid_t prog = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0, NULL, NULL, 0);
    if (prog < 0)
        fail_child(p, STAGE_FORK);
    if (prog == 0)
        run_program(p, engaged);
    /* reap everything until the program exits; its status goes to the caller */
    for (;;) {
        int st;
        pid_t w = wait(&st);
        if (w == prog) {
            put_record(p->fd_status, REC_EXIT, st, 0);
            break;
        }
        if (w < 0 && errno != EINTR)
            break;
    }
    /* in a PID namespace, PID 1 exiting kills the rest; otherwise the caller's kill of the
     * process group does it (the program cannot leave the group: setsid/setpgid fail) */
    _exit(0);
}

/* ---- caller side ---- */

struct r1_sandbox_limits r1_sandbox_limits_default(void)
{
    return (struct r1_sandbox_limits){2.0, 5.0, 256u << 20, 1u << 20, 8, 64, 64u << 10, 0};
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int r1_sandbox_dir_create(char **out)
{
    *out = NULL;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + 32;
    char *dir = malloc(n);
    if (!dir)
        return r1_err_set(R1_ENOMEM, "sandbox: out of memory for a work dir name");
    snprintf(dir, n, "%s/r1-sandbox-XXXXXX", base);
    if (!mkdtemp(dir)) {
        int e = errno;
        free(dir);
        return r1_err_set(R1_EIO,
                          "sandbox: cannot create a work dir under %s: %s (set TMPDIR "
                          "to a writable directory)",
                          base, strerror(e));
    }
    if (geteuid() == 0 && chown(dir, NOBODY, NOBODY) != 0) {
        int e = errno;
        rmdir(dir);
        free(dir);
        return r1_err_set(R1_EIO, "sandbox: cannot give the work dir to nobody: %s", strerror(e));
    }
    *out = dir;
    return 0;
}

/* Empties the directory open as dfd (which the caller closes), depth levels down. */
static int remove_tree(int dfd, int depth)
{
    if (depth > MAX_DEPTH)
        return R1_EIO;
    int dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return R1_EIO;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            /* made unreadable by the program (which is dead: nothing can swap it for a link) */
            if ((st.st_mode & 0700) != 0700)
                fchmodat(dfd, e->d_name, 0700, 0);
            int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                if (remove_tree(sub, depth + 1) != 0)
                    rc = R1_EIO;
                close(sub);
            }
            if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) != 0)
                rc = R1_EIO;
        } else if (unlinkat(dfd, e->d_name, 0) != 0) {
            rc = R1_EIO;
        }
    }
    closedir(d);
    return rc;
}

int r1_sandbox_dir_remove(const char *dir)
{
    if (!dir)
        return 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return r1_err_set(R1_EIO, "sandbox: cannot open work dir %s: %s", dir, strerror(errno));
    }
    int rc = remove_tree(fd, 0);
    close(fd);
    if (rmdir(dir) != 0 || rc != 0)
        return r1_err_set(R1_EIO,
                          "sandbox: cannot remove all of work dir %s (nested deeper "
                          "than %d or not writable); remove it by hand",
                          dir, MAX_DEPTH);
    return 0;
}

int r1_sandbox_write_file(const char *dir, const char *name, const char *data, size_t len)
{
    if (!dir || !name || !*name || strchr(name, '/'))
        return r1_err_set(R1_EINVAL, "sandbox: bad file name for the work dir");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return r1_err_set(R1_EIO, "sandbox: cannot open work dir %s: %s", dir, strerror(errno));
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    close(dfd);
    if (fd < 0)
        return r1_err_set(R1_EIO, "sandbox: cannot create %s/%s: %s", dir, name, strerror(errno));
    fchmod(fd, 0644); /* whatever the umask: the program (nobody) reads it */
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return r1_err_set(R1_EIO, "sandbox: cannot write %s/%s: %s", dir, name, strerror(e));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0)
        return r1_err_set(R1_EIO, "sandbox: cannot write %s/%s: %s", dir, name, strerror(errno));
    return 0;
}

/* argv0 itself when it has a '/', else the first executable of that name in SANDBOX_PATH
 * (malloc'd), or NULL. */
static char *resolve(const char *argv0)
{
    if (strchr(argv0, '/'))
        return strdup(argv0);
    const char *dirs = SANDBOX_PATH;
    while (*dirs) {
        size_t n = strcspn(dirs, ":");
        size_t len = n + 1 + strlen(argv0) + 1;
        char *p = malloc(len);
        if (!p)
            return NULL;
        snprintf(p, len, "%.*s/%s", (int)n, dirs, argv0);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
        dirs += n + (dirs[n] == ':');
    }
    return NULL;
}

struct sink {
    char *buf;
    size_t len, cap;
    bool over;
};

/* Reads what fd has into s (keeping at most cap bytes); false at end of file or error. */
static bool drain(int fd, struct sink *s)
{
    char tmp[16384];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r < 0)
        return errno == EINTR || errno == EAGAIN;
    if (r == 0)
        return false;
    size_t keep = (size_t)r;
    if (s->len + keep > s->cap) {
        keep = s->cap - s->len;
        s->over = true;
    }
    memcpy(s->buf + s->len, tmp, keep);
    s->len += keep;
    return true;
}

static void kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

static const char *stage_name(int stage)
{
    switch (stage) {
    case STAGE_SETUP:
        return "setting up the child (session, descriptors, work dir)";
    case STAGE_PRIV:
        return "dropping privileges to nobody";
    case STAGE_FORK:
        return "forking the program";
    case STAGE_RLIMIT:
        return "setting resource limits";
    case STAGE_EXEC:
        return "executing the program";
    case STAGE_REQUIRE:
        return "enabling a required isolation mechanism";
    }
    return "?";
}

const char *r1_sandbox_isolation_str(unsigned mask, char *buf, size_t cap)
{
    static const char *const names[] = {"uid_drop",    "userns",       "netns",          "pidns",
                                        "landlock_fs", "landlock_net", "landlock_scope", "seccomp"};
    if (!buf || cap == 0)
        return "";
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (mask & (1u << i)) {
            size_t l = strlen(buf);
            snprintf(buf + l, cap - l, "%s%s", l ? "," : "", names[i]);
        }
    return buf;
}

void r1_sandbox_result_release(struct r1_sandbox_result *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof(*res));
}

/* Forks the supervisor: first into new PID + network namespaces (as root, or with a new
 * user namespace), falling back to a plain fork.  *pidns says which. */
static pid_t fork_supervisor(bool root, bool *pidns)
{
    unsigned long flags = CLONE_NEWPID | CLONE_NEWNET | (root ? 0 : CLONE_NEWUSER);
    /* raw clone without a new stack behaves like fork (the child runs on a copy) */
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
    *pidns = pid >= 0;
    if (pid < 0)
        pid = fork();
    return (pid_t)pid;
}

int r1_sandbox_run(const char *const *argv, const char *stdin_data, size_t stdin_len,
                   const char *workdir, const struct r1_sandbox_limits *lim,
                   struct r1_sandbox_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!argv || !argv[0])
        return r1_err_set(R1_EINVAL, "sandbox: empty command");
    struct plan p = {0};
    struct r1_sandbox_limits def = r1_sandbox_limits_default();
    p.lim = lim ? *lim : def;
    /* a zero (or negative, or NaN) field takes its default */
    if (!(p.lim.cpu_seconds > 0))
        p.lim.cpu_seconds = def.cpu_seconds;
    if (!(p.lim.wall_seconds > 0))
        p.lim.wall_seconds = def.wall_seconds;
    if (p.lim.address_space == 0)
        p.lim.address_space = def.address_space;
    if (p.lim.file_size == 0)
        p.lim.file_size = def.file_size;
    if (p.lim.processes <= 0)
        p.lim.processes = def.processes;
    if (p.lim.open_files <= 0)
        p.lim.open_files = def.open_files;
    if (p.lim.output_cap == 0)
        p.lim.output_cap = def.output_cap;
    p.root = geteuid() == 0;
    p.have_filter = filter_build(&p.filter);

    int rc = 0;
    char *own_dir = NULL, *path = NULL, *env[5] = {0};
    char **args = NULL;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1}, pfd = -1;
    struct sink so = {0}, se = {0};
    pid_t pid = -1;

    if (!workdir) {
        if ((rc = r1_sandbox_dir_create(&own_dir)) != 0)
            return rc;
        workdir = own_dir;
    }
    p.workdir = workdir;
    size_t argc = 0;
    while (argv[argc])
        argc++;
    args = calloc(argc + 1, sizeof(*args));
    path = resolve(argv[0]);
    so.cap = se.cap = p.lim.output_cap;
    so.buf = malloc(so.cap + 1);
    se.buf = malloc(se.cap + 1);
    const char *env_fmt[4] = {"PATH=%s", "LANG=%s", "HOME=%s", "TMPDIR=%s"};
    const char *env_val[4] = {SANDBOX_PATH, "C.UTF-8", workdir, workdir};
    for (int i = 0; i < 4; i++)
        if (asprintf(&env[i], env_fmt[i], env_val[i]) < 0)
            env[i] = NULL;
    if (!args || !so.buf || !se.buf || !env[0] || !env[1] || !env[2] || !env[3]) {
        rc = r1_err_set(R1_ENOMEM, "sandbox: out of memory preparing a run");
        goto out;
    }
    if (!path) {
        rc = r1_err_set(R1_EINVAL, "sandbox: '%s' not found in %s (install it: tools/setup)",
                        argv[0], SANDBOX_PATH);
        goto out;
    }
    for (size_t i = 0; i < argc; i++)
        args[i] = (char *)argv[i];
    p.path = path;
    p.argv = args;
    p.envp = env;
    /* stdin is a socket so a write to an exited program gives EPIPE, not SIGPIPE */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0 || pipe2(st, O_CLOEXEC) != 0) {
        rc = r1_err_set(R1_EIO, "sandbox: cannot create pipes: %s", strerror(errno));
        goto out;
    }
    shutdown(in[1], SHUT_RD);
    p.fd_in = in[0];
    p.fd_out = out[1];
    p.fd_err = err[1];
    p.fd_status = st[1];

    double t0 = now_s();
    pid = fork_supervisor(p.root, &p.pidns);
    if (pid < 0) {
        rc = r1_err_set(R1_EIO, "sandbox: fork failed: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        supervise(&p);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(st[1]);
    in[0] = out[1] = err[1] = st[1] = -1;
    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    if (!stdin_data || stdin_len == 0) {
        close(in[1]);
        in[1] = -1;
    }

    struct record rec;
    size_t rec_got = 0, sent = 0;
    bool reaped = false, killed = false, got_exit = false;
    int sup_status = 0, prog_status = 0, fail_stage = 0, fail_errno = 0;
    double deadline = t0 + p.lim.wall_seconds, give_up = 0;
    for (;;) {
        double t = now_s();
        if (!killed && (t >= deadline || so.over || se.over)) {
            kill_group(pid);
            killed = true;
            res->timed_out = t >= deadline && !so.over && !se.over;
            give_up = t + 2.0;
        }
        if (reaped && out[0] < 0 && err[0] < 0 && st[0] < 0)
            break;
        if (killed && t >= give_up)
            break; /* something in uninterruptible sleep holds a pipe: stop waiting */
        struct pollfd fds[5];
        int nf = 0, ix_in = -1, ix_out = -1, ix_err = -1, ix_st = -1, ix_pid = -1;
        if (in[1] >= 0) {
            ix_in = nf;
            fds[nf++] = (struct pollfd){in[1], POLLOUT, 0};
        }
        if (out[0] >= 0) {
            ix_out = nf;
            fds[nf++] = (struct pollfd){out[0], POLLIN, 0};
        }
        if (err[0] >= 0) {
            ix_err = nf;
            fds[nf++] = (struct pollfd){err[0], POLLIN, 0};
        }
        if (st[0] >= 0) {
            ix_st = nf;
            fds[nf++] = (struct pollfd){st[0], POLLIN, 0};
        }
        if (pfd >= 0 && !reaped) {
            ix_pid = nf;
            fds[nf++] = (struct pollfd){pfd, POLLIN, 0};
        }
        double until = killed ? give_up : deadline;
        int wait_ms = (int)((until - t) * 1000.0) + 1;
        if (!reaped && pfd < 0 && wait_ms > 10)
            wait_ms = 10; /* no pidfd: look for the exit every 10 ms */
        if (wait_ms < 0)
            wait_ms = 0;
        if (poll(fds, (nfds_t)nf, wait_ms) < 0 && errno != EINTR) {
            kill_group(pid);
            killed = true;
            break;
        }
        if (ix_in >= 0 && fds[ix_in].revents) {
            ssize_t w =
                send(in[1], stdin_data + sent, stdin_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == stdin_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (ix_out >= 0 && fds[ix_out].revents && !drain(out[0], &so)) {
            close(out[0]);
            out[0] = -1;
        }
        if (ix_err >= 0 && fds[ix_err].revents && !drain(err[0], &se)) {
            close(err[0]);
            err[0] = -1;
        }
        if (ix_st >= 0 && fds[ix_st].revents) {
            ssize_t r = read(st[0], (char *)&rec + rec_got, sizeof(rec) - rec_got);
            if (r > 0) {
                rec_got += (size_t)r;
                if (rec_got == sizeof(rec)) {
                    rec_got = 0;
                    if (rec.kind == REC_ENGAGED)
                        res->isolation = (unsigned)rec.a;
                    else if (rec.kind == REC_FAIL && !fail_stage) {
                        fail_stage = rec.a;
                        fail_errno = rec.b;
                    } else if (rec.kind == REC_EXIT) {
                        got_exit = true;
                        prog_status = rec.a;
                    }
                }
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(st[0]);
                st[0] = -1;
            }
        }
        if (!reaped && (ix_pid < 0 || fds[ix_pid].revents)) {
            pid_t w = waitpid(pid, &sup_status, WNOHANG);
            if (w == pid) {
                reaped = true;
                kill(-pid, SIGKILL); /* whatever the program left in its group */
            }
        }
    }
    if (!reaped) {
        kill_group(pid);
        while (waitpid(pid, &sup_status, 0) < 0 && errno == EINTR)
            ;
    }
    kill(-pid, SIGKILL);
    res->wall_seconds = now_s() - t0;
    res->pgid = (int)pid;
    res->output_truncated = so.over || se.over;
    if (fail_stage) {
        if (fail_stage == STAGE_REQUIRE) {
            char want[160];
            rc = r1_err_set(R1_ESTATE,
                            "sandbox: required isolation did not engage: %s (needs "
                            "a kernel with user namespaces, Landlock and seccomp)",
                            r1_sandbox_isolation_str((unsigned)fail_errno, want, sizeof(want)));
        } else {
            rc = r1_err_set(R1_EIO, "sandbox: running '%s' failed %s: %s", argv[0],
                            stage_name(fail_stage), strerror(fail_errno));
        }
        goto out;
    }
    if (got_exit) {
        res->exit_status = WIFEXITED(prog_status) ? WEXITSTATUS(prog_status) : -1;
        res->signal = WIFSIGNALED(prog_status) ? WTERMSIG(prog_status) : 0;
    } else { /* killed before the supervisor could report */
        res->exit_status = -1;
        res->signal = WIFSIGNALED(sup_status) ? WTERMSIG(sup_status) : SIGKILL;
    }
    so.buf[so.len] = '\0';
    se.buf[se.len] = '\0';
    res->out = so.buf;
    res->out_len = so.len;
    res->err = se.buf;
    res->err_len = se.len;
    so.buf = se.buf = NULL;

out:
    if (rc != 0) {
        unsigned iso = res->isolation;
        int pgid = res->pgid;
        r1_sandbox_result_release(res);
        res->isolation = iso;
        res->pgid = pgid;
    }
    int fds_all[] = {in[0], in[1], out[0], out[1], err[0], err[1], st[0], st[1], pfd};
    for (size_t i = 0; i < sizeof(fds_all) / sizeof(fds_all[0]); i++)
        if (fds_all[i] >= 0)
            close(fds_all[i]);
    free(so.buf);
    free(se.buf);
    for (int i = 0; i < 4; i++)
        free(env[i]);
    free(args);
    free(path);
    if (own_dir) {
        int r2 = r1_sandbox_dir_remove(own_dir);
        if (rc == 0)
            rc = r2;
        free(own_dir);
    }
    return rc;
}
