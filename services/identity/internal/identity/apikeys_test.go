package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

func TestApiKey_AuthenticatesOnlyInItsEnvironment(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	meta, secret := e.key(app, "prod", 0)
	if !strings.HasPrefix(secret, "bk_prod_"+meta.Id+"_") || !strings.HasPrefix(meta.Prefix, "bk_prod_") {
		t.Fatalf("key %q / prefix %q do not say the environment", meta.Id, meta.Prefix)
	}
	res, err := e.svc.Authenticate(e.ctx, secret, "prod")
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	if res.Principal.Id != app.Id || res.ApiKeyId != meta.Id || res.Environment != "prod" || res.Method != identityv1.AuthMethod_AUTH_METHOD_API_KEY {
		t.Fatalf("response = %v", res)
	}
	if _, err := e.svc.Authenticate(e.ctx, secret, "dev"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("prod key in dev: %v", err)
	}
	// Rewriting the environment in the key string breaks the keyed hash too.
	forged := strings.Replace(secret, "bk_prod_", "bk_dev_", 1)
	if _, err := e.svc.Authenticate(e.ctx, forged, ""); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("forged env: %v", err)
	}
}

func TestApiKey_SecretIsStoredOnlyAsKeyedHash(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	meta, secret := e.key(app, "dev", 0)
	entry, err := e.store.Get(e.ctx, "apikey."+meta.Id)
	if err != nil {
		t.Fatal(err)
	}
	tail := secret[strings.LastIndex(secret, "_")+1:]
	if strings.Contains(string(entry.Value), tail) {
		t.Fatal("stored record contains the secret")
	}
	if !strings.Contains(string(entry.Value), `"hmac"`) {
		t.Fatal("stored record has no hmac")
	}
	keys, _, err := e.svc.ListApiKeys(e.ctx, app.Id, "", false, 0, "")
	if err != nil || len(keys) != 1 || keys[0].Id != meta.Id {
		t.Fatalf("list = %v, %v", keys, err)
	}
}

func TestApiKey_WrongSecretUnknownIDAndGarbageAreRefusedAlike(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	_, secret := e.key(app, "dev", 0)
	wrong := secret[:len(secret)-4] + "aaaa"
	if wrong == secret {
		wrong = secret[:len(secret)-4] + "bbbb"
	}
	for _, cred := range []string{wrong, identity.GenerateKey("dev"), "bk_dev_x", "bk_", "nonsense", "a.b.c"} {
		_, err := e.svc.Authenticate(e.ctx, cred, "")
		if !errors.Is(err, identity.ErrUnauthenticated) {
			t.Errorf("credential %q: err = %v", cred, err)
		}
	}
}

