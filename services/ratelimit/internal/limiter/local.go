package limiter

import (
	"math"
	"sync"
	"time"
)

// local is the fail-open limiter: the same algorithms as the Lua script, kept
// in this process's memory. It is approximate by design: each replica counts
// on its own (so a fleet of n replicas lets through up to n times a limit), and
// it starts empty, knowing nothing of what Redis had counted. It only decides
// while Redis is unreachable and the request asked to fail open.
type local struct {
	mu        sync.Mutex
	now       func() time.Time
	tat       map[string]float64
	buckets   map[string]*localBucket
	slots     map[string]map[string]int64 // concurrency key -> request id -> expiry ms
	res       map[string]*localRes
	lastSweep int64
}

type localBucket struct {
	v float64
	w int64 // last update (rolling) or window start (calendar)
}

type localEntry struct {
	kind   Kind
	key    string
	amount int64
	win    int64
	lim    Limit
	t      float64
}

type localRes struct {
	exp     int64
	done    bool
	entries []localEntry
	price   Price
	reqID   string
}

// maxLocalKeys bounds the memory the local limiter may use during an outage;
// past it, it forgets everything and starts again (it is approximate anyway).
const maxLocalKeys = 100_000

func newLocal(now func() time.Time) *local {
	l := &local{now: now}
	l.reset()
	return l
}

func (l *local) reset() {
	l.tat = map[string]float64{}
	l.buckets = map[string]*localBucket{}
	l.slots = map[string]map[string]int64{}
	l.res = map[string]*localRes{}
}

func localWindow(cal string, now int64) (start, end int64) {
	t := time.UnixMilli(now).UTC()
	var s, e time.Time
	switch cal {
	case CalendarHour:
		s = t.Truncate(time.Hour)
		e = s.Add(time.Hour)
	case CalendarDay:
		s = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		e = s.AddDate(0, 0, 1)
	default:
		s = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		e = s.AddDate(0, 1, 0)
	}
	return s.UnixMilli(), e.UnixMilli()
}

// sweep gives back what expired reservations hold. Called with mu held.
func (l *local) sweep(now int64) {
	if now-l.lastSweep < 1000 && len(l.res) < maxLocalKeys {
		return
	}
	l.lastSweep = now
	for id, r := range l.res {
		if r.exp > now {
			continue
		}
		if !r.done {
			l.apply(r, now, 0, 0, true)
		}
		delete(l.res, id)
	}
	if len(l.tat)+len(l.buckets)+len(l.slots) > maxLocalKeys {
		l.reset()
	}
}

func (l *local) bucketLevel(key string, lim Limit, now int64) (v float64, win, wend int64) {
	b := l.buckets[key]
	if lim.Calendar == "" {
		if b == nil {
			return 0, 0, 0
		}
		v = b.v - float64(now-b.w)*float64(lim.Limit)/float64(lim.Period.Milliseconds())
		return max(v, 0), 0, 0
	}
	win, wend = localWindow(lim.Calendar, now)
	if b == nil || b.w != win {
		return 0, win, wend
	}
	return b.v, win, wend
}

