// Tandem web console: sign-in, navigation and hash routing. Every view talks
// to the control plane's gRPC services over gRPC-web (see api.ts).
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { apiError, clusterApi, onUnauthenticated, REFUSED_TOKEN } from "./api";
import { clearToken, getToken, setToken } from "./auth";
import { ClusterView } from "./views/clusters";
import { CompareDetail, CompareList } from "./views/comparisons";
import { GatewayView } from "./views/gateways";
import { MigrationDetail, MigrationList } from "./views/migrations";
import { OverviewView } from "./views/overview";
import { QueueView } from "./views/queue";
import { TaskCreate } from "./views/task-create";
import { TaskDetail } from "./views/task";

/** A parsed location hash. */
interface Route {
  view: string;
  id?: string;
  sub?: string;
}

function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [view = "overview", id, sub] = parts;
  return { view, id, sub };
}

function useRoute(): Route {
  const [route, setRoute] = useState(parseHash(window.location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(window.location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

function SignIn(props: { message: string | null; onSignedIn: () => void }) {
  const [token, setTokenText] = useState("");
  const [error, setError] = useState<string | null>(props.message);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!token.trim()) {
      setError("Enter the control plane's bearer token");
      return;
    }
    setBusy(true);
    setError(null);
    setToken(token.trim());
    try {
      // Any authenticated call tells whether the token is accepted.
      await clusterApi.listClusters({ pageSize: 1 });
      props.onSignedIn();
    } catch (err) {
      clearToken();
      const e = apiError(err);
      setError(e.unauthenticated ? REFUSED_TOKEN : `Cannot reach the control plane: ${e.code} ${e.message}`);
      input.current?.focus();
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form class="card signin-card" onSubmit={submit} data-testid="signin-form">
        <h1>Tandem console</h1>
        <p class="muted">Sign in with the control plane's API token (the one given to --auth-token).</p>
        <div class={"field" + (error ? " invalid" : "")}>
          <label for="signin-token">Bearer token</label>
          <input
            ref={input}
            id="signin-token"
            data-testid="signin-token"
            type="password"
            autocomplete="off"
            value={token}
            aria-invalid={!!error}
            aria-describedby={error ? "signin-error" : undefined}
            onInput={(e) => setTokenText((e.target as HTMLInputElement).value)}
          />
          {error && (
            <p class="field-error" id="signin-error" role="alert" data-testid="signin-error">
              {error}
            </p>
          )}
        </div>
        <button type="submit" class="btn primary" data-testid="signin-submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p class="hint">The token is kept in this tab's session storage only.</p>
      </form>
    </main>
  );
}

const NAV: Array<[string, string]> = [
  ["overview", "Overview"],
  ["clusters", "Clusters"],
  ["gateways", "Gateways"],
  ["queue", "Queues"],
  ["migrations", "Migrations"],
  ["comparisons", "Comparisons"],
];

function Page(props: { route: Route }) {
  const { view, id, sub } = props.route;
  switch (view) {
    case "overview":
      return <OverviewView />;
    case "clusters":
      return <ClusterView />;
    case "gateways":
      return <GatewayView />;
    case "tasks":
      if (!id || id === "new") return <TaskCreate />;
      return <TaskDetail id={id} />;
    case "queue":
      return <QueueView id={id} gateway={sub} />;
    case "migrations":
      return id ? <MigrationDetail id={id} /> : <MigrationList />;
    case "comparisons":
      return id ? <CompareDetail id={id} /> : <CompareList />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            No view at this address. <a href="#/overview">Go to the overview</a>.
          </p>
        </section>
      );
  }
}

function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const [message, setMessage] = useState<string | null>(null);
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  useEffect(() => {
    onUnauthenticated(() => {
      clearToken();
      setMessage(REFUSED_TOKEN);
      setSignedIn(false);
    });
  }, []);
  useEffect(() => {
    document.title = `Tandem · ${route.view}`;
  }, [route.view]);
  if (!signedIn) {
    return (
      <SignIn
        message={message}
        onSignedIn={() => {
          setMessage(null);
          setSignedIn(true);
          if (!window.location.hash) window.location.hash = "#/overview";
        }}
      />
    );
  }
  const active = route.view === "tasks" ? "overview" : route.view;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); main.current?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/overview">
          Tandem
        </a>
        <nav aria-label="Views">
          {NAV.map(([key, label]) => (
            <a
              key={key}
              href={`#/${key}`}
              data-testid={`nav-${key}`}
              aria-current={active === key ? "page" : undefined}
            >
              {label}
            </a>
          ))}
        </nav>
        <button
          type="button"
          class="btn plain signout"
          data-testid="signout"
          onClick={() => {
            clearToken();
            setMessage(null);
            setSignedIn(false);
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Page route={route} key={`${route.view}/${route.id ?? ""}/${route.sub ?? ""}`} />
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
