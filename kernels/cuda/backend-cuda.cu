/* backend-cuda.cu - the CUDA backend: ops table, ctx, memory, errors.
 *
 * One device (number `device` of those CUDA_VISIBLE_DEVICES shows, modulo their count: a
 * job's ranks pass their local rank), one stream, one cuBLASLt handle and GEMM workspace
 * per backend; libcublasLt is opened at creation (struct r1_cublaslt; R1_CUBLASLT names
 * another library file, e.g. the CUDA emulator's).  Memory comes from cudaMalloc
 * (256-byte aligned) and is zeroed on allocation, as the contract asks.  upload and download synchronise the stream,
 * so host buffers can be reused on return and downloads see every op queued before them.
 *
 * r1_backend_cuda_create fails with R1_EIO (and a message naming the CUDA error) when no
 * device or driver is usable, which is how the registry's `auto` falls back to the CPU and
 * how GPU tests know to skip.
 */
#include "kernels/cuda/cuda-ops.h"
#include "kernels/cuda/reduce.cuh"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/backend.h"
#include "core/err.h"
}

#define CU_TRY(cu, call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            r1_cuda_fail((cu), #call, cudaGetErrorString(e_), __FILE__, __LINE__);                 \
    } while (0)

extern "C" void r1_cuda_fail(struct r1_cuda *cu, const char *what, const char *detail,
                             const char *file, int line)
{
    if (cu->failed)
        return;
    cu->failed = 1;
    const char *base = strrchr(file, '/');
    snprintf(cu->err, sizeof(cu->err), "%s failed on %s: %s (%s:%d)", what, cu->device_name,
             detail, base ? base + 1 : file, line);
}

extern "C" int r1_cuda_check(void *ctx)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!cu->failed) {
        /* surface asynchronous faults of work already queued */
        cudaError_t e = cudaPeekAtLastError();
        if (e != cudaSuccess)
            r1_cuda_fail(cu, "a kernel", cudaGetErrorString(e), __FILE__, __LINE__);
    }
    if (!cu->failed)
        return 0;
    return r1_err_set(R1_EIO, "backend-cuda: %s; the run cannot go on (its last checkpoint is "
                      "intact: `r1 resume` after fixing the cause)", cu->err);
}

extern "C" void *r1_cuda_workspace(struct r1_cuda *cu, size_t bytes)
{
    if (cu->failed)
        return NULL;
    if (bytes <= cu->ws_bytes)
        return cu->ws;
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes + bytes / 4;
    CU_TRY(cu, cudaStreamSynchronize(cu->stream));
    if (cu->ws && cu->graphs > 0) { /* a graph may replay it: keep it until none lives */
        void **old = (void **)realloc(cu->ws_old, (size_t)(cu->n_ws_old + 1) * sizeof(void *));
        if (!old) {
            r1_cuda_fail(cu, "r1_cuda_workspace", "out of host memory", __FILE__, __LINE__);
            return NULL;
        }
        cu->ws_old = old;
        cu->ws_old[cu->n_ws_old++] = cu->ws;
    } else if (cu->ws) {
        CU_TRY(cu, cudaFree(cu->ws));
    }
    cu->ws = NULL;
    cu->ws_bytes = 0;
    if (cu->failed)
        return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
        char detail[96];
        snprintf(detail, sizeof(detail), "cannot allocate %zu MiB of workspace (%s)", want >> 20,
                 cudaGetErrorString(e));
        r1_cuda_fail(cu, "cudaMalloc", detail, __FILE__, __LINE__);
        return NULL;
    }
    cu->ws = p;
    cu->ws_bytes = want;
    return p;
}

/* ---- memory ------------------------------------------------------------------------- */

static void *cuda_alloc(void *ctx, size_t bytes)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (cu->failed)
        return NULL;
    if (bytes == 0)
        bytes = 64;
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); /* an out-of-memory is not sticky: the caller reports it */
        return NULL;
    }
    if (cudaMemsetAsync(p, 0, bytes, cu->stream) != cudaSuccess ||
        cudaStreamSynchronize(cu->stream) != cudaSuccess) {
        cudaFree(p);
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cuda_free(void *ctx, void *p)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!p)
        return;
    if (cu->failed) { /* the context may be unusable: free what can be, record nothing */
        cudaFree(p);
        cudaGetLastError();
        return;
    }
    /* freeing memory the queue may still use would be a use-after-free on the device */
    CU_TRY(cu, cudaStreamSynchronize(cu->stream));
    CU_TRY(cu, cudaFree(p));
}

static void cuda_upload(void *ctx, void *dst, const void *host_src, size_t bytes)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (!bytes)
        return;
    CU_TRY(cu, cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cu->stream));
    CU_TRY(cu, cudaStreamSynchronize(cu->stream));
}

