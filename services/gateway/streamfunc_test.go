package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/services/gateway"
)

func TestStreamerFromFunc_DeliversInOrderAndReportsTheEnd(t *testing.T) {
	errBroke := connect.NewError(connect.CodeUnavailable, errors.New("provider went away"))
	for _, tc := range []struct {
		name string
		end  error
	}{{"clean end", nil}, {"broken off", errBroke}} {
		t.Run(tc.name, func(t *testing.T) {
			st := gateway.StreamerFromFunc(func(_ context.Context, _ *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error {
				// Like the router: one message and one buffer, reused for every event.
				msg, buf := &routerv1.StreamCompleteResponse{}, make([]byte, 0, 64)
				for i := range 50 {
					buf = fmt.Appendf(buf[:0], "event %d", i)
					msg.Data = buf
					if err := send(msg); err != nil {
						return err
					}
				}
				return tc.end
			})
			s, err := st.StreamComplete(context.Background(), &routerv1.StreamCompleteRequest{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for s.Receive() {
				if got, want := string(s.Msg().GetData()), fmt.Sprintf("event %d", n); got != want {
					t.Fatalf("message %d = %q, want %q", n, got, want)
				}
				if s.Err() != nil {
					t.Fatal("Err before the end of the stream")
				}
				n++
			}
			if n != 50 || !errors.Is(s.Err(), tc.end) {
				t.Fatalf("%d messages, Err %v; want 50 and %v", n, s.Err(), tc.end)
			}
			_ = s.Close()
		})
	}
}

func TestStreamerFromFunc_CloseStopsTheProducer(t *testing.T) {
	stopped := make(chan error, 1)
	st := gateway.StreamerFromFunc(func(ctx context.Context, _ *routerv1.StreamCompleteRequest, send func(*routerv1.StreamCompleteResponse) error) error {
		for {
			if err := send(&routerv1.StreamCompleteResponse{Data: []byte("x")}); err != nil {
				stopped <- err
				return err
			}
		}
	})
	s, err := st.StreamComplete(context.Background(), &routerv1.StreamCompleteRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatal("no first message")
	}
	_ = s.Close() // the client went away mid-stream
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("producer stopped with %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("producer still running after Close")
	}
}

func TestStreamerFromFunc_PanicIsAnInternalError(t *testing.T) {
	st := gateway.StreamerFromFunc(func(context.Context, *routerv1.StreamCompleteRequest, func(*routerv1.StreamCompleteResponse) error) error {
		panic("boom")
	})
	s, err := st.StreamComplete(context.Background(), &routerv1.StreamCompleteRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Receive() {
		t.Fatal("a message from a producer that panicked")
	}
	if connect.CodeOf(s.Err()) != connect.CodeInternal {
		t.Fatalf("Err = %v; want an internal error", s.Err())
	}
	_ = s.Close()
}
