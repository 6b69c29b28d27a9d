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
#ifdef R1_NCCL /* with MPI and the CUDA backend: meson.build */
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#endif

#define R1_DIST_CHUNK (4 << 20) /* floats per staged allreduce */

#define R1_DIST_TIMEOUT_DEFAULT 1800 /* s a rank waits in one collective before giving up */

/* Waits for a collective without spinning (MPI's and CUDA's blocking waits poll without
 * pause, which on a CPU rank takes the core its backward uses): test, then sleep this long */
#define R1_DIST_POLL_US 50

#ifdef R1_NCCL
/* NCCL, opened with dlopen by r1_dist_attach (libnccl maps ~300 MB: only GPU jobs load it),
 * and its communicator over the job's ranks, one GPU each. */
struct nccl {
    void *lib;
    __typeof__(&ncclGetVersion) get_version;
    __typeof__(&ncclGetUniqueId) get_unique_id;
    __typeof__(&ncclCommInitRank) comm_init_rank;
    __typeof__(&ncclCommDestroy) comm_destroy;
    __typeof__(&ncclCommAbort) comm_abort;
    __typeof__(&ncclCommGetAsyncError) comm_get_async_error;
    __typeof__(&ncclGetErrorString) error_string;
    __typeof__(&ncclAllReduce) all_reduce;
    __typeof__(&ncclBroadcast) broadcast;
    __typeof__(&ncclGroupStart) group_start;
    __typeof__(&ncclGroupEnd) group_end;
    ncclComm_t comm;
    const struct r1_backend *be; /* whose memory the collectives work on */
    cudaStream_t stream;         /* be's queue: collectives on it are in order with its ops */
    cudaEvent_t done;            /* recorded after the work a wait waits for */
    int device;
    int failed; /* a collective failed: the communicator is aborted, not destroyed */
};
#endif

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
    char transport[200]; /* r1_dist_transport: 36 + why (128) at most */
#ifdef R1_NCCL
    struct nccl *nccl; /* r1_dist_attach found NCCL on every rank */
#endif
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
    r1_dist_detach(d);
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

/* ---- NCCL: sums and gathers of GPU memory ---------------------------------------------- */

#ifdef R1_NCCL
static void nccl_close(struct nccl *n, int abort)
{
    if (!n)
        return;
    if (n->comm) /* a failed job's peers may be gone: abort does not wait for them */
        (abort || n->failed ? n->comm_abort : n->comm_destroy)(n->comm);
    if (n->done)
        cudaEventDestroy(n->done);
    if (n->lib)
        dlclose(n->lib);
    free(n);
}

static int nccl_open(struct nccl *n, char *why, size_t cap)
{
    n->lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib)
        n->lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        snprintf(why, cap, "cannot load libnccl.so.2: %s", dlerror());
        return -1;
    }
