// Package procstat reads the CPU time consumed by the processes a bench run
// started (Linux /proc), so a run can report CPU per call: a figure that, unlike
// latency, does not depend on how busy the shared machine's scheduler is.
package procstat

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on Linux).
const clockTick = 10 * time.Millisecond

// ErrUnsupported is returned where /proc is not available.
var ErrUnsupported = errors.New("procstat: /proc not available")

type stat struct {
	name string
	ppid int
	cpu  time.Duration
}

// parse reads ppid and utime+stime from the text of /proc/<pid>/stat.
func parse(s string) (stat, bool) {
	// comm (field 2) may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(s, ')')
	j := strings.IndexByte(s, '(')
	if i < 0 || j < 0 || j > i {
		return stat{}, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is state (field 3); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return stat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return stat{}, false
	}
	return stat{name: s[j+1 : i], ppid: ppid, cpu: time.Duration(ut+st) * clockTick}, true
}

// DescendantsCPU is the CPU time (user+system) used so far by every living
// descendant of process root.
func DescendantsCPU(root int) (time.Duration, error) {
	by, err := DescendantsCPUByName(root)
	var total time.Duration
	for _, v := range by {
		total += v
	}
	return total, err
}

// DescendantsCPUByName is DescendantsCPU split by process name (comm).
func DescendantsCPUByName(root int) (map[string]time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, ErrUnsupported
	}
	all := map[int]stat{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if st, ok := parse(string(b)); ok {
			all[pid] = st
		}
	}
	return sumDescendants(root, all), nil
}

func sumDescendants(root int, all map[int]stat) map[string]time.Duration {
	children := map[int][]int{}
	for pid, st := range all {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	total := map[string]time.Duration{}
	stack := append([]int(nil), children[root]...)
	seen := map[int]bool{}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		total[all[pid].name] += all[pid].cpu
		stack = append(stack, children[pid]...)
	}
	return total
}
