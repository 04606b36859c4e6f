// The Bulwark client: generated Connect-ES messages and service descriptors,
// one namespace per API package. Create a client with @connectrpc/connect's
// createClient(identity.IdentityService, transport).
export * as audit from "./audit.js";
export * as gateway from "./gateway.js";
export * as identity from "./identity.js";
export * as ratelimit from "./ratelimit.js";
export * as redaction from "./redaction.js";
export * as router from "./router.js";
