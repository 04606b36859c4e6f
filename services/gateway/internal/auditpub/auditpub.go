// Package auditpub records the gateway's audit events durably: published to
// JetStream with the event id as Nats-Msg-Id and acknowledged, or, when NATS
// cannot take them, appended to a local fsynced spool file and replayed in
// order once it can. An event is never dropped silently: Record returns nil
// only once the event is acknowledged by JetStream or on disk.
package auditpub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"

	"github.com/bulwarkhq/bulwark/services/platform"
)

// Subjects events are published on.
const (
	SubjectLLMCall     = "bulwark.audit.v1.llm_call"
	SubjectAdminAction = "bulwark.audit.v1.admin_action"
)

// Errors.
var (
	// ErrNotRecorded means an event could neither be published nor spooled.
	ErrNotRecorded = errors.New("audit event not recorded")
	// ErrInvalidParams reports a Publisher configured wrongly.
	ErrInvalidParams = errors.New("invalid audit publisher params")
)

// Params configures a Publisher.
type Params struct {
	// Conn is the NATS connection, watched for its status. Required.
	Conn *nats.Conn
	// JS publishes. Required.
	JS jetstream.JetStream
	// SpoolDir holds the spool file. Required.
	SpoolDir string
	Logger   *slog.Logger
	// AckTimeout bounds the wait for a JetStream acknowledgement before spooling; 0 means 2 s.
	AckTimeout time.Duration
	// MaxSpoolBytes refuses new spool records beyond this size (strict requests are then refused); 0 means 1 GiB.
	MaxSpoolBytes int64
	// ReplayInterval is how often the spool is retried; 0 means 250 ms.
	ReplayInterval time.Duration
}

// Publisher records audit events. Create it with New, run Run in a goroutine,
// and Close it on shutdown.
type Publisher struct {
	p   Params
	log *slog.Logger

	mu     sync.Mutex // guards the spool file and its offset
	f      *os.File
	size   int64
	offset int64
	offF   *os.File
	broken atomic.Bool
	full   atomic.Bool // an append was refused for space; cleared when the spool empties

	spooled  atomic.Int64 // records waiting in the spool
	replayMu sync.Mutex   // one replay at a time
	kick     chan struct{}

	published atomic.Uint64
	replayed  atomic.Uint64
}

const spoolName = "audit.spool"

// New opens (or creates) the spool and counts what it still holds.
func New(p Params) (*Publisher, error) {
	if p.Conn == nil || p.JS == nil || p.SpoolDir == "" || p.Logger == nil {
		return nil, fmt.Errorf("%w: Conn, JS, SpoolDir and Logger are required", ErrInvalidParams)
	}
	if p.AckTimeout <= 0 {
		p.AckTimeout = 2 * time.Second
	}
	if p.MaxSpoolBytes <= 0 {
		p.MaxSpoolBytes = 1 << 30
	}
	if p.ReplayInterval <= 0 {
		p.ReplayInterval = 250 * time.Millisecond
	}
	if err := os.MkdirAll(p.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(p.SpoolDir, spoolName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	offF, err := os.OpenFile(filepath.Join(p.SpoolDir, spoolName+".offset"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open spool offset: %w", err)
	}
	pub := &Publisher{p: p, log: p.Logger, f: f, offF: offF, kick: make(chan struct{}, 1)}
	var ob [8]byte
	if n, _ := offF.ReadAt(ob[:], 0); n == 8 {
		pub.offset = int64(binary.BigEndian.Uint64(ob[:]))
	}
	// Count whole records; a torn tail (a crash mid-append, never acknowledged) is cut off.
	valid, count, err := scan(f, pub.offset)
	if err != nil {
		_ = f.Close()
		_ = offF.Close()
		return nil, err
	}
	if err := f.Truncate(valid); err != nil {
		return nil, fmt.Errorf("truncate torn spool tail: %w", err)
	}
	pub.size = valid
	pub.spooled.Store(count)
	if count > 0 {
		p.Logger.Warn("audit spool holds events from before; they will be replayed", "events", count)
	}
	return pub, nil
}

// scan walks records from offset and returns the end of the last whole record and the count.
func scan(f *os.File, offset int64) (int64, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat spool: %w", err)
	}
	if offset > st.Size() {
		offset = st.Size()
	}
	pos, n := offset, int64(0)
	for {
		_, next, err := readRecord(f, pos)
		if err != nil {
			return pos, n, nil
		}
		pos = next
		n++
	}
}

func readRecord(f *os.File, pos int64) ([]byte, int64, error) {
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], pos); err != nil {
		return nil, pos, err
	}
	l := binary.BigEndian.Uint32(hdr[:4])
	if l > 64<<20 {
		return nil, pos, errors.New("spool record too large")
	}
	data := make([]byte, l)
	if _, err := f.ReadAt(data, pos+8); err != nil {
		return nil, pos, err
	}
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, pos, errors.New("spool record checksum mismatch")
	}
	return data, pos + 8 + int64(l), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func subject(ev *auditv1.AuditEvent) string {
	if ev.GetAdminAction() != nil {
		return SubjectAdminAction
	}
	return SubjectLLMCall
}

