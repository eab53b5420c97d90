/**
 * US-dollar amounts for machines to read (the gateway's `x-switchyard-cost-usd` header): a
 * plain decimal, never exponent notation, without binary floating-point noise.
 */

/** Significant digits kept: well past what a per-request cost needs, far short of float noise. */
export const USD_SIGNIFICANT_DIGITS = 6;

/**
 * `0.0000028999999999999998` → `"0.0000029"`, `0.0219` → `"0.0219"`, `0` → `"0"`. Rounded to
 * six significant digits, written out in full (`2.9e-6` would be valid JSON but trips up
 * clients that parse the header as a decimal string, and reads badly in logs), trailing zeros
 * dropped. NaN and ±Infinity come back as `String(amount)`: a header is no place to fail a
 * request that was served.
 */
export function formatUsd(amount: number): string {
  if (!Number.isFinite(amount)) return String(amount);
  if (amount === 0) return "0";
  const rounded = Number(amount.toPrecision(USD_SIGNIFICANT_DIGITS));
  // Decimals enough for every significant digit, plus one in case log10 lands a hair high at
  // a power of ten; the extra digit is a 0 and is trimmed with the rest.
  const magnitude = Math.floor(Math.log10(Math.abs(rounded)));
  const decimals = Math.min(100, Math.max(0, USD_SIGNIFICANT_DIGITS - magnitude));
  const fixed = rounded.toFixed(decimals);
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}
