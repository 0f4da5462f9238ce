// The bearer token of the control plane, kept for the browser tab only
// (sessionStorage): never in a URL, never logged.

const KEY = "tandem.console.token";

/** The stored token, or null when signed out. */
export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** Stores the token for this tab. */
export function setToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

/** Forgets the token. */
export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}
