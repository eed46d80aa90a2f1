// CPU kernels of advlab, built on first use by advlab/native.py (c++ -O3 -march=native) and
// called through ctypes.  Plain C++ without torch headers: it compiles in seconds.  Each kernel
// has a torch twin in the library that runs where this one cannot (GPU, no compiler,
// ADVLAB_COMPILE=0); the tests check that both give the same result.
//
// tv_minimize_*  Chambolle-Pock for masked TV minimisation (advlab.defences.transforms)
// jsma_pairs_*   JSMA's best pair of features (advlab.attacks.jsma)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// ------------------------------------------------------------------------ TV minimisation
// One row of one Chambolle-Pock iteration, in place: the dual update of row i, then its primal
// update.  The dual of row i needs the extrapolated primal zb of rows i and i + 1 from before
// this iteration; the primal of row i needs the new dual of rows i - 1 and i.  The arithmetic
// is that of transforms._primal_dual_step (forward differences, zero on the last row /
// column; the divergence their negative adjoint).  UNIT: every pixel kept (m = 1); otherwise
// ``c`` holds 1 / (1 + tau m).
template <typename T, bool ISO, bool UNIT>
inline void tv_row(int i, T* __restrict z, const T* __restrict c, const T* __restrict mx,
                   T* __restrict zb, T* __restrict py, T* __restrict px, int H, int W,
                   T ta, T sg, T th, T unit_c, T w, T inv_w) {
    T* __restrict zbr = zb + (size_t)i * W;
    const T* __restrict zbn = zbr + W;                 // row i + 1 (not read on the last row)
    T* __restrict pyr = py + (size_t)i * W;
    T* __restrict pxr = px + (size_t)i * W;
    const T* __restrict pyp = i > 0 ? pyr - W : pyr;   // row i - 1
    T* __restrict zr = z + (size_t)i * W;
    const T* __restrict cr = c + (size_t)i * W;
    const T* __restrict mxr = mx + (size_t)i * W;
    const bool last = i == H - 1;
    auto dual = [&](int j, T gy, T gx) {
        T a = pyr[j] + sg * gy, b = pxr[j] + sg * gx;
        if (ISO) {                                     // onto the disc of radius w
            T scale = std::sqrt(a * a + b * b) * inv_w;
            scale = scale > (T)1 ? scale : (T)1;
            const T r = (T)1 / scale;
            a *= r;
            b *= r;
        } else {                                       // onto the square
            a = std::min(std::max(a, -w), w);
            b = std::min(std::max(b, -w), w);
        }
        pyr[j] = a;
        pxr[j] = b;
    };
    if (last) {
        for (int j = 0; j < W - 1; ++j) dual(j, (T)0, zbr[j + 1] - zbr[j]);
    } else {
        for (int j = 0; j < W - 1; ++j) dual(j, zbn[j] - zbr[j], zbr[j + 1] - zbr[j]);
    }
    dual(W - 1, last ? (T)0 : zbn[W - 1] - zbr[W - 1], (T)0);

    auto primal = [&](int j, T div) {
        const T zn = (zr[j] + ta * (div + mxr[j])) * (UNIT ? unit_c : cr[j]);
        zbr[j] = zn + th * (zn - zr[j]);
        zr[j] = zn;
    };
    // div = py[i] (not on the last row) - py[i-1] (not on the first row)
    //     + px[j] (not on the last column) - px[j-1] (not on the first column)
    auto dy = [&](int j) { return (last ? (T)0 : pyr[j]) - (i > 0 ? pyp[j] : (T)0); };
    primal(0, dy(0) + (W > 1 ? pxr[0] : (T)0));
    if (!last && i > 0) {
        for (int j = 1; j < W - 1; ++j) primal(j, pyr[j] - pyp[j] + pxr[j] - pxr[j - 1]);
    } else {
        for (int j = 1; j < W - 1; ++j) primal(j, dy(j) + pxr[j] - pxr[j - 1]);
    }
    if (W > 1) primal(W - 1, dy(W - 1) - pxr[W - 2]);
}

