/* Loss and gradient of an MLP with the mean squared error, and fused Langevin (gradient) steps.
 *
 * negd_kernels.c includes this file after negd_mlp.h, once per parameter type (REAL float, double),
 * with the same vector layer. The network is the one of negd_mlp.h (feature-major inputs, flat
 * parameters in torch's named_parameters order: per layer W [out][in] row-major, then its bias).
 *
 * Backpropagation (reverse-mode chain rule), per block of BLK points, since with the mean squared
 * error U = 1/(P O) sum_p sum_o (f_po - y_po)^2 the output error of a point depends on that point
 * alone. With a_0 = x, a_l = act(W_l a_{l-1} + b_l) for the hidden layers and f = W_L a_{L-1} + b_L:
 *   delta_L = 2 (f - y) / (P O)               (dU/df, zero at padded points)
 *   dU/dW_l += delta_l a_{l-1}^T,   dU/db_l += sum over points of delta_l
 *   delta_{l-1} = (W_l^T delta_l) * act'(a_{l-1})
 * with act' written in terms of the activation's output: tanh 1 - a^2, relu [a > 0], identity 1 (GELU
 * is not covered: its derivative needs the pre-activation). The gradient is accumulated per vector
 * lane in REAL (one partial sum per lane and parameter) and the lanes are summed at the end; the
 * loss terms are summed in double, as negd_mlp.h does.
 *
 * Fused Langevin: per step x <- x - alpha g + s xi (negd.rules.Langevin, GradientDescent with noise),
 * xi the normals of negd.rng at (step, realization, stream), written in the same roundings as the
 * torch rule ((REAL)alpha * g, then -, then (REAL)s * (REAL)xi, then +), then U and g at the new x.
 */

/* Offsets of every layer's weight and bias in the flat parameter vector (bias -1 when absent). */
typedef struct { int64_t w, b; int fan_in, fan_out; } FN(layer_t);

static FN(layer_t) FN(layer_at)(const FN(net_t) *net, int l) {
    FN(layer_t) L;
    int64_t pos = 0;
    for (int k = 0; k <= l; k++) {
        int fi = k == 0 ? net->in_f : net->width, fo = k == net->depth ? net->out_f : net->width;
        int bias = k == net->depth ? net->out_bias : 1;
        L.w = pos; L.fan_in = fi; L.fan_out = fo;
        pos += (int64_t)fi * fo;
        L.b = bias ? pos : -1;
        pos += bias ? fo : 0;
    }
    return L;
}

/* REALs of one thread's scratch: hidden activations [depth][width][BLK], two error buffers
 * [wmax][BLK], per-lane gradient sums [N][VL], transposed weights [N]. */
static int64_t FN(grad_scratch_len)(const FN(net_t) *net, int64_t N) {
    const int64_t wmax = net->width > net->out_f ? net->width : net->out_f;
    return (int64_t)net->depth * net->width * BLK + 2 * wmax * BLK + N * VL + N;
}

/* act'(a) of a hidden activation's output a (ACT_TANH, ACT_RELU, ACT_IDENTITY). */
static inline __attribute__((always_inline)) vf FN(vderiv)(vf a, int act) {
    switch (act) {
    case ACT_TANH: return vsub(vset1((REAL)1), vmul(a, a));
    case ACT_RELU: return vsel(vclt(vzero(), a), vset1((REAL)1), vzero());
    default: return vset1((REAL)1);
    }
}

/* One register tile of the weight gradient: G[m][c] += sum_k delta[m][k] h[c][k] (per lane) for MO
 * outputs x MI inputs, MO * MI independent accumulators (one chain would wait on the FMA latency). */
