package compress

import "golang.org/x/sys/unix"

// An arena holds the pipeline's block buffers in one anonymous mapping
// that the kernel may back with 2 MiB pages (MADV_HUGEPAGE; Go's heap
// asks for none). The buffers are a few tens of MiB that every block is
// read into, encoded from and written out of: with 4 KiB pages that is
// thousands of page faults and TLB misses per pass, which on the
// page-table-virtualized build VMs cost more system time than zstd(1)'s
// whole run.
type arena struct {
	mem  []byte // nil: the mapping failed, take allocates from the heap
	used int
}

func newArena(size int) *arena {
	const huge = 2 << 20
	size = (size + huge - 1) &^ (huge - 1)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return &arena{}
	}
	// Only a hint: without it (THP off) the mapping is plain pages.
	unix.Madvise(mem, unix.MADV_HUGEPAGE)
	return &arena{mem: mem}
}

// take returns n bytes of the arena (of the heap once it is used up).
func (a *arena) take(n int) []byte {
	if a.mem == nil || len(a.mem)-a.used < n {
		return make([]byte, n)
	}
	b := a.mem[a.used : a.used+n : a.used+n]
	a.used += n
	return b
}

// free unmaps the arena: nothing taken from it may be used after.
func (a *arena) free() {
	if a.mem != nil {
		unix.Munmap(a.mem)
		a.mem = nil
	}
}
