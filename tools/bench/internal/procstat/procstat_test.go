package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParse_ReadsPPIDAndCPUPastACommWithSpacesAndParens(t *testing.T) {
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 8 0 1000 0 0"
	st, ok := parse(line)
	if !ok || st.ppid != 17 || st.cpu != 281*clockTick || st.name != "my (odd) proc" {
		t.Fatalf("got %+v %v; want ppid 17, cpu 281 ticks", st, ok)
	}
	if _, ok := parse("garbage"); ok {
		t.Fatal("parsed garbage")
	}
}

func TestSumDescendants_CountsTheWholeTreeOnly(t *testing.T) {
	all := map[int]stat{
		10: {name: "bench", ppid: 1, cpu: time.Second},        // root itself: not counted
		11: {name: "bulwark", ppid: 10, cpu: 2 * time.Second}, // child
		12: {name: "vault", ppid: 11, cpu: 3 * time.Second},   // grandchild (the Vault an all-in-one starts)
		14: {name: "vault", ppid: 10, cpu: 4 * time.Second},   // another of the same name
		13: {name: "other", ppid: 1, cpu: 7 * time.Second},    // unrelated
	}
	got := sumDescendants(10, all)
	if len(got) != 2 || got["bulwark"] != 2*time.Second || got["vault"] != 7*time.Second {
		t.Fatalf("got %v, want bulwark 2s, vault 7s", got)
	}
}

// A busy child process shows up in DescendantsCPU.
func TestDescendantsCPU_SeesABusyChild(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cpu, err := DescendantsCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if cpu > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no CPU time seen for a busy child")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
