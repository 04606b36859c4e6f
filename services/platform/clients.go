package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
	approle "github.com/hashicorp/vault/api/auth/approle"
	kubernetes "github.com/hashicorp/vault/api/auth/kubernetes"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// HTTPClient returns a client for calling Bulwark services: it speaks HTTP/1.1
// and, over plain TCP, HTTP/2 with prior knowledge (h2c), which gRPC needs.
func HTTPClient() *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protocols,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// RedisConfig locates Redis: one server, a Redis Cluster, or a primary found
// through Sentinel.
type RedisConfig struct {
	// Addr is host:port, or a comma-separated list: the cluster's seed nodes
	// (with Cluster) or the Sentinels (with MasterName).
	Addr string `env:"ADDR" default:"127.0.0.1:6379"`
	// Cluster says Addr names Redis Cluster nodes (one seed node is enough).
	Cluster bool `env:"CLUSTER" default:"false"`
	// MasterName is the Sentinel name of the primary; set, Addr lists Sentinels.
	MasterName string `env:"MASTER_NAME"`
	// Username for ACL auth, if any.
	Username string `env:"USERNAME"`
	// Password for auth, if any.
	Password Secret `env:"PASSWORD"`
	// SentinelPassword authenticates to the Sentinels, if they require it.
	SentinelPassword Secret `env:"SENTINEL_PASSWORD"`
	// DB selects the logical database (0 on a cluster, which has only that one).
	DB int `env:"DB" default:"0"`
	// PoolSize is the most connections (per node on a cluster); 0 means go-redis's default.
	PoolSize int `env:"POOL_SIZE" default:"0"`
	// DialTimeout bounds connecting.
	DialTimeout time.Duration `env:"DIAL_TIMEOUT" default:"2s"`
	// ReadTimeout bounds each reply.
	ReadTimeout time.Duration `env:"READ_TIMEOUT" default:"1s"`
}

// ErrRedisConfig reports a Redis configuration that cannot work.
var ErrRedisConfig = errors.New("invalid redis config")

// addrs splits Addr into its addresses.
func (c RedisConfig) addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// RedisClient builds the client cfg describes without contacting Redis: a
// cluster client with Cluster, a Sentinel-backed failover client with
// MasterName, otherwise a client of one server. Settings that contradict each
// other are an ErrRedisConfig rather than a guess.
func RedisClient(cfg RedisConfig) (redis.UniversalClient, error) {
	addrs := cfg.addrs()
	switch {
	case len(addrs) == 0:
		return nil, fmt.Errorf("%w: no address", ErrRedisConfig)
	case cfg.Cluster && cfg.MasterName != "":
		return nil, fmt.Errorf("%w: a Redis Cluster and a Sentinel master name exclude each other", ErrRedisConfig)
	case cfg.Cluster && cfg.DB != 0:
		return nil, fmt.Errorf("%w: a Redis Cluster has only database 0, not %d", ErrRedisConfig, cfg.DB)
	case len(addrs) > 1 && !cfg.Cluster && cfg.MasterName == "":
		return nil, fmt.Errorf("%w: %d addresses: set CLUSTER=true for Redis Cluster nodes or MASTER_NAME for Sentinels", ErrRedisConfig, len(addrs))
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            addrs,
		IsClusterMode:    cfg.Cluster,
		MasterName:       cfg.MasterName,
		SentinelPassword: cfg.SentinelPassword.Reveal(),
		Username:         cfg.Username,
		Password:         cfg.Password.Reveal(),
		DB:               cfg.DB,
		PoolSize:         cfg.PoolSize,
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		WriteTimeout:     cfg.ReadTimeout,
		// A caller's deadline bounds the socket waits too, not only the wait
		// for a pooled connection: the limiter's store timeout depends on it.
		ContextTimeoutEnabled: true,
	}), nil
}