// All iterations of one (H, W) plane, in place on z (which holds the start).  The arrays of a
// plane stay in the L2 cache; on top of that, BLOCK iterations advance together in one sweep
// over the rows, iteration k + 1 one row behind iteration k, so that each row is loaded once
// for BLOCK iterations (from L1).  One row behind is enough: iteration k + 1 at row r needs
// zb of rows r and r + 1 and the dual of row r - 1 after iteration k, and overwrites nothing
// iteration k still reads (its rows r + 1 and beyond), given that at each sweep position the
// earlier iteration goes first.  UNIT: Algorithm 2's acceleration (tau, sigma, theta change
// every iteration); otherwise tau stays fixed.
template <typename T, bool ISO, bool UNIT>
void tv_plane(T* __restrict z, const T* __restrict c, const T* __restrict mx,
              T* __restrict zb, T* __restrict py, T* __restrict px,
              int H, int W, int steps, double tau, double sigma, double weight) {
    constexpr int BLOCK = 2;
    const T w = (T)weight, inv_w = (T)(1.0 / weight);
    const size_t hw = (size_t)H * W;
    std::memcpy(zb, z, sizeof(T) * hw);
    std::memset(py, 0, sizeof(T) * hw);
    std::memset(px, 0, sizeof(T) * hw);
    for (int s0 = 0; s0 < steps; s0 += BLOCK) {
        const int k_n = std::min(BLOCK, steps - s0);
        T ta[BLOCK], sg[BLOCK], th[BLOCK], uc[BLOCK];
        for (int k = 0; k < k_n; ++k) {
            const double theta = UNIT ? 1.0 / std::sqrt(1.0 + 2.0 * tau) : 1.0;
            ta[k] = (T)tau;
            sg[k] = (T)sigma;
            th[k] = (T)theta;
            uc[k] = (T)(1.0 / (1.0 + tau));
            if (UNIT) {
                tau *= theta;
                sigma /= theta;
            }
        }
        for (int t = 0; t < H + k_n - 1; ++t) {
            for (int k = 0; k < k_n; ++k) {
                const int r = t - k;
                if (r >= 0 && r < H)
                    tv_row<T, ISO, UNIT>(r, z, c, mx, zb, py, px, H, W, ta[k], sg[k], th[k], uc[k], w, inv_w);
            }
        }
    }
}

// The starting point of a masked plane (transforms._fill_dropped, same additions in the same
// order): kept pixels as they are, each dropped one the mean of the kept pixels in the
// window x window box around it (box sums down the rows, then along the columns, zero beyond
// the border), or the plane's mean of kept pixels where the box holds none.  Also the primal
// step's factor c = 1 / (1 + tau m) and m x.  ``col`` is scratch of 2 H W.
template <typename T>
void tv_start(const T* __restrict x, const T* __restrict m, T* __restrict z, T* __restrict c,
              T* __restrict mx, T* __restrict col, int H, int W, int window, double tau) {
    const size_t hw = (size_t)H * W;
    const int r = window / 2;
    T *num_v = col, *den_v = col + hw;
    T sum_mx = 0, sum_m = 0;
    for (size_t k = 0; k < hw; ++k) {
        mx[k] = m[k] * x[k];
        c[k] = (T)1 / ((T)1 + (T)tau * m[k]);
        sum_mx += mx[k];
        sum_m += m[k];
    }
    const T mean = sum_mx / (sum_m > (T)1 ? sum_m : (T)1);
    for (int i = 0; i < H; ++i) {                      // down the rows
        T* nv = num_v + (size_t)i * W;
        T* dv = den_v + (size_t)i * W;
        for (int j = 0; j < W; ++j) nv[j] = dv[j] = 0;
        for (int d = -r; d <= r; ++d) {
            if (i + d < 0 || i + d >= H) continue;
            const T* mxr = mx + (size_t)(i + d) * W;
            const T* mr = m + (size_t)(i + d) * W;
            for (int j = 0; j < W; ++j) {
                nv[j] += mxr[j];
                dv[j] += mr[j];
            }
        }
    }
    for (int i = 0; i < H; ++i) {                      // along the columns
        const T* nv = num_v + (size_t)i * W;
        const T* dv = den_v + (size_t)i * W;
        for (int j = 0; j < W; ++j) {
            const size_t k = (size_t)i * W + j;
            if (m[k] > 0) {
                z[k] = x[k];
                continue;
            }
            T num = 0, den = 0;
            for (int d = -r; d <= r; ++d) {
                if (j + d < 0 || j + d >= W) continue;
                num += nv[j + d];
                den += dv[j + d];
            }
            z[k] = den > 0 ? num / den : mean;
        }
    }
}

// Masked TV minimisation of ``planes`` (H, W) planes: z = argmin 0.5 ||m (z - x)||^2 + w TV(z)
// after ``steps`` iterations; m == nullptr: every pixel kept.
template <typename T>
void tv_minimize(const T* x, const T* m, T* z, int64_t planes, int H, int W, int steps,
                 double tau, double sigma, double weight, int isotropic, int window) {
    const size_t hw = (size_t)H * W;
    const bool unit = m == nullptr;
    std::vector<T> scratch((unit ? 3 : 5) * hw);
    T *zb = scratch.data(), *py = zb + hw, *px = py + hw;
    T *c = unit ? nullptr : px + hw, *mx = unit ? nullptr : c + hw;
    for (int64_t p = 0; p < planes; ++p) {
        const T* xp = x + p * hw;
        T* zp = z + p * hw;
        if (unit) {
            std::memcpy(zp, xp, sizeof(T) * hw);
            if (isotropic) tv_plane<T, true, true>(zp, xp, xp, zb, py, px, H, W, steps, tau, sigma, weight);
            else tv_plane<T, false, true>(zp, xp, xp, zb, py, px, H, W, steps, tau, sigma, weight);
        } else {
            tv_start<T>(xp, m + p * hw, zp, c, mx, py, H, W, window, tau);   // py, px: scratch
            if (isotropic) tv_plane<T, true, false>(zp, c, mx, zb, py, px, H, W, steps, tau, sigma, weight);
            else tv_plane<T, false, false>(zp, c, mx, zb, py, px, H, W, steps, tau, sigma, weight);
        }
    }
}

