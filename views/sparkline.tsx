import type { FC } from "hono/jsx";

/** An inline SVG line of per-second rates (newest on the right), drawn on the server. */
export const Sparkline: FC<{ values: readonly number[]; width?: number; height?: number; slots?: number }> = ({ values, width = 120, height = 24, slots = 180 }) => {
  const max = Math.max(1, ...values);
  const step = width / Math.max(1, slots - 1);
  const offset = slots - values.length;
  const points = values.map((v, i) => `${((offset + i) * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`).join(" ");
  const last = values.at(-1) ?? 0;
  return (
    <svg class="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`rate over the last ${values.length} s, peak ${max}/s, now ${last}/s`}>
      <line x1="0" y1={height - 1} x2={width} y2={height - 1} stroke="#dde1e8" />
      {values.length > 1 && <polyline points={points} fill="none" stroke="#2563eb" stroke-width="1.5" />}
    </svg>
  );
};