func (l *local) reserve(req ReserveRequest, tag string, tokens, cost int64, ttl time.Duration, price Price) Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	nowT := l.now()
	now := nowT.UnixMilli()
	l.sweep(now)
	d := Decision{Allowed: true, Degraded: true, Now: nowT}
	id := tag + "\x00" + req.RequestID
	if r, ok := l.res[id]; ok && r.exp > now {
		d.Replayed = true
		d.ReservedTokens, d.ReservedCostMicros = tokens, cost
		return d
	}
	exp := now + ttl.Milliseconds()
	entries := make([]localEntry, len(req.Limits))
	for i, lim := range req.Limits {
		state, _ := limitKeys("", tag, req.Subject, lim)
		st := Status{Name: lim.Name, Kind: lim.Kind, Limit: lim.Limit}
		e := localEntry{kind: lim.Kind, key: state, lim: lim}
		fits := true
		switch lim.Kind {
		case KindRequests:
			t := float64(lim.Period.Milliseconds()) / float64(lim.Limit)
			tau := t * float64(lim.Burst)
			tat := math.Max(l.tat[state], float64(now))
			next := tat + t
			if next-tau-t-float64(now) > t*1e-9 {
				fits = false
				st.RetryAfter = clampMs(next - tau - t - float64(now))
				st.Remaining = int64(math.Floor((tau + t - (tat - float64(now))) / t))
				st.ResetAfter = clampMs(tat - float64(now))
			} else {
				st.Remaining = int64(math.Floor((tau+t-(next-float64(now)))/t + 1e-9))
				st.ResetAfter = clampMs(next - float64(now))
			}
			e.t = next
		case KindTokens, KindSpend:
			amount := tokens
			if lim.Kind == KindSpend {
				amount = cost
			}
			v, win, wend := l.bucketLevel(state, lim, now)
			fits = v+float64(amount) <= float64(lim.Limit)+1e-9 && (amount > 0 || v < float64(lim.Limit))
			if fits {
				v += float64(amount)
			} else if amount > lim.Limit {
				st.RetryAfter = never(lim)
			} else if lim.Calendar == "" {
				st.RetryAfter = clampMs((v + float64(amount) - float64(lim.Limit)) * float64(lim.Period.Milliseconds()) / float64(lim.Limit))
			} else {
				st.RetryAfter = clampMs(float64(wend - now))
			}
			st.Remaining = max(int64(math.Floor(float64(lim.Limit)-v+1e-9)), 0)
			if lim.Calendar == "" {
				st.ResetAfter = clampMs(v * float64(lim.Period.Milliseconds()) / float64(lim.Limit))
			} else {
				st.ResetAfter = clampMs(float64(wend - now))
			}
			e.amount, e.win, e.t = amount, win, v
		case KindConcurrency:
			n := int64(0)
			for _, x := range l.slots[state] {
				if x > now {
					n++
				}
			}
			fits = n+1 <= lim.Limit
			if fits {
				n++
			} else {
				st.RetryAfter = time.Second
			}
			st.Remaining = max(lim.Limit-n, 0)
			st.ResetAfter = ttl
		}
		if !fits && d.Allowed {
			d.Allowed = false
			d.DeniedBy = lim.Name
		}
		if !fits && st.RetryAfter > d.RetryAfter {
			d.RetryAfter = st.RetryAfter
		}
		d.Statuses = append(d.Statuses, st)
		entries[i] = e
	}
	if !d.Allowed {
		return d
	}
	for _, e := range entries {
		switch e.kind {
		case KindRequests:
			l.tat[e.key] = e.t
		case KindTokens, KindSpend:
			w := e.win
			if e.lim.Calendar == "" {
				w = now
			}
			l.buckets[e.key] = &localBucket{v: e.t, w: w}
		case KindConcurrency:
			if l.slots[e.key] == nil {
				l.slots[e.key] = map[string]int64{}
			}
			l.slots[e.key][req.RequestID] = exp
		}
	}
	l.res[id] = &localRes{exp: exp, entries: entries, price: price, reqID: req.RequestID}
	d.ReservedTokens, d.ReservedCostMicros = tokens, cost
	return d
}

// apply settles (release=false) or gives back (release=true) a reservation. mu held.
func (l *local) apply(r *localRes, now int64, tokens, cost int64, release bool) {
	for _, e := range r.entries {
		switch e.kind {
		case KindConcurrency:
			delete(l.slots[e.key], r.reqID)
		case KindTokens, KindSpend:
			actual := tokens
			if e.kind == KindSpend {
				actual = cost
			}
			if release {
				actual = 0
			}
			v, win, _ := l.bucketLevel(e.key, e.lim, now)
			if e.lim.Calendar != "" && win != e.win {
				continue
			}
			v = max(v+float64(actual-e.amount), 0)
			w := win
			if e.lim.Calendar == "" {
				w = now
			}
			l.buckets[e.key] = &localBucket{v: v, w: w}
		}
	}
	r.done = true
}

func (l *local) finish(id, mode string, u Usage, cost int64) SettleResult {
	_, tag, requestID, _ := parseReservationID(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UnixMilli()
	r, ok := l.res[tag+"\x00"+requestID]
	if !ok || r.done || r.exp <= now {
		return SettleResult{}
	}
	if cost < 0 {
		cost = costOf(r.price, u.InputTokens, u.OutputTokens)
	}
	l.apply(r, now, u.InputTokens+u.OutputTokens, cost, mode == "release")
	if mode == "release" {
		cost = 0
	}
	return SettleResult{Settled: true, CostMicros: cost}
}
