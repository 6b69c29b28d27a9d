/* dist.c - ranks and collectives over MPI (see dist.h).  Built with R1_MPI when meson finds
 * MPI; without it a world of one process, where every collective is the identity. */
#include "core/dist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

#ifdef R1_MPI
#include <mpi.h>
#endif

#define R1_DIST_CHUNK (4 << 20) /* floats per staged allreduce */

#define R1_DIST_TIMEOUT_DEFAULT 1800 /* s a rank waits in one collective before giving up */

struct dist_impl {
    int joined;     /* MPI_Init was called here */
    float *stage;   /* host staging for r1_dist_sum_backend, R1_DIST_CHUNK floats */
    /* the watchdog: a thread that ends the process when one collective waits longer than
     * timeout seconds (a rank that hangs without dying), so mpirun ends the job */
    int timeout;
    pthread_t watchdog;
    int watching;
    _Atomic long long wait_since; /* CLOCK_MONOTONIC s when the current collective began */
    _Atomic(const char *) wait_what;
    _Atomic int quit;
    int rank;
    int threads; /* MPI gives MPI_THREAD_SERIALIZED or more: a helper thread may call it */
};

#ifdef R1_MPI
static long long mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

static void *watchdog_main(void *arg)
{
    struct dist_impl *im = arg;
    while (!atomic_load(&im->quit)) {
        sleep(1);
        long long since = atomic_load(&im->wait_since);
        if (since > 0 && mono_s() - since > im->timeout) {
            fprintf(stderr, "r1: rank %d: waited %d s for the other ranks in the %s; a rank of "
                    "the job hangs without answering (R1_DIST_TIMEOUT=%d); ending the job, "
                    "whose last checkpoint is intact\n", im->rank, im->timeout,
                    atomic_load(&im->wait_what), im->timeout);
            fflush(stderr);
            _exit(1); /* mpirun then ends every rank */
        }
    }
    return NULL;
}

/* Brackets a blocking collective for the watchdog. */
static void wait_begin(const struct r1_dist *d, const char *what)
{
    struct dist_impl *im = d->impl;
    atomic_store(&im->wait_what, what);
    atomic_store(&im->wait_since, mono_s());
}

static void wait_end(const struct r1_dist *d)
{
    struct dist_impl *im = d->impl;
    atomic_store(&im->wait_since, 0);
}

#endif

/* The world size the launcher announces (0: not launched by one). */
static int launcher_world(int *rank, int *local)
{
    const char *w = getenv("OMPI_COMM_WORLD_SIZE"), *r = getenv("OMPI_COMM_WORLD_RANK");
    const char *l = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!w) { /* Slurm / PMIx / MPICH-style launchers */
        w = getenv("PMIX_SIZE") ? getenv("PMIX_SIZE") : getenv("PMI_SIZE");
        if (!w)
            w = getenv("SLURM_NTASKS");
        r = getenv("PMIX_RANK") ? getenv("PMIX_RANK") : getenv("PMI_RANK");
        if (!r)
            r = getenv("SLURM_PROCID");
        l = getenv("SLURM_LOCALID") ? getenv("SLURM_LOCALID") : getenv("MPI_LOCALRANKID");
    }
    *rank = r ? atoi(r) : 0;
    *local = l ? atoi(l) : 0;
    return w && r ? atoi(w) : 0;
}

int r1_dist_init(struct r1_dist **out)
{
    *out = NULL;
    struct r1_dist *d = calloc(1, sizeof(*d));
    struct dist_impl *im = calloc(1, sizeof(*im));
    if (!d || !im) {
        free(d);
        free(im);
        return r1_err_set(R1_ENOMEM, "dist: out of memory");
    }
    d->impl = im;
    d->world = 1;
    int rank = 0, local = 0, world = launcher_world(&rank, &local);
#ifdef R1_MPI
    if (world >= 1) {
        int provided = 0;
        /* SERIALIZED: r1_grad_sync's thread makes MPI calls while the main thread makes none */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
            free(im);
            free(d);
            return r1_err_set(R1_EIO, "dist: MPI_Init failed (launched as rank %d of %d)", rank,
                              world);
        }
        im->joined = 1;
        im->threads = provided >= MPI_THREAD_SERIALIZED;
        /* errors come back as codes: r1 turns them into one line and a clean exit */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->world);
        d->local_rank = local;
        const char *t = getenv("R1_DIST_TIMEOUT");
        im->timeout = t ? atoi(t) : R1_DIST_TIMEOUT_DEFAULT;
        im->rank = d->rank;
        if (d->world > 1 && im->timeout > 0 &&
            pthread_create(&im->watchdog, NULL, watchdog_main, im) == 0)
            im->watching = 1;
    }