static void cuda_download(void *ctx, void *host_dst, const void *src, size_t bytes)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!bytes)
        return;
    if (!cu->failed) {
        CU_TRY(cu, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
        CU_TRY(cu, cudaStreamSynchronize(cu->stream));
    }
    if (cu->failed)
        memset(host_dst, 0xff, bytes); /* NaN in every float: no result passes for a real one */
}

static void cuda_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (bytes)
        CU_TRY(cu, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream));
}

static void cuda_zero(void *ctx, void *p, size_t bytes)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    if (bytes)
        CU_TRY(cu, cudaMemsetAsync(p, 0, bytes, cu->stream));
}

static void cuda_sync(void *ctx)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    CU_TRY(cu, cudaStreamSynchronize(cu->stream));
}

static void cuda_release(void *ctx)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!cu)
        return;
    cudaStreamSynchronize(cu->stream);
    if (cu->ws)
        cudaFree(cu->ws);
    for (int i = 0; i < cu->n_ws_old; i++)
        cudaFree(cu->ws_old[i]);
    free(cu->ws_old);
    if (cu->host_parts)
        cudaFreeHost(cu->host_parts);
    r1_cuda_gemm_release(cu);
    if (cu->lt_pref)
        cu->lb.pref_destroy(cu->lt_pref);
    if (cu->lt)
        cu->lb.destroy(cu->lt);
    if (cu->gemm_ws)
        cudaFree(cu->gemm_ws);
    if (cu->lb.lib)
        dlclose(cu->lb.lib);
    if (cu->stream)
        cudaStreamDestroy(cu->stream);
    free(cu);
}

/* the workspace the ops will need for calls up to *s (reduce.cuh's column sums, the
 * attention backward's Di, sumsq's partial sums, the decode attention's splits), allocated
 * now; *held counts cuBLASLt's workspace too */
static int cuda_reserve(void *ctx, const struct r1_op_sizes *s, size_t *held)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    *held = cu->ws_bytes + cu->gemm_ws_bytes;
    size_t need = R1_CUDA_SUMSQ_PARTS * sizeof(double);
    size_t width = (size_t)(s->width > s->hidden ? s->width : s->hidden);
    size_t chunks = (size_t)((s->rows + R1_CUDA_COL_CHUNK - 1) / R1_CUDA_COL_CHUNK);
    size_t colsum = chunks * width * sizeof(double);
    size_t di = s->T > 0 ? (size_t)s->rows * (size_t)s->H * sizeof(float) : 0;
    size_t dec = s->cache_len > 0 && s->rows <= INT_MAX
                     ? r1_cuda_decode_workspace((int)s->rows, s->H, s->D, s->cache_len)
                     : 0;
    need = need > colsum ? need : colsum;
    need = need > di ? need : di;
    need = need > dec ? need : dec;
    if (s->rows > 0 && !r1_cuda_workspace(cu, need))
        return r1_cuda_check(cu);
    *held = cu->ws_bytes + cu->gemm_ws_bytes;
    return 0;
}

/* ---- CUDA graphs: the ops between begin and end are captured from the stream ---------- */

static void cuda_graph_begin(void *ctx)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    /* global mode: a call unsafe during a capture fails from any thread */
    CU_TRY(cu, cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeGlobal));
    cu->capturing = !cu->failed;
}

static void *cuda_graph_end(void *ctx)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!cu->capturing)
        return NULL;
    cu->capturing = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->stream, &g); /* also after a failure inside */
    if (e != cudaSuccess && !cu->failed)
        r1_cuda_fail(cu, "cudaStreamEndCapture", cudaGetErrorString(e), __FILE__, __LINE__);
    cudaGraphExec_t x = NULL;
    if (!cu->failed)
        CU_TRY(cu, cudaGraphInstantiate(&x, g, 0));
    if (g)
        cudaGraphDestroy(g);
    if (cu->failed && x) {
        cudaGraphExecDestroy(x);
        x = NULL;
    }
    cu->graphs += x != NULL;
    return (void *)x;
}

static void cuda_graph_launch(void *ctx, void *graph)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    R1_CUDA_BEGIN(cu);
    CU_TRY(cu, cudaGraphLaunch((cudaGraphExec_t)graph, cu->stream));
}

static void cuda_graph_free(void *ctx, void *graph)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    if (!graph)
        return;
    if (!cu->failed)
        CU_TRY(cu, cudaStreamSynchronize(cu->stream)); /* a launch of it may still run */
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
    if (--cu->graphs == 0) { /* no graph can replay the replaced workspaces now */
        for (int i = 0; i < cu->n_ws_old; i++)
            cudaFree(cu->ws_old[i]);
        cu->n_ws_old = 0;
    }
}