static inline __attribute__((always_inline)) void FN(outer_tile)(const int MO, const int MI, REAL *G, int64_t ldg,
                                                                 const REAL *delta, const REAL *h, int64_t ld_h,
                                                                 int nv) {
    vf acc[8][4];
    for (int m = 0; m < MO; m++)
        for (int c = 0; c < MI; c++) acc[m][c] = vload(G + (m * ldg + c) * VL);
    for (int k = 0; k < nv; k++) {
        vf hk[4];
        for (int c = 0; c < MI; c++) hk[c] = vload(h + c * ld_h + k * VL);
        for (int m = 0; m < MO; m++) {
            vf d = vload(delta + m * BLK + k * VL);
            for (int c = 0; c < MI; c++) acc[m][c] = vfma(d, hk[c], acc[m][c]);
        }
    }
    for (int m = 0; m < MO; m++)
        for (int c = 0; c < MI; c++) vstore(G + (m * ldg + c) * VL, acc[m][c]);
}

/* G[o][i] += sum_k delta[o][k] h[i][k] over nv point vectors: the gradient of a weight matrix. */
static void FN(outer_acc)(REAL *G, const REAL *delta, const REAL *h, int64_t ld_h, int fan_in, int fan_out,
                          int nv) {
#define TILE(MO, MI, o, i) FN(outer_tile)(MO, MI, G + ((int64_t)(o) * fan_in + (i)) * VL, fan_in, \
                                          delta + (o) * BLK, h + (i) * ld_h, ld_h, nv)
    if (fan_in < 4) { /* e.g. the first layer of a 1-input net: tile over outputs */
        for (int i = 0; i < fan_in; i++) {
            int o = 0;
            for (; o + 8 <= fan_out; o += 8) TILE(8, 1, o, i);
            for (; o < fan_out; o++) TILE(1, 1, o, i);
        }
        return;
    }
    int o = 0;
    for (; o + 2 <= fan_out; o += 2) {
        int i = 0;
        for (; i + 4 <= fan_in; i += 4) TILE(2, 4, o, i);
        for (; i < fan_in; i++) TILE(2, 1, o, i);
    }
    for (; o < fan_out; o++) {
        int i = 0;
        for (; i + 4 <= fan_in; i += 4) TILE(1, 4, o, i);
        for (; i < fan_in; i++) TILE(1, 1, o, i);
    }
#undef TILE
}

/* prev[i][k] = (sum_o W[o][i] delta[o][k]) act'(h[i][k]): the error of the layer below. The sum is a
 * dense layer with the transposed weights WT [fan_in][fan_out] (register-tiled like the forward pass). */
static void FN(back_error)(REAL *prev, const REAL *WT, const REAL *delta, const REAL *h, int fan_in,
                           int fan_out, int nv, int act) {
    FN(dense)(WT, NULL, fan_out, fan_in, delta, BLK, prev, BLK, nv, ACT_IDENTITY);
    for (int i = 0; i < fan_in; i++)
        for (int k = 0; k < nv; k++) {
            REAL *e = prev + i * BLK + k * VL;
            vstore(e, vmul(vload(e), FN(vderiv)(vload(h + i * BLK + k * VL), act)));
        }
}

/* The shallow tanh net 1 -> H -> 1 (the paper's finite-beta net) in one sweep back over the hidden
 * units: with d_p = dU/df_p and u_pj = 1 - a_pj^2 (one rounding: -a a + 1 as an FMA),
 *   dU/dw2_j = sum_p d_p a_pj,  dU/db1_j = w2_j sum_p d_p u_pj,  dU/dw1_j = w2_j sum_p d_p x_p u_pj,
 *   dU/db2 = sum_p d_p
 * (three multiply-adds per point and unit, where the generic path stores the hidden errors). */
