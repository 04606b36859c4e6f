package server_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1/auditv1connect"
	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"github.com/bulwarkhq/bulwark/services/audit/evidence"
	"github.com/bulwarkhq/bulwark/services/audit/internal/audittest"
	"github.com/bulwarkhq/bulwark/services/audit/internal/merklelog"
	"github.com/bulwarkhq/bulwark/services/audit/internal/server"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// clients serves the handler on a real HTTP/2 server and returns a Connect client and a
// gRPC client for it.
func clients(t *testing.T) (*audittest.Env, map[string]auditv1connect.AuditServiceClient) {
	t.Helper()
	e := audittest.New(t)
	l := e.Open(t)
	audittest.Run(t, l)
	impl, err := server.New(server.Params{Log: l})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(auditv1connect.NewAuditServiceHandler(impl))
	url := platformtest.Serve(t, mux)
	hc := platform.HTTPClient()
	for i := range 12 {
		d := auditv1.Decision_DECISION_ALLOWED
		if i%4 == 0 {
			d = auditv1.Decision_DECISION_DENIED_RATE_LIMIT
		}
		e.Publish(t, evidence.SubjectLLMCall, audittest.LLMCall(i, "alice", "claude-sonnet", d))
	}
	audittest.WaitCheckpointed(t, e, l)
	return e, map[string]auditv1connect.AuditServiceClient{
		"connect": auditv1connect.NewAuditServiceClient(hc, url),
		"grpc":    auditv1connect.NewAuditServiceClient(hc, url, connect.WithGRPC()),
	}
}

func TestHandler_ServesRecordsProofsAndCheckpointsOverConnectAndGRPC(t *testing.T) {
	_, cs := clients(t)
	ctx := context.Background()
	for name, c := range cs {
		t.Run(name, func(t *testing.T) {
			pk, err := c.GetPublicKey(ctx, connect.NewRequest(&auditv1.GetPublicKeyRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			v, err := note.NewVerifier(pk.Msg.GetVerifierKey())
			if err != nil || pk.Msg.GetPublicKeyPem() == "" {
				t.Fatalf("public key: %v", err)
			}
			cp, err := c.GetCheckpoint(ctx, connect.NewRequest(&auditv1.GetCheckpointRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			opened, err := checkpoint.Open([]byte(cp.Msg.GetCheckpoint().GetSignedNote()), v, audittest.Origin)
			if err != nil || opened.Size != 12 || !bytes.Equal(opened.Root, cp.Msg.GetCheckpoint().GetRootHash()) {
				t.Fatalf("checkpoint: %v", err)
			}
			rec, err := c.GetRecord(ctx, connect.NewRequest(&auditv1.GetRecordRequest{Index: 5}))
			if err != nil {
				t.Fatal(err)
			}
			r := rec.Msg.GetRecord()
			if r.GetEvent().GetLlmCall().GetRequestId() != "req-5" {
				t.Fatalf("record 5 is %v", r.GetEvent())
			}
			if err := proof.VerifyInclusion(merklelog.Hasher, 5, opened.Size, merklelog.LeafHash(r.GetData()), rec.Msg.GetInclusionProof(), opened.Root); err != nil {
				t.Fatal(err)
			}
			byID, err := c.GetRecord(ctx, connect.NewRequest(&auditv1.GetRecordRequest{EventId: r.GetEvent().GetEventId()}))
			if err != nil || byID.Msg.GetRecord().GetIndex() != 5 {
				t.Fatalf("by event id: %v", err)
			}
			q, err := c.Query(ctx, connect.NewRequest(&auditv1.QueryRequest{Decision: auditv1.Decision_DECISION_DENIED_RATE_LIMIT, PageSize: 2}))
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Msg.GetRecords()) != 2 || q.Msg.GetNextPageToken() == "" {
				t.Fatalf("first page: %d records", len(q.Msg.GetRecords()))
			}
			q2, err := c.Query(ctx, connect.NewRequest(&auditv1.QueryRequest{Decision: auditv1.Decision_DECISION_DENIED_RATE_LIMIT, PageSize: 2, PageToken: q.Msg.GetNextPageToken()}))
			if err != nil || len(q2.Msg.GetRecords()) != 1 || q2.Msg.GetRecords()[0].GetIndex() != 8 || q2.Msg.GetNextPageToken() != "" {
				t.Fatalf("second page: %v", err)
			}
			first, err := c.GetCheckpoint(ctx, connect.NewRequest(&auditv1.GetCheckpointRequest{MinTreeSize: 1}))
			if err != nil {
				t.Fatal(err)
			}
			fc := first.Msg.GetCheckpoint()
			cons, err := c.GetConsistencyProof(ctx, connect.NewRequest(&auditv1.GetConsistencyProofRequest{FromSize: fc.GetTreeSize(), ToSize: opened.Size}))
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(merklelog.Hasher, fc.GetTreeSize(), opened.Size, cons.Msg.GetProof(), fc.GetRootHash(), opened.Root); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHandler_ExportEvidenceStreamsAVerifiableBundle(t *testing.T) {
	e, cs := clients(t)
	for name, c := range cs {
		t.Run(name, func(t *testing.T) {
			st, err := c.ExportEvidence(context.Background(), connect.NewRequest(&auditv1.ExportEvidenceRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			var done, total uint64
			for st.Receive() {
				buf.Write(st.Msg().GetChunk())
				done, total = st.Msg().GetRecordsDone(), st.Msg().GetRecordsTotal()
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if done != 12 || total != 12 {
				t.Fatalf("progress %d/%d", done, total)
			}
			s, err := evidence.VerifyWith(&buf, evidence.Options{TrustedKey: e.VKey})
			if err != nil || s.Records != 12 {
				t.Fatalf("bundle: %v %v", err, s.Problems)
			}
		})
	}
}

func TestHandler_MapsErrorsToCodes(t *testing.T) {
	_, cs := clients(t)
	ctx := context.Background()
	for name, c := range cs {
		t.Run(name, func(t *testing.T) {
			_, err := c.GetRecord(ctx, connect.NewRequest(&auditv1.GetRecordRequest{Index: 1 << 40}))
			assertCode(t, err, connect.CodeNotFound)
			_, err = c.GetRecord(ctx, connect.NewRequest(&auditv1.GetRecordRequest{EventId: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}))
			assertCode(t, err, connect.CodeNotFound)
			_, err = c.Query(ctx, connect.NewRequest(&auditv1.QueryRequest{PageToken: "garbage!"}))
			assertCode(t, err, connect.CodeInvalidArgument)
			_, err = c.Query(ctx, connect.NewRequest(&auditv1.QueryRequest{PageSize: 5000}))
			assertCode(t, err, connect.CodeInvalidArgument)
			_, err = c.GetConsistencyProof(ctx, connect.NewRequest(&auditv1.GetConsistencyProofRequest{FromSize: 5, ToSize: 2}))
			assertCode(t, err, connect.CodeInvalidArgument)
			_, err = c.GetCheckpoint(ctx, connect.NewRequest(&auditv1.GetCheckpointRequest{MinTreeSize: 1 << 40}))
			assertCode(t, err, connect.CodeFailedPrecondition)
		})
	}
}

func assertCode(t *testing.T, err error, want connect.Code) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != want {
		t.Fatalf("error %v, want code %v", err, want)
	}
}
