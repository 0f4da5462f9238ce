/**
 * @tandem/sdk: TypeScript SDK for the Tandem control plane.
 *
 * ```ts
 * import { connect, status, isServiceError } from "@tandem/sdk";
 *
 * const tandem = connect("http://127.0.0.1:50051", process.env.TANDEM_TOKEN);
 * const { clusters } = await tandem.clusters.listClusters({ pageSize: 50 });
 * tandem.close();
 * ```
 *
 * - {@link connect} returns promise-based stubs for every `tandem.v1`
 *   service, with the bearer token on every call and a default deadline.
 * - Every generated message, enum and service description is re-exported
 *   from here (see `./messages.ts`).
 * - Failed calls reject with a `@grpc/grpc-js` `ServiceError`: `code` is a
 *   {@link status}, `details` starts with the offending request field, for
 *   example `endpoints[0]: ...`.
 */
export {
  connect,
  isServiceError,
  parseEndpoint,
  DEFAULT_TIMEOUT_MS,
  type CallOptions,
  type DeepPartial,
  type MessageFns,
  type ConnectOptions,
  type MethodStub,
  type RawClients,
  type ResponseStream,
  type ServiceStub,
  type TandemClient,
} from "./client.js";
export * from "./messages.js";
export { Metadata, status, type ServiceError } from "@grpc/grpc-js";
