// Generated messages and service descriptors of bulwark.audit.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/audit/v1/audit_pb.js";
export * from "./gen/bulwark/audit/v1/events_pb.js";
