// Formatting of the API's numbers, spans, times and enum values.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** A count with thousands separators; bigint or number. */
export function count(n: bigint | number | undefined): string {
  if (n === undefined) return "–";
  const s = typeof n === "bigint" ? n.toString() : Math.round(n).toString();
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A rate per second with one decimal under 100. */
export function rate(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "–";
  return n < 100 ? n.toFixed(1) : count(n);
}

/** Seconds of a Duration (0 when unset). */
export function seconds(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) + d.nanos / 1e9;
}

/** A Duration from seconds. */
export function duration(s: number): { seconds: bigint; nanos: number } {
  const whole = Math.floor(s);
  return { seconds: BigInt(whole), nanos: Math.round((s - whole) * 1e9) };
}

/** A span in seconds as "850 ms", "4.2 s", "3 min 4 s", "2 h 5 min". */
export function span(s: number): string {
  if (!Number.isFinite(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** A Duration as a span ("–" when unset). */
export function dur(d: Duration | undefined): string {
  return d ? span(seconds(d)) : "–";
}

/** A Timestamp as a Date (undefined when unset). */
export function date(t: Timestamp | undefined): Date | undefined {
  if (!t) return undefined;
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
}

/** A Timestamp as local date and time. */
export function time(t: Timestamp | undefined): string {
  const d = date(t);
  if (!d) return "–";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How long ago a Timestamp was ("–" when unset). */
export function ago(t: Timestamp | undefined): string {
  const d = date(t);
  if (!d) return "–";
  return span(Math.max(0, (Date.now() - d.getTime()) / 1000)) + " ago";
}

/** Bytes as B, KiB, MiB, GiB. */
export function bytes(n: bigint | number | undefined): string {
  if (n === undefined) return "–";
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/**
 * The name of an enum value without its type prefix, for example
 * enumName(TaskState, 2) is "RUNNING".
 */
export function enumName(e: Record<number, string>, v: number): string {
  return e[v] ?? String(v);
}

/** An enum value as words: "BLOCKED_CORRUPT" -> "blocked corrupt". */
export function words(e: Record<number, string>, v: number): string {
  return enumName(e, v).toLowerCase().replace(/_/g, " ");
}

/** A percentage 0-100 of done over total (0 when total is unknown). */
export function percent(done: bigint | number, total: bigint | number): number {
  const t = Number(total);
  if (t <= 0) return 0;
  return Math.min(100, (Number(done) / t) * 100);
}

/** A comma or newline separated list, trimmed, without empty items. */
export function list(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
