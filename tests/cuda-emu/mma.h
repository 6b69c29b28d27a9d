/* mma.h - the tensor-core API (nvcuda::wmma) as tests/cuda-emu provides it.
 *
 * Kernels of kernels/cuda built by the CUDA emulator (-DR1_CUDA_EMU) find this header in
 * place of the toolkit's, so a kernel written against the real <mma.h> runs unchanged.  Only
 * the 16x16x16 shape with __nv_bfloat16 matrix_a / matrix_b (row_major or col_major) and
 * float accumulators is here; other fragments fail to compile (a static_assert).
 *
 * What a GPU leaves unspecified is chosen so that code relying on it fails here:
 * - Which matrix element a lane's x[i] holds.  Each fragment type has its own bijection
 *   (lane l, element i) <-> (row, col): e = 8 l + i, p = (e * mul + add) mod 256, row =
 *   p / 16, col = (p mod 16) xor (row * rx mod 16), with (mul, add, rx) different for
 *   matrix_a row_major (37, 11, 5), matrix_a col_major (91, 200, 3), matrix_b row_major
 *   (173, 77, 7), matrix_b col_major (59, 150, 9) and the accumulator (141, 5, 11).  A
 *   lane's elements are scattered over rows and columns, and no two fragment types agree,
 *   so an accumulator reused as a matrix_a fragment, or x[i] assumed to be in row l / 4 (or
 *   any fixed pattern), gives wrong results.  Fragments of one type share the mapping, so
 *   what is portable works: element-wise operations between fragments of one type, and
 *   learning where x[i] is by loading an accumulator from a matrix whose (r, c) holds r.
 * - The order of mma_sync's sums: d(r,c) = c(r,c), then + a(r,k) * b(k,c) for k = 0..15,
 *   each step rounded to float (a product of two bf16 is exact in float, barring
 *   underflow, so each step is fmaf's result).  A tensor core's order and rounding
 *   differ; compare with a tolerance, or use inputs whose sums are exact.
 * - Memory ordering: a lane's loads read before the warp's barrier and its stores write
 *   after it, so data another lane of the warp writes without __syncwarp between shows.
 *
 * The calls are warp-collective, as on a GPU: every lane of a full warp must make the same
 * calls with the same arguments.  Each passes a warp barrier (a lane that skips one for
 * another barrier is a deadlock; one that returned, or is at another wmma call, is
 * reported by the others' call), and aborts with "cuda-emu: ..." on a pointer that is not
 * 32-byte aligned, an ldm that is not a multiple of 16 bytes (8 bf16 elements, 4 floats),
 * or lanes whose pointer, ldm or layout differ.  Memory holding bf16 bit patterns
 * (uint16_t arrays) may be passed as const __nv_bfloat16 *: it is read with memcpy.  The
 * records and mma_sync's scratch are in emu.cc. */
#ifndef R1_CUDA_EMU_MMA_H
#define R1_CUDA_EMU_MMA_H

#include "cuda_bf16.h"
#include "cuda_runtime.h"

#include <type_traits>

/* emu.cc: checks the lane's arguments to the call fn (p is checked only when elem_bytes is
 * not 0, layout only when it is not -1) and records them; returns the warp's scratch for the
 * call, 3 x 256 floats.  Then r1_emu_wmma_sync: the warp barrier, after which every lane's
 * record is checked against this lane's. */
float *r1_emu_wmma_arrive(const char *fn, int kind, const void *p, unsigned ldm, int layout,
                          unsigned elem_bytes);
void r1_emu_wmma_sync(const char *fn);

namespace nvcuda {
namespace wmma {

/* the tags are incomplete, as the toolkit's */
struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;

enum layout_t { mem_row_major, mem_col_major };

} // namespace wmma
} // namespace nvcuda

