// Package devvault is a development-only stand-in for Vault: it serves the
// small part of Vault's HTTP API that Bulwark uses (KV v2 read/write/metadata
// with check-and-set, transit Ed25519 keys and signing, token lookup-self)
// from a single JSON file, so the all-in-one binary can run where no Vault
// binary exists. It keeps secrets in plain text on disk: never use it for
// anything but a laptop demo. The services talk to it with the real
// github.com/hashicorp/vault/api client, exactly as they talk to Vault.
package devvault

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server serves the Vault API subset from a file.
type Server struct {
	path  string
	token string
	mu    sync.Mutex
	state state
}

type state struct {
	KV      map[string][]kvVersion `json:"kv"`      // "<mount>/<path>" → versions (1-based)
	Transit map[string][]byte      `json:"transit"` // "<mount>/<key>" → ed25519 seed
}

type kvVersion struct {
	Data    map[string]any `json:"data"`
	Created time.Time      `json:"created"`
}

// Open loads (or creates) the state file at path; token is the only token accepted.
func Open(path, token string) (*Server, error) {
	s := &Server{path: path, token: token, state: state{KV: map[string][]kvVersion{}, Transit: map[string][]byte{}}}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s.state); err != nil {
			return nil, fmt.Errorf("devvault: %s is not a dev secret file: %w", path, err)
		}
		if s.state.KV == nil {
			s.state.KV = map[string][]kvVersion{}
		}
		if s.state.Transit == nil {
			s.state.Transit = map[string][]byte{}
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := s.save(); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	return s, nil
}

func (s *Server) save() error {
	b, err := json.MarshalIndent(s.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []string{msg}})
}

// ServeHTTP implements the API subset.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Vault-Token") != s.token {
		fail(w, http.StatusForbidden, "permission denied")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
			fail(w, http.StatusBadRequest, "bad json")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case p == "auth/token/lookup-self":
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"id": "devvault", "policies": []string{"root"}, "ttl": 0}})
	case strings.Contains(p, "/data/"):
		mount, key, _ := strings.Cut(p, "/data/")
		s.kvData(w, r, mount+"/"+key, body)
	case strings.Contains(p, "/metadata/"):
		mount, key, _ := strings.Cut(p, "/metadata/")
		s.kvMetadata(w, mount+"/"+key)
	case strings.Contains(p, "/keys/"):
		mount, key, _ := strings.Cut(p, "/keys/")
		s.transitKey(w, r, mount+"/"+key)
	case strings.Contains(p, "/sign/"):
		mount, key, _ := strings.Cut(p, "/sign/")
		s.transitSign(w, mount+"/"+key, body)
	default:
		fail(w, http.StatusNotFound, "no handler for route")
	}
}

func versionMeta(v int, k kvVersion) map[string]any {
	return map[string]any{"version": v, "created_time": k.Created.Format(time.RFC3339Nano), "deletion_time": "", "destroyed": false}
}

func (s *Server) kvData(w http.ResponseWriter, r *http.Request, key string, body map[string]any) {
	versions := s.state.KV[key]
	switch r.Method {
	case http.MethodGet:
		if len(versions) == 0 {
			fail(w, http.StatusNotFound, "")
			return
		}
		v := len(versions)
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"data": versions[v-1].Data, "metadata": versionMeta(v, versions[v-1])}})
	case http.MethodPost, http.MethodPut:
		if opts, ok := body["options"].(map[string]any); ok {
			if cas, ok := opts["cas"].(float64); ok && int(cas) != len(versions) {
				fail(w, http.StatusBadRequest, "check-and-set parameter did not match the current version")
				return
			}
		}
		data, _ := body["data"].(map[string]any)
		kv := kvVersion{Data: data, Created: time.Now().UTC()}
		s.state.KV[key] = append(versions, kv)
		if err := s.save(); err != nil {
			fail(w, http.StatusInternalServerError, "persist failed")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": versionMeta(len(versions)+1, kv)})
	default:
		fail(w, http.StatusMethodNotAllowed, "unsupported")
	}
}

func (s *Server) kvMetadata(w http.ResponseWriter, key string) {
	versions := s.state.KV[key]
	if len(versions) == 0 {
		fail(w, http.StatusNotFound, "")
		return
	}
	vs := map[string]any{}
	for i, v := range versions {
		vs[strconv.Itoa(i+1)] = versionMeta(i+1, v)
	}
	last := versions[len(versions)-1].Created.Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"current_version": len(versions), "oldest_version": 1, "versions": vs,
		"created_time": versions[0].Created.Format(time.RFC3339Nano), "updated_time": last, "max_versions": 0,
		"cas_required": false, "delete_version_after": "0s", "custom_metadata": nil,
	}})
}

func (s *Server) transitKey(w http.ResponseWriter, r *http.Request, key string) {
	seed, ok := s.state.Transit[key]
	switch r.Method {
	case http.MethodGet:
		if !ok {
			fail(w, http.StatusNotFound, "")
			return
		}
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
			"type": "ed25519", "latest_version": 1, "min_decryption_version": 1, "exportable": false,
			"keys": map[string]any{"1": map[string]any{"public_key": base64.StdEncoding.EncodeToString(pub), "name": "ed25519"}},
		}})
	case http.MethodPost, http.MethodPut:
		if !ok {
			seed = make([]byte, ed25519.SeedSize)
			if _, err := rand.Read(seed); err != nil {
				fail(w, http.StatusInternalServerError, "randomness")
				return
			}
			s.state.Transit[key] = seed
			if err := s.save(); err != nil {
				fail(w, http.StatusInternalServerError, "persist failed")
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusMethodNotAllowed, "unsupported")
	}
}

func (s *Server) transitSign(w http.ResponseWriter, key string, body map[string]any) {
	seed, ok := s.state.Transit[key]
	if !ok {
		fail(w, http.StatusBadRequest, "signing key not found")
		return
	}
	in, _ := body["input"].(string)
	msg, err := base64.StdEncoding.DecodeString(in)
	if err != nil {
		fail(w, http.StatusBadRequest, "input is not base64")
		return
	}
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg)
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"signature": "vault:v1:" + base64.StdEncoding.EncodeToString(sig), "key_version": 1}})
}
