/* backend.c - the backend registry: the one place that knows which backends exist. */
#include "core/backend.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#ifndef R1_BUILD_INFO
#define R1_BUILD_INFO "unknown build"
#endif

int r1_backend_create(struct r1_backend **out, enum r1_backend_kind kind, int threads)
{
    return r1_backend_create_on(out, kind, threads, 0);
}

int r1_backend_create_on(struct r1_backend **out, enum r1_backend_kind kind, int threads,
                         int device)
{
    (void)device;
    switch (kind) {
    case R1_BACKEND_AUTO:
#ifdef R1_CUDA
        /* a GPU r1 cannot use (no cuBLASLt, an architecture this build lacks) leaves the CPU;
         * the run header names the backend taken, and backend: cuda shows why */
        if (r1_backend_cuda_available() && r1_backend_cuda_create(out, threads, device) == 0)
            return 0;
        r1_err_clear();
#endif
        return r1_backend_cpu_create(out, threads);
    case R1_BACKEND_CPU:
        return r1_backend_cpu_create(out, threads);
    case R1_BACKEND_CUDA:
#ifdef R1_CUDA
        return r1_backend_cuda_create(out, threads, device);
#else
        return r1_err_set(R1_EINVAL, "backend 'cuda' is not compiled into this r1; rebuild with "
                          "meson setup -Dcuda=enabled on a machine with the CUDA toolkit");
#endif
    }
    return r1_err_set(R1_EINVAL, "unknown backend kind %d", (int)kind);
}

void r1_backend_free(struct r1_backend *be)
{
    if (!be)
        return;
    if (be->ops && be->ops->release)
        be->ops->release(be->ctx);
    free(be);
}

const char *r1_backend_device(const struct r1_backend *be)
{
#ifdef R1_CUDA
    if (strcmp(be->ops->name, "cuda") == 0)
        return r1_backend_cuda_device(be);
#endif
    return be->ops->name;
}

const char *r1_backend_build_info(void) { return R1_BUILD_INFO; }
