/** Codecs for 16-bit floats stored as Uint16Array (bf16 / IEEE f16), widened to f32 per use. */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32Into(src: Uint16Array, dst: Float32Array, srcOffset = 0, count = dst.length): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, count);
  for (let i = 0; i < count; i++) out[i] = src[srcOffset + i] << 16;
}

/** Round-to-nearest-even f32 → bf16 (NaN kept quiet). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

const F16_TABLE = buildF16Table();
function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
}

export function f16ToF32Into(src: Uint16Array, dst: Float32Array, srcOffset = 0, count = dst.length): void {
  for (let i = 0; i < count; i++) dst[i] = F16_TABLE[src[srcOffset + i]];
}

export function f16ToF32(h: number): number {
  return F16_TABLE[h & 0xffff];
}

/** Round-to-nearest-even f32 → IEEE half. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}