// ------------------------------------------------------------------------ JSMA pair search
// For each row (image): among the pairs p < q of features in the domain, the first (in
// row-major order) minimum of  A' * B  with A = alpha_p + alpha_q, B = beta_p + beta_q and
// A' = max(A, 0) (INCREASE) or min(A, 0); valid when that minimum is < 0.  The same float
// operations as jsma._best_pairs' torch code (sums, clamp, product), so the same pair.
// Per row p: the minimum over q > p first (a branch-free loop the compiler vectorises), and only
// when it beats the best so far, the first q reaching it.
template <typename T, bool INCREASE>
inline T pair_score(T ap, T bp, T aq, T bq) {
    T a = ap + aq;
    a = INCREASE ? (a > (T)0 ? a : (T)0) : (a < (T)0 ? a : (T)0);
    return a * (bp + bq);
}

template <typename T, bool INCREASE>
void jsma_row(const T* alpha, const T* beta, const uint8_t* domain, int64_t n,
              std::vector<T>& a, std::vector<T>& b, std::vector<int64_t>& idx,
              int64_t* p_out, int64_t* q_out, uint8_t* ok) {
    int64_t m = 0;                                  // the domain, compacted, in feature order
    for (int64_t i = 0; i < n; ++i) {
        if (domain[i]) {
            a[m] = alpha[i];
            b[m] = beta[i];
            idx[m++] = i;
        }
    }
    // 64-byte vectors (GCC/Clang vector extensions; AVX-512 with -march=native, split into
    // narrower registers elsewhere): a branch-free minimum of the row, then a scalar tail.
    constexpr int L = 64 / sizeof(T);
    typedef T vec __attribute__((vector_size(64)));
    T best = (T)0;
    int64_t bp = -1, bq = -1;
    for (int64_t i = 0; i + 1 < m; ++i) {
        const T ai = a[i], bi = b[i];
        vec va = ai - (vec){}, vb = bi - (vec){}, vrow = (vec){};
        int64_t k = i + 1;
        for (; k + L <= m; k += L) {
            vec ak, bk;
            std::memcpy(&ak, &a[k], sizeof(vec));
            std::memcpy(&bk, &b[k], sizeof(vec));
            vec s = va + ak;
            s = INCREASE ? (s > 0 ? s : 0) : (s < 0 ? s : 0);
            s = s * (vb + bk);
            vrow = s < vrow ? s : vrow;
        }
        T row = (T)0;
        for (int l = 0; l < L; ++l) row = vrow[l] < row ? vrow[l] : row;
        for (; k < m; ++k) {
            const T s = pair_score<T, INCREASE>(ai, bi, a[k], b[k]);
            row = s < row ? s : row;
        }
        if (row < best) {
            best = row;
            bp = i;
            for (int64_t k = i + 1; k < m; ++k) {
                if (pair_score<T, INCREASE>(ai, bi, a[k], b[k]) == row) {
                    bq = k;
                    break;
                }
            }
        }
    }
    *ok = bp >= 0;
    *p_out = bp >= 0 ? idx[bp] : 0;
    *q_out = bp >= 0 ? idx[bq] : 0;
}

template <typename T>
void jsma_pairs(const T* alpha, const T* beta, const uint8_t* domain, int64_t rows, int64_t n,
                int increase, int64_t* p, int64_t* q, uint8_t* ok) {
    std::vector<T> a(n), b(n);
    std::vector<int64_t> idx(n);
    for (int64_t r = 0; r < rows; ++r) {
        const size_t o = (size_t)r * n;
        if (increase) jsma_row<T, true>(alpha + o, beta + o, domain + o, n, a, b, idx, p + r, q + r, ok + r);
        else jsma_row<T, false>(alpha + o, beta + o, domain + o, n, a, b, idx, p + r, q + r, ok + r);
    }
}

}  // namespace

extern "C" {
void tv_minimize_f32(const float* x, const float* m, float* z, int64_t planes, int H, int W,
                     int steps, double tau, double sigma, double weight, int isotropic, int window) {
    tv_minimize<float>(x, m, z, planes, H, W, steps, tau, sigma, weight, isotropic, window);
}
void tv_minimize_f64(const double* x, const double* m, double* z, int64_t planes, int H, int W,
                     int steps, double tau, double sigma, double weight, int isotropic, int window) {
    tv_minimize<double>(x, m, z, planes, H, W, steps, tau, sigma, weight, isotropic, window);
}
void jsma_pairs_f32(const float* alpha, const float* beta, const uint8_t* domain, int64_t rows,
                    int64_t n, int increase, int64_t* p, int64_t* q, uint8_t* ok) {
    jsma_pairs<float>(alpha, beta, domain, rows, n, increase, p, q, ok);
}
void jsma_pairs_f64(const double* alpha, const double* beta, const uint8_t* domain, int64_t rows,
                    int64_t n, int increase, int64_t* p, int64_t* q, uint8_t* ok) {
    jsma_pairs<double>(alpha, beta, domain, rows, n, increase, p, q, ok);
}
}