static void *cuda_queue(void *ctx, int *device)
{
    struct r1_cuda *cu = (struct r1_cuda *)ctx;
    *device = cu->device;
    return (void *)cu->stream;
}

/* A kernel that does nothing: asking for its attributes tells whether this binary has code
 * the device can run (SASS of a compatible architecture, or PTX it can compile). */
__global__ void r1_cuda_probe(void) {}

/* ---- the table and the constructor ---------------------------------------------------- */

static struct r1_backend_ops cuda_ops_table(void)
{
    struct r1_backend_ops t;
    memset(&t, 0, sizeof(t));
    t.name = "cuda";
    t.alloc = cuda_alloc;
    t.free = cuda_free;
    t.upload = cuda_upload;
    t.download = cuda_download;
    t.copy = cuda_copy;
    t.zero = cuda_zero;
    t.sync = cuda_sync;
    t.queue = cuda_queue;
    t.check = r1_cuda_check;
    t.release = cuda_release;
    t.reserve = cuda_reserve;
    t.matmul_forward = r1_cuda_matmul_forward;
    t.matmul_backward = r1_cuda_matmul_backward;
    t.matmul_forward_bf16 = r1_cuda_matmul_forward_bf16;
    t.convert_bf16 = r1_cuda_convert_bf16;
    t.matmul16_forward = r1_cuda_matmul16_forward;
    t.matmul16_backward = r1_cuda_matmul16_backward;
    t.embedding_forward = r1_cuda_embedding_forward;
    t.embedding_backward = r1_cuda_embedding_backward;
    t.rmsnorm_forward = r1_cuda_rmsnorm_forward;
    t.rmsnorm_backward = r1_cuda_rmsnorm_backward;
    t.rope_forward = r1_cuda_rope_forward;
    t.rope_backward = r1_cuda_rope_backward;
    t.attention_forward = r1_cuda_attention_forward;
    t.attention_backward = r1_cuda_attention_backward;
    t.attention16_forward = r1_cuda_attention16_forward;
    t.attention16_backward = r1_cuda_attention16_backward;
    t.kv_store = r1_cuda_kv_store;
    t.attention_cached = r1_cuda_attention_cached;
    t.kv_store16 = r1_cuda_kv_store16;
    t.attention_cached16 = r1_cuda_attention_cached16;
    t.swiglu_forward = r1_cuda_swiglu_forward;
    t.swiglu_backward = r1_cuda_swiglu_backward;
    t.add = r1_cuda_add;
    t.scale = r1_cuda_scale;
    t.sumsq = r1_cuda_sumsq;
    t.logprobs_forward = r1_cuda_logprobs_forward;
    t.logprobs_backward = r1_cuda_logprobs_backward;
    t.pg_loss = r1_cuda_pg_loss;
    t.adamw_update = r1_cuda_adamw_update;
    t.sample = r1_cuda_sample;
    t.graph_begin = cuda_graph_begin;
    t.graph_end = cuda_graph_end;
    t.graph_launch = cuda_graph_launch;
    t.graph_free = cuda_graph_free;
    return t;
}

static const struct r1_backend_ops cuda_ops = cuda_ops_table();

/* Opens libcublasLt (the file R1_CUBLASLT names, else the soname of the toolkit r1 was
 * built with, then the unversioned name) and looks up the entry points of struct
 * r1_cublaslt. */
static int cublaslt_open(struct r1_cublaslt *lb)
{
    char soname[512];
    const char *env = getenv("R1_CUBLASLT");
    if (env && *env)
        snprintf(soname, sizeof(soname), "%s", env);
    else
        snprintf(soname, sizeof(soname), "libcublasLt.so.%d", (int)CUBLAS_VER_MAJOR);
    lb->lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!lb->lib && !(env && *env))
        lb->lib = dlopen("libcublasLt.so", RTLD_NOW | RTLD_LOCAL);
    if (!lb->lib)
        return r1_err_set(R1_EIO, "backend-cuda: cannot load %s (%s); put the CUDA toolkit's "
                          "lib64 directory on LD_LIBRARY_PATH", soname, dlerror());
