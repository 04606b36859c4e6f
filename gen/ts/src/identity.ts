// Generated messages and service descriptors of bulwark.identity.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/identity/v1/change_pb.js";
export * from "./gen/bulwark/identity/v1/events_pb.js";
export * from "./gen/bulwark/identity/v1/identity_pb.js";
export * from "./gen/bulwark/identity/v1/policy_pb.js";
export * from "./gen/bulwark/identity/v1/prompt_pb.js";
