// Package platform is the kit every Bulwark service starts from: one h2c port
// that speaks Connect, gRPC and gRPC-Web with health, reflection and Prometheus
// metrics; typed configuration from the environment with secrets masked in
// logs; slog JSON logging; the standard interceptor chain; and clients for
// Redis, NATS JetStream and Vault.
//
// It holds no business logic. Services depend on it; it depends on no service.
package platform
