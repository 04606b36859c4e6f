// Generated messages and service descriptors of bulwark.router.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/router/v1/router_pb.js";
