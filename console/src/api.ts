// The browser's gRPC-web client of every tandem.v1 service, on the same
// origin as the console (tandem-controlplane --ui-listen serves both), and
// the translation of gRPC errors into what the views show.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { getToken } from "./auth";
import { ClusterService } from "./gen/tandem/v1/cluster_pb";
import { CompareService } from "./gen/tandem/v1/compare_pb";
import { GatewayService } from "./gen/tandem/v1/gateway_pb";
import { MigrationService } from "./gen/tandem/v1/migration_pb";
import { QueueService } from "./gen/tandem/v1/queue_pb";
import { ReplicationService } from "./gen/tandem/v1/replication_pb";

/** The message shown when the control plane answers UNAUTHENTICATED. */
export const REFUSED_TOKEN = "The control plane refused this token";

let unauthenticatedHandler: (() => void) | null = null;

/** Registers what happens when any call is refused with UNAUTHENTICATED. */
export function onUnauthenticated(handler: () => void): void {
  unauthenticatedHandler = handler;
}

function refused(err: unknown): void {
  if (err instanceof ConnectError && err.code === Code.Unauthenticated && unauthenticatedHandler) {
    unauthenticatedHandler();
  }
}

// Adds the bearer token to every call and reports refusals, for unary calls
// and for server streams (whose status may only arrive with the trailers).
const auth: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) {
    req.header.set("authorization", `Bearer ${token}`);
  }
  try {
    const res = await next(req);
    if (!res.stream) {
      return res;
    }
    const inner = res.message;
    async function* guarded() {
      try {
        yield* inner;
      } catch (err) {
        refused(err);
        throw err;
      }
    }
    return { ...res, message: guarded() };
  } catch (err) {
    refused(err);
    throw err;
  }
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [auth],
});

export const clusterApi = createClient(ClusterService, transport);
export const gatewayApi = createClient(GatewayService, transport);
export const replicationApi = createClient(ReplicationService, transport);
export const queueApi = createClient(QueueService, transport);
export const migrationApi = createClient(MigrationService, transport);
export const compareApi = createClient(CompareService, transport);

/** A server error as the views show it. */
export interface ApiError {
  /** gRPC status name, for example "INVALID_ARGUMENT". */
  code: string;
  /** The request field the server named (for example "endpoints[0]"), if any. */
  field?: string;
  /** The server's message. */
  message: string;
  /** True for UNAUTHENTICATED. */
  unauthenticated: boolean;
  /** True for NOT_FOUND. */
  notFound: boolean;
}

// The control plane's messages start with the path of the field they are
// about ("name: required", "endpoints[1]: ... is not a URL",
// "credentials.password: ..."); see controlplane/src/validate.rs.
const FIELD_PREFIX = /^([a-z_][a-z0-9_]*(?:\[[^\]]*\]|\.[a-z_][a-z0-9_]*)*):\s/;

function codeName(code: Code): string {
  return (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Turns anything a call threw into an ApiError. */
export function apiError(err: unknown): ApiError {
  if (err instanceof ConnectError) {
    const message = err.code === Code.Unauthenticated ? REFUSED_TOKEN : err.rawMessage;
    let field = FIELD_PREFIX.exec(err.rawMessage)?.[1];
    if (!field && /^probe failed/.test(err.rawMessage)) {
      // A refused registration: the probe of the endpoints failed.
      field = "endpoints";
    }
    return {
      code: codeName(err.code),
      field,
      message,
      unauthenticated: err.code === Code.Unauthenticated,
      notFound: err.code === Code.NotFound,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: "UNKNOWN", message, unauthenticated: false, notFound: false };
}

/** Whether `err` names `field` or one of its parts (`field.x`, `field[2]`). */
export function namesField(err: ApiError | null | undefined, field: string): boolean {
  const f = err?.field;
  if (!f) return false;
  return f === field || f.startsWith(field + ".") || f.startsWith(field + "[");
}

/** Whether `err` is an abort caused by leaving the view. */
export function isAbort(err: unknown): boolean {
  return (
    (err instanceof ConnectError && err.code === Code.Canceled) ||
    (err instanceof DOMException && err.name === "AbortError")
  );
}