#define R1_NCCL_SYM(field, name)                                                                   \
    do {                                                                                           \
        if (!(*(void **)&n->field = dlsym(n->lib, name))) {                                        \
            snprintf(why, cap, "libnccl.so.2 has no %s", name);                                    \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
    R1_NCCL_SYM(get_version, "ncclGetVersion");
    R1_NCCL_SYM(get_unique_id, "ncclGetUniqueId");
    R1_NCCL_SYM(comm_init_rank, "ncclCommInitRank");
    R1_NCCL_SYM(comm_destroy, "ncclCommDestroy");
    R1_NCCL_SYM(comm_abort, "ncclCommAbort");
    R1_NCCL_SYM(comm_get_async_error, "ncclCommGetAsyncError");
    R1_NCCL_SYM(error_string, "ncclGetErrorString");
    R1_NCCL_SYM(all_reduce, "ncclAllReduce");
    R1_NCCL_SYM(broadcast, "ncclBroadcast");
    R1_NCCL_SYM(group_start, "ncclGroupStart");
    R1_NCCL_SYM(group_end, "ncclGroupEnd");
#undef R1_NCCL_SYM
    int v = 0;
    if (n->get_version(&v) != ncclSuccess || v < NCCL_VERSION(2, 12, 0)) {
        snprintf(why, cap, "libnccl.so.2 is older than NCCL 2.12 (version code %d)", v);
        return -1;
    }
    return 0;
}

/* The communicator for collectives on be's memory, or NULL (MPI through host memory).
 * After a failure it stays the one: the job stops at its next agreement, and meanwhile a
 * collective fails at once rather than take another road than the other ranks. */
static struct nccl *nccl_for(const struct r1_dist *d, const struct r1_backend *be)
{
    struct dist_impl *im = d->impl;
    return im->nccl && im->nccl->be == be ? im->nccl : NULL;
}

static int nccl_failed_before(const struct r1_dist *d)
{
    return r1_err_set(R1_EIO, "dist: rank %d: an earlier NCCL collective failed; the job stops",
                      d->rank);
}

static int nccl_fail(const struct r1_dist *d, struct nccl *n, ncclResult_t r, const char *what)
{
    n->failed = 1;
    return r1_err_set(R1_EIO, "dist: NCCL %s failed on rank %d (GPU %d): %s (another rank may "
                      "have died; see its message)", what, d->rank, n->device,
                      n->error_string(r));
}

/* Waits for the work queued on n's stream so far, watching the communicator for an
 * asynchronous failure (a peer gone, a broken link) and under the watchdog, so a hang in a
 * collective on the GPU ends the job like one in MPI. */
static int nccl_wait(const struct r1_dist *d, struct nccl *n, const char *what)
{
    cudaError_t e = cudaEventRecord(n->done, n->stream);
    int rc = 0;
    wait_begin(d, what);
    while (e == cudaSuccess && (e = cudaEventQuery(n->done)) == cudaErrorNotReady) {
        cudaGetLastError(); /* "not ready" is recorded as the last error: not one */
        e = cudaSuccess;
        ncclResult_t ar = ncclSuccess;
        if (n->comm_get_async_error(n->comm, &ar) == ncclSuccess && ar != ncclSuccess &&
            ar != ncclInProgress) {
            rc = nccl_fail(d, n, ar, what);
            break;
        }
        struct timespec ts = {0, R1_DIST_POLL_US * 1000};
        nanosleep(&ts, NULL);
    }
    wait_end(d);
    if (!rc && e != cudaSuccess) {
        n->failed = 1;
        rc = r1_err_set(R1_EIO, "dist: rank %d (GPU %d) waiting for the %s: %s", d->rank,
                        n->device, what, cudaGetErrorString(e));
    }
    return rc;
}

/* Every rank: NCCL on all or on none.  0 with *n NULL when some rank has no GPU backend or
 * no NCCL (why says it). */
static int nccl_start(struct r1_dist *d, struct r1_backend *be, struct nccl **out, char *why,
                      size_t cap)
{
    *out = NULL;
    int device = 0, ok = 0, all = 0;
    void *queue = be->ops->queue ? be->ops->queue(be->ctx, &device) : NULL;
    const char *env = getenv("R1_NCCL");
    struct nccl *n = NULL;
    if (!queue)
        snprintf(why, cap, "a rank's backend is not a GPU's");
    else if (env && strcmp(env, "0") == 0)
        snprintf(why, cap, "R1_NCCL=0");
    else if (!(n = calloc(1, sizeof(*n))))
        snprintf(why, cap, "out of memory");
    else if (nccl_open(n, why, cap) == 0 &&
             cudaSetDevice(device) == cudaSuccess &&
             cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming) == cudaSuccess)
        ok = 1;
    else if (!why[0])
        snprintf(why, cap, "GPU %d: %s", device, cudaGetErrorString(cudaGetLastError()));
    wait_begin(d, "NCCL start-up");
    int e = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    wait_end(d);
    if (e != MPI_SUCCESS || !all) {
        nccl_close(n, 1);
        if (ok)
            snprintf(why, cap, "another rank cannot use it (its run header says why)");
        return e != MPI_SUCCESS ? mpi_fail(e, "NCCL start-up") : 0;
    }
    n->be = be;
    n->stream = (cudaStream_t)queue;
    n->device = device;
    /* rank 0 makes the job's id; every rank joins the communicator with it */
    struct {
        int r;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof(msg));
    if (d->rank == 0)
        msg.r = n->get_unique_id(&msg.id);
    wait_begin(d, "NCCL start-up");
    e = MPI_Bcast(&msg, (int)sizeof(msg), MPI_BYTE, 0, MPI_COMM_WORLD);
    wait_end(d);
    int rc = e != MPI_SUCCESS ? mpi_fail(e, "NCCL start-up") : 0;
    if (!rc && msg.r != ncclSuccess)
        rc = r1_err_set(R1_EIO, "dist: rank 0 cannot make an NCCL id: %s; set R1_NCCL=0 to "
                        "sum through host memory over MPI", n->error_string(msg.r));
    if (!rc) {
        wait_begin(d, "NCCL start-up");
        ncclResult_t r = n->comm_init_rank(&n->comm, d->world, msg.id, d->rank);
        wait_end(d);
        if (r != ncclSuccess) {
            n->comm = NULL;
            rc = r1_err_set(R1_EIO, "dist: NCCL cannot start on rank %d (GPU %d): %s; run one "
                            "rank per GPU, or set R1_NCCL=0 to sum through host memory over "
                            "MPI", d->rank, device, n->error_string(r));
        }
    }
    if ((rc = r1_dist_agree(d, rc))) {
        nccl_close(n, 1);
        return rc;
    }
    *out = n;
    return 0;
}
#endif