namespace r1_emu_wmma {

namespace w = nvcuda::wmma;

/* the emulated fragment types; -1 for any other */
enum { A_ROW, A_COL, B_ROW, B_COL, ACC };
template <class Use, int m, int n, int k, class T, class Layout> struct kind_of {
    static constexpr int value = -1;
};
template <> struct kind_of<w::matrix_a, 16, 16, 16, __nv_bfloat16, w::row_major> {
    static constexpr int value = A_ROW;
};
template <> struct kind_of<w::matrix_a, 16, 16, 16, __nv_bfloat16, w::col_major> {
    static constexpr int value = A_COL;
};
template <> struct kind_of<w::matrix_b, 16, 16, 16, __nv_bfloat16, w::row_major> {
    static constexpr int value = B_ROW;
};
template <> struct kind_of<w::matrix_b, 16, 16, 16, __nv_bfloat16, w::col_major> {
    static constexpr int value = B_COL;
};
template <> struct kind_of<w::accumulator, 16, 16, 16, float, void> {
    static constexpr int value = ACC;
};

/* the calls' kinds in emu.cc's records: a load is its fragment's kind */
enum { CALL_STORE = 5, CALL_MMA = 6 /* + 2 (a is col_major) + (b is col_major) */ };

/* where lane's x[i] is in a fragment of kind (see the top of the file) */
struct pos {
    int r, c;
};
static inline pos where(int kind, int lane, int i)
{
    static const unsigned mul[5] = {37, 91, 173, 59, 141}, add[5] = {11, 200, 77, 150, 5},
                          rx[5] = {5, 3, 7, 9, 11};
    unsigned p = ((unsigned)(lane * 8 + i) * mul[kind] + add[kind]) & 255u, r = p >> 4;
    return pos{(int)r, (int)((p ^ (r * rx[kind])) & 15u)};
}

/* the offset in elements of (r, c) in a matrix of leading dimension ldm */
static inline size_t offset(pos q, unsigned ldm, bool col)
{
    return col ? (size_t)q.c * ldm + (size_t)q.r : (size_t)q.r * ldm + (size_t)q.c;
}

template <class T>
static inline void load(const char *fn, int kind, T *x, const T *p, unsigned ldm, bool col,
                        int layout)
{
    r1_emu_wmma_arrive(fn, kind, p, ldm, layout, sizeof(T));
    int lane = r1_emu_cur & 31;
    for (int i = 0; i < 8; i++)
        memcpy(&x[i], (const char *)p + offset(where(kind, lane, i), ldm, col) * sizeof(T),
               sizeof(T));
    r1_emu_wmma_sync(fn);
}

/* d = a b + c in the warp's scratch: a, b as floats, the sums as at the top of the file */
static inline void mma(int kind, float *d, const __nv_bfloat16 *a, int ka,
                       const __nv_bfloat16 *b, int kb, const float *c)
{
    float *s = r1_emu_wmma_arrive("mma_sync", kind, nullptr, 0, -1, 0);
    float *sa = s, *sb = s + 256, *sc = s + 512;
    int lane = r1_emu_cur & 31;
    for (int i = 0; i < 8; i++) {
        pos q = where(ka, lane, i);
        sa[q.r * 16 + q.c] = __bfloat162float(a[i]);
        q = where(kb, lane, i);
        sb[q.r * 16 + q.c] = __bfloat162float(b[i]);
        q = where(ACC, lane, i);
        sc[q.r * 16 + q.c] = c[i];
    }
    r1_emu_wmma_sync("mma_sync");
    for (int i = 0; i < 8; i++) {
        pos q = where(ACC, lane, i);
        float v = sc[q.r * 16 + q.c];
        for (int k = 0; k < 16; k++)
            v += sa[q.r * 16 + k] * sb[k * 16 + q.c];
        d[i] = v;
    }
}

} // namespace r1_emu_wmma

namespace nvcuda {
namespace wmma {

template <class Use, int m, int n, int k, class T, class Layout = void> class fragment {
    static_assert(r1_emu_wmma::kind_of<Use, m, n, k, T, Layout>::value >= 0,
                  "cuda-emu: the emulated wmma fragments are 16x16x16 only: matrix_a or "
                  "matrix_b of __nv_bfloat16, row_major or col_major, and accumulator of "
                  "float (no layout)");

  public:
    typedef T element_type;
    static constexpr int num_elements = 16 * 16 / 32; /* per lane */
    T x[num_elements];
};

template <class Use, int m, int n, int k, class T, class Layout>
inline void fill_fragment(fragment<Use, m, n, k, T, Layout> &f,
                          const typename std::common_type<T>::type &v)
{
    for (int i = 0; i < f.num_elements; i++)
        f.x[i] = v;
}

#define R1_EMU_WMMA_LOAD_AB(use, layout, kind, col)                                            \
    inline void load_matrix_sync(fragment<use, 16, 16, 16, __nv_bfloat16, layout> &a,         \
                                 const __nv_bfloat16 *p, unsigned ldm)                        \
    {                                                                                          \
        r1_emu_wmma::load("load_matrix_sync", r1_emu_wmma::kind, a.x, p, ldm, col, -1);       \
    }
R1_EMU_WMMA_LOAD_AB(matrix_a, row_major, A_ROW, false)
R1_EMU_WMMA_LOAD_AB(matrix_a, col_major, A_COL, true)
R1_EMU_WMMA_LOAD_AB(matrix_b, row_major, B_ROW, false)
R1_EMU_WMMA_LOAD_AB(matrix_b, col_major, B_COL, true)
#undef R1_EMU_WMMA_LOAD_AB

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &a, const float *p,
                             unsigned ldm, layout_t layout)
{
    r1_emu_wmma::load("load_matrix_sync", r1_emu_wmma::ACC, a.x, p, ldm,
                      layout == mem_col_major, (int)layout);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &a,
                              unsigned ldm, layout_t layout)
{
    r1_emu_wmma_arrive("store_matrix_sync", r1_emu_wmma::CALL_STORE, p, ldm, (int)layout,
                       sizeof(float));
    r1_emu_wmma_sync("store_matrix_sync");
    int lane = r1_emu_cur & 31;
    for (int i = 0; i < 8; i++)
        memcpy(p + r1_emu_wmma::offset(r1_emu_wmma::where(r1_emu_wmma::ACC, lane, i), ldm,
                                       layout == mem_col_major),
               &a.x[i], sizeof(float));
}

/* d may be c */
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c)
{
    constexpr int ka = r1_emu_wmma::kind_of<matrix_a, 16, 16, 16, __nv_bfloat16, LA>::value;
    constexpr int kb = r1_emu_wmma::kind_of<matrix_b, 16, 16, 16, __nv_bfloat16, LB>::value;
    r1_emu_wmma::mma(r1_emu_wmma::CALL_MMA + 2 * (ka == r1_emu_wmma::A_COL) +
                         (kb == r1_emu_wmma::B_COL),
                     d.x, a.x, ka, b.x, kb, c.x);
}

} // namespace wmma
} // namespace nvcuda

#endif
