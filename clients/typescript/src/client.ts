/**
 * Connection to the Tandem control plane: one HTTP/2 channel, the bearer
 * token on every call, a default deadline on unary calls, and promise-based
 * stubs for every `tandem.v1` service.
 *
 * The stubs are built from the service descriptions ts-proto generates
 * (`*ServiceDefinition`), so they follow the contract without hand-written
 * per-RPC code: unary RPCs return a `Promise`, server-streaming RPCs
 * (`Watch*`) an async iterable, and the bidirectional `AgentStream` a
 * `@grpc/grpc-js` duplex stream. Requests may be partial: missing fields take
 * their protobuf defaults.
 */
import { readFileSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { ClusterServiceClient, ClusterServiceDefinition } from "./gen/tandem/v1/cluster.js";
import { CompareServiceClient, CompareServiceDefinition } from "./gen/tandem/v1/compare.js";
import { GatewayServiceClient, GatewayServiceDefinition } from "./gen/tandem/v1/gateway.js";
import { MigrationServiceClient, MigrationServiceDefinition } from "./gen/tandem/v1/migration.js";
import { QueueServiceClient, QueueServiceDefinition } from "./gen/tandem/v1/queue.js";
import { ReplicationServiceClient, ReplicationServiceDefinition } from "./gen/tandem/v1/replication.js";

/** Deadline of unary calls when neither the call nor `connect` sets one. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * A message with every field optional, recursively: what the stubs accept as
 * a request (missing fields take their protobuf defaults).
 */
export type DeepPartial<T> = T extends Date | Function | Uint8Array | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends ReadonlyArray<infer U>
      ? ReadonlyArray<DeepPartial<U>>
      : T extends {}
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : Partial<T>;

/** The functions ts-proto generates for each message type. */
export interface MessageFns<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromPartial(object: DeepPartial<T>): T;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * PEM file of the certificate authorities that sign the control plane's
   * certificate (https endpoints only). Default: the system roots.
   */
  caFile?: string;
  /** The same as `caFile`, as PEM bytes. */
  ca?: Buffer;
  /** PEM client certificate chain and key, for mutual TLS. */
  clientCertChain?: Buffer;
  /** PEM private key of `clientCertChain`. */
  clientPrivateKey?: Buffer;
  /**
   * Deadline of unary calls, in milliseconds, unless a call sets its own.
   * Streaming calls (`Watch*`, `AgentStream`) get no default deadline.
   * Default {@link DEFAULT_TIMEOUT_MS}; 0 disables it.
   */
  timeoutMs?: number;
  /** Extra interceptors, run after the one adding the token. */
  interceptors?: grpc.Interceptor[];
  /** Extra `@grpc/grpc-js` channel options (keepalive, message sizes...). */
  channelOptions?: grpc.ChannelOptions;
}

/** Options of one call. */
export interface CallOptions {
  /** Deadline of this call in milliseconds from now (overrides the default). */
  timeoutMs?: number;
  /** Absolute deadline of this call (overrides `timeoutMs`). */
  deadline?: Date | number;
  /** Extra request metadata. */
  metadata?: grpc.Metadata;
  /** Cancels the call when aborted (the call then fails with CANCELLED). */
  signal?: AbortSignal;
}

/** Responses of a server-streaming call, for `for await`. */
export interface ResponseStream<T> extends AsyncIterable<T> {
  /**
   * Stops the stream; a `for await` over it then ends normally. Leaving the
   * loop early (`break`, `return`, an exception) cancels the call too.
   */
  cancel(): void;
  /** The underlying `@grpc/grpc-js` call (status and metadata events). */
  readonly call: grpc.ClientReadableStream<T>;
}

/** One method of a ts-proto `generic-definitions` service description. */
interface MethodDefinition {
  readonly name: string;
  readonly requestType: MessageFns<any>;
  readonly requestStream: boolean;
  readonly responseType: MessageFns<any>;
  readonly responseStream: boolean;
}

/** A ts-proto `generic-definitions` service description. */
interface ServiceDefinition {
  readonly fullName: string;
  readonly methods: { readonly [method: string]: MethodDefinition };
}

type RequestOf<M> = M extends { readonly requestType: MessageFns<infer T> } ? T : never;
type ResponseOf<M> = M extends { readonly responseType: MessageFns<infer T> } ? T : never;

/** The promise-based form of one RPC. */
export type MethodStub<M> = M extends { readonly requestStream: false; readonly responseStream: false }
  ? (request: DeepPartial<RequestOf<M>>, options?: CallOptions) => Promise<ResponseOf<M>>
  : M extends { readonly requestStream: false; readonly responseStream: true }
    ? (request: DeepPartial<RequestOf<M>>, options?: CallOptions) => ResponseStream<ResponseOf<M>>
    : M extends { readonly requestStream: true; readonly responseStream: true }
      ? (options?: CallOptions) => grpc.ClientDuplexStream<RequestOf<M>, ResponseOf<M>>
      : never;