int r1_dist_attach(struct r1_dist *d, struct r1_backend *be)
{
    if (!d || d->world <= 1)
        return 0;
    struct dist_impl *im = d->impl;
    r1_dist_detach(d);
    snprintf(im->transport, sizeof(im->transport), "%s",
             be->ops->host_memory ? "MPI" : "MPI through host memory");
#ifdef R1_NCCL
    char why[128] = "";
    int rc = nccl_start(d, be, &im->nccl, why, sizeof(why));
    if (rc)
        return rc;
    if (im->nccl) {
        int v = 0;
        im->nccl->get_version(&v);
        snprintf(im->transport, sizeof(im->transport), "NCCL %d.%d.%d", v / 10000,
                 v / 100 % 100, v % 100);
    } else if (!be->ops->host_memory) {
        snprintf(im->transport, sizeof(im->transport), "MPI through host memory (no NCCL: %s)",
                 why);
    }
#endif
    return 0;
}

void r1_dist_detach(struct r1_dist *d)
{
    if (!d || !d->impl)
        return;
#ifdef R1_NCCL
    struct dist_impl *im = d->impl;
    nccl_close(im->nccl, d->agreed);
    im->nccl = NULL;
#endif
}

const char *r1_dist_transport(const struct r1_dist *d)
{
    const struct dist_impl *im = d ? d->impl : NULL;
    return im && im->transport[0] ? im->transport : "none";
}

int r1_dist_sum_backend(struct r1_dist *d, struct r1_backend *be, float *x, int64_t n)
{
    if (!d || d->world <= 1 || n <= 0)
        return 0;
#ifdef R1_NCCL
    struct nccl *nc = nccl_for(d, be);
    if (nc) {
        if (nc->failed)
            return nccl_failed_before(d);
        ncclResult_t r = nc->all_reduce(x, x, (size_t)n, ncclFloat32, ncclSum, nc->comm,
                                        nc->stream);
        return r != ncclSuccess ? nccl_fail(d, nc, r, "gradient sum")
                                : nccl_wait(d, nc, "gradient sum");
    }
#endif
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
#ifdef R1_NCCL
    struct nccl *nc = nccl_for(d, be);
    if (nc) { /* one broadcast per rank's range, in one group */
        if (nc->failed)
            return nccl_failed_before(d);
        ncclResult_t r = nc->group_start();
        for (int root = 0; root < d->world && r == ncclSuccess; root++)
            if (hi[root] > lo[root])
                r = nc->broadcast(x + lo[root], x + lo[root], (size_t)(hi[root] - lo[root]),
                                  ncclFloat32, root, nc->comm, nc->stream);
        ncclResult_t end = nc->group_end();
        if (r == ncclSuccess)
            r = end;
        return r != ncclSuccess ? nccl_fail(d, nc, r, "parameter gather")
                                : nccl_wait(d, nc, "parameter gather");
    }
#endif
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
#ifdef R1_NCCL
    /* overlap on a GPU: no thread; the hook (on the main thread) queues each final bucket's
     * allreduce on `side` behind an event of the backend's stream, and finish makes the
     * backend's stream wait for `side` */
    struct nccl *nccl;
    cudaStream_t side;
    cudaEvent_t ready_ev, side_ev;
#endif
};

int r1_grad_sync_overlaps(const struct r1_grad_sync *g) { return g && g->overlap; }

#ifdef R1_MPI
/* Keeps the update's first failure rc with its message (r1_err_last is per call site's
 * thread, and later calls overwrite it). */
static void grad_sync_failed(struct r1_grad_sync *g, int rc)
{
    if (rc && !g->err) {
        g->err = rc;
        snprintf(g->msg, sizeof(g->msg), "%s", r1_err_last());
    }
}
#endif

#ifdef R1_MPI
/* An in-place float sum that waits without spinning; each test also drives MPI's
 * progress, and between tests the thread sleeps R1_DIST_POLL_US. */