static double FN(shallow_value_and_grad)(const FN(net_t) *net, const REAL *p, REAL *grad, REAL *scratch) {
    const int H = net->width;
    REAL *a = scratch, *d = a + (int64_t)H * BLK, *dx = d + BLK;
    REAL *S = dx + BLK; /* per lane: [H] sums d a, [H] sums d u, [H] sums d x u */
    memset(S, 0, (size_t)(3 * H * VL) * sizeof(REAL));
    const REAL scale = (REAL)(2.0 / (double)net->P);
    const int64_t nv_all = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    vf dsum = vzero();
    for (int64_t v0 = 0; v0 < nv_all; v0 += BLK_V) {
        const int nv = (int)(nv_all - v0 < BLK_V ? nv_all - v0 : BLK_V);
        const REAL *x = net->x + v0 * VL;
        FN(dense)(p, p + H, 1, H, x, net->ld, a, BLK, nv, ACT_TANH);
        FN(dense)(p + 2 * H, net->out_bias ? p + 3 * H : NULL, H, 1, a, BLK, d, BLK, nv, ACT_IDENTITY);
        const int64_t left = net->P - v0 * VL;
        for (int k = 0; k < nv; k++) {
            const REAL *y = net->t + (v0 + k) * VL;
            int64_t lk = left - k * VL;
            FN(acc_sq)(vload(d + k * VL), y, lk < VL ? (int)lk : VL, acc4);
            vstore(d + k * VL, vmul(vsub(vload(d + k * VL), vload(y)), vset1(scale)));
        }
        for (int q = left < nv * VL ? (int)left : nv * VL; q < nv * VL; q++) d[q] = 0; /* padded points */
        for (int k = 0; k < nv; k++) {
            vf dk = vload(d + k * VL);
            dsum = vadd(dsum, dk);
            vstore(dx + k * VL, vmul(dk, vload(x + k * VL)));
        }
        for (int j = 0; j < H; j++) {
            vf s_a = vload(S + j * VL), s_u = vload(S + (H + j) * VL), s_xu = vload(S + (2 * H + j) * VL);
            for (int k = 0; k < nv; k++) {
                vf aj = vload(a + j * BLK + k * VL), dk = vload(d + k * VL);
                vf u = vfma(vsub(vzero(), aj), aj, vset1((REAL)1));
                s_a = vfma(dk, aj, s_a);
                s_u = vfma(dk, u, s_u);
                s_xu = vfma(vload(dx + k * VL), u, s_xu);
            }
            vstore(S + j * VL, s_a); vstore(S + (H + j) * VL, s_u); vstore(S + (2 * H + j) * VL, s_xu);
        }
    }
    REAL lanes[VL];
    for (int j = 0; j < H; j++) {
        REAL sum[3];
        for (int m = 0; m < 3; m++) {
            const REAL *g = S + ((int64_t)m * H + j) * VL;
            sum[m] = g[0];
            for (int lane = 1; lane < VL; lane++) sum[m] += g[lane];
        }
        grad[2 * H + j] = sum[0];         /* w2 */
        grad[H + j] = p[2 * H + j] * sum[1];  /* b1 */
        grad[j] = p[2 * H + j] * sum[2];      /* w1 */
    }
    if (net->out_bias) {
        vstore(lanes, dsum);
        REAL sum = lanes[0];
        for (int lane = 1; lane < VL; lane++) sum += lanes[lane];
        grad[3 * H] = sum;
    }
    return ((acc4[0] + acc4[1]) + (acc4[2] + acc4[3])) / (double)net->P;
}

