package boottest

import (
	"context"
	"fmt"
	"time"
)

// BootStall and BootTimeoutMax stretch BootTimeout for a guest that is
// still booting: at BootTimeout a boot fails only if its console has been
// silent for BootStall; one that keeps writing gets until BootTimeoutMax.
// Under TCG the guest is starved whenever the host's 2 cores have other
// work (CI runs the e2e tests side by side): one first boot of the upgrade
// test printed "rcu_preempt kthread timer wakeup didn't happen for 5252
// jiffies", reached local-fs.target at 278 s and was cut off at 300 s,
// while the same image's own boots in that run reached login at 77 and
// 83 s. A hung guest prints nothing, so it still fails at BootTimeout.
var (
	BootStall      = 60 * time.Second
	BootTimeoutMax = 600 * time.Second
)

// bootBudget decides when a boot has had its time.
type bootBudget struct {
	start, lastOutput time.Time
	lastLen           int
}

func newBootBudget(now time.Time, consoleLen int) *bootBudget {
	return &bootBudget{start: now, lastOutput: now, lastLen: consoleLen}
}

// over reports, given the console's length now, whether the boot has had
// its time, and why.
func (b *bootBudget) over(now time.Time, consoleLen int) (bool, error) {
	if consoleLen != b.lastLen {
		b.lastLen, b.lastOutput = consoleLen, now
	}
	age, silent := now.Sub(b.start), now.Sub(b.lastOutput)
	switch {
	case age >= BootTimeoutMax:
		return true, fmt.Errorf("no login after %s, the most a boot that keeps writing to its console gets", BootTimeoutMax)
	case age >= BootTimeout && silent >= BootStall:
		return true, fmt.Errorf("no login after %s, and the console silent for %s", age.Round(time.Second), silent.Round(time.Second))
	}
	return false, nil
}

// budgetPoll is how often the budget is checked: the deadline is only
// this much late.
const budgetPoll = time.Second

// bootContext returns a context that ends when the boot has had its time
// (bootBudget), with the reason as its cause; consoleLen reads the
// console's length.
func bootContext(ctx context.Context, consoleLen func() int) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancelCause(ctx)
	b := newBootBudget(time.Now(), consoleLen())
	go func() {
		t := time.NewTicker(budgetPoll)
		defer t.Stop()
		for {
			select {
			case <-bctx.Done():
				return
			case now := <-t.C:
				if over, why := b.over(now, consoleLen()); over {
					cancel(why)
					return
				}
			}
		}
	}()
	return bctx, func() { cancel(context.Canceled) }
}

// budgetErr is err, or the reason the boot's time ran out when that is
// what ended it.
func budgetErr(bctx context.Context, err error) error {
	if bctx.Err() != nil {
		if cause := context.Cause(bctx); cause != nil && cause != context.Canceled {
			return cause
		}
	}
	return err
}
