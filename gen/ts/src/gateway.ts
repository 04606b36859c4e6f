// Generated messages and service descriptors of bulwark.gateway.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/gateway/v1/gateway_pb.js";
