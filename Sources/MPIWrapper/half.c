/*
 * 16-bit gradient compression (--grad-compression fp16|bf16): conversions from and to float32,
 * and an all-reduce of 16-bit values whose additions are done in float32.
 *
 * The sum is an MPI user-defined operation on MPI_UINT16_T: each time Open MPI combines two
 * partial results it widens both to float32, adds, and rounds the sum back to 16 bits (round to
 * nearest, ties to even). The alternative, a reduce-scatter and all-gather of our own over
 * point-to-point, would keep the partial sums in float32 across the tree too, but needs its own
 * progress at the poll points; with 2 ranks (one addition) both give the same bits, and the
 * user-defined operation keeps Open MPI's non-blocking all-reduce and its progress as they are.
 * Conversions are plain C (no F16C), exact and the same on every machine.
 */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "half_internal.h"
#include "mpi_wrapper.h"

static inline uint32_t bits_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static inline float float_of(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* IEEE binary16, round to nearest even; overflow to infinity, NaN stays NaN. */
static inline uint16_t f32_to_f16(float value) {
    uint32_t x = bits_of(value);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t magnitude = x & 0x7FFFFFFFu;
    if (magnitude >= 0x7F800000u) {               /* infinity or NaN */
        return (uint16_t)(sign | 0x7C00u | (magnitude > 0x7F800000u ? 0x200u | ((magnitude >> 13) & 0x3FFu) : 0));
    }
    if (magnitude >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);   /* ≥ 65520: rounds to infinity */
    if (magnitude < 0x38800000u) {                /* below 2^-14: a subnormal half, or zero */
        if (magnitude < 0x33000000u) return (uint16_t)sign;            /* below 2^-25: zero */
        uint32_t exponent = magnitude >> 23;
        uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126 - exponent;          /* 14 ... 24 */
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1);
        uint32_t midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1u))) half += 1;
        return (uint16_t)(sign | half);
    }
    uint32_t half = (magnitude - 0x38000000u) >> 13;   /* rebias the exponent from 127 to 15 */
    uint32_t rest = magnitude & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half += 1;   /* a carry may reach infinity: right */
    return (uint16_t)(sign | half);
}

static inline float f16_to_f32(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1Fu, mantissa = half & 0x3FFu;
    if (exponent == 0) {
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;   /* mantissa × 2^-24, exact */
        return float_of(bits_of(magnitude) | sign);
    }
    if (exponent == 31) return float_of(sign | 0x7F800000u | (mantissa << 13));
    return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

/* bfloat16: the upper half of a float32, round to nearest even; NaN stays NaN. */
static inline uint16_t f32_to_bf16(float value) {
    uint32_t x = bits_of(value);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7FFFu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static inline float bf16_to_f32(uint16_t value) { return float_of((uint32_t)value << 16); }

/* x86's F16C instructions convert 8 values at once with the same rounding (nearest, ties to even,
   subnormals kept; MXCSR's flush-to-zero does not apply to them, and Replica never sets
   denormals-are-zero). Used when the processor has them; the scalar code does the tail and
   everything elsewhere (HalfPrecisionTests checks both paths give the same bits). */
#if defined(__x86_64__)
#include <immintrin.h>

static int has_f16c(void) {
    static int known = -1;
    if (known < 0) known = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
    return known;
}

__attribute__((target("avx,f16c")))
static size_t compress_f16_vector(const float *input, uint16_t *output, size_t count, float scale) {
    __m256 factor = _mm256_set1_ps(scale);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 values = _mm256_mul_ps(_mm256_loadu_ps(input + i), factor);
        _mm_storeu_si128((__m128i *)(output + i), _mm256_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return i;
}

__attribute__((target("avx,f16c")))
static size_t decompress_f16_vector(const uint16_t *input, float *output, size_t count, float scale) {
    __m256 factor = _mm256_set1_ps(scale);
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 values = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(input + i)));
        _mm256_storeu_ps(output + i, _mm256_mul_ps(values, factor));
    }
    return i;
}

__attribute__((target("avx,f16c")))
static size_t sum_f16_vector(const uint16_t *input, uint16_t *inout, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(input + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(inout + i)));
        _mm_storeu_si128((__m128i *)(inout + i), _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return i;
}
#else
static int has_f16c(void) { return 0; }
static size_t compress_f16_vector(const float *input, uint16_t *output, size_t count, float scale) { return 0; }
static size_t decompress_f16_vector(const uint16_t *input, float *output, size_t count, float scale) { return 0; }
static size_t sum_f16_vector(const uint16_t *input, uint16_t *inout, size_t count) { return 0; }
#endif

/* 0 forces the scalar conversions (tests compare both paths); 1, the default, uses F16C if present. */
static int vector_enabled = 1;
void mpiw_half_use_vector_instructions(int enabled) { vector_enabled = enabled; }
static int use_vector(void) { return vector_enabled && has_f16c(); }

void mpiw_compress16(const float *input, uint16_t *output, size_t count, int format, float scale) {
    if (format == MPIW_FORMAT_BF16) {
        for (size_t i = 0; i < count; i++) output[i] = f32_to_bf16(input[i] * scale);
    } else {
        size_t i = use_vector() ? compress_f16_vector(input, output, count, scale) : 0;
        for (; i < count; i++) output[i] = f32_to_f16(input[i] * scale);
    }
}

void mpiw_decompress16(const uint16_t *input, float *output, size_t count, int format, float scale) {
    if (format == MPIW_FORMAT_BF16) {
        for (size_t i = 0; i < count; i++) output[i] = bf16_to_f32(input[i]) * scale;
    } else {
        size_t i = use_vector() ? decompress_f16_vector(input, output, count, scale) : 0;
        for (; i < count; i++) output[i] = f16_to_f32(input[i]) * scale;
    }
}

void mpiw_sum16(const uint16_t *input, uint16_t *inout, size_t count, int format) {
    if (format == MPIW_FORMAT_BF16) {
        for (size_t i = 0; i < count; i++) inout[i] = f32_to_bf16(bf16_to_f32(input[i]) + bf16_to_f32(inout[i]));
    } else {
        size_t i = use_vector() ? sum_f16_vector(input, inout, count) : 0;
        for (; i < count; i++) inout[i] = f32_to_f16(f16_to_f32(input[i]) + f16_to_f32(inout[i]));
    }
}

static void sum_f16(void *input, void *inout, int *length, MPI_Datatype *type) {
    (void)type;
    mpiw_sum16(input, inout, (size_t)*length, MPIW_FORMAT_F16);
}

static void sum_bf16(void *input, void *inout, int *length, MPI_Datatype *type) {
    (void)type;
    mpiw_sum16(input, inout, (size_t)*length, MPIW_FORMAT_BF16);
}

/* Created on first use (MPI is initialised by then), kept for the life of the process. */
static MPI_Op operations[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};

int mpiw_half_sum_operation(int format, MPI_Op *op) {
    if (format != MPIW_FORMAT_F16 && format != MPIW_FORMAT_BF16) return MPI_ERR_ARG;
    if (operations[format] == MPI_OP_NULL) {
        int rc = MPI_Op_create(format == MPIW_FORMAT_BF16 ? sum_bf16 : sum_f16, 1, &operations[format]);
        if (rc != MPI_SUCCESS) return rc;
    }
    *op = operations[format];
    return MPI_SUCCESS;
}
