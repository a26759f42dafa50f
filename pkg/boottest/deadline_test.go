package boottest

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestBootBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := time.Second

	// A guest that keeps writing is not cut off at BootTimeout.
	b := newBootBudget(t0, 0)
	for i := 1; i*10 < int(BootTimeoutMax/s); i++ {
		if over, why := b.over(at(time.Duration(i*10)*s), i); over {
			t.Fatalf("writing guest cut off at %ds: %v", i*10, why)
		}
	}
	// ... but at BootTimeoutMax, writing or not.
	if over, why := b.over(at(BootTimeoutMax), 10_000); !over || !strings.Contains(why.Error(), "keeps writing") {
		t.Fatalf("at BootTimeoutMax: over %v (%v)", over, why)
	}

	// A silent guest fails at BootTimeout, not later.
	b = newBootBudget(t0, 5)
	if over, _ := b.over(at(BootTimeout-s), 5); over {
		t.Fatal("silent guest cut off before BootTimeout")
	}
	if over, why := b.over(at(BootTimeout), 5); !over || !strings.Contains(why.Error(), "silent") {
		t.Fatalf("silent guest at BootTimeout: over %v (%v)", over, why)
	}

	// Output that stopped BootStall before BootTimeout: fails at BootTimeout;
	// output that stopped later: fails BootStall after it stopped.
	b = newBootBudget(t0, 0)
	b.over(at(BootTimeout-BootStall-s), 1)
	if over, _ := b.over(at(BootTimeout), 1); !over {
		t.Fatal("guest silent for BootStall at BootTimeout was not cut off")
	}
	b = newBootBudget(t0, 0)
	b.over(at(BootTimeout-s), 1)
	if over, _ := b.over(at(BootTimeout+BootStall-2*s), 1); over {
		t.Fatal("guest that wrote 1 s before BootTimeout was cut off before BootStall of silence")
	}
	if over, _ := b.over(at(BootTimeout+BootStall), 1); !over {
		t.Fatal("guest silent for BootStall after BootTimeout was not cut off")
	}
}

// The context ends with the budget's reason as its cause, and a plain
// cancel is not reported as one.
func TestBootContextCause(t *testing.T) {
	oldT, oldS := BootTimeout, BootStall
	BootTimeout, BootStall = 0, 0
	defer func() { BootTimeout, BootStall = oldT, oldS }()
	bctx, cancel := bootContext(context.Background(), func() int { return 0 })
	defer cancel()
	select {
	case <-bctx.Done():
	case <-time.After(10 * budgetPoll):
		t.Fatal("the boot context did not end")
	}
	if err := budgetErr(bctx, context.Canceled); !strings.Contains(err.Error(), "silent") {
		t.Fatalf("cause %v", err)
	}
	BootTimeout, BootStall = time.Hour, time.Hour
	bctx, cancel = bootContext(context.Background(), func() int { return 0 })
	cancel()
	if err := budgetErr(bctx, context.Canceled); err != context.Canceled {
		t.Fatalf("plain cancel reported as %v", err)
	}
}
