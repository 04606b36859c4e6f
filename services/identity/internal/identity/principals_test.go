package identity_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/services/identity/internal/identity"
)

func TestPrincipals_TeamsRolesAndEnvironmentsAreValidated(t *testing.T) {
	e := newEnv(t)
	team := e.principal(identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM, nil)
	cases := map[string]*identityv1.Principal{
		"unknown role":        {Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, Roles: []string{"wizard"}},
		"unknown environment": {Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, Environments: []string{"moon"}},
		"team is not a team":  {Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, TeamId: "usr_nobody"},
		"no kind":             {DisplayName: "x"},
		"bad id":              {Id: "has space", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE},
	}
	for name, p := range cases {
		if _, err := e.svc.CreatePrincipal(e.ctx, root, p); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	member, err := e.svc.CreatePrincipal(e.ctx, root, &identityv1.Principal{Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE, TeamId: team.Id})
	if err != nil || member.TeamId != team.Id {
		t.Fatalf("member = %v %v", member, err)
	}
	if _, err := e.svc.CreatePrincipal(e.ctx, root, proto.CloneOf(member)); !errors.Is(err, identity.ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	got, _, err := e.svc.ListPrincipals(e.ctx, 0, team.Id, 0, "")
	if err != nil || len(got) != 1 || got[0].Id != member.Id {
		t.Fatalf("team members = %v %v", got, err)
	}
}

func TestPrincipals_ListPagesInIDOrder(t *testing.T) {
	e := newEnv(t)
	for range 5 {
		e.person("viewer")
	}
	var all []string
	token := ""
	for {
		page, next, err := e.svc.ListPrincipals(e.ctx, identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON, "", 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			all = append(all, p.Id)
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(all) != 5 {
		t.Fatalf("listed %d principals over pages, want 5", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("not in id order: %v", all)
		}
	}
}

func TestPrincipals_ChangesAnnouncePolicyChanged(t *testing.T) {
	e := newEnv(t)
	sub, err := e.nc.SubscribeSync("bulwark.identity.v1.policy_changed")
	if err != nil {
		t.Fatal(err)
	}
	p := e.person("developer")
	meta, _ := e.key(p, "dev", 0)
	if _, err := e.svc.RevokeApiKey(e.ctx, root, meta.Id, "rotation drill"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for len(seen) < 2 {
		msg, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatalf("events seen %v: %v", seen, err)
		}
		ev := &identityv1.PolicyChangedEvent{}
		if err := proto.Unmarshal(msg.Data, ev); err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get("Nats-Msg-Id") != ev.EventId {
			t.Fatalf("Nats-Msg-Id %q != event id %q", msg.Header.Get("Nats-Msg-Id"), ev.EventId)
		}
		seen[ev.Kind] = ev.Id
	}
	if seen["principal"] != p.Id || seen["api_key"] != meta.Id {
		t.Fatalf("events = %v", seen)
	}
}

func TestPrincipals_ConcurrentUpdatesFromTwoReplicasAllLand(t *testing.T) {
	e := newEnv(t)
	other := e.replica()
	p := e.person("viewer")
	errs := make(chan error, 8)
	for i := range 8 {
		svc := e.svc
		if i%2 == 1 {
			svc = other
		}
		go func() {
			_, err := svc.UpdatePrincipal(e.ctx, root, &identityv1.Principal{Id: p.Id, DisplayName: "n"}, []string{"display_name"})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent update: %v", err)
		}
	}
	hist, err := e.store.History(e.ctx, "principal."+p.Id)
	if err != nil || len(hist) != 9 {
		t.Fatalf("%d versions, want 9 (create + 8 updates): %v", len(hist), err)
	}
}