/** Promise-based stubs of every RPC of a service, named like the RPCs (camelCase). */
export type ServiceStub<D extends ServiceDefinition> = {
  readonly [K in keyof D["methods"]]: MethodStub<D["methods"][K]>;
};

/** Callback-style `@grpc/grpc-js` clients, sharing the connection's channel. */
export interface RawClients {
  readonly clusters: ClusterServiceClient;
  readonly gateways: GatewayServiceClient;
  readonly replication: ReplicationServiceClient;
  readonly queue: QueueServiceClient;
  readonly migration: MigrationServiceClient;
  readonly compare: CompareServiceClient;
}

/** A connection to the control plane; see {@link connect}. */
export interface TandemClient {
  /** tandem.v1.ClusterService: register, probe and list clusters. */
  readonly clusters: ServiceStub<typeof ClusterServiceDefinition>;
  /** tandem.v1.GatewayService: the gateway fleet. */
  readonly gateways: ServiceStub<typeof GatewayServiceDefinition>;
  /** tandem.v1.ReplicationService: dual-write replication tasks. */
  readonly replication: ServiceStub<typeof ReplicationServiceDefinition>;
  /** tandem.v1.QueueService: replication queues and dead letters. */
  readonly queue: ServiceStub<typeof QueueServiceDefinition>;
  /** tandem.v1.MigrationService: bulk copy jobs. */
  readonly migration: ServiceStub<typeof MigrationServiceDefinition>;
  /** tandem.v1.CompareService: source/target comparison jobs. */
  readonly compare: ServiceStub<typeof CompareServiceDefinition>;
  /** The same services as callback-style `@grpc/grpc-js` clients. */
  readonly raw: RawClients;
  /** Waits until the channel is connected, or rejects after `timeoutMs`. */
  waitForReady(timeoutMs?: number): Promise<void>;
  /** Closes the channel; calls in flight fail with CANCELLED. */
  close(): void;
}

/**
 * Connects to the control plane at `endpoint`, an `http://host:port` or
 * `https://host[:port]` URL, sending `token` as `authorization: Bearer
 * <token>` with every call (an empty or missing token sends nothing, for a
 * control plane run with `--insecure-no-auth`).
 *
 * The channel connects lazily: a wrong address shows up as UNAVAILABLE on
 * the first call (or use `waitForReady`).
 */
export function connect(endpoint: string, token: string | undefined, options: ConnectOptions = {}): TandemClient {
  const { target, tls } = parseEndpoint(endpoint);
  const credentials = tls ? sslCredentials(options) : grpc.credentials.createInsecure();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new TypeError(`timeoutMs: must be a non-negative number of milliseconds, got ${timeoutMs}`);
  }

  const interceptors: grpc.Interceptor[] = [];
  const header = bearerHeader(token);
  if (header !== undefined) interceptors.push(metadataInterceptor("authorization", header));
  if (timeoutMs > 0) interceptors.push(unaryDeadlineInterceptor(timeoutMs));
  interceptors.push(...(options.interceptors ?? []));

  const channel = new grpc.Channel(target, credentials, options.channelOptions ?? {});
  const clientOptions: Partial<grpc.ClientOptions> = { channelOverride: channel, interceptors };
  const raw: RawClients = {
    clusters: new ClusterServiceClient(target, credentials, clientOptions),
    gateways: new GatewayServiceClient(target, credentials, clientOptions),
    replication: new ReplicationServiceClient(target, credentials, clientOptions),
    queue: new QueueServiceClient(target, credentials, clientOptions),
    migration: new MigrationServiceClient(target, credentials, clientOptions),
    compare: new CompareServiceClient(target, credentials, clientOptions),
  };

  return {
    clusters: bindService(ClusterServiceDefinition, raw.clusters),
    gateways: bindService(GatewayServiceDefinition, raw.gateways),
    replication: bindService(ReplicationServiceDefinition, raw.replication),
    queue: bindService(QueueServiceDefinition, raw.queue),
    migration: bindService(MigrationServiceDefinition, raw.migration),
    compare: bindService(CompareServiceDefinition, raw.compare),
    raw,
    waitForReady(readyTimeoutMs = timeoutMs || DEFAULT_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        raw.clusters.waitForReady(Date.now() + readyTimeoutMs, (error) => {
          if (error) reject(new Error(`cannot connect to the control plane at ${endpoint}: ${error.message}`));
          else resolve();
        });
      });
    },
    close() {
      channel.close();
    },
  };
}

/** Splits an endpoint URL into a grpc-js target ("host:port") and whether it uses TLS. */
export function parseEndpoint(endpoint: string): { target: string; tls: boolean } {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TypeError(`endpoint: not a URL: ${JSON.stringify(endpoint)} (expected http://host:port or https://host:port)`);
  }
  const tls = url.protocol === "https:";
  if (!tls && url.protocol !== "http:") {
    throw new TypeError(`endpoint: scheme must be http or https: ${JSON.stringify(endpoint)}`);
  }
  if (url.pathname !== "/" && url.pathname !== "") {
    throw new TypeError(`endpoint: must not have a path: ${JSON.stringify(endpoint)}`);
  }
  const port = url.port || (tls ? "443" : "80");
  return { target: `${url.hostname}:${port}`, tls };
}

