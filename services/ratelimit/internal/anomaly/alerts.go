package anomaly

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

// ErrInvalidPageToken reports a page token this service did not issue.
var ErrInvalidPageToken = errors.New("invalid page token")

// Alerts and their indexes share one hash tag, so that storing one (a
// transaction) and listing a page (MGET) stay in one Redis Cluster slot.
// Alerts are few (deduplicated and rate limited), so one slot holds them.
func (d *Detector) allKey() string               { return d.prefix + "{alerts}:all" }
func (d *Detector) principalKey(p string) string { return d.prefix + "{alerts}:p:" + esc(p) }
func (d *Detector) alertKey(id string) string    { return d.prefix + "{alerts}:alert:" + esc(id) }

// store keeps an alert for ListAlerts: the alert itself under its own key with
// the retention as ttl, and its id in time-ordered indexes (all, per principal).
func (d *Detector) store(ctx context.Context, ev *ratelimitv1.AnomalyEvent, principal string) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return err
	}
	score := float64(ev.GetTime().AsTime().UnixMilli())
	// Trim by the alerts' own clock, so replayed history is kept like live alerts.
	cutoff := strconv.FormatInt(ev.GetTime().AsTime().Add(-d.cfg.Retention).UnixMilli(), 10)
	pipe := d.rdb.TxPipeline()
	pipe.Set(ctx, d.alertKey(ev.GetEventId()), data, d.cfg.Retention)
	for _, k := range []string{d.allKey(), d.principalKey(principal)} {
		if k == d.principalKey("") {
			continue
		}
		pipe.ZAdd(ctx, k, redis.Z{Score: score, Member: ev.GetEventId()})
		pipe.ZRemRangeByScore(ctx, k, "-inf", "("+cutoff)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store alert: %w", err)
	}
	return nil
}

// ListQuery filters alerts.
type ListQuery struct {
	PrincipalID string
	Since       time.Time
	PageSize    int
	PageToken   string
}

// List returns alerts newest first and the token of the next page ("" at the end).
func (d *Detector) List(ctx context.Context, q ListQuery) ([]*ratelimitv1.AnomalyEvent, string, error) {
	size := q.PageSize
	if size <= 0 {
		size = 100
	}
	size = min(size, 1000)
	offset := 0
	if q.PageToken != "" {
		n, err := strconv.Atoi(q.PageToken)
		if err != nil || n < 0 {
			return nil, "", ErrInvalidPageToken
		}
		offset = n
	}
	key := d.allKey()
	if q.PrincipalID != "" {
		key = d.principalKey(q.PrincipalID)
	}
	minScore := "-inf"
	if !q.Since.IsZero() {
		minScore = strconv.FormatInt(q.Since.UnixMilli(), 10)
	}
	ids, err := d.rdb.ZRevRangeByScore(ctx, key, &redis.ZRangeBy{Min: minScore, Max: "+inf", Offset: int64(offset), Count: int64(size + 1)}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list alerts: %w", err)
	}
	next := ""
	if len(ids) > size {
		ids = ids[:size]
		next = strconv.Itoa(offset + size)
	}
	if len(ids) == 0 {
		return nil, next, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = d.alertKey(id)
	}
	vals, err := d.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list alerts: %w", err)
	}
	out := make([]*ratelimitv1.AnomalyEvent, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired
		}
		ev := &ratelimitv1.AnomalyEvent{}
		if err := proto.Unmarshal([]byte(s), ev); err != nil {
			return nil, "", fmt.Errorf("decode alert: %w", err)
		}
		out = append(out, ev)
	}
	return out, next, nil
}
