// Package admin is a thin client for the identity admin calls the demo and the
// end-to-end tests make: principals, API keys and the policy change workflow.
package admin

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	identityv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/identity/v1/identityv1connect"
)

// Client calls identity as one principal.
type Client struct {
	ID     identityv1connect.IdentityServiceClient
	Change identityv1connect.ChangeServiceClient
	token  string
}

// New returns a client acting with token.
func New(hc connect.HTTPClient, baseURL, token string) *Client {
	return &Client{ID: identityv1connect.NewIdentityServiceClient(hc, baseURL),
		Change: identityv1connect.NewChangeServiceClient(hc, baseURL), token: token}
}

func req[T any](c *Client, m *T) *connect.Request[T] {
	r := connect.NewRequest(m)
	r.Header().Set("Authorization", "Bearer "+c.token)
	return r
}

// Principal creates a principal with roles in team, working in env, and returns
// an API key for it. Ids starting "usr_" are people; others are services.
func (c *Client) Principal(ctx context.Context, id, team, env string, roles ...string) (string, error) {
	kind := identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE
	if strings.HasPrefix(id, "usr_") {
		kind = identityv1.PrincipalKind_PRINCIPAL_KIND_PERSON
	}
	if team != "" {
		if _, err := c.ID.CreatePrincipal(ctx, req(c, &identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
			Id: team, Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_TEAM, DisplayName: team,
		}})); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
			return "", fmt.Errorf("create team %s: %w", team, err)
		}
	}
	if _, err := c.ID.CreatePrincipal(ctx, req(c, &identityv1.CreatePrincipalRequest{Principal: &identityv1.Principal{
		Id: id, Kind: kind, DisplayName: id, TeamId: team, Roles: roles, Environments: []string{env},
	}})); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return "", fmt.Errorf("create principal %s: %w", id, err)
	}
	res, err := c.ID.CreateApiKey(ctx, req(c, &identityv1.CreateApiKeyRequest{PrincipalId: id, Environment: env, Name: id + "-key"}))
	if err != nil {
		return "", fmt.Errorf("create key for %s: %w", id, err)
	}
	return res.Msg.GetSecret(), nil
}

// ProposePolicy proposes a policy document for env and returns the change id.
func (c *Client) ProposePolicy(ctx context.Context, env, doc, why string) (string, error) {
	res, err := c.Change.ProposeChange(ctx, req(c, &identityv1.ProposeChangeRequest{
		Kind: identityv1.ChangeKind_CHANGE_KIND_POLICY_VERSION, Target: env, Content: doc, Description: why}))
	if err != nil {
		return "", fmt.Errorf("propose policy: %w", err)
	}
	return res.Msg.GetChange().GetId(), nil
}

// Approve approves change id (the approver must not be its author).
func (c *Client) Approve(ctx context.Context, id string) error {
	if _, err := c.Change.ApproveChange(ctx, req(c, &identityv1.ApproveChangeRequest{Id: id, Comment: "approved"})); err != nil {
		return fmt.Errorf("approve change: %w", err)
	}
	return nil
}

// Promote applies approved change id to env.
func (c *Client) Promote(ctx context.Context, id, env string) error {
	if _, err := c.Change.PromoteChange(ctx, req(c, &identityv1.PromoteChangeRequest{Id: id, Environment: env})); err != nil {
		return fmt.Errorf("promote change: %w", err)
	}
	return nil
}