/* U (double) of parameters p, and dU/dp into grad [N]. */
static double FN(value_and_grad)(const FN(net_t) *net, const REAL *p, int64_t N, REAL *grad, REAL *scratch) {
    if (net->depth == 1 && net->in_f == 1 && net->out_f == 1 && net->act == ACT_TANH)
        return FN(shallow_value_and_grad)(net, p, grad, scratch);
    const int64_t wmax = net->width > net->out_f ? net->width : net->out_f;
    REAL *acts = scratch;
    REAL *err[2] = {acts + (int64_t)net->depth * net->width * BLK, acts + (int64_t)net->depth * net->width * BLK
                    + wmax * BLK};
    REAL *G = err[1] + wmax * BLK;
    REAL *WT = G + N * VL; /* W_l^T at the offset of W_l, for the layers above the first */
    memset(G, 0, (size_t)(N * VL) * sizeof(REAL));
    for (int l = 1; l <= net->depth; l++) {
        FN(layer_t) L = FN(layer_at)(net, l);
        for (int o = 0; o < L.fan_out; o++)
            for (int i = 0; i < L.fan_in; i++) WT[L.w + (int64_t)i * L.fan_out + o] = p[L.w + (int64_t)o * L.fan_in + i];
    }
    const REAL scale = (REAL)(2.0 / ((double)net->P * (double)net->out_f));
    const int64_t nv_all = net->ld / VL;
    double acc4[4] = {0, 0, 0, 0};
    for (int64_t v0 = 0; v0 < nv_all; v0 += BLK_V) {
        const int nv = (int)(nv_all - v0 < BLK_V ? nv_all - v0 : BLK_V);
        /* forward: hidden activations kept for the backward pass, outputs into err[0] */
        const REAL *hin = net->x + v0 * VL;
        int64_t ld_in = net->ld;
        for (int l = 0; l <= net->depth; l++) {
            FN(layer_t) L = FN(layer_at)(net, l);
            REAL *hout = l < net->depth ? acts + (int64_t)l * net->width * BLK : err[0];
            FN(dense)(p + L.w, L.b >= 0 ? p + L.b : NULL, L.fan_in, L.fan_out, hin, ld_in, hout, BLK, nv,
                      l < net->depth ? net->act : ACT_IDENTITY);
            hin = hout; ld_in = BLK;
        }
        /* squared errors (double) and the output error delta = 2 (f - y) / (P O) */
        const int64_t left = net->P - v0 * VL;
        const int valid_pts = left < nv * VL ? (int)left : nv * VL;
        for (int o = 0; o < net->out_f; o++) {
            for (int k = 0; k < nv; k++) {
                REAL *f = err[0] + o * BLK + k * VL;
                const REAL *y = net->t + o * net->ld + (v0 + k) * VL;
                int64_t lk = left - k * VL;
                FN(acc_sq)(vload(f), y, lk < VL ? (int)lk : VL, acc4);
                vstore(f, vmul(vsub(vload(f), vload(y)), vset1(scale)));
            }
            for (int q = valid_pts; q < nv * VL; q++) err[0][o * BLK + q] = 0; /* padded points */
        }
        /* backward */
        int cur = 0;
        for (int l = net->depth; l >= 0; l--) {
            FN(layer_t) L = FN(layer_at)(net, l);
            const REAL *h = l == 0 ? net->x + v0 * VL : acts + (int64_t)(l - 1) * net->width * BLK;
            const int64_t ld_h = l == 0 ? net->ld : BLK;
            const REAL *delta = err[cur];
            FN(outer_acc)(G + L.w * VL, delta, h, ld_h, L.fan_in, L.fan_out, nv);
            if (L.b >= 0) {
                for (int o = 0; o < L.fan_out; o++) {
                    REAL *g = G + (L.b + o) * VL;
                    vf a = vload(g);
                    for (int k = 0; k < nv; k++) a = vadd(a, vload(delta + o * BLK + k * VL));
                    vstore(g, a);
                }
            }
            if (l > 0) {
                FN(back_error)(err[1 - cur], WT + L.w, delta, h, L.fan_in, L.fan_out, nv, net->act);
                cur = 1 - cur;
            }
        }
    }
    for (int64_t i = 0; i < N; i++) {
        const REAL *g = G + i * VL;
        REAL s = g[0];
        for (int lane = 1; lane < VL; lane++) s += g[lane];
        grad[i] = s;
    }
    return ((acc4[0] + acc4[1]) + (acc4[2] + acc4[3])) / ((double)net->P * (double)net->out_f);
}

