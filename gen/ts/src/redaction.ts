// Generated messages and service descriptors of bulwark.redaction.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/redaction/v1/redaction_pb.js";