#define R1_LT_SYM(field, name)                                                                     \
    do {                                                                                           \
        *(void **)&lb->field = dlsym(lb->lib, name);                                               \
        if (!lb->field)                                                                            \
            return r1_err_set(R1_EIO, "backend-cuda: %s has no %s; r1 was built with "            \
                              "cuBLAS %d", soname, name, (int)CUBLAS_VER_MAJOR);                  \
    } while (0)
    R1_LT_SYM(create, "cublasLtCreate");
    R1_LT_SYM(destroy, "cublasLtDestroy");
    R1_LT_SYM(desc_create, "cublasLtMatmulDescCreate");
    R1_LT_SYM(desc_destroy, "cublasLtMatmulDescDestroy");
    R1_LT_SYM(desc_set, "cublasLtMatmulDescSetAttribute");
    R1_LT_SYM(layout_create, "cublasLtMatrixLayoutCreate");
    R1_LT_SYM(layout_destroy, "cublasLtMatrixLayoutDestroy");
    R1_LT_SYM(pref_create, "cublasLtMatmulPreferenceCreate");
    R1_LT_SYM(pref_destroy, "cublasLtMatmulPreferenceDestroy");
    R1_LT_SYM(pref_set, "cublasLtMatmulPreferenceSetAttribute");
    R1_LT_SYM(heuristic, "cublasLtMatmulAlgoGetHeuristic");
    R1_LT_SYM(matmul, "cublasLtMatmul");
    R1_LT_SYM(status_string, "cublasLtGetStatusString");
#undef R1_LT_SYM
    return 0;
}

extern "C" int r1_backend_cuda_available(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0;
}

extern "C" int r1_backend_cuda_create(struct r1_backend **out, int threads, int device)
{
    (void)threads; /* host-side work is single-threaded; kernels use the device */
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device is visible";
        cudaGetLastError();
        return r1_err_set(R1_EIO, "backend-cuda: no usable GPU (%s); run on a machine with an "
                          "NVIDIA GPU and driver, or choose backend: cpu", why);
    }
    struct r1_cuda *cu = (struct r1_cuda *)calloc(1, sizeof(*cu));
    struct r1_backend *be = (struct r1_backend *)malloc(sizeof(*be));
    if (!cu || !be) {
        free(cu);
        free(be);
        return r1_err_set(R1_ENOMEM, "backend-cuda: out of memory creating the CUDA backend");
    }
    cu->device = device >= 0 ? device % n : 0;
    cudaDeviceProp prop;
    int rc = 0;
    if ((e = cudaSetDevice(cu->device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, cu->device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMallocHost((void **)&cu->host_parts, R1_CUDA_SUMSQ_PARTS * sizeof(double))) != cudaSuccess) {
        rc = r1_err_set(R1_EIO, "backend-cuda: cannot set up device %d: %s", cu->device,
                        cudaGetErrorString(e));
        goto fail;
    }
    snprintf(cu->device_name, sizeof(cu->device_name), "%s", prop.name);
    cu->sm_count = prop.multiProcessorCount;
    {
        cudaFuncAttributes fa;
        if ((e = cudaFuncGetAttributes(&fa, r1_cuda_probe)) != cudaSuccess) {
            rc = r1_err_set(R1_EIO, "backend-cuda: %s (compute capability %d.%d) cannot run this "
                            "build's kernels (%s); rebuild with -Dgpu_arch=%d%d",
                            cu->device_name, prop.major, prop.minor, cudaGetErrorString(e),
                            prop.major, prop.minor);
            goto fail;
        }
    }
    if ((rc = cublaslt_open(&cu->lb)))
        goto fail;
    if (cu->lb.create(&cu->lt) != CUBLAS_STATUS_SUCCESS ||
        cu->lb.pref_create(&cu->lt_pref) != CUBLAS_STATUS_SUCCESS) {
        rc = r1_err_set(R1_EIO, "backend-cuda: cannot create a cuBLASLt handle on %s",
                        cu->device_name);
        goto fail;
    }
    /* cuBLAS's advice for its workspace: 32 MiB on Hopper and later, 4 MiB before */
    cu->gemm_ws_bytes = (size_t)(prop.major >= 9 ? 32 : 4) << 20;
    if ((e = cudaMalloc(&cu->gemm_ws, cu->gemm_ws_bytes)) != cudaSuccess) {
        cu->gemm_ws = NULL;
        rc = r1_err_set(R1_EIO, "backend-cuda: cannot allocate %zu MiB of GEMM workspace on "
                        "%s: %s", cu->gemm_ws_bytes >> 20, cu->device_name,
                        cudaGetErrorString(e));
        goto fail;
    }
    be->ops = &cuda_ops;
    be->ctx = cu;
    be->arena_bytes = 0;
    *out = be;
    return 0;
fail:
    free(be);
    cuda_release(cu);
    cudaGetLastError();
    return rc;
}

extern "C" const char *r1_backend_cuda_device(const struct r1_backend *be)
{
    return ((const struct r1_cuda *)be->ctx)->device_name;
}
