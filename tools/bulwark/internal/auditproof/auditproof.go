// Package auditproof finds the audit records of a request and verifies each
// one the way an auditor would: the checkpoint's signature against the log's
// published verifier key, the leaf hash of the record's exact bytes, and the
// RFC 6962 inclusion proof from that leaf to the checkpoint's root.
package auditproof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
)

// Verified is a record whose inclusion in a signed checkpoint was checked.
type Verified struct {
	Record     *auditv1.Record
	Checkpoint checkpoint.Checkpoint
	ProofLen   int
	// VerifierKey is the log's signed-note verifier key the checkpoint was checked with.
	VerifierKey string
}

// Client reads the audit service.
type Client struct {
	c     auditv1connect.AuditServiceClient
	token string
}

// New returns a client of the audit service at baseURL; token (an admin or
// auditor key) is sent as a bearer credential.
func New(hc connect.HTTPClient, baseURL, token string) *Client {
	return &Client{c: auditv1connect.NewAuditServiceClient(hc, baseURL), token: token}
}

func req[T any](c *Client, m *T) *connect.Request[T] {
	r := connect.NewRequest(m)
	if c.token != "" {
		r.Header().Set("Authorization", "Bearer "+c.token)
	}
	return r
}

// SubjectLLMCall is where the gateway records calls; a refused call can also
// have records on other subjects (ratelimit's limit_exceeded alert).
const SubjectLLMCall = "bulwark.audit.v1.llm_call"

// Records returns the llm_call records of requestID.
func (c *Client) Records(ctx context.Context, requestID string) ([]*auditv1.Record, error) {
	all, err := c.AllRecords(ctx, requestID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, r := range all {
		if r.GetSubject() == SubjectLLMCall {
			out = append(out, r)
		}
	}
	return out, nil
}

// AllRecords returns every audit record that names requestID, on any subject.
func (c *Client) AllRecords(ctx context.Context, requestID string) ([]*auditv1.Record, error) {
	var out []*auditv1.Record
	token := ""
	for {
		res, err := c.c.Query(ctx, req(c, &auditv1.QueryRequest{RequestId: requestID, PageSize: 100, PageToken: token}))
		if err != nil {
			return nil, err
		}
		out = append(out, res.Msg.GetRecords()...)
		token = res.Msg.GetNextPageToken()
		if token == "" {
			return out, nil
		}
	}
}

// WaitRecords polls until requestID has at least want llm_call records, or ctx ends.
// It returns what it found last.
func (c *Client) WaitRecords(ctx context.Context, requestID string, want int) ([]*auditv1.Record, error) {
	for {
		recs, err := c.Records(ctx, requestID)
		if err == nil && len(recs) >= want {
			return recs, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return recs, fmt.Errorf("audit records of %s: have %d, want %d: %w", requestID, len(recs), want, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ErrNotVerified reports a record whose proof does not check out.
var ErrNotVerified = errors.New("audit record not verified")

// Verify fetches the record with its inclusion proof against the latest
// checkpoint (waiting for one that covers it) and checks signature, leaf and proof.
func (c *Client) Verify(ctx context.Context, rec *auditv1.Record) (Verified, error) {
	pk, err := c.c.GetPublicKey(ctx, req(c, &auditv1.GetPublicKeyRequest{}))
	if err != nil {
		return Verified{}, fmt.Errorf("public key: %w", err)
	}
	verifier, err := note.NewVerifier(pk.Msg.GetVerifierKey())
	if err != nil {
		return Verified{}, fmt.Errorf("%w: verifier key: %v", ErrNotVerified, err)
	}
	var res *connect.Response[auditv1.GetRecordResponse]
	for {
		res, err = c.c.GetRecord(ctx, req(c, &auditv1.GetRecordRequest{EventId: rec.GetEvent().GetEventId(), Index: rec.GetIndex()}))
		if err == nil && res.Msg.GetCheckpoint().GetTreeSize() > rec.GetIndex() {
			break
		}
		select {
		case <-ctx.Done():
			return Verified{}, fmt.Errorf("record %d not yet in a checkpoint: %v", rec.GetIndex(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	got := res.Msg.GetRecord()
	cp, err := checkpoint.Open([]byte(res.Msg.GetCheckpoint().GetSignedNote()), verifier, "")
	if err != nil {
		return Verified{}, fmt.Errorf("%w: checkpoint: %v", ErrNotVerified, err)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(got.GetData())
	if !bytes.Equal(leaf, got.GetLeafHash()) {
		return Verified{}, fmt.Errorf("%w: leaf hash does not match the record's bytes", ErrNotVerified)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, got.GetIndex(), cp.Size, leaf, res.Msg.GetInclusionProof(), cp.Root); err != nil {
		return Verified{}, fmt.Errorf("%w: inclusion: %v", ErrNotVerified, err)
	}
	return Verified{Record: got, Checkpoint: cp, ProofLen: len(res.Msg.GetInclusionProof()), VerifierKey: pk.Msg.GetVerifierKey()}, nil
}

// HTTPClient is the default client for Connect calls.
var HTTPClient = http.DefaultClient

// PrincipalCalls returns every llm_call record of principal.
func (c *Client) PrincipalCalls(ctx context.Context, principal string) ([]*auditv1.Record, error) {
	var out []*auditv1.Record
	token := ""
	for {
		res, err := c.c.Query(ctx, req(c, &auditv1.QueryRequest{PrincipalId: principal, Kind: "llm_call", PageSize: 1000, PageToken: token}))
		if err != nil {
			return nil, err
		}
		for _, r := range res.Msg.GetRecords() {
			if r.GetSubject() == SubjectLLMCall {
				out = append(out, r)
			}
		}
		token = res.Msg.GetNextPageToken()
		if token == "" {
			return out, nil
		}
	}
}