#else
    if (world > 1) {
        free(im);
        free(d);
        return r1_err_set(R1_EINVAL, "dist: launched as rank %d of %d processes, but this r1 was "
                          "built without MPI; install OpenMPI (tools/setup) and rebuild", rank,
                          world);
    }
#endif
    *out = d;
    return 0;
}

void r1_dist_free(struct r1_dist *d)
{
    if (!d)
        return;
    struct dist_impl *im = d->impl;
    if (im && im->watching) {
        atomic_store(&im->quit, 1);
        pthread_join(im->watchdog, NULL);
    }
#ifdef R1_MPI
    if (im && im->joined)
        MPI_Finalize();
#endif
    if (im)
        free(im->stage);
    free(im);
    free(d);
}

void r1_dist_abort(struct r1_dist *d, int code)
{
#ifdef R1_MPI
    if (d && d->world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
    (void)code;
#endif
}

const char *r1_dist_build_info(void)
{
#ifdef R1_MPI
    static char info[64];
    int len = 0;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    if (!info[0] && MPI_Get_library_version(lib, &len) == MPI_SUCCESS) {
        size_t n = strcspn(lib, ",\n");
        if (n >= sizeof(info))
            n = sizeof(info) - 1;
        memcpy(info, lib, n);
        info[n] = '\0';
    }
    return info[0] ? info : "MPI";
#else
    return "none";
#endif
}

#ifdef R1_MPI
static int mpi_fail(int e, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(e, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof(msg), "error %d", e);
    return r1_err_set(R1_EIO, "dist: %s failed: %s (another rank may have died; see its "
                      "message)", what, msg);
}
#endif

int r1_dist_agree(struct r1_dist *d, int rc)
{
    if (!d || d->world <= 1)
        return rc;
#ifdef R1_MPI
    /* the lowest failing rank: (failed ? rank : world), reduced with MIN */
    int mine = rc ? d->rank : d->world, first = 0;
    wait_begin(d, "agreement after a step");
    int e = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    wait_end(d);
    if (e != MPI_SUCCESS)
        return mpi_fail(e, "agreement");
    if (first == d->world)
        return 0;
    d->agreed = 1;
    d->culprit = first;
    int code = rc;
    wait_begin(d, "agreement after a step");
    e = MPI_Bcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD);
    wait_end(d);
    if (e != MPI_SUCCESS)
        return mpi_fail(e, "agreement");
    if (!rc)
        return r1_err_set(code, "rank %d failed (its own message says why)", first);
    return rc;
#else
    return rc;
#endif
}

int r1_dist_any(struct r1_dist *d, int flag)
{
    if (!d || d->world <= 1)
        return flag != 0;
#ifdef R1_MPI
    int mine = flag != 0, any = mine;
    wait_begin(d, "stop check");
    int e = MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    wait_end(d);
    return e != MPI_SUCCESS ? 1 : any; /* cannot agree: stop */
#else
    return flag != 0;
#endif
}

#ifdef R1_MPI
static int sum_host(const struct r1_dist *d, void *x, int64_t n, MPI_Datatype t, size_t size)
{
    for (int64_t i = 0; i < n; i += R1_DIST_CHUNK) {
        int c = (int)(n - i < R1_DIST_CHUNK ? n - i : R1_DIST_CHUNK);
        wait_begin(d, "sum over ranks");
        int e = MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)i * size, c, t, MPI_SUM,
                              MPI_COMM_WORLD);
        wait_end(d);
        if (e != MPI_SUCCESS)
            return mpi_fail(e, "sum over ranks");
    }
    return 0;
}
#endif

int r1_dist_sum_f64(struct r1_dist *d, double *x, int n)
{
    if (!d || d->world <= 1 || n <= 0)
        return 0;
#ifdef R1_MPI
    return sum_host(d, x, n, MPI_DOUBLE, sizeof(double));
#else
    (void)x;
    return 0;
#endif
}

int r1_dist_sum_f32(struct r1_dist *d, float *x, int64_t n)
{
    if (!d || d->world <= 1 || n <= 0)
        return 0;
#ifdef R1_MPI
    return sum_host(d, x, n, MPI_FLOAT, sizeof(float));
#else
    (void)x;
    return 0;
#endif
}

int r1_dist_sum_i32(struct r1_dist *d, int32_t *x, int64_t n)
{
    if (!d || d->world <= 1 || n <= 0)
        return 0;
#ifdef R1_MPI
    return sum_host(d, x, n, MPI_INT32_T, sizeof(int32_t));
#else
    (void)x;
    return 0;
#endif
}

