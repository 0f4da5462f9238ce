// Create a replication task: clusters, gateways, listener, indices, and the
// paused start used to run the full migration first.
import { useState } from "preact/hooks";
import { clusterApi, gatewayApi, replicationApi } from "../api";
import { duration, list } from "../format";
import { GatewayConnectionState } from "../gen/tandem/v1/gateway_pb";
import { useAction, usePoll } from "../hooks";
import { ActionError, Check, Field, FieldError, Header, LoadError } from "../ui";

const FIELDS = ["name", "description", "primary", "backup", "gateway_ids", "listener", "indices", "lag_thresholds"];

/** A select of the registered clusters (by name). */
export function ClusterSelect(props: { a: Record<string, unknown>; value: string; onChange: (v: string) => void; names: string[] }) {
  return (
    <select {...props.a} value={props.value} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}>
      <option value="">— choose —</option>
      {props.names.map((n) => (
        <option key={n} value={n}>
          {n}
        </option>
      ))}
    </select>
  );
}

export function TaskCreate() {
  const clusters = usePoll((signal) => clusterApi.listClusters({ pageSize: 1000 }, { signal }), 10000, []);
  const gateways = usePoll((signal) => gatewayApi.listGateways({ pageSize: 1000 }, { signal }), 5000, []);
  const names = (clusters.data?.clusters ?? []).map((c) => c.name);
  const gws = gateways.data?.gateways ?? [];
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [primary, setPrimary] = useState("");
  const [backup, setBackup] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [listener, setListener] = useState("");
  const [include, setInclude] = useState("");
  const [exclude, setExclude] = useState("");
  const [paused, setPaused] = useState(true);
  const [maxLag, setMaxLag] = useState("");
  const action = useAction();
  const err = action.error;
  const text = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);
  const submit = async (e: Event) => {
    e.preventDefault();
    const res = await action.run(() =>
      replicationApi.createTask({
        requestId: crypto.randomUUID(),
        name,
        description,
        primary: { clusterName: primary },
        backup: { clusterName: backup },
        gatewayIds: chosen,
        listener,
        indices: include || exclude ? { include: list(include), exclude: list(exclude) } : undefined,
        startPaused: paused,
        lagThresholds: maxLag.trim() ? { cutoverMaxLag: duration(Number(maxLag)) } : undefined,
      }),
    );
    if (res?.task) window.location.hash = `#/tasks/${res.task.id}`;
  };
  return (
    <section>
      <Header title="New replication task" />
      <LoadError err={clusters.error ?? gateways.error} what="clusters and gateways" />
      <form class="card form" data-testid="task-form" onSubmit={submit}>
        <div class="grid2">
          <Field label="Name" id="task-name" field="name" err={err} hint="lowercase letters, digits and '-'">
            {(a) => <input {...a} value={name} onInput={text(setName)} autocomplete="off" required />}
          </Field>
          <Field label="Description" id="task-description" field="description" err={err}>
            {(a) => <input {...a} value={description} onInput={text(setDescription)} />}
          </Field>
          <Field label="Primary (the cluster applications use today)" id="task-primary" field="primary" err={err}>
            {(a) => <ClusterSelect a={a} value={primary} onChange={setPrimary} names={names} />}
          </Field>
          <Field label="Backup (the cluster to migrate to)" id="task-backup" field="backup" err={err}>
            {(a) => <ClusterSelect a={a} value={backup} onChange={setBackup} names={names} />}
          </Field>
        </div>
        <fieldset class="field" aria-describedby="task-gateways-error">
          <legend>Gateways</legend>
          {gateways.data && gws.length === 0 && <p class="muted">No gateway has connected yet.</p>}
          {gws.map((g) => (
            <label key={g.id} class="check-line">
              <input
                type="checkbox"
                data-testid={`task-gateway-${g.id}`}
                checked={chosen.includes(g.id)}
                onChange={(e) => {
                  const on = (e.target as HTMLInputElement).checked;
                  setChosen(on ? [...chosen, g.id] : chosen.filter((x) => x !== g.id));
                }}
              />{" "}
              {g.name || g.id} <span class="small muted">({g.id}, {g.connectionState === GatewayConnectionState.CONNECTED ? "connected" : "disconnected"})</span>
            </label>
          ))}
          <FieldError err={err} field="gateway_ids" id="task-gateways" />
        </fieldset>
        <div class="grid3">
          <Field label="Listener" id="task-listener" field="listener" err={err} hint="empty: the default listener">
            {(a) => <input {...a} value={listener} onInput={text(setListener)} />}
          </Field>
          <Field label="Include indices" id="task-include" field="indices" err={err} hint="patterns, comma separated; empty: all">
            {(a) => <input {...a} value={include} onInput={text(setInclude)} placeholder="logs-*" />}
          </Field>
          <Field label="Exclude indices" id="task-exclude" field="indices.exclude" err={err}>
            {(a) => <input {...a} value={exclude} onInput={text(setExclude)} />}
          </Field>
          <Field label="Cutover max lag (s)" id="task-max-lag" field="lag_thresholds" err={err} hint="empty: 5 s">
            {(a) => <input {...a} inputMode="decimal" value={maxLag} onInput={text(setMaxLag)} />}
          </Field>
        </div>
        <Check
          id="task-start-paused"
          label="Start paused: record writes, replay nothing until started (run the full migration first)"
          checked={paused}
          onChange={setPaused}
        />
        <div class="actions">
          <button type="submit" class="btn primary" data-testid="task-submit" disabled={action.busy}>
            Create task
          </button>
          <a class="btn plain" href="#/overview">
            Cancel
          </a>
        </div>
        <ActionError err={err} testid="task-form-error" fields={FIELDS} />
      </form>
    </section>
  );
}
