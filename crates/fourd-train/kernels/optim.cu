// The optimiser's fused kernels (src/optim_kernels.rs), compiled to PTX by build.rs when the
// `cuda` feature is on.
//
// AdamW: each thread reads an element's gradient, moments and weight once and writes them once;
// the same update written with candle's tensor ops makes about thirteen passes over memory and
// allocates a temporary for each. The arithmetic is that of `AdamW::step_composed` (PyTorch's
// decoupled AdamW) in float32, in the same order; nvcc may fuse a multiply and an add, so results
// agree to a few ulps, not bitwise.
#include <cuda_bf16.h>
#include <stdint.h>

struct Hyper {
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float inv_bias_correction1, inv_bias_correction2;
    float eps, lr, decay, grad_scale;
};

__device__ __forceinline__ float load(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }

// Updates m, v and the float32 weight w in place; returns the new weight.
__device__ __forceinline__ float adamw(const Hyper &h, float g, float w, float *m, float *v) {
    g = g * h.grad_scale;
    float mi = *m * h.beta1 + g * h.one_minus_beta1;
    float vi = *v * h.beta2 + (g * g) * h.one_minus_beta2;
    *m = mi;
    *v = vi;
    w = w * h.decay;
    float denom = sqrtf(vi * h.inv_bias_correction2) + h.eps;
    float update = (mi * h.inv_bias_correction1) / denom;
    return w - update * h.lr;
}

// Float32 weights updated in place.
template <typename G>
__device__ void adamw_f32(const G *grad, float *w, float *m, float *v, size_t n, Hyper h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x) {
        w[i] = adamw(h, load(grad, i), w[i], m + i, v + i);
    }
}

// Half-precision weights with a float32 master copy: the update accumulates in the master and
// the weight receives it rounded to nearest even, as `Tensor::to_dtype` rounds.
template <typename G>
__device__ void adamw_bf16_master(const G *grad, __nv_bfloat16 *w, float *master, float *m, float *v, size_t n, Hyper h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x) {
        float next = adamw(h, load(grad, i), master[i], m + i, v + i);
        master[i] = next;
        w[i] = __float2bfloat16_rn(next);
    }
}

extern "C" __global__ void adamw_f32_grad_f32(const float *g, float *w, float *m, float *v, size_t n, Hyper h) {
    adamw_f32(g, w, m, v, n, h);
}
extern "C" __global__ void adamw_f32_grad_bf16(const __nv_bfloat16 *g, float *w, float *m, float *v, size_t n, Hyper h) {
    adamw_f32(g, w, m, v, n, h);
}
extern "C" __global__ void adamw_bf16_grad_f32(const float *g, __nv_bfloat16 *w, float *master, float *m, float *v, size_t n, Hyper h) {
    adamw_bf16_master(g, w, master, m, v, n, h);
}
extern "C" __global__ void adamw_bf16_grad_bf16(const __nv_bfloat16 *g, __nv_bfloat16 *w, float *master, float *m, float *v, size_t n, Hyper h) {
    adamw_bf16_master(g, w, master, m, v, n, h);
}

// Sum of squares for the global gradient norm: each block writes the sum of its grid-stride share
// to partial[blockIdx.x] (summed afterwards, on the device). One read of the gradient; the same
// with tensor ops converts, squares and reduces in three passes. Threads accumulate in double;
// the fixed grid makes the result deterministic.
template <typename T>
__device__ void sum_of_squares(const T *x, float *partial, size_t n) {
    // Four loads in flight per thread: one bf16 load at a time leaves the memory system idle.
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        float v0 = load(x, i), v1 = load(x, i + stride), v2 = load(x, i + 2 * stride), v3 = load(x, i + 3 * stride);
        a0 += (double)(v0 * v0);
        a1 += (double)(v1 * v1);
        a2 += (double)(v2 * v2);
        a3 += (double)(v3 * v3);
    }
    for (; i < n; i += stride) {
        float v = load(x, i);
        a0 += (double)(v * v);
    }
    double acc = (a0 + a1) + (a2 + a3);
    for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    __shared__ double warp_sums[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < (blockDim.x >> 5) ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
        if (lane == 0) partial[blockIdx.x] = (float)acc;
    }
}

extern "C" __global__ void sum_of_squares_f32(const float *x, float *partial, size_t n) { sum_of_squares(x, partial, n); }
extern "C" __global__ void sum_of_squares_bf16(const __nv_bfloat16 *x, float *partial, size_t n) { sum_of_squares(x, partial, n); }