static int iallreduce_polite(float *x, int n)
{
    MPI_Request rq;
    int e = MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &rq);
    for (int done = 0; e == MPI_SUCCESS && !done;) {
        if ((e = MPI_Test(&rq, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
            struct timespec ts = {0, R1_DIST_POLL_US * 1000};
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
        grad_sync_failed(g, rc);
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

#ifdef R1_NCCL
static int grad_sync_nccl_create(struct r1_grad_sync *g, struct nccl *nc)
{
    cudaError_t e = cudaStreamCreateWithFlags(&g->side, cudaStreamNonBlocking);
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&g->ready_ev, cudaEventDisableTiming);
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&g->side_ev, cudaEventDisableTiming);
    if (e != cudaSuccess)
        return r1_err_set(R1_EIO, "dist: cannot make the gradient-sum stream on GPU %d: %s",
                          nc->device, cudaGetErrorString(e));
    g->nccl = nc;
    g->overlap = 1;
    return 0;
}

static void grad_sync_nccl_free(struct r1_grad_sync *g)
{
    if (g->side)
        cudaStreamSynchronize(g->side);
    if (g->side_ev)
        cudaEventDestroy(g->side_ev);
    if (g->ready_ev)
        cudaEventDestroy(g->ready_ev);
    if (g->side)
        cudaStreamDestroy(g->side);
}

/* Queues the allreduce of every bucket now final ([ready, n) is), below [done, n). */
static void grad_sync_nccl_queue(struct r1_grad_sync *g)
{
    struct nccl *nc = g->nccl;
    int waited = 0;
    int64_t lo;
    while (g->done > 0 && g->ready <= (lo = g->done > g->bucket ? g->done - g->bucket : 0)) {
        if (!g->err && nc->failed)
            grad_sync_failed(g, nccl_failed_before(g->d));
        if (!g->err && !waited) { /* `side` starts after what the backward queued so far */
            cudaError_t e = cudaEventRecord(g->ready_ev, nc->stream);
            if (e == cudaSuccess)
                e = cudaStreamWaitEvent(g->side, g->ready_ev, 0);
            if (e != cudaSuccess)
                grad_sync_failed(g, r1_err_set(R1_EIO, "dist: GPU %d: ordering the gradient "
                                               "sums: %s", nc->device, cudaGetErrorString(e)));
            waited = 1;
        }
        if (!g->err) {
            ncclResult_t r = nc->all_reduce(g->x + lo, g->x + lo, (size_t)(g->done - lo),
                                            ncclFloat32, ncclSum, nc->comm, g->side);
            if (r != ncclSuccess)
                grad_sync_failed(g, nccl_fail(g->d, nc, r, "gradient sum"));
        }
        g->done = lo;
    }
}

static int grad_sync_nccl_finish(struct r1_grad_sync *g)
{
    struct nccl *nc = g->nccl;
    g->ready = 0;
    grad_sync_nccl_queue(g);
    g->armed = g->active = 0;
    if (g->err)
        return r1_err_set(g->err, "%s", g->msg);
    /* the backend's later ops (the update) wait for the sums */
    cudaError_t e = cudaEventRecord(g->side_ev, g->side);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(nc->stream, g->side_ev, 0);
    if (e != cudaSuccess) {
        nc->failed = 1;
        return r1_err_set(R1_EIO, "dist: GPU %d: ordering the update after the gradient sums: "
                          "%s", nc->device, cudaGetErrorString(e));
    }
    return nccl_wait(g->d, nc, "gradient sum");
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
#ifdef R1_NCCL
    struct nccl *nc = d && d->world > 1 && bucket > 0 && n > 0 ? nccl_for(d, be) : NULL;
    if (nc) {
        int rc = grad_sync_nccl_create(g, nc);
        if (rc) {
            grad_sync_nccl_free(g);
            free(g);
            return rc;
        }
        *out = g;
        return 0;
    }
#endif
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
#ifdef R1_NCCL
    if (g->nccl) {
        grad_sync_nccl_free(g);
        free(g);
        return;
    }
#endif
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
#ifdef R1_NCCL
    if (g->nccl) {
        if (!g->armed) {
            g->armed = g->active = 1;
            g->ready = g->done = g->n;
            g->err = 0;
        }
        return;
    }
#endif
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
#ifdef R1_NCCL
    if (g->nccl) {
        if (g->active && lo < g->ready) {
            g->ready = lo < 0 ? 0 : lo;
            grad_sync_nccl_queue(g);
        }
        return;
    }
#endif
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
#ifdef R1_NCCL
    if (g->nccl)
        return grad_sync_nccl_finish(g);
#endif
    r1_grad_sync_ready(g, 0);
    pthread_mutex_lock(&g->mu);
    while (g->active)
        pthread_cond_wait(&g->idle, &g->mu);
    g->armed = 0;
    int rc = g->err;
    pthread_mutex_unlock(&g->mu);
    return rc ? r1_err_set(rc, "%s", g->msg) : 0;
}