/* The network and loss this file differentiates: mean squared error, activation tanh, relu or identity. */
static int FN(grad_net_from)(FN(net_t) *net, const int32_t *arch, int64_t P, int64_t ld, const REAL *x,
                             const REAL *t) {
    int err = FN(net_from)(net, arch, P, ld, x, t);
    if (err) return err;
    const int differentiable = net->act == ACT_TANH || net->act == ACT_RELU || net->act == ACT_IDENTITY;
    return net->loss == LOSS_MSE && differentiable ? 0 : NEGD_BAD_ARCH;
}

/* ------------------------------------------------------------------ exported entry points */
/* loss[r] (double) and grad [R, N] of every row r of params [R, N]. */
int FN(negd_mlp_grad)(const int32_t *arch, int64_t P, int64_t ld, const REAL *x, const REAL *t,
                      const REAL *params, int64_t R, int64_t N, double *loss, REAL *grad, int nthreads) {
    FN(net_t) net;
    int err = FN(grad_net_from)(&net, arch, P, ld, x, t);
    if (err) return err;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        REAL *scratch = aligned_alloc(32, ROUND32(FN(grad_scratch_len)(&net, N)) * sizeof(REAL));
        if (!scratch) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(dynamic, realization_chunk(R, nthreads))
            for (int64_t r = 0; r < R; r++)
                loss[r] = FN(value_and_grad)(&net, params + r * N, N, grad + r * N, scratch);
        }
        free(scratch);
    }
    return err;
}

/* steps Langevin steps of R realizations, in place on params [R, N], loss [R] (double) and grad [R, N]
 * (on entry the gradient at params, on exit the one at the new params). alpha: alpha_len 1 or N values;
 * noise: noise_len 0 (no noise), 1 or N values; xi from rng stream `stream` at steps step0 .. step0 +
 * steps - 1. */
int FN(negd_fused_langevin)(const int32_t *arch, int64_t P, int64_t ld, const REAL *x, const REAL *t,
                            REAL *params, double *loss, REAL *grad, const int64_t *rid, int64_t R, int64_t N,
                            uint64_t seed, int64_t step0, int64_t steps, const REAL *alpha, int64_t alpha_len,
                            const REAL *noise, int64_t noise_len, int32_t stream, int nthreads) {
    if (steps < 0 || step0 < 0 || step0 > COUNTER_LIMIT - steps) return NEGD_BAD_STEP;
    int bad = check_counters(rid, R, NULL, 0, stream);
    if (bad) return bad;
    FN(net_t) net;
    int err = FN(grad_net_from)(&net, arch, P, ld, x, t);
    if (err) return err;
#pragma omp parallel num_threads(nthreads > 0 ? nthreads : 1)
    {
        REAL *scratch = aligned_alloc(32, ROUND32(FN(grad_scratch_len)(&net, N)) * sizeof(REAL));
        float *z = aligned_alloc(32, ROUND32(N) * sizeof(float));
        if (!scratch || !z) {
#pragma omp atomic write
            err = 1;
        } else {
#pragma omp for schedule(dynamic, realization_chunk(R, nthreads))
            for (int64_t r = 0; r < R; r++) {
                REAL *p = params + r * N, *g = grad + r * N;
                for (int64_t s = 0; s < steps; s++) {
                    if (noise_len > 0) normals(seed, counter_words(step0 + s, rid[r], (uint32_t)stream), N, z);
                    for (int64_t i = 0; i < N; i++) {
                        const REAL drift = alpha[alpha_len == 1 ? 0 : i] * g[i];
                        REAL q = p[i] - drift;
                        if (noise_len > 0) q = q + noise[noise_len == 1 ? 0 : i] * (REAL)z[i];
                        p[i] = q;
                    }
                    loss[r] = FN(value_and_grad)(&net, p, N, g, scratch);
                }
            }
        }
        free(scratch); free(z);
    }
    return err;
}