// DeleteKeys removes every key that starts with prefix, a batch of SCAN
// results at a time, for tools and tests that give a run its own prefix and
// clean up after it. It returns how many keys it removed.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("delete keys: refusing an empty prefix")
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		// Each primary holds its own slots: scan them all. ForEachMaster runs
		// in parallel, hence the atomic count.
		var n atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			k, err := deleteKeys(ctx, node, prefix)
			n.Add(int64(k))
			return err
		})
		return int(n.Load()), err
	}
	return deleteKeys(ctx, rdb, prefix)
}

// deleteKeys scans one server. Keys go one UNLINK each in a pipeline: on a
// cluster node, keys of different slots cannot share a command.
func deleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pipe := rdb.Pipeline()
		for _, k := range batch {
			pipe.Unlink(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("delete keys: %w", err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return n, fmt.Errorf("delete keys: %w", err)
	}
	return n, flush()
}

// NewRedis connects to Redis (see RedisClient) and checks it answers; on a
// cluster, that every primary does.
func NewRedis(ctx context.Context, cfg RedisConfig) (redis.UniversalClient, error) {
	c, err := RedisClient(cfg)
	if err != nil {
		return nil, err
	}
	ping := func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, ping)
	} else {
		err = c.Ping(ctx).Err()
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("ping redis at %s: %w", cfg.Addr, err)
	}
	return c, nil
}

// NATSConfig locates a NATS server.
type NATSConfig struct {
	// URL is one or more comma-separated nats:// URLs.
	URL string `env:"URL" default:"nats://127.0.0.1:4222"`
	// Token for token auth, if any.
	Token Secret `env:"TOKEN"`
	// CredsFile is a NATS credentials file, if any.
	CredsFile string `env:"CREDS_FILE"`
	// Name identifies this client in the server's monitoring.
	Name string `env:"CLIENT_NAME"`
	// ConnectTimeout bounds the first connection.
	ConnectTimeout time.Duration `env:"CONNECT_TIMEOUT" default:"5s"`
}

// ConnectNATS connects to NATS, reconnecting forever after the first success,
// and returns the connection and its JetStream context.
func ConnectNATS(ctx context.Context, cfg NATSConfig, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err.Error())
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token.Reveal()))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	nc, err := nats.Connect(cfg.URL, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open jetstream: %w", err)
	}
	return nc, js, nil
}

// EmbeddedNATSParams configures an in-process NATS server.
type EmbeddedNATSParams struct {
	// Dir holds JetStream's files. Required.
	Dir string
	// Host to listen on; empty means 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free port, -1 listens on no port (in-process connections only).
	Port int
}

// StartEmbeddedNATS starts a NATS server with JetStream in this process — the
// real server code — and waits until it accepts connections.
func StartEmbeddedNATS(p EmbeddedNATSParams) (*server.Server, error) {
	if p.Dir == "" {
		return nil, errors.New("start embedded nats: Dir is required")
	}
	host := p.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := p.Port
	dontListen := false
	switch port {
	case 0:
		port = server.RANDOM_PORT
	case -1:
		dontListen = true
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "bulwark-embedded",
		Host:       host,
		Port:       port,
		DontListen: dontListen,
		JetStream:  true,
		StoreDir:   p.Dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("start embedded nats: not ready after 10s")
	}
	return srv, nil
}