function sslCredentials(options: ConnectOptions): grpc.ChannelCredentials {
  let ca = options.ca ?? null;
  if (options.caFile !== undefined) {
    try {
      ca = readFileSync(options.caFile);
    } catch (error) {
      throw new Error(`caFile: cannot read ${options.caFile}: ${(error as Error).message}`);
    }
  }
  return grpc.credentials.createSsl(ca, options.clientPrivateKey ?? null, options.clientCertChain ?? null);
}

function bearerHeader(token: string | undefined): string | undefined {
  const trimmed = token?.trim() ?? "";
  if (trimmed === "") return undefined;
  if (!/^[\x21-\x7e]+$/.test(trimmed)) {
    throw new TypeError("token: must be printable ASCII without spaces");
  }
  return `Bearer ${trimmed}`;
}

/** Adds `key: value` to the metadata of every call. */
function metadataInterceptor(key: string, value: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(key, value);
        next(metadata, listener);
      },
    });
}

/** Gives unary calls without a deadline one `timeoutMs` from now. */
function unaryDeadlineInterceptor(timeoutMs: number): grpc.Interceptor {
  return (options, nextCall) => {
    const method = options.method_definition;
    const unary = !method.requestStream && !method.responseStream;
    if (unary && options.deadline === undefined) {
      return new grpc.InterceptingCall(nextCall({ ...options, deadline: Date.now() + timeoutMs }));
    }
    return new grpc.InterceptingCall(nextCall(options));
  };
}

function grpcCallOptions(options: CallOptions | undefined): Partial<grpc.CallOptions> {
  const deadline =
    options?.deadline ?? (options?.timeoutMs !== undefined ? Date.now() + options.timeoutMs : undefined);
  return deadline === undefined ? {} : { deadline };
}

/** Cancels `call` when `signal` aborts; returns the clean-up. */
function cancelOnAbort(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const onAbort = () => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** Builds the promise-based stubs of `service` on top of a grpc-js client. */
function bindService<D extends ServiceDefinition>(service: D, client: grpc.Client): ServiceStub<D> {
  const stub: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(service.methods)) {
    const path = `/${service.fullName}/${method.name}`;
    const serialize = (message: unknown) => Buffer.from(method.requestType.encode(message).finish());
    const deserialize = (bytes: Buffer) => method.responseType.decode(bytes);
    if (!method.requestStream && !method.responseStream) {
      stub[key] = (request: unknown, options?: CallOptions) =>
        new Promise((resolve, reject) => {
          const message = method.requestType.fromPartial(request ?? {});
          const metadata = options?.metadata?.clone() ?? new grpc.Metadata();
          let release = () => {};
          const call = client.makeUnaryRequest(
            path,
            serialize,
            deserialize,
            message,
            metadata,
            grpcCallOptions(options),
            (error, response) => {
              release();
              if (error) reject(error);
              else resolve(response);
            },
          );
          release = cancelOnAbort(options?.signal, call);
        });
    } else if (!method.requestStream && method.responseStream) {
      stub[key] = (request: unknown, options?: CallOptions) => {
        const message = method.requestType.fromPartial(request ?? {});
        const metadata = options?.metadata?.clone() ?? new grpc.Metadata();
        const call = client.makeServerStreamRequest(
          path,
          serialize,
          deserialize,
          message,
          metadata,
          grpcCallOptions(options),
        );
        return responseStream(call, cancelOnAbort(options?.signal, call));
      };
    } else if (method.requestStream && method.responseStream) {
      stub[key] = (options?: CallOptions) => {
        const metadata = options?.metadata?.clone() ?? new grpc.Metadata();
        const call = client.makeBidiStreamRequest(path, serialize, deserialize, metadata, grpcCallOptions(options));
        const release = cancelOnAbort(options?.signal, call);
        call.once("close", release);
        return call;
      };
    }
    // tandem.v1 has no client-streaming RPC; MethodStub types one as `never`.
  }
  return stub as ServiceStub<D>;
}

function responseStream<T>(call: grpc.ClientReadableStream<T>, release: () => void): ResponseStream<T> {
  let cancelledHere = false;
  const cancel = () => {
    cancelledHere = true;
    call.cancel();
  };
  async function* iterate(): AsyncGenerator<T, void, undefined> {
    try {
      for await (const message of call) yield message as T;
    } catch (error) {
      // A cancel() of ours ends the stream quietly; any other status is thrown.
      if (!(cancelledHere && isServiceError(error) && error.code === grpc.status.CANCELLED)) throw error;
    } finally {
      release();
      call.cancel(); // no-op once the call has finished
    }
  }
  return { call, cancel, [Symbol.asyncIterator]: iterate };
}

/** Whether `error` is a gRPC status returned by a call (it has a numeric `code` and `details`). */
export function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<grpc.ServiceError>).code === "number" &&
    typeof (error as Partial<grpc.ServiceError>).details === "string"
  );
}