int r1_dist_sum_backend(struct r1_dist *d, struct r1_backend *be, float *x, int64_t n)
{
    if (!d || d->world <= 1 || n <= 0)
        return 0;
#ifdef R1_MPI
    struct dist_impl *im = d->impl;
    if (!im->stage && !(im->stage = malloc((size_t)R1_DIST_CHUNK * sizeof(float))))
        return r1_err_set(R1_ENOMEM, "dist: out of memory for the %d MiB staging buffer",
                          (int)((size_t)R1_DIST_CHUNK * sizeof(float) >> 20));
    for (int64_t i = 0; i < n; i += R1_DIST_CHUNK) {
        int c = (int)(n - i < R1_DIST_CHUNK ? n - i : R1_DIST_CHUNK);
        be->ops->download(be->ctx, im->stage, x + i, (size_t)c * sizeof(float));
        wait_begin(d, "gradient sum");
        int e = MPI_Allreduce(MPI_IN_PLACE, im->stage, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        wait_end(d);
        if (e != MPI_SUCCESS)
            return mpi_fail(e, "gradient sum over ranks");
        be->ops->upload(be->ctx, x + i, im->stage, (size_t)c * sizeof(float));
    }
    return r1_backend_check(be);
#else
    (void)be;
    (void)x;
    return 0;
#endif
}

int r1_dist_gather_ranges(struct r1_dist *d, struct r1_backend *be, float *x, const int64_t *lo,
                          const int64_t *hi)
{
    if (!d || d->world <= 1)
        return 0;
#ifdef R1_MPI
    struct dist_impl *im = d->impl;
    if (!im->stage && !(im->stage = malloc((size_t)R1_DIST_CHUNK * sizeof(float))))
        return r1_err_set(R1_ENOMEM, "dist: out of memory for the staging buffer");
    for (int r = 0; r < d->world; r++)
        for (int64_t i = lo[r]; i < hi[r]; i += R1_DIST_CHUNK) {
            int c = (int)(hi[r] - i < R1_DIST_CHUNK ? hi[r] - i : R1_DIST_CHUNK);
            if (r == d->rank)
                be->ops->download(be->ctx, im->stage, x + i, (size_t)c * sizeof(float));
            wait_begin(d, "parameter gather");
            int e = MPI_Bcast(im->stage, c, MPI_FLOAT, r, MPI_COMM_WORLD);
            wait_end(d);
            if (e != MPI_SUCCESS)
                return mpi_fail(e, "parameter gather");
            if (r != d->rank)
                be->ops->upload(be->ctx, x + i, im->stage, (size_t)c * sizeof(float));
        }
    return r1_backend_check(be);
#else
    (void)be;
    (void)x;
    (void)lo;
    (void)hi;
    return 0;
#endif
}

int r1_dist_bcast(struct r1_dist *d, void *x, size_t bytes, int root)
{
    if (!d || d->world <= 1 || bytes == 0)
        return 0;
#ifdef R1_MPI
    for (size_t i = 0; i < bytes; i += (size_t)1 << 30) {
        size_t c = bytes - i < ((size_t)1 << 30) ? bytes - i : ((size_t)1 << 30);
        wait_begin(d, "broadcast");
        int e = MPI_Bcast((char *)x + i, (int)c, MPI_BYTE, root, MPI_COMM_WORLD);
        wait_end(d);
        if (e != MPI_SUCCESS)
            return mpi_fail(e, "broadcast");
    }
    return 0;
#else
    (void)x;
    (void)root;
    return 0;
#endif
}

/* ---- gradient sums overlapping the backward ------------------------------------------- */

struct r1_grad_sync {
    struct r1_dist *d;
    struct r1_backend *be;
    float *x;
    int64_t n, bucket;
    int overlap;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    /* under mu: the update's state.  [ready, n) is final, [done, n) is summed; active from
     * arm until done reaches 0 */
    int64_t ready, done;
    int armed, active, quit;
    int err; /* the first failed sum's R1_E* code, and its message (the thread's own) */
    char msg[512];
};

int r1_grad_sync_overlaps(const struct r1_grad_sync *g) { return g && g->overlap; }

#ifdef R1_MPI
/* An in-place float sum that waits without spinning: MPI's blocking calls poll without
 * pause, which on a CPU rank would take the core its backward is using.  Each test also
 * drives MPI's progress; between tests the thread sleeps R1_GRAD_SYNC_POLL_US. */
#define R1_GRAD_SYNC_POLL_US 50
static int iallreduce_polite(float *x, int n)
{
    MPI_Request rq;
    int e = MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
    for (int done = 0; e == MPI_SUCCESS && !done;) {
        if ((e = MPI_Test(&rq, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
            struct timespec ts = {0, R1_GRAD_SYNC_POLL_US * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return e;
}

static void *grad_sync_main(void *arg)
{
    struct r1_grad_sync *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        int64_t lo = 0;
        while (!g->quit && !(g->active && g->done > 0 &&
                             g->ready <= (lo = g->done > g->bucket ? g->done - g->bucket : 0)))
            pthread_cond_wait(&g->work, &g->mu);
        if (g->quit)
            break;
        int64_t hi = g->done;
        pthread_mutex_unlock(&g->mu);
        int rc = 0;
        for (int64_t i = lo; i < hi && !rc; i += R1_DIST_CHUNK) {
            int c = (int)(hi - i < R1_DIST_CHUNK ? hi - i : R1_DIST_CHUNK);
            wait_begin(g->d, "gradient sum");
            int e = iallreduce_polite(g->x + i, c);
            wait_end(g->d);
            if (e != MPI_SUCCESS)
                rc = mpi_fail(e, "gradient sum over ranks");
        }
        pthread_mutex_lock(&g->mu);
        if (rc && !g->err) {
            g->err = rc;
            snprintf(g->msg, sizeof(g->msg), "%s", r1_err_last());
        }
        g->done = lo; /* after a failure too: every rank makes every bucket's call */
        if (lo == 0) {
            g->active = 0;
            pthread_cond_signal(&g->idle);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}
#endif

int r1_grad_sync_create(struct r1_grad_sync **out, struct r1_dist *d, struct r1_backend *be,
                        float *x, int64_t n, int64_t bucket)
{
    *out = NULL;
    struct r1_grad_sync *g = calloc(1, sizeof(*g));
    if (!g)
        return r1_err_set(R1_ENOMEM, "dist: out of memory");
    g->d = d;
    g->be = be;
    g->x = x;
    g->n = n;
    g->bucket = bucket;
#ifdef R1_MPI
    struct dist_impl *im = d ? d->impl : NULL;
    if (d && d->world > 1 && bucket > 0 && n > 0 && be->ops->host_memory && im->threads) {
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->work, NULL);
        pthread_cond_init(&g->idle, NULL);
        if (pthread_create(&g->thread, NULL, grad_sync_main, g)) {
            pthread_cond_destroy(&g->idle);
            pthread_cond_destroy(&g->work);
            pthread_mutex_destroy(&g->mu);
            free(g);
            return r1_err_set(R1_ENOMEM, "dist: cannot start the gradient-sum thread");
        }
        g->overlap = 1;
    }
#endif
    *out = g;
    return 0;
}

void r1_grad_sync_free(struct r1_grad_sync *g)
{
    if (!g)
        return;
    if (g->overlap) {
        pthread_mutex_lock(&g->mu);
        g->quit = 1;
        pthread_cond_signal(&g->work);
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->thread, NULL);
        pthread_cond_destroy(&g->idle);
        pthread_cond_destroy(&g->work);
        pthread_mutex_destroy(&g->mu);
    }
    free(g);
}

void r1_grad_sync_arm(struct r1_grad_sync *g)
{
    if (!g || !g->overlap)
        return;
    pthread_mutex_lock(&g->mu);
    if (!g->armed) { /* once per update */
        g->armed = g->active = 1;
        g->ready = g->done = g->n;
        g->err = 0;
    }
    pthread_mutex_unlock(&g->mu);
}

void r1_grad_sync_ready(void *arg, int64_t lo)
{
    struct r1_grad_sync *g = arg;
    if (!g || !g->overlap)
        return;
    pthread_mutex_lock(&g->mu);
    if (g->active && lo < g->ready) {
        g->ready = lo < 0 ? 0 : lo;
        pthread_cond_signal(&g->work);
    }
    pthread_mutex_unlock(&g->mu);
}

int r1_grad_sync_finish(struct r1_grad_sync *g)
{
    if (!g)
        return 0;
    if (!g->overlap)
        return r1_dist_sum_backend(g->d, g->be, g->x, g->n);
    r1_grad_sync_arm(g); /* a rank without a micro-batch in this update */
    r1_grad_sync_ready(g, 0);
    pthread_mutex_lock(&g->mu);
    while (g->active)
        pthread_cond_wait(&g->idle, &g->mu);
    g->armed = 0;
    int rc = g->err;
    pthread_mutex_unlock(&g->mu);
    return rc ? r1_err_set(rc, "%s", g->msg) : 0;
}
