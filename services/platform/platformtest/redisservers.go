package platformtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform"
)

// RedisServer is a redis-server process of the test's own.
type RedisServer struct {
	// Addr is its host:port.
	Addr string
	// Cmd is the process; a test may kill it to see Redis disappear.
	Cmd *exec.Cmd
}

// StartRedisServer starts a private redis-server (from PATH) on a free
// loopback port with no persistence, with extra arguments as redis-server
// command-line options, waits until it answers and stops it when the test
// ends. A missing redis-server fails the test.
func StartRedisServer(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	return startRedis(t, append([]string{"--save", "", "--appendonly", "no"}, extra...))
}

// StartRedisSentinel starts a private Redis Sentinel (redis-server in sentinel
// mode, from PATH) that monitors nothing yet; see StartRedisServer.
func StartRedisSentinel(t testing.TB) *RedisServer {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return startRedis(t, []string{conf, "--sentinel"})
}

func startRedis(t testing.TB, args []string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test needs redis-server on PATH (make deps): %v", err)
	}
	port := FreePort(t)
	args = append(args, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir())
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), Cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	WaitFor(t, 10*time.Second, "redis-server at "+s.Addr+" to answer", func(ctx context.Context) error {
		return c.Ping(ctx).Err()
	})
	return s
}

// WaitFor polls ok, with a second to answer each time, until it returns nil,
// and fails the test with ok's last error after limit (a loaded machine
// starts processes slowly).
func WaitFor(t testing.TB, limit time.Duration, what string, ok func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ok(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %v", limit, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Until polls cond until it holds, and fails the test naming what it waited
// for after limit.
func Until(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, limit, what, func(context.Context) error {
		if !cond() {
			return errNotYet
		}
		return nil
	})
}

var errNotYet = errors.New("the condition did not hold")

// RedisCluster starts a real Redis Cluster of three primaries, each serving a
// third of the hash slots, and returns a client for it made by
// platform.NewRedis with a key prefix unique to the test. The servers stop
// when the test ends.
func RedisCluster(t testing.TB) (*redis.ClusterClient, string) {
	t.Helper()
	const nodes = 3
	servers := make([]*RedisServer, nodes)
	buses := make([]int, nodes)
	for i := range servers {
		buses[i] = FreePort(t)
		servers[i] = StartRedisServer(t, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(buses[i]),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	per := 16384 / nodes
	for i, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		last := (i+1)*per - 1
		if i == nodes-1 {
			last = 16383
		}
		err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", i*per, last).Err()
		if err == nil && i > 0 {
			host, port, _ := strings.Cut(s.Addr, ":")
			first := redis.NewClient(&redis.Options{Addr: servers[0].Addr})
			err = first.Do(ctx, "CLUSTER", "MEET", host, port, buses[i]).Err()
			_ = first.Close()
		}
		_ = c.Close()
		if err != nil {
			t.Fatalf("form the cluster: %v", err)
		}
	}
	for _, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		WaitFor(t, 20*time.Second, "the cluster to form", func(ctx context.Context) error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", nodes)) {
				return fmt.Errorf("not ready: %s", strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
			}
			return nil
		})
		_ = c.Close()
	}
	addrs := make([]string, nodes)
	for i, s := range servers {
		addrs[i] = s.Addr
	}
	u, err := platform.NewRedis(ctx, platform.RedisConfig{Addr: strings.Join(addrs, ","), Cluster: true,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("connect to the cluster: %v", err)
	}
	c := u.(*redis.ClusterClient)
	t.Cleanup(func() { _ = c.Close() })
	return c, fmt.Sprintf("test:%s:%s:", unsafeChars.ReplaceAllString(t.Name(), "_"), RandomID(4))
}
