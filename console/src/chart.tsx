// A small SVG line chart drawn by hand (no chart library, no fetches).

/** One line of a chart: values over time (ms since the epoch). */
export interface Series {
  name: string;
  /** CSS class giving the line its colour (see app.css: .s1 .. .s3). */
  cls: string;
  points: Array<[number, number]>;
}

const W = 600;
const H = 160;
const PAD_L = 48;
const PAD_R = 8;
const PAD_T = 8;
const PAD_B = 22;

/** A round number at or above `v` (1, 2, 5 x 10^n). */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

function short(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 0 : 1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** A line chart of one or more series sharing the time axis. */
export function LineChart(props: { title: string; unit: string; series: Series[]; testid: string }) {
  const all = props.series.flatMap((s) => s.points);
  const t0 = all.length ? Math.min(...all.map((p) => p[0])) : 0;
  const t1 = all.length ? Math.max(...all.map((p) => p[0])) : 1;
  const vmax = niceMax(all.length ? Math.max(...all.map((p) => p[1])) : 0);
  const span = Math.max(1, t1 - t0);
  const x = (t: number) => PAD_L + ((t - t0) / span) * (W - PAD_L - PAD_R);
  const y = (v: number) => PAD_T + (1 - v / vmax) * (H - PAD_T - PAD_B);
  const last = props.series.map((s) => (s.points.length ? s.points[s.points.length - 1]![1] : undefined));
  const summary = props.series
    .map((s, i) => `${s.name}: ${last[i] === undefined ? "no data" : short(last[i]!) + " " + props.unit}`)
    .join("; ");
  return (
    <figure class="chart" data-testid={props.testid}>
      <figcaption>
        <strong>{props.title}</strong>
        {props.series.map((s, i) => (
          <span class={`legend ${s.cls}`} key={s.name}>
            <span class="swatch" aria-hidden="true" /> {s.name}
            {last[i] !== undefined && (
              <span class="legend-value" data-testid={`${props.testid}-${s.cls}`}>
                {" "}
                {short(last[i]!)} {props.unit}
              </span>
            )}
          </span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${props.title}. Latest: ${summary}`} preserveAspectRatio="none">
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line class="grid" x1={PAD_L} x2={W - PAD_R} y1={y(vmax * f)} y2={y(vmax * f)} />
            <text class="axis" x={PAD_L - 4} y={y(vmax * f) + 4} text-anchor="end">
              {short(vmax * f)}
            </text>
          </g>
        ))}
        {all.length > 0 && (
          <>
            <text class="axis" x={PAD_L} y={H - 6}>
              −{Math.round(span / 1000)} s
            </text>
            <text class="axis" x={W - PAD_R} y={H - 6} text-anchor="end">
              now
            </text>
          </>
        )}
        {props.series.map((s) =>
          s.points.length > 1 ? (
            <polyline
              key={s.name}
              class={`line ${s.cls}`}
              fill="none"
              vector-effect="non-scaling-stroke"
              points={s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}
            />
          ) : s.points.length === 1 ? (
            <circle key={s.name} class={`dot ${s.cls}`} cx={x(s.points[0]![0])} cy={y(s.points[0]![1])} r={3} />
          ) : null,
        )}
        {all.length === 0 && (
          <text class="axis" x={W / 2} y={H / 2} text-anchor="middle">
            waiting for samples…
          </text>
        )}
      </svg>
    </figure>
  );
}