// VaultConfig locates Vault and says how to log in: with Kubernetes auth
// (KubernetesRole, the pod's service-account token), with AppRole (RoleID and
// SecretID), or with a token.
type VaultConfig struct {
	// Addr is Vault's URL.
	Addr string `env:"ADDR" default:"http://127.0.0.1:8200"`
	// Token logs in directly (dev and tests).
	Token Secret `env:"TOKEN"`
	// RoleID is the AppRole role id.
	RoleID string `env:"ROLE_ID"`
	// SecretID is the AppRole secret id.
	SecretID Secret `env:"SECRET_ID"`
	// AppRoleMount is where the AppRole auth method is mounted.
	AppRoleMount string `env:"APPROLE_MOUNT" default:"approle"`
	// KubernetesRole logs in with the Kubernetes auth method as this role.
	KubernetesRole string `env:"KUBERNETES_ROLE"`
	// KubernetesMount is where the Kubernetes auth method is mounted.
	KubernetesMount string `env:"KUBERNETES_MOUNT" default:"kubernetes"`
	// KubernetesTokenPath is the service-account token file; empty means the standard projected path.
	KubernetesTokenPath string `env:"KUBERNETES_TOKEN_PATH"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `env:"NAMESPACE"`
}

// ErrNoVaultCredentials reports a VaultConfig with neither a token nor AppRole.
var ErrNoVaultCredentials = errors.New("vault: set a Kubernetes role, an AppRole role id and secret id, or a token")

// NewVault returns a logged-in Vault client. With Kubernetes auth or AppRole it
// keeps the token alive until ctx is done: it renews the token while it can and
// logs in again when it no longer can, so a long-running service never holds a
// dead token.
func NewVault(ctx context.Context, cfg VaultConfig, log *slog.Logger) (*vault.Client, error) {
	vc := vault.DefaultConfig()
	vc.Address = cfg.Addr
	vc.Timeout = 10 * time.Second
	c, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	switch {
	case cfg.KubernetesRole != "" || (cfg.RoleID != "" && cfg.SecretID != ""):
		secret, err := vaultLogin(ctx, c, cfg)
		if err != nil {
			return nil, err
		}
		go keepVaultLogin(ctx, c, cfg, secret, log)
	case cfg.Token != "":
		c.SetToken(cfg.Token.Reveal())
		if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			return nil, fmt.Errorf("vault token lookup at %s: %w", cfg.Addr, err)
		}
	default:
		return nil, ErrNoVaultCredentials
	}
	return c, nil
}

func vaultLogin(ctx context.Context, c *vault.Client, cfg VaultConfig) (*vault.Secret, error) {
	var (
		method vault.AuthMethod
		name   string
		err    error
	)
	if cfg.KubernetesRole != "" {
		name = "kubernetes"
		opts := []kubernetes.LoginOption{kubernetes.WithMountPath(cfg.KubernetesMount)}
		if cfg.KubernetesTokenPath != "" {
			opts = append(opts, kubernetes.WithServiceAccountTokenPath(cfg.KubernetesTokenPath))
		}
		method, err = kubernetes.NewKubernetesAuth(cfg.KubernetesRole, opts...)
	} else {
		name = "approle"
		method, err = approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{FromString: cfg.SecretID.Reveal()}, approle.WithMountPath(cfg.AppRoleMount))
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", name, err)
	}
	secret, err := c.Auth().Login(ctx, method)
	if err != nil {
		return nil, fmt.Errorf("vault %s login: %w", name, err)
	}
	if secret == nil || secret.Auth == nil {
		return nil, fmt.Errorf("vault %s login: no auth info returned", name)
	}
	return secret, nil
}

func keepVaultLogin(ctx context.Context, c *vault.Client, cfg VaultConfig, secret *vault.Secret, log *slog.Logger) {
	for ctx.Err() == nil {
		w, err := c.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			log.Error("vault token watcher", "error", err.Error())
			return
		}
		go w.Start()
		if !watchLease(ctx, w, log) {
			w.Stop()
			return
		}
		w.Stop()
		for ctx.Err() == nil {
			secret, err = vaultLogin(ctx, c, cfg)
			if err == nil {
				break
			}
			log.Error("vault login failed; retrying", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// watchLease follows renewals until the lease can no longer be renewed (true)
// or ctx is done (false).
func watchLease(ctx context.Context, w *vault.LifetimeWatcher, log *slog.Logger) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case err := <-w.DoneCh():
			if err != nil {
				log.Warn("vault token renewal ended; logging in again", "error", err.Error())
			}
			return true
		case <-w.RenewCh():
		}
	}
}
