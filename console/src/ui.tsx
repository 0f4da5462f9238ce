// Small shared pieces of the views: labelled fields that show the server's
// error next to the field it names, badges, progress bars, dialogs.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { namesField, type ApiError } from "./api";
import { count } from "./format";
import type { Pages } from "./hooks";

/** The error text of a field, when `err` names it. */
export function FieldError(props: { err: ApiError | null; field: string; id: string }) {
  if (!namesField(props.err, props.field)) return null;
  return (
    <p class="field-error" id={`${props.id}-error`} role="alert" data-testid={`error-${props.id}`}>
      {props.err!.message}
    </p>
  );
}

interface FieldProps {
  /** Label text. */
  label: string;
  /** Element id and data-testid of the input. */
  id: string;
  /** Request field the server would name in an error about this input. */
  field: string;
  err: ApiError | null;
  hint?: string;
  children: (attrs: {
    id: string;
    "data-testid": string;
    "aria-invalid": boolean;
    "aria-describedby"?: string;
  }) => ComponentChildren;
}

/** A labelled input with its hint and its server error. */
export function Field(props: FieldProps) {
  const invalid = namesField(props.err, props.field);
  const described = [props.hint ? `${props.id}-hint` : "", invalid ? `${props.id}-error` : ""]
    .filter(Boolean)
    .join(" ");
  return (
    <div class={"field" + (invalid ? " invalid" : "")}>
      <label for={props.id}>{props.label}</label>
      {props.children({
        id: props.id,
        "data-testid": props.id,
        "aria-invalid": invalid,
        "aria-describedby": described || undefined,
      })}
      {props.hint && (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
      <FieldError err={props.err} field={props.field} id={props.id} />
    </div>
  );
}

/** A checkbox with its label. */
export function Check(props: {
  id: string;
  label: string;
  checked: boolean;
  onChange: (v: boolean) => void;
  err?: ApiError | null;
  field?: string;
}) {
  return (
    <div class="field check">
      <label>
        <input
          type="checkbox"
          id={props.id}
          data-testid={props.id}
          checked={props.checked}
          onChange={(e) => props.onChange((e.target as HTMLInputElement).checked)}
        />{" "}
        {props.label}
      </label>
      {props.field && <FieldError err={props.err ?? null} field={props.field} id={props.id} />}
    </div>
  );
}

/**
 * The error of an action, shown where the user acted, unless one of the
 * form's `fields` shows it already.
 */
export function ActionError(props: { err: ApiError | null; testid: string; fields?: string[] }) {
  const err = props.err;
  if (!err) return null;
  if (props.fields?.some((f) => namesField(err, f))) return null;
  return (
    <p class="action-error" role="alert" data-testid={props.testid}>
      <span class="code">{err.code}</span> {err.message}
    </p>
  );
}

/** A read error of a view (list or object could not be loaded). */
export function LoadError(props: { err: ApiError | null; what: string }) {
  if (!props.err) return null;
  return (
    <p class="action-error" role="alert" data-testid="load-error">
      Cannot load {props.what}: <span class="code">{props.err.code}</span> {props.err.message}
    </p>
  );
}

export type Tone = "ok" | "warn" | "bad" | "info" | "muted";

/** A coloured label. */
export function Badge(props: { tone: Tone; children: ComponentChildren; testid?: string; title?: string }) {
  return (
    <span class={`badge ${props.tone}`} data-testid={props.testid} title={props.title}>
      {props.children}
    </span>
  );
}

/** A progress bar with its text. */
export function Bar(props: { pct: number; label: string; testid?: string }) {
  const pct = Math.max(0, Math.min(100, props.pct));
  return (
    <div
      class="bar"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(pct)}
      aria-label={props.label}
      data-testid={props.testid}
    >
      <div class="bar-fill" style={{ width: `${pct}%` }} />
      <span class="bar-text">{props.label}</span>
    </div>
  );
}

/** A modal dialog (native <dialog>: focus stays inside, Escape closes). */
export function Dialog(props: {
  title: string;
  testid: string;
  onClose: () => void;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class="dialog"
      data-testid={props.testid}
      aria-labelledby={`${props.testid}-title`}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <h2 id={`${props.testid}-title`}>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

/** Shows whether a view is fed by a live stream or by polling. */
export function Live(props: { live: boolean; polling?: boolean }) {
  return props.live ? (
    <span class="live on" data-testid="live" title="Updated by a server stream">
      ● live
    </span>
  ) : (
    <span class="live" data-testid="live" title="Reconnecting; polling meanwhile">
      ○ {props.polling ? "polling" : "connecting"}
    </span>
  );
}

/** A button that shows it is working. */
export function Button(props: {
  testid: string;
  onClick?: () => void;
  busy?: boolean;
  disabled?: boolean;
  kind?: "primary" | "danger" | "plain";
  title?: string;
  "aria-expanded"?: boolean;
  children: ComponentChildren;
}) {
  return (
    <button
      type="button"
      class={`btn ${props.kind ?? "plain"}`}
      data-testid={props.testid}
      aria-busy={props.busy ? "true" : undefined}
      aria-expanded={props["aria-expanded"]}
      title={props.title}
      disabled={props.busy || props.disabled}
      onClick={props.onClick}
    >
      {props.children}
    </button>
  );
}

/** Page header with a title and actions. */
export function Header(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-head">
      <h1>{props.title}</h1>
      <div class="page-actions">{props.children}</div>
    </div>
  );
}

/** Previous / next buttons of a paginated list, and the rows shown:
 *  `<testid>-prev`, `<testid>-next`, `<testid>-page`. */
export function Pager(props: { pages: Pages; shown: number; total?: bigint; nextToken?: string; testid: string }) {
  const { pages } = props;
  return (
    <div class="pager">
      <Button testid={`${props.testid}-prev`} disabled={!pages.hasPrevious} onClick={pages.previous}>
        ← Previous
      </Button>
      <span data-testid={`${props.testid}-page`}>
        {props.shown > 0 ? `${pages.first + 1}–${pages.first + props.shown}` : "–"}
        {props.total !== undefined ? ` of ${count(props.total)}` : ""}
      </span>
      <Button testid={`${props.testid}-next`} disabled={!props.nextToken} onClick={() => pages.next(props.nextToken ?? "")}>
        Next →
      </Button>
    </div>
  );
}
