package platform_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
)

func TestRedis_RoundTripUnderTestPrefix(t *testing.T) {
	c, prefix := platformtest.Redis(t)
	ctx := context.Background()
	if err := c.Set(ctx, prefix+"k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, prefix+"k").Result(); err != nil || got != "v" {
		t.Fatalf("get = %q, %v", got, err)
	}
}

func TestNATS_JetStreamPublishIsDeduplicatedByMsgID(t *testing.T) {
	srv := platformtest.NATSServer(t)
	ctx := context.Background()
	nc, js, err := platform.ConnectNATS(ctx, platform.NATSConfig{URL: srv.ClientURL(), ConnectTimeout: time.Second}, platform.NewLogger("json", "error"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := js.Publish(ctx, "t.x", []byte("hello"), jetstream.WithMsgID("event-1")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestVault_TokenAndAppRoleLoginReadKV(t *testing.T) {
	vs := platformtest.Vault(t)
	ctx := context.Background()
	if _, err := vs.Client.KVv2("secret").Put(ctx, "bulwark/dev/providers/openai", map[string]any{"api_key": "sk-test"}); err != nil {
		t.Fatal(err)
	}
	if err := vs.Client.Sys().PutPolicy("router", `path "secret/data/bulwark/dev/providers/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Client.Logical().Write("auth/approle/role/router", map[string]any{"token_policies": "router", "token_ttl": "2s", "token_max_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	roleID, err := vs.Client.Logical().Read("auth/approle/role/router/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID, err := vs.Client.Logical().Write("auth/approle/role/router/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := platform.NewVault(ctx, platform.VaultConfig{
		Addr: vs.Addr, RoleID: roleID.Data["role_id"].(string), SecretID: platform.Secret(secretID.Data["secret_id"].(string)), AppRoleMount: "approle",
	}, platform.NewLogger("json", "error"))
	if err != nil {
		t.Fatal(err)
	}
	// The token lives 2s; reading after 3s proves renewal or re-login kept it alive.
	time.Sleep(3 * time.Second)
	s, err := c.KVv2("secret").Get(ctx, "bulwark/dev/providers/openai")
	if err != nil {
		t.Fatal(err)
	}
	if s.Data["api_key"] != "sk-test" {
		t.Fatalf("read %v", s.Data)
	}
	if _, err := c.KVv2("secret").Get(ctx, "bulwark/prod/providers/openai"); err == nil {
		t.Fatal("the router role read outside its policy")
	}
	tc, err := platform.NewVault(ctx, platform.VaultConfig{Addr: vs.Addr, Token: platform.Secret(vs.Token)}, platform.NewLogger("json", "error"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Sys().ListMounts(); err != nil {
		t.Fatal(err)
	}
	_ = vault.DefaultConfig
}

func TestNewVault_RejectsMissingCredentials(t *testing.T) {
	_, err := platform.NewVault(context.Background(), platform.VaultConfig{Addr: "http://127.0.0.1:1"}, platform.NewLogger("json", "error"))
	if err != platform.ErrNoVaultCredentials {
		t.Fatalf("err = %v", err)
	}
}

func TestDeleteKeys_RemovesOnlyThePrefix(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	ctx := context.Background()
	for i := range 2500 {
		rdb.Set(ctx, fmt.Sprintf("%srun:%d", prefix, i), 1, time.Minute)
	}
	rdb.Set(ctx, prefix+"keep", 1, time.Minute)
	n, err := platform.DeleteKeys(ctx, rdb, prefix+"run:")
	if err != nil || n != 2500 {
		t.Fatalf("deleted %d keys (%v); want 2500", n, err)
	}
	if left, _ := rdb.Exists(ctx, prefix+"run:7", prefix+"keep").Result(); left != 1 {
		t.Fatalf("%d of the run's key and the other key left; want only the other", left)
	}
	if _, err := platform.DeleteKeys(ctx, rdb, ""); err == nil {
		t.Fatal("an empty prefix (every key) was accepted")
	}
}

func TestRedisClient_RefusesContradictoryConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  platform.RedisConfig
		want string
	}{
		{"no address", platform.RedisConfig{Addr: " , "}, "no address"},
		{"several addresses of nothing", platform.RedisConfig{Addr: "a:1,b:2"}, "set CLUSTER=true"},
		{"cluster and sentinel", platform.RedisConfig{Addr: "a:1", Cluster: true, MasterName: "m"}, "exclude each other"},
		{"cluster database", platform.RedisConfig{Addr: "a:1", Cluster: true, DB: 3}, "only database 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := platform.RedisClient(tc.cfg)
			if !errors.Is(err, platform.ErrRedisConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrRedisConfig mentioning %q", err, tc.want)
			}
		})
	}
	// The password is a setting, never part of an error.
	_, err := platform.NewRedis(context.Background(), platform.RedisConfig{Addr: "127.0.0.1:1", Password: platform.Secret("hunter2-secret"),
		DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond})
	if err == nil || strings.Contains(err.Error(), "hunter2-secret") {
		t.Fatalf("unreachable redis: %v", err)
	}
}

func TestRedisCluster_ConnectsToEveryPrimaryAndDeletesKeysOnAllOfThem(t *testing.T) {
	c, prefix := platformtest.RedisCluster(t)
	ctx := context.Background()
	for i := range 300 {
		if err := c.Set(ctx, fmt.Sprintf("%srun:%d", prefix, i), 1, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Set(ctx, prefix+"keep", 1, time.Minute)
	var holding atomic.Int32
	_ = c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if n, _ := node.DBSize(ctx).Result(); n > 0 {
			holding.Add(1)
		}
		return nil
	})
	if holding.Load() != 3 {
		t.Fatalf("%d of 3 primaries hold keys; the keys should spread over the slots", holding.Load())
	}
	n, err := platform.DeleteKeys(ctx, c, prefix+"run:")
	if err != nil || n != 300 {
		t.Fatalf("deleted %d keys (%v); want 300 from every primary", n, err)
	}
	if left, _ := c.Exists(ctx, prefix+"keep").Result(); left != 1 {
		t.Fatal("the key outside the prefix was deleted")
	}
}

func TestRedisSentinel_FindsThePrimary(t *testing.T) {
	primary := platformtest.StartRedisServer(t)
	host, port, _ := strings.Cut(primary.Addr, ":")
	sentinel := platformtest.StartRedisSentinel(t)
	ctx := context.Background()
	sc := redis.NewClient(&redis.Options{Addr: sentinel.Addr})
	defer sc.Close()
	if err := sc.Do(ctx, "SENTINEL", "MONITOR", "bulwark", host, port, 1).Err(); err != nil {
		t.Fatalf("sentinel monitor: %v", err)
	}
	c, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: sentinel.Addr, MasterName: "bulwark", DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "sentinel-test", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer direct.Close()
	if got, err := direct.Get(ctx, "sentinel-test").Result(); err != nil || got != "v" {
		t.Fatalf("the write did not reach the primary Sentinel names: %q %v", got, err)
	}
}
