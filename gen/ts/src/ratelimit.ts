// Generated messages and service descriptors of bulwark.ratelimit.v1 (hand-written barrel; the files it re-exports are generated).
export * from "./gen/bulwark/ratelimit/v1/ratelimit_pb.js";
