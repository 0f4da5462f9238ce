// Clusters: the registry (version, distribution, health, nodes), register
// with the probe's answer or its precise error, edit, re-probe, delete.
import { useState } from "preact/hooks";
import { clusterApi } from "../api";
import { ClusterHealthBadge } from "../badges";
import { count, dur, enumName, list, time } from "../format";
import { AuthMethod, Distribution } from "../gen/tandem/v1/common_pb";
import type { Cluster, ProbeResult } from "../gen/tandem/v1/cluster_pb";
import { useAction, usePoll } from "../hooks";
import { ActionError, Badge, Button, Check, Dialog, Field, Header, LoadError } from "../ui";

/** The probe's answer: version, health, nodes, warnings, or its error. */
export function ProbeReport(props: { probe: ProbeResult | undefined; testid: string }) {
  const p = props.probe;
  if (!p) return <p class="muted">Never probed.</p>;
  if (p.error) {
    return (
      <div class="probe bad" data-testid={props.testid} role="status">
        <strong>Probe failed</strong> <span class="code">{p.error.reason}</span> {p.error.message}
        <div class="small muted">
          {p.endpoint && <>endpoint {p.endpoint}, </>}
          {time(p.probedAt)}
        </div>
      </div>
    );
  }
  return (
    <div class="probe ok" data-testid={props.testid} role="status">
      <strong>Reachable</strong>, credentials {p.credentialsValid ? "accepted" : "refused"}:{" "}
      {p.version ? `${enumName(Distribution, p.version.distribution)} ${p.version.number}` : "version unknown"},
      cluster “{p.clusterName}”, health <ClusterHealthBadge health={p.health} />, {p.numberOfNodes} node(s) (
      {p.numberOfDataNodes} data), latency {dur(p.latency)}
      {p.warnings.length > 0 && (
        <ul class="warnings">
          {p.warnings.map((w) => (
            <li key={w}>{w}</li>
          ))}
        </ul>
      )}
      {p.nodes.length > 0 && (
        <details>
          <summary>Nodes ({p.nodes.length})</summary>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">HTTP address</th>
                  <th scope="col">Version</th>
                  <th scope="col">Roles</th>
                </tr>
              </thead>
              <tbody>
                {p.nodes.map((n) => (
                  <tr key={n.nodeId}>
                    <td>{n.name}</td>
                    <td>{n.httpAddress}</td>
                    <td>{n.version}</td>
                    <td>{n.roles.join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </details>
      )}
    </div>
  );
}

const FORM_FIELDS = [
  "name",
  "description",
  "endpoints",
  "credentials.method",
  "credentials.username",
  "credentials.password",
  "credentials.api_key",
  "tls.ca_certificates_pem",
  "tls.server_name",
  "tls",
  "credentials",
];

/** Register form (no `cluster`) or edit form of `cluster`. */
function ClusterForm(props: { cluster?: Cluster; onDone: (c?: Cluster) => void; onCancel?: () => void }) {
  const c = props.cluster;
  const editing = c !== undefined;
  const prefix = editing ? "cluster-edit" : "cluster";
  const [name, setName] = useState(c?.name ?? "");
  const [description, setDescription] = useState(c?.description ?? "");
  const [endpoints, setEndpoints] = useState(c?.endpoints.join("\n") ?? "");
  const [method, setMethod] = useState<AuthMethod>(c?.credentials?.method || AuthMethod.NONE);
  const [username, setUsername] = useState(c?.credentials?.username ?? "");
  const [password, setPassword] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [ca, setCa] = useState(c?.tls?.caCertificatesPem ?? "");
  const [serverName, setServerName] = useState(c?.tls?.serverName ?? "");
  const [insecure, setInsecure] = useState(c?.tls?.insecureSkipVerify ?? false);
  const [discovery, setDiscovery] = useState(c?.nodeDiscovery?.enabled ?? false);
  const [allowUnreachable, setAllowUnreachable] = useState(false);
  const [probe, setProbe] = useState<ProbeResult | undefined>(undefined);
  const action = useAction();
  const err = action.error;

  const credentials = () => ({
    method,
    username: method === AuthMethod.BASIC ? username : "",
    password: method === AuthMethod.BASIC ? password : "",
    apiKey: method === AuthMethod.API_KEY ? apiKey : "",
  });
  const tls = () => ({ caCertificatesPem: ca, serverName, insecureSkipVerify: insecure });

  const submit = async (validateOnly: boolean) => {
    setProbe(undefined);
    if (editing) {
      const res = await action.run(() =>
        clusterApi.updateCluster({
          clusterId: c.id,
          name: name !== c.name ? name : undefined,
          description: description !== c.description ? description : undefined,
          endpoints: { values: list(endpoints) },
          credentials: credentials(),
          tls: tls(),
          nodeDiscovery: { enabled: discovery },
          allowUnreachable,
        }),
      );
      if (res?.cluster) {
        setProbe(res.cluster.lastProbe);
        props.onDone(res.cluster);
      }
      return;
    }
    const res = await action.run(() =>
      clusterApi.registerCluster({
        name,
        description,
        endpoints: list(endpoints),
        credentials: credentials(),
        tls: tls(),
        nodeDiscovery: { enabled: discovery },
        allowUnreachable,
        validateOnly,
      }),
    );
    if (res?.cluster) {
      setProbe(res.cluster.lastProbe);
      if (!validateOnly) {
        props.onDone(res.cluster);
        setName("");
        setDescription("");
        setEndpoints("");
        setPassword("");
        setApiKey("");
      }
    }
  };

  const text = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  return (
    <form
      class="card form"
      data-testid={`${prefix}-form`}
      onSubmit={(e) => {
        e.preventDefault();
        void submit(false);
      }}
    >
      <h2>{editing ? `Edit ${c.name}` : "Register a cluster"}</h2>
      <div class="grid2">
        <Field label="Name" id={`${prefix}-name`} field="name" err={err} hint="lowercase letters, digits and '-'">
          {(a) => <input {...a} value={name} onInput={text(setName)} autocomplete="off" required />}
        </Field>
        <Field label="Description" id={`${prefix}-description`} field="description" err={err}>
          {(a) => <input {...a} value={description} onInput={text(setDescription)} />}
        </Field>
      </div>
      <Field
        label="Endpoints"
        id={`${prefix}-endpoints`}
        field="endpoints"
        err={err}
        hint="one URL per line, for example http://es-old-1:9200"
      >
        {(a) => <textarea {...a} rows={2} value={endpoints} onInput={text(setEndpoints)} required />}
      </Field>
      <div class="grid2">
        <Field label="Authentication" id={`${prefix}-auth-method`} field="credentials.method" err={err}>
          {(a) => (
            <select {...a} value={String(method)} onChange={(e) => setMethod(Number((e.target as HTMLSelectElement).value))}>
              <option value={String(AuthMethod.NONE)}>None</option>
              <option value={String(AuthMethod.BASIC)}>Basic (user name and password)</option>
              <option value={String(AuthMethod.API_KEY)}>API key</option>
            </select>
          )}
        </Field>
        {method === AuthMethod.BASIC && (
          <Field label="User name" id={`${prefix}-username`} field="credentials.username" err={err}>
            {(a) => <input {...a} value={username} onInput={text(setUsername)} autocomplete="off" />}
          </Field>
        )}
        {method === AuthMethod.BASIC && (
          <Field
            label="Password"
            id={`${prefix}-password`}
            field="credentials.password"
            err={err}
            hint={editing && c.credentials?.secretSet ? "stored; leave empty to keep it" : "write-only: never shown again"}
          >
            {(a) => <input {...a} type="password" value={password} onInput={text(setPassword)} autocomplete="new-password" />}
          </Field>
        )}
        {method === AuthMethod.API_KEY && (
          <Field
            label="API key"
            id={`${prefix}-api-key`}
            field="credentials.api_key"
            err={err}
            hint={editing && c.credentials?.secretSet ? "stored; leave empty to keep it" : "base64 of id:api_key; write-only"}
          >
            {(a) => <input {...a} type="password" value={apiKey} onInput={text(setApiKey)} autocomplete="off" />}
          </Field>
        )}
      </div>
      <details>
        <summary>TLS and discovery</summary>
        <Field label="CA certificates (PEM)" id={`${prefix}-ca`} field="tls.ca_certificates_pem" err={err}>
          {(a) => <textarea {...a} rows={3} value={ca} onInput={text(setCa)} />}
        </Field>
        <Field label="TLS server name" id={`${prefix}-server-name`} field="tls.server_name" err={err}>
          {(a) => <input {...a} value={serverName} onInput={text(setServerName)} />}
        </Field>
        <Check id={`${prefix}-insecure-tls`} label="Skip certificate verification (test clusters only)" checked={insecure} onChange={setInsecure} />
        <Check id={`${prefix}-discovery`} label="Discover nodes (GET _nodes/http)" checked={discovery} onChange={setDiscovery} />
      </details>
      <Check
        id={`${prefix}-allow-unreachable`}
        label={`${editing ? "Save" : "Register"} even if the probe fails`}
        checked={allowUnreachable}
        onChange={setAllowUnreachable}
      />
      <div class="actions">
        <button type="submit" class="btn primary" data-testid={`${prefix}-submit`} disabled={action.busy}>
          {action.busy ? "Probing…" : editing ? "Save" : "Register"}
        </button>
        {!editing && (
          <Button testid={`${prefix}-validate`} busy={action.busy} onClick={() => void submit(true)}>
            Test connection
          </Button>
        )}
        {props.onCancel && (
          <Button testid={`${prefix}-cancel`} onClick={props.onCancel}>
            Cancel
          </Button>
        )}
      </div>
      <ActionError err={err} testid={`${prefix}-error`} fields={FORM_FIELDS} />
      {probe && <ProbeReport probe={probe} testid={`${prefix}-probe-result`} />}
    </form>
  );
}

function ClusterRow(props: { cluster: Cluster; onChanged: () => void }) {
  const c = props.cluster;
  const [editing, setEditing] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [probe, setProbe] = useState<ProbeResult | undefined>(undefined);
  const action = useAction();
  const p = probe ?? c.lastProbe;
  const reprobe = async () => {
    const res = await action.run(() => clusterApi.probeCluster({ clusterId: c.id }));
    if (res) {
      setProbe(res.probe);
      props.onChanged();
    }
  };
  const remove = async () => {
    const res = await action.run(() => clusterApi.deleteCluster({ clusterId: c.id }));
    setConfirmDelete(false);
    if (res) props.onChanged();
  };
  return (
    <>
      <tr data-testid={`cluster-row-${c.name}`}>
        <th scope="row">
          {c.name}
          {c.description && <div class="small muted">{c.description}</div>}
        </th>
        <td class="small">{c.endpoints.join(", ")}</td>
        <td data-testid={`cluster-version-${c.name}`}>
          {p?.version && p.version.distribution !== Distribution.UNSPECIFIED
            ? `${enumName(Distribution, p.version.distribution).toLowerCase()} ${p.version.number}`
            : "–"}
        </td>
        <td>
          {p?.error ? (
            <Badge tone="bad" testid={`cluster-health-${c.name}`} title={p.error.message}>
              {p.error.reason || "UNREACHABLE"}
            </Badge>
          ) : (
            <ClusterHealthBadge health={p?.health ?? 0} testid={`cluster-health-${c.name}`} />
          )}
        </td>
        <td class="num">{p && !p.error ? `${count(p.numberOfNodes)} (${count(p.numberOfDataNodes)} data)` : "–"}</td>
        <td class="small">{time(p?.probedAt)}</td>
        <td class="row-actions">
          <Button testid={`cluster-probe-${c.name}`} busy={action.busy} onClick={() => void reprobe()}>
            Re-probe
          </Button>
          <Button testid={`cluster-edit-${c.name}`} onClick={() => setEditing(!editing)} aria-expanded={editing}>
            Edit
          </Button>
          <Button testid={`cluster-delete-${c.name}`} kind="danger" onClick={() => setConfirmDelete(true)}>
            Delete
          </Button>
        </td>
      </tr>
      {(action.error || probe) && (
        <tr class="detail-row">
          <td colSpan={7}>
            <ActionError err={action.error} testid={`cluster-action-error-${c.name}`} />
            {probe && <ProbeReport probe={probe} testid={`cluster-probe-result-${c.name}`} />}
          </td>
        </tr>
      )}
      {editing && (
        <tr class="detail-row">
          <td colSpan={7}>
            <ClusterForm
              cluster={c}
              onDone={() => {
                setEditing(false);
                props.onChanged();
              }}
              onCancel={() => setEditing(false)}
            />
          </td>
        </tr>
      )}
      {confirmDelete && (
        <Dialog title={`Delete cluster ${c.name}?`} testid="confirm-dialog" onClose={() => setConfirmDelete(false)}>
          <p>
            The registration is removed. The control plane refuses while a task or an unfinished job uses the
            cluster.
          </p>
          <div class="actions">
            <Button testid="confirm-ok" kind="danger" busy={action.busy} onClick={() => void remove()}>
              Delete
            </Button>
            <Button testid="confirm-cancel" onClick={() => setConfirmDelete(false)}>
              Cancel
            </Button>
          </div>
        </Dialog>
      )}
    </>
  );
}

export function ClusterView() {
  const clusters = usePoll((signal) => clusterApi.listClusters({ pageSize: 1000 }, { signal }), 5000, []);
  const list = clusters.data?.clusters ?? [];
  return (
    <section>
      <Header title="Clusters" />
      <LoadError err={clusters.error} what="clusters" />
      {clusters.data && list.length === 0 && <p class="empty">No cluster registered yet.</p>}
      {list.length > 0 && (
        <div class="table-wrap">
          <table data-testid="cluster-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Endpoints</th>
                <th scope="col">Version</th>
                <th scope="col">Health</th>
                <th scope="col" class="num">Nodes</th>
                <th scope="col">Last probe</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((c) => (
                <ClusterRow key={c.id} cluster={c} onChanged={clusters.reload} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ClusterForm onDone={clusters.reload} />
    </section>
  );
}
