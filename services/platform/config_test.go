package platform

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Addr    string        `env:"ADDR" default:":8080"`
	Key     Secret        `env:"KEY" required:"true"`
	Workers int           `env:"WORKERS" default:"4"`
	Timeout time.Duration `env:"TIMEOUT" default:"2s"`
	Debug   bool          `env:"DEBUG"`
	Envs    []string      `env:"ENVS" default:"dev, prod"`
	Redis   RedisConfig   `env:"REDIS_"`
}

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfig_AppliesDefaultsAndOverrides(t *testing.T) {
	var c testConfig
	err := loadConfig("BULWARK_T_", &c, lookupFrom(map[string]string{
		"BULWARK_T_KEY": "s3cret", "BULWARK_T_WORKERS": "9", "BULWARK_T_REDIS_ADDR": "redis:6380",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.Workers != 9 || c.Timeout != 2*time.Second || c.Key.Reveal() != "s3cret" ||
		len(c.Envs) != 2 || c.Envs[1] != "prod" || c.Redis.Addr != "redis:6380" || c.Redis.DialTimeout != 2*time.Second {
		t.Fatalf("config = %+v", c)
	}
}

func TestLoadConfig_ReportsEveryProblemWithoutEchoingValues(t *testing.T) {
	var c testConfig
	err := loadConfig("P_", &c, lookupFrom(map[string]string{"P_WORKERS": "many", "P_TIMEOUT": "hunter2"}))
	if err == nil {
		t.Fatal("want error")
	}
	msg := err.Error()
	for _, want := range []string{"P_KEY is required", "P_WORKERS: not a whole number", "P_TIMEOUT: not a duration"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error echoes a value: %q", msg)
	}
}

func TestConfigValue_MasksSecrets(t *testing.T) {
	c := testConfig{Key: "sk-live-abc", Redis: RedisConfig{Password: "pw-xyz"}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", ConfigValue(c))
	out := buf.String()
	if strings.Contains(out, "sk-live-abc") || strings.Contains(out, "pw-xyz") || !strings.Contains(out, "[redacted]") {
		t.Fatalf("log = %s", out)
	}
}

func TestSecret_NeverFormatsItsValue(t *testing.T) {
	s := Secret("abc")
	for _, got := range []string{s.String(), s.GoString()} {
		if got != "[redacted]" {
			t.Fatalf("got %q", got)
		}
	}
}