// Record stores ev durably: acknowledged by JetStream, or fsynced to the spool
// (while the spool holds anything, new events join it, so order is kept).
func (p *Publisher) Record(ctx context.Context, ev *auditv1.AuditEvent) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrNotRecorded, err)
	}
	if p.spooled.Load() == 0 && p.p.Conn.Status() == nats.CONNECTED {
		if err := p.publish(ctx, subject(ev), ev.GetEventId(), data); err == nil {
			p.published.Add(1)
			return nil
		} else {
			p.log.WarnContext(ctx, "audit publish failed; spooling", "event_id", ev.GetEventId(), "err", err.Error())
		}
	}
	if err := p.append(data); err != nil {
		return fmt.Errorf("%w: %v", ErrNotRecorded, err)
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, subj, id string, data []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.p.AckTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	// The consumer (audit) continues the request's trace from these headers.
	platform.InjectTrace(ctx, msg.Header)
	_, err := p.p.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	return err
}

func (p *Publisher) append(data []byte) error {
	rec := make([]byte, 8+len(data))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(data)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(data, castagnoli))
	copy(rec[8:], data)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size+int64(len(rec)) > p.p.MaxSpoolBytes {
		p.full.Store(true)
		return errors.New("spool full")
	}
	if _, err := p.f.WriteAt(rec, p.size); err != nil {
		p.broken.Store(true)
		return fmt.Errorf("append to spool: %w", err)
	}
	if err := p.f.Sync(); err != nil {
		p.broken.Store(true)
		return fmt.Errorf("fsync spool: %w", err)
	}
	p.broken.Store(false)
	p.size += int64(len(rec))
	p.spooled.Add(1)
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// Durable reports whether Record can currently succeed.
func (p *Publisher) Durable() bool {
	if p.p.Conn.Status() == nats.CONNECTED && p.spooled.Load() == 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.broken.Load() && !p.full.Load() && p.size < p.p.MaxSpoolBytes
}

// Spooled is the number of events waiting in the spool.
func (p *Publisher) Spooled() int64 { return p.spooled.Load() }

// Stats reports events published directly and replayed from the spool.
func (p *Publisher) Stats() (published, replayed uint64) {
	return p.published.Load(), p.replayed.Load()
}

// Run replays the spool whenever NATS is connected, until ctx is done.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.p.ReplayInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		if p.spooled.Load() > 0 && p.p.Conn.Status() == nats.CONNECTED {
			if err := p.replay(ctx); err != nil && ctx.Err() == nil {
				p.log.WarnContext(ctx, "audit spool replay paused", "err", err.Error(), "waiting", p.spooled.Load())
			}
		}
	}
}

// replay publishes spooled records in order, oldest first. A record published
// but not yet marked done (a crash in between) is published again on the next
// start, and JetStream drops it as a duplicate by its Nats-Msg-Id.
func (p *Publisher) replay(ctx context.Context) error {
	p.replayMu.Lock()
	defer p.replayMu.Unlock()
	for {
		p.mu.Lock()
		pos, size := p.offset, p.size
		p.mu.Unlock()
		if pos >= size {
			return p.compact()
		}
		data, next, err := readRecord(p.f, pos)
		if err != nil {
			return fmt.Errorf("read spool at %d: %w", pos, err)
		}
		ev := &auditv1.AuditEvent{}
		if err := proto.Unmarshal(data, ev); err != nil {
			return fmt.Errorf("decode spool record at %d: %w", pos, err)
		}
		if err := p.publish(ctx, subject(ev), ev.GetEventId(), data); err != nil {
			return err
		}
		p.replayed.Add(1)
		p.mu.Lock()
		p.offset = next
		p.spooled.Add(-1)
		err = p.saveOffset()
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (p *Publisher) saveOffset() error {
	var ob [8]byte
	binary.BigEndian.PutUint64(ob[:], uint64(p.offset))
	if _, err := p.offF.WriteAt(ob[:], 0); err != nil {
		return fmt.Errorf("save spool offset: %w", err)
	}
	return p.offF.Sync()
}

// compact empties the spool once everything in it is published.
func (p *Publisher) compact() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.offset < p.size || p.size == 0 {
		return nil
	}
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate spool: %w", err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("fsync spool: %w", err)
	}
	p.size, p.offset = 0, 0
	p.full.Store(false)
	if err := p.saveOffset(); err != nil {
		return err
	}
	p.log.Info("audit spool replayed and emptied", "replayed_total", p.replayed.Load())
	return nil
}

// Close replays what it can until ctx is done, then closes the spool. Events
// still spooled stay on disk and are replayed on the next start.
func (p *Publisher) Close(ctx context.Context) error {
	for p.spooled.Load() > 0 && ctx.Err() == nil {
		if p.p.Conn.Status() == nats.CONNECTED {
			if err := p.replay(ctx); err == nil {
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := p.spooled.Load(); n > 0 {
		p.log.Warn("audit spool kept on disk for the next start", "events", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.f.Close(), p.offF.Close())
}