func TestApiKey_ExpiresRevokesAndFollowsItsOwner(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	_, expiring := e.key(app, "dev", time.Hour)
	e.clock.Advance(59 * time.Minute)
	if _, err := e.svc.Authenticate(e.ctx, expiring, "dev"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.svc.Authenticate(e.ctx, expiring, "dev"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("at expiry: %v", err)
	}

	meta, revoked := e.key(app, "dev", 0)
	if _, err := e.svc.RevokeApiKey(e.ctx, root, meta.Id, "leaked"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(e.ctx, revoked, "dev"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("revoked: %v", err)
	}
	if got := e.actionsNamed("identity.apikey.revoke"); len(got) != 1 || got[0].Reason != "leaked" || got[0].BeforeHash == got[0].AfterHash {
		t.Fatalf("revoke audit = %v", got)
	}

	_, live := e.key(app, "dev", 0)
	if _, err := e.svc.DisablePrincipal(e.ctx, root, app.Id, "offboarded"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(e.ctx, live, "dev"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("disabled owner: %v", err)
	}
}

func TestApiKey_RotationKeepsOldKeyForGracePeriod(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	meta, oldSecret := e.key(app, "staging", 0)
	old, successor, newSecret, err := e.svc.RotateApiKey(e.ctx, root, meta.Id, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if old.RotatedTo != successor.Id || successor.Environment != "staging" {
		t.Fatalf("old=%v new=%v", old, successor)
	}
	for _, s := range []string{oldSecret, newSecret} {
		if _, err := e.svc.Authenticate(e.ctx, s, "staging"); err != nil {
			t.Fatalf("within grace: %v", err)
		}
	}
	e.clock.Advance(10 * time.Minute)
	if _, err := e.svc.Authenticate(e.ctx, oldSecret, "staging"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("old key after grace: %v", err)
	}
	if _, err := e.svc.Authenticate(e.ctx, newSecret, "staging"); err != nil {
		t.Fatalf("new key after grace: %v", err)
	}
	if _, _, _, err := e.svc.RotateApiKey(e.ctx, root, meta.Id, 0); !errors.Is(err, identity.ErrFailedPrecondition) {
		t.Fatalf("rotating twice: %v", err)
	}
}

func TestApiKey_LastUseIsWrittenAtMostOncePerInterval(t *testing.T) {
	e := newEnv(t)
	app := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"})
	meta, secret := e.key(app, "dev", 0)
	for range 5 {
		if _, err := e.svc.Authenticate(e.ctx, secret, "dev"); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := e.store.History(e.ctx, "apikey."+meta.Id)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 { // created, then one last-use write
		t.Fatalf("%d versions after 5 uses within a minute, want 2", len(hist))
	}
	e.clock.Advance(61 * time.Second)
	if _, err := e.svc.Authenticate(e.ctx, secret, "dev"); err != nil {
		t.Fatal(err)
	}
	hist, _ = e.store.History(e.ctx, "apikey."+meta.Id)
	if len(hist) != 3 {
		t.Fatalf("%d versions after a use a minute later, want 3", len(hist))
	}
	keys, _, _ := e.svc.ListApiKeys(e.ctx, app.Id, "dev", false, 0, "")
	if !keys[0].LastUseTime.AsTime().Equal(e.clock.Now()) {
		t.Fatalf("last use = %v, want %v", keys[0].LastUseTime.AsTime(), e.clock.Now())
	}
}

func TestApiKey_CannotBeIssuedOutsideTheOwnersEnvironments(t *testing.T) {
	e := newEnv(t)
	devOnly := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, []string{"app"}, "dev")
	if _, _, err := e.svc.CreateApiKey(e.ctx, root, devOnly.Id, "prod", "x", nil, 0); !errors.Is(err, identity.ErrFailedPrecondition) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := e.svc.CreateApiKey(e.ctx, root, devOnly.Id, "moon", "x", nil, 0); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

func TestBootstrap_CreatesAdminOnceAndAcceptsSuppliedKey(t *testing.T) {
	e := newEnv(t)
	supplied := identity.GenerateKey("dev")
	res, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{Key: supplied})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Secret != "" || res.Principal.Roles[0] != "admin" {
		t.Fatalf("result = %+v", res)
	}
	auth, err := e.svc.Authenticate(e.ctx, supplied, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if auth.Method != identityv1.AuthMethod_AUTH_METHOD_BOOTSTRAP || auth.Principal.Id != res.Principal.Id {
		t.Fatalf("auth = %v", auth)
	}
	again, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{Key: supplied})
	if err != nil || again.Created {
		t.Fatalf("second bootstrap: %+v %v", again, err)
	}
	if _, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{Key: "bk_dev_short"}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("malformed key: %v", err)
	}
}

func TestBootstrap_GeneratesKeyShownOnce(t *testing.T) {
	e := newEnv(t)
	res, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{Environment: "prod"})
	if err != nil || res.Secret == "" || !strings.HasPrefix(res.Secret, "bk_prod_") {
		t.Fatalf("result = %+v %v", res, err)
	}
	if _, err := e.svc.Authenticate(e.ctx, res.Secret, "prod"); err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{Environment: "prod"})
	if err != nil || again.Secret != "" || again.Created {
		t.Fatalf("second bootstrap = %+v %v", again, err)
	}
}

func FuzzParseKey_AcceptsOnlyWellFormedKeys(f *testing.F) {
	f.Add(identity.GenerateKey("prod"))
	f.Add("bk_prod__x")
	f.Fuzz(func(t *testing.T, s string) {
		env, id, ok := identity.ParseKey(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(s, "bk_"+env+"_"+id+"_") || len(id) != 26 || strings.Contains(env, "_") {
			t.Fatalf("ParseKey(%q) = %q, %q", s, env, id)
		}
	})
}

func FuzzParseKey_AgreesWithTheKeyGrammar(f *testing.F) {
	f.Add(identity.GenerateKey("prod"))
	f.Add("bk_dev_01jabcdefghjkmnpqrstvwxyz0_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, ok := identity.ParseKey(s)
		if ok != identity.KeyPattern.MatchString(s) {
			t.Fatalf("ParseKey(%q) ok=%v, grammar says %v", s, ok, !ok)
		}
	})
}

func TestBootstrap_SystemPrincipalForAnInternalService(t *testing.T) {
	e := newEnv(t)
	key := identity.GenerateKey("staging")
	res, err := e.svc.Bootstrap(e.ctx, identity.BootstrapParams{PrincipalID: "svc_gateway", Roles: []string{"system"}, Key: key})
	if err != nil || res.Principal.Roles[0] != "system" {
		t.Fatalf("result = %+v %v", res, err)
	}
	d, err := e.svc.Authorize(e.ctx, &identityv1.AuthorizeRequest{PrincipalId: "svc_gateway", Action: "policy.authorize", Resource: &identityv1.Resource{Environment: "staging"}})
	if err != nil || !d.Allowed {
		t.Fatalf("system may not authorize: %v %v", d, err)
	}
	d, _ = e.svc.Authorize(e.ctx, &identityv1.AuthorizeRequest{PrincipalId: "svc_gateway", Action: "identity.principal.create"})
	if d.Allowed {
		t.Fatal("system principal may administer")
	}
}
