/* dist.h - the processes of one job: rank, world size and the collectives r1 uses.
 *
 * A job is started by mpirun (OpenMPI) or srun (Slurm with PMIx); MPI starts the processes
 * and carries the CPU collectives.  r1_dist_init joins the job when the launcher's
 * environment says there is one (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK), and is a
 * world of one process otherwise, or when r1 was built without MPI: then every collective
 * is the identity, so callers never test which case they are in.
 *
 * Conventions: collectives are called by every rank in the same order (a rank that skips
 * one hangs the others).  A rank that fails between collectives reports it through
 * r1_dist_agree at the next agreement point instead of leaving, so the others stop too.
 * Sums over ranks are MPI's, deterministic for a fixed world size and message size (the
 * same run repeats bit for bit), not equal to a one-process sum in general.
 *
 * Only this file's .c knows MPI and NCCL. */
#ifndef R1_DIST_H
#define R1_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

struct r1_dist {
    int rank, world;
    int local_rank; /* rank among the processes of this node (one GPU each) */
    int agreed;     /* the last r1_dist_agree failed on every rank: all leave together, so
                     * MPI_Finalize cannot wait for a rank stuck in a collective */
    int culprit;    /* then: the lowest rank that failed (its message is the real one) */
    void *impl;     /* dist.c */
};

/* Joins the job (MPI_Init) when launched by mpirun/srun, else a world of one.
 * R1_EINVAL when the launcher says there are several processes but this r1 has no MPI. */
int r1_dist_init(struct r1_dist **out);
/* Leaves the job (MPI_Finalize) and frees d.  NULL is fine. */
void r1_dist_free(struct r1_dist *d);
/* Ends every process of the job at once with status code (MPI_Abort); returns only in a
 * world of one. */
void r1_dist_abort(struct r1_dist *d, int code);

/* What MPI this build has ("OpenMPI 4.1.4", or "none"), for messages and --version. */
const char *r1_dist_build_info(void);

/* Agreement point: every rank passes its status (0 or an R1_E* code); all get 0 when all
 * passed 0, else the status of the lowest failing rank.  A rank that did not fail itself
 * records "rank N failed" (r1_err_set) so its exit names the culprit. */
int r1_dist_agree(struct r1_dist *d, int rc);
/* 1 on every rank when flag is non-zero on any rank (a stop request seen by one). */
int r1_dist_any(struct r1_dist *d, int flag);

/* In-place sums over ranks (host memory).  With every rank but one contributing zeros they
 * gather exactly: x + 0 = x. */
int r1_dist_sum_f64(struct r1_dist *d, double *x, int n);
int r1_dist_sum_f32(struct r1_dist *d, float *x, int64_t n);
int r1_dist_sum_i32(struct r1_dist *d, int32_t *x, int64_t n);
/* n floats of backend memory (staged through host memory in chunks). */
int r1_dist_sum_backend(struct r1_dist *d, struct r1_backend *be, float *x, int64_t n);
/* Gathers ranges of backend memory: rank r's x[lo[r], hi[r]) (floats) to every rank. */
int r1_dist_gather_ranges(struct r1_dist *d, struct r1_backend *be, float *x, const int64_t *lo,
                          const int64_t *hi);
/* bytes from root to every rank (host memory). */
int r1_dist_bcast(struct r1_dist *d, void *x, size_t bytes, int root);

/* Puts the sums and gathers of be's memory (r1_dist_sum_backend, r1_dist_gather_ranges,
 * r1_grad_sync) on NCCL when every rank's backend is a GPU's (ops->queue) and libnccl.so.2
 * loads on every rank, unless R1_NCCL=0; otherwise they stay on MPI, through host memory
 * for a GPU.  Every rank calls it after creating its backend (one per job).  An error on
 * every rank alike when NCCL loads but cannot start (two ranks on one GPU, say). */
int r1_dist_attach(struct r1_dist *d, struct r1_backend *be);
/* Ends what attach started; before the backend is freed.  NULL is fine. */
void r1_dist_detach(struct r1_dist *d);
/* What carries the sums of backend memory after attach: "MPI", "NCCL 2.28.9", "MPI through
 * host memory (no NCCL: why)"; "none" in a world of one. */
const char *r1_dist_transport(const struct r1_dist *d);

/* Gradient sums in buckets that overlap the backward (as PyTorch DDP does).  The arena x
 * (n floats of backend memory) is cut from its end into buckets of `bucket` floats:
 * [n - bucket, n), [n - 2·bucket, n - bucket), ..., the same cut on every rank, so every
 * rank makes the same sequence of allreduces whatever its timing.  A thread of this
 * process sums each bucket in place as soon as the model has finished writing it
 * (r1_model_set_grad_hook calls r1_grad_sync_ready), while the backward goes on below it.
 *
 * Per update: r1_grad_sync_arm before this rank's last backward of the update (earlier
 * micro-batches still add to every bucket), hook on for that backward, then
 * r1_grad_sync_finish, which every rank calls, also one that failed or had no micro-batch
 * (it declares everything ready, so the others are not left waiting in a sum), before
 * r1_dist_agree.  A world of two gives the bytes of r1_dist_sum_backend (a + b in either
 * order); larger worlds repeat their own bytes for a fixed bucket size.
 *
 * The overlap needs a backend whose memory is host memory (r1_backend_ops.host_memory) and
 * MPI with threads (MPI_THREAD_SERIALIZED or better), or NCCL (r1_dist_attach): then no
 * thread, but each final bucket's allreduce is queued on a second GPU stream behind the
 * backward's work so far, and the update waits for that stream; otherwise, with bucket <= 0, or in a
 * world of one, arm and ready do nothing and finish sums the whole arena after the backward
 * (r1_dist_sum_backend).  r1_grad_sync_overlaps says which. */
struct r1_grad_sync;
int r1_grad_sync_create(struct r1_grad_sync **out, struct r1_dist *d, struct r1_backend *be,
                        float *x, int64_t n, int64_t bucket);
void r1_grad_sync_free(struct r1_grad_sync *g);
int r1_grad_sync_overlaps(const struct r1_grad_sync *g);
void r1_grad_sync_arm(struct r1_grad_sync *g);
/* x[lo, n) is final for this update (the model's grad hook; arg is g). */
void r1_grad_sync_ready(void *g, int64_t lo);
/* Everything ready; waits for (or makes) every sum.  0 or the first failure. */
int r1_grad_sync_finish(struct r1_grad_sync *g);

#endif
