// Live data for the views: polling and server streams, both stopped when the
// view goes away (a browser keeps only a few HTTP/1.1 connections per origin,
// so no stream may outlive its view).
import { useEffect, useRef, useState } from "preact/hooks";
import { apiError, isAbort, type ApiError } from "./api";

/** The latest answer of a call repeated every `intervalMs`. */
export interface Poll<T> {
  data: T | undefined;
  error: ApiError | null;
  /** Calls again now. */
  reload: () => void;
}

/** Calls `fetch` now and every `intervalMs` until the view unmounts or `deps` change. */
export function usePoll<T>(
  fetch: (signal: AbortSignal) => Promise<T>,
  intervalMs: number,
  deps: unknown[],
): Poll<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const [tick, setTick] = useState(0);
  const fetchRef = useRef(fetch);
  fetchRef.current = fetch;
  useEffect(() => {
    setData(undefined);
    setError(null);
  }, deps);
  useEffect(() => {
    const ctl = new AbortController();
    let timer: number | undefined;
    const run = async () => {
      try {
        const value = await fetchRef.current(ctl.signal);
        if (ctl.signal.aborted) return;
        setData(value);
        setError(null);
      } catch (err) {
        if (ctl.signal.aborted || isAbort(err)) return;
        setError(apiError(err));
      }
      if (!ctl.signal.aborted && intervalMs > 0) {
        timer = window.setTimeout(run, intervalMs);
      }
    };
    void run();
    return () => {
      ctl.abort();
      window.clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/** State of a server stream. */
export interface StreamState {
  /** The stream is open and has delivered its first message. */
  live: boolean;
  /** The last error, kept until the stream delivers again. */
  error: ApiError | null;
  /** The stream ended normally (for example a job reached a terminal state). */
  ended: boolean;
}

/**
 * Opens a server stream and hands each message to `onMessage`; reopens it
 * after an error (2 s later), and after a normal end if `reopen`, until the
 * view unmounts or `deps` change. NOT_FOUND and UNAUTHENTICATED are final.
 */
export function useStream<T>(
  open: (signal: AbortSignal) => AsyncIterable<T>,
  onMessage: (message: T) => void,
  deps: unknown[],
  reopen = false,
): StreamState {
  const [state, setState] = useState<StreamState>({ live: false, error: null, ended: false });
  const onMessageRef = useRef(onMessage);
  onMessageRef.current = onMessage;
  const openRef = useRef(open);
  openRef.current = open;
  useEffect(() => {
    const ctl = new AbortController();
    let timer: number | undefined;
    setState({ live: false, error: null, ended: false });
    const run = async () => {
      let final = false;
      try {
        let first = true;
        for await (const message of openRef.current(ctl.signal)) {
          if (ctl.signal.aborted) return;
          if (first) {
            first = false;
            setState({ live: true, error: null, ended: false });
          }
          onMessageRef.current(message);
        }
        if (ctl.signal.aborted) return;
        final = !reopen;
        setState((s) => ({ ...s, live: false, ended: true }));
      } catch (err) {
        if (ctl.signal.aborted || isAbort(err)) return;
        const e = apiError(err);
        final = e.notFound || e.unauthenticated;
        setState({ live: false, error: e, ended: false });
      }
      if (!final && !ctl.signal.aborted) {
        timer = window.setTimeout(run, 2000);
      }
    };
    void run();
    return () => {
      ctl.abort();
      window.clearTimeout(timer);
    };
  }, deps);
  return state;
}

/** Runs a call on behalf of a user action: busy flag, error, result. */
export function useAction(): {
  busy: boolean;
  error: ApiError | null;
  setError: (e: ApiError | null) => void;
  run: <T>(call: () => Promise<T>) => Promise<T | undefined>;
} {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const run = async <T,>(call: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await call();
    } catch (err) {
      setError(apiError(err));
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

/** Where a paginated list stands: the token of the page shown and those
 *  before it (the API's tokens only go forward). */
export interface Pages {
  /** Token of the page shown ("" for the first). */
  token: string;
  /** Position of the page's first row in the whole list (0-based). */
  first: number;
  hasPrevious: boolean;
  previous: () => void;
  /** Shows the page of `nextToken` (the answer's `nextPageToken`). */
  next: (nextToken: string) => void;
  /** Back to the first page (after a filter changed). */
  reset: () => void;
}

/** Page tokens of a list read `pageSize` rows at a time. */
export function usePages(pageSize: number): Pages {
  const [tokens, setTokens] = useState<string[]>([]);
  const [token, setToken] = useState("");
  return {
    token,
    first: tokens.length * pageSize,
    hasPrevious: tokens.length > 0,
    previous: () => {
      setToken(tokens[tokens.length - 1] ?? "");
      setTokens(tokens.slice(0, -1));
    },
    next: (nextToken: string) => {
      setTokens([...tokens, token]);
      setToken(nextToken);
    },
    reset: () => {
      setTokens([]);
      setToken("");
    },
  };
}
