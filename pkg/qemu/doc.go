// Package qemu boots cosa images under QEMU: KVM when /dev/kvm is usable,
// TCG otherwise; the image behind a throwaway qcow2 overlay so a build's
// artifact is never written; UEFI through OVMF or BIOS through SeaBIOS; the
// serial console streamed to a log file and scanned as it arrives.
package qemu
