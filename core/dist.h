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
 * Only this file's .c knows MPI (and, later, NCCL). */
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

#endif
