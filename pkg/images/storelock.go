package images

import (
	"os"
	"path/filepath"
	"syscall"
)

// storeUse is one engine run's hold on the store. Every run holds a
// shared flock on cache/objects/.lock while it works; removing things
// (leftover .tmp- dirs of interrupted runs, LRU eviction) needs the lock
// exclusively and is skipped, not waited for, when another run is active:
// another run's .tmp- dir is work in progress, and an object it found a
// moment ago must not vanish under it.
type storeUse struct{ f *os.File }

// alone, if set, runs while the lock is exclusive, after Clean.
func (s *Store) use(alone func()) (*storeUse, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, StoreLockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	u := &storeUse{f}
	if u.tryExclusive() {
		s.Clean()
		if alone != nil {
			alone()
		}
	}
	if err := u.shared(); err != nil {
		f.Close()
		return nil, err
	}
	return u, nil
}

// shared (re)takes the lock shared; it waits only for a peer that is
// briefly exclusive (cleaning or evicting).
func (u *storeUse) shared() error {
	return syscall.Flock(int(u.f.Fd()), syscall.LOCK_SH)
}

// tryExclusive takes the lock exclusively if no other run holds it. On
// Linux a conversion that fails drops the lock held before (flock(2)), so
// callers follow it with shared() when they go on reading.
func (u *storeUse) tryExclusive() bool {
	return syscall.Flock(int(u.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

func (u *storeUse) release() { u.f.Close() }
